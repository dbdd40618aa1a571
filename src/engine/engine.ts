// The steering engine: a model, a context with a pool of sequences, and generation under PASTA
// steering. Prompt text + emphasized character spans in; tokens, log-probs and the token ranges
// that were emphasized out. Jobs are admitted through one Scheduler (the only wait queue), each on
// a sequence of its own; the work on a sequence is in sequenceGeneration.ts and score.ts.
import type { LlamaContext, LlamaModel, Llama, Token } from "node-llama-cpp";
import {
  DEFAULT_ALPHA,
  DEFAULT_CONTEXT_SIZE,
  DEFAULT_MAX_TOKENS,
  DEFAULT_PARALLEL,
  DEFAULT_SAMPLING_BUDGET_MS,
  DEFAULT_STREAM_INTERVAL_MS,
  MAX_DIAGNOSTIC_VALUES,
  MAX_GRAMMAR_FAN_OUT,
  MAX_GRAMMAR_OPTIONAL_RUN,
  GRAMMAR_CHECK_VISITS,
} from "../defaults.js";
import { snapToCodePoints, unionSpans } from "../emphasis/markup.js";
import { Scheduler, type JobOptions } from "../scheduler/scheduler.js";
import {
  GenerationLoop,
  grammarCheck,
  loadPatchedLlama,
  SteerableSequence,
  steeringInfo,
  tokenizeOffThread,
  tokenPieces,
} from "./binding.js";
import { ContextLengthError, EngineFieldError, SteeringError, UnsupportedModelError } from "./errors.js";
import { generateOn, type PromptSource } from "./sequenceGeneration.js";
import { compileGrammar, GrammarError, type OutputConstraint, type OutputGrammar } from "./grammar.js";
import { scoreOn } from "./score.js";
import { PooledSequence, SequencePool } from "./sequencePool.js";
import { type HeadSet, resolveHeads, validateAlpha, validateTargetShare } from "./steering.js";
import { defaultThreads } from "./threads.js";
import { spansToTokenRanges, tokenOffsets } from "./tokenSpans.js";
import { tokenText } from "./tokenText.js";
import type {
  DiagnosticsOptions,
  EngineOptions,
  GenerateRequest,
  GenerateResult,
  PreparedPrompt,
  PromptInput,
  ResolvedSteering,
  ScoreRequest,
  ScoreResult,
  SteeringRequest,
} from "./types.js";

export type * from "./types.js";

/** The fields of a generation that `prepare` checks against the model. */
type GenerationFields = Partial<Pick<GenerateRequest, "logitBias" | "minTokens" | "ignoreEos" | "grammar">>;

/** Generation and scoring on the one sequence a job holds (see SteeringEngine.withSequence). */
export interface EngineSession {
  generate(request: GenerateRequest, prepared?: PreparedPrompt): Promise<GenerateResult>;
  /**
   * Several answers to one prompt, one per request (they differ in seed and `onText` only), each on
   * a sequence of its own: the job must hold as many (JobOptions.slots). The prompt is evaluated
   * once, on the first, and the others start from a copy of its cache (with prefix reuse off, each
   * evaluates it whole: every answer then depends on its own request alone).
   */
  generateChoices(requests: readonly GenerateRequest[], prepared: PreparedPrompt): Promise<GenerateResult[]>;
  score(request: ScoreRequest, prepared?: PreparedPrompt): Promise<ScoreResult>;
}

/** Every result once all have settled (no job may still run on a sequence its caller releases); the first failure otherwise. */
async function allSettled<T>(jobs: ReadonlyArray<Promise<T>>): Promise<T[]> {
  const settled = await Promise.allSettled(jobs);
  const failed = settled.find((s) => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

export class SteeringEngine {
  private constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    private readonly pool: SequencePool,
    /** admission: at most one job per sequence runs, the rest wait here */
    readonly scheduler: Scheduler,
    /** query heads per layer */
    readonly headsPerLayer: readonly number[],
    /** why this model cannot be steered, or null */
    readonly unsupportedReason: string | null,
    /** tokens in the vocabulary: ids are 0 to this minus 1 */
    readonly vocabularySize: number,
    /** EngineOptions.prefixReuse */
    private readonly prefixReuse: boolean,
  ) {}

  /** tokenizations running on worker threads (tokenizeOffLoop) */
  private readonly tokenizing = new Set<Promise<unknown>>();
  /** the tokenizations asked for in this turn of the event loop, and when all of them have settled */
  private thisTurn: { members: Array<Promise<void>>; settled: Promise<void> } | null = null;

  /**
   * `scheduler`: the server's (bounded queue, drain on shutdown); its `parallel` is the number of
   * sequences. Without one, the engine queues without bound.
   */
  static async load(options: EngineOptions & { scheduler?: Scheduler }): Promise<SteeringEngine> {
    const parallel = options.scheduler?.parallel ?? options.parallel ?? DEFAULT_PARALLEL;
    if (options.parallel !== undefined && options.parallel !== parallel)
      throw new Error(`parallel ${options.parallel} differs from the scheduler's ${parallel}`);
    const scheduler = options.scheduler ?? new Scheduler({ parallel, maxQueue: Number.POSITIVE_INFINITY });
    const llama = await loadPatchedLlama({ gpu: options.gpu ?? false });
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const context = await model.createContext({
      contextSize: options.contextSize ?? DEFAULT_CONTEXT_SIZE,
      sequences: parallel,
      flashAttention: options.flashAttention ?? true,
      ...(options.kvCacheType
        ? { experimentalKvCacheKeyType: options.kvCacheType, experimentalKvCacheValueType: options.kvCacheType }
        : {}),
      threads: options.threads ?? defaultThreads(),
    });
    const loop = GenerationLoop.start(context, {
      deliveryIntervalMs: options.deliveryIntervalMs ?? DEFAULT_STREAM_INTERVAL_MS,
      samplingBudgetMs: options.samplingBudgetMs ?? DEFAULT_SAMPLING_BUDGET_MS,
    });
    const info = steeringInfo(context);
    const sequences = Array.from(
      { length: parallel },
      () =>
        new PooledSequence(
          new SteerableSequence(loop, context.getSequence()),
          info.headsPerLayer,
          info.shiftInvariant,
          options.prefixReuse ?? true,
        ),
    );
    return new SteeringEngine(
      llama,
      model,
      context,
      new SequencePool(sequences),
      scheduler,
      info.headsPerLayer,
      info.unsupportedReason,
      info.vocabularySize,
      options.prefixReuse ?? true,
    );
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  /**
   * Tokens of the evaluated prompt (BOS first when the model adds one and the text does not start
   * with it) with their character offsets. `specialTokens`: special-token text such as
   * `<|im_start|>` becomes the special token, as llama-server does for rendered chat templates.
   */
  tokenizePrompt(text: string, specialTokens = false): { tokens: Token[]; offsets: Array<[number, number]> } {
    const tokens = this.promptTokens(text, specialTokens);
    return { tokens, offsets: this.offsetsOf(tokens, text) };
  }

  private promptTokens(text: string, specialTokens = false): Token[] {
    const tokens = this.model.tokenize(text, specialTokens);
    const bos = this.addedBos;
    return bos !== null && tokens[0] !== bos ? [bos, ...tokens] : tokens;
  }

  /** The BOS token prompts start with, where the model adds one. */
  private get addedBos(): Token | null {
    const bos = this.model.tokens.bos;
    return bos != null && this.model.tokens.shouldPrependBosToken ? bos : null;
  }

  /**
   * Tokenization off the event loop (a long prompt takes tens to hundreds of milliseconds), tracked
   * so that the model is not freed under it (dispose). Those asked for in one turn of the event loop
   * settle together: jobs started in one turn are then still submitted together (GenerationLoop), so
   * which sequences share a batch does not depend on which tokenization finished first.
   */
  private async tokenizeOffLoop(text: string, options: Parameters<typeof tokenizeOffThread>[2]) {
    const pending = tokenizeOffThread(this.context, text, options);
    this.tokenizing.add(pending);
    const turn = this.sameTurnGroup();
    // observed at once: a tokenization that fails before the turn ends is not an unhandled rejection
    turn.members.push(
      pending.then(
        () => undefined,
        () => undefined,
      ),
    );
    try {
      await turn.settled;
      return await pending;
    } finally {
      this.tokenizing.delete(pending);
    }
  }

  private sameTurnGroup() {
    if (this.thisTurn) return this.thisTurn;
    const members: Array<Promise<void>> = [];
    const settled = new Promise<void>((resolve) => {
      // the group closes at the end of this turn; then it settles once every member has
      setImmediate(() => {
        this.thisTurn = null;
        void Promise.all(members).then(() => resolve());
      });
    });
    this.thisTurn = { members, settled };
    return this.thisTurn;
  }

  /**
   * Tokenization as a client sees it (POST /tokenize): `addSpecial` puts BOS first where the model
   * adds one (as prompts get it), `parseSpecial` turns special-token text into special tokens. Each
   * token with its raw bytes and its character range in `text`.
   */
  async tokenize(
    text: string,
    options: { addSpecial: boolean; parseSpecial: boolean },
  ): Promise<Array<{ id: Token; bytes: Uint8Array; start: number; end: number }>> {
    const tokens = await this.tokenizeOffLoop(text, {
      parseSpecial: options.parseSpecial,
      prepend: options.addSpecial ? this.addedBos : null,
    });
    const pieces = tokenPieces(this.context, tokens);
    const offsets = tokenOffsets(pieces, text);
    return tokens.map((id, i) => ({
      id,
      bytes: pieces.bytes.subarray(i === 0 ? 0 : pieces.ends[i - 1], pieces.ends[i]),
      start: offsets[i]![0],
      end: offsets[i]![1],
    }));
  }

  /** The text of token ids (special tokens by their text), as llama-server's /detokenize gives it. */
  detokenize(tokens: readonly Token[]): string {
    return this.model.detokenize(tokens, true);
  }

  /** Character offsets of the tokens of `text`, from the tokens' own bytes (tokenSpans.ts). */
  private offsetsOf(tokens: readonly Token[], text: string): Array<[number, number]> {
    return tokenOffsets(tokenPieces(this.context, tokens), text);
  }

  /** Structured output for GenerateRequest.grammar; a 400 (GrammarError) names what cannot be enforced. */
  compileGrammar(constraint: OutputConstraint): OutputGrammar {
    // a GBNF grammar is checked here first: llama.cpp's own parser prints a bad one to stderr whole
    if (constraint.type === "grammar") this.checkGrammar(constraint.grammar, "grammar");
    const compiled = compileGrammar(this.llama, constraint);
    // a schema's grammar is node-llama-cpp's, made of the client's schema: its fan-out is the client's too
    if (constraint.type !== "grammar") this.checkGrammar(compiled.grammar.grammar, "schema");
    return compiled;
  }

  /**
   * A GrammarError when llama.cpp cannot parse the grammar, or when enforcing it would make sampling
   * slow: sampling holds up every sequence, and a grammar's cost per token grows with the parse
   * stacks it keeps (MAX_GRAMMAR_FAN_OUT) and, cubed, with optional items in a row (MAX_GRAMMAR_OPTIONAL_RUN).
   */
  private checkGrammar(grammar: string, field: "grammar" | "schema"): void {
    const limits = { fanOut: MAX_GRAMMAR_FAN_OUT, optionalRun: MAX_GRAMMAR_OPTIONAL_RUN, visits: GRAMMAR_CHECK_VISITS };
    const check = grammarCheck(this.context, grammar, limits);
    const code = field === "grammar" ? "invalid_grammar" : "unsupported_schema";
    // llama.cpp's messages quote the rest of the grammar from where parsing failed: the first line is enough
    if ("error" in check)
      throw new GrammarError(field, `: ${check.error.split("\n")[0]!.slice(0, 200)} (GBNF, as llama.cpp parses it)`, code);
    // a schema's grammar is node-llama-cpp's: its rule names mean nothing to the client
    const where = (rule: string) => (field === "grammar" ? ` (rule ${JSON.stringify(rule)})` : "");
    const slow = "which would make every token slow to sample";
    if (check.optionalRun > limits.optionalRun)
      throw new GrammarError(
        field,
        `: more than ${limits.optionalRun} optional items in a row${where(check.optionalRunRule)}, ${slow}: at most ${limits.optionalRun}`,
        code,
      );
    if (check.fanOut > limits.fanOut)
      throw new GrammarError(
        field,
        `: more than ${limits.fanOut} alternatives open at one point${where(check.fanOutRule)}, ${slow}: at most ${limits.fanOut}`,
        code,
      );
    if (check.exhausted) throw new GrammarError(field, ": too large to check that it can be enforced quickly", code);
  }

  /** Text of one token; after `previous`, a word-initial token keeps its leading space. */
  tokenText(token: Token, previous?: Token): string {
    return tokenText(this.model, token, previous);
  }

  /** Validates a steering request against the model and maps its spans onto the prompt's tokens. */
  resolveSteering(text: string, offsets: ReadonlyArray<readonly [number, number]>, request: SteeringRequest): ResolvedSteering {
    if (this.unsupportedReason) throw new UnsupportedModelError(`This model cannot be steered: ${this.unsupportedReason}`);
    const mode = request.mode ?? "exclude";
    const alpha = request.alpha ?? DEFAULT_ALPHA;
    validateAlpha(alpha, mode);
    if (request.targetShare !== undefined) validateTargetShare(request.targetShare, mode, alpha);
    const heads = resolveHeads(request.heads, this.headsPerLayer);
    for (const [i, c] of request.emphasis.entries()) {
      if (!(Number.isInteger(c.start) && Number.isInteger(c.end) && c.start >= 0 && c.start < c.end && c.end <= text.length)) {
        throw new SteeringError(
          `emphasis[${i}]`,
          ` {start: ${c.start}, end: ${c.end}} must satisfy 0 <= start < end <= ${text.length} (the prompt's length)`,
        );
      }
    }
    const chars = unionSpans(request.emphasis.map((c) => snapToCodePoints(text, c)));
    // generation mode biases the whole prompt against the generated tokens: it needs no emphasis
    if (chars.length === 0 && mode !== "generation") throw new SteeringError("emphasis", ": nothing is emphasized");
    const perSpan = chars.map((c) => spansToTokenRanges(offsets, [c]));
    const spans = chars.map((c, i) => {
      const ranges = perSpan[i]!;
      if (ranges.length === 0) throw new SteeringError("emphasis", `: characters ${c.start}-${c.end} cover no token`);
      return { start: c.start, end: c.end, text: text.slice(c.start, c.end), tokenStart: ranges[0]!.start, tokenEnd: ranges.at(-1)!.end };
    });
    const emphasized = unionSpans(perSpan.flat());
    const targetShare = request.targetShare !== undefined ? { targetShare: request.targetShare } : {};
    return {
      spec: { emphasized, heads, alpha, mode, ...targetShare },
      spans,
      ...(request.diagnostics ? { diagnostics: request.diagnostics } : {}),
    };
  }

  /**
   * Tokenizes the prompt (off the event loop) and validates its steering and length: every error a
   * request can be refused for, found before it waits for a sequence. `generate` and `score` take the result.
   */
  async prepare(input: PromptInput & GenerationFields, newTokens: number): Promise<PreparedPrompt> {
    this.checkGenerationFields(input, newTokens);
    const tokens = await this.tokenizeOffLoop(input.prompt, { parseSpecial: input.specialTokens ?? false, prepend: this.addedBos });
    // the length first: offsets and spans cost time per token, which a prompt too long to serve must not take
    this.checkLength(tokens, newTokens);
    // character offsets take each token's piece: only steering needs them here
    if (!input.steering) return { prompt: input.prompt, tokens };
    const offsets = this.offsetsOf(tokens, input.prompt);
    const steering = this.resolveSteering(input.prompt, offsets, input.steering);
    if (steering.diagnostics) this.checkDiagnostics(steering.spec.heads, steering.diagnostics, newTokens);
    return { prompt: input.prompt, tokens, offsets, steering };
  }

  /** What only the model can check of a generation's sampling fields. */
  private checkGenerationFields(request: GenerationFields, maxTokens: number) {
    for (const [token] of request.logitBias ?? []) {
      if (!(Number.isInteger(token) && token >= 0 && token < this.vocabularySize))
        throw new EngineFieldError(
          `logitBias.${token}`,
          `: no such token (this model's ids are 0 to ${this.vocabularySize - 1})`,
          "logitBias",
          "invalid_value",
        );
    }
    if (request.minTokens !== undefined && request.minTokens > maxTokens)
      throw new EngineFieldError(
        "minTokens",
        `: ${request.minTokens} is more than the ${maxTokens} tokens asked for`,
        "minTokens",
        "invalid_value",
      );
    // the ban of end-of-generation tokens skips the grammar's sampler, and a complete grammar allows nothing else
    const ban = request.ignoreEos ? "ignoreEos" : request.minTokens ? "minTokens" : null;
    if (ban && request.grammar)
      throw new EngineFieldError(
        ban,
        ": cannot be combined with structured output (the grammar ends the answer once it is complete)",
        ban,
        "invalid_value",
      );
  }

  /** Diagnostics grow with tokens x heads: refused up front beyond MAX_DIAGNOSTIC_VALUES. */
  private checkDiagnostics(heads: HeadSet, options: DiagnosticsOptions, newTokens: number) {
    const layers = [...heads];
    const perToken = options.allHeads
      ? layers.reduce((n, [layer]) => n + this.headsPerLayer[layer]!, 0)
      : layers.reduce((n, [, list]) => n + list.length, 0);
    const values = perToken * (options.everyToken ? newTokens : 1);
    if (values > MAX_DIAGNOSTIC_VALUES) {
      throw new SteeringError(
        "diagnostics",
        `: ${options.everyToken ? `${newTokens} tokens` : "1 token"} x ${perToken} heads = ${values} values, ` +
          `at most ${MAX_DIAGNOSTIC_VALUES}: ask for fewer tokens, or for the first token or the steered heads only`,
      );
    }
  }

  /** The same prepared prompt under other steering (none: unsteered), without tokenizing it again. */
  withSteering(prepared: PreparedPrompt, steering: SteeringRequest | undefined): PreparedPrompt {
    const { steering: _previous, ...prompt } = prepared;
    if (!steering) return prompt;
    const offsets = prepared.offsets ?? this.offsetsOf(prepared.tokens, prepared.prompt);
    return { ...prompt, offsets, steering: this.resolveSteering(prepared.prompt, offsets, steering) };
  }

  private checkLength(tokens: readonly Token[], newTokens: number) {
    if (tokens.length + newTokens >= this.contextSize) {
      throw new ContextLengthError(
        `the prompt is ${tokens.length} tokens and ${newTokens} more are asked for, but the context holds ${this.contextSize - 1}`,
      );
    }
  }

  /**
   * Runs `job` once the scheduler admits it, with one sequence for all its generations (AutoPASTA's
   * two passes share a KV cache). The signal aborts with a JobStopped reason (client gone, time
   * limit, shutdown); the sequence is taken at the session's first call, by that call's prompt.
   */
  withSequence<T>(job: (session: EngineSession, signal: AbortSignal) => Promise<T>, options: JobOptions = {}): Promise<T> {
    return this.scheduler.run(async (signal) => {
      let sequence: PooledSequence | undefined;
      const extra: PooledSequence[] = [];
      const take = (prepared: PreparedPrompt | null) =>
        (sequence ??= prepared ? this.pool.take(prepared.tokens, prepared.steering?.spec) : this.pool.takeColdest());
      const session: EngineSession = {
        generate: async (request, prepared) => {
          const maxTokens = request.maxTokens ?? DEFAULT_MAX_TOKENS;
          const input = prepared ?? (await this.prepare(request, maxTokens));
          return generateOn(this.model, take(input), input, { ...request, signal }, maxTokens);
        },
        generateChoices: async (requests, prepared) => {
          const first = take(prepared);
          // the other choices' sequences are overwritten: the coldest caches are the cheapest to lose
          while (extra.length < requests.length - 1) extra.push(this.pool.takeColdest());
          return this.choicesOn([first, ...extra], requests, prepared, signal);
        },
        // scoring every token reuses nothing cached: it takes the sequence whose cache is worth least
        score: async (request, prepared) => {
          const input = prepared ?? (await this.prepare(request, 0));
          const withOffsets = { ...input, offsets: input.offsets ?? this.offsetsOf(input.tokens, input.prompt) };
          return scoreOn(this.model, take(request.scoreFrom !== undefined ? input : null), withOffsets, { ...request, signal });
        },
      };
      try {
        return await job(session, signal);
      } finally {
        for (const s of [...(sequence ? [sequence] : []), ...extra]) this.pool.release(s);
      }
    }, options);
  }

  private async choicesOn(
    sequences: readonly PooledSequence[],
    requests: readonly GenerateRequest[],
    prepared: PreparedPrompt,
    signal: AbortSignal,
  ): Promise<GenerateResult[]> {
    const maxTokens = requests[0]?.maxTokens ?? DEFAULT_MAX_TOKENS;
    const run = (i: number, source: PromptSource = {}) =>
      generateOn(this.model, sequences[i]!, prepared, { ...requests[i]!, signal }, maxTokens, source);
    if (!this.prefixReuse) return allSettled(requests.map((_, i) => run(i)));
    let promptEvaluated!: () => void;
    const evaluated = new Promise<void>((resolve) => {
      promptEvaluated = resolve;
    });
    let firstFailed = false;
    const first = run(0, { onPromptEvaluated: promptEvaluated });
    // a first choice that ends before its first token (an end-of-generation token, an error) says so too
    first.then(promptEvaluated, () => {
      firstFailed = true;
      promptEvaluated();
    });
    const others = requests.slice(1).map(async (_, i) => {
      await evaluated;
      if (firstFailed) throw new Error("the first choice failed before its prompt was evaluated");
      return run(i + 1, { copyFrom: sequences[0]! });
    });
    return allSettled([first, ...others]);
  }

  /** One generation (validated before it waits for a sequence). */
  async generate(request: GenerateRequest, prepared?: PreparedPrompt): Promise<GenerateResult> {
    const input = prepared ?? (await this.prepare(request, request.maxTokens ?? DEFAULT_MAX_TOKENS));
    return this.withSequence((session) => session.generate(request, input), { signal: request.signal });
  }

  /** Log-probability of every prompt token given the ones before it, under the request's steering. */
  async score(request: ScoreRequest, prepared?: PreparedPrompt): Promise<ScoreResult> {
    const input = prepared ?? (await this.prepare(request, 0));
    return this.withSequence((session) => session.score(request, input), { signal: request.signal });
  }

  async dispose(): Promise<void> {
    // a tokenization still running on a worker thread reads the model's vocabulary
    await Promise.allSettled(this.tokenizing);
    await this.context.dispose();
    await this.model.dispose();
  }
}
