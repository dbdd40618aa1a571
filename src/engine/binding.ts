// The one file that reaches into node-llama-cpp internals (`_ctx`, `_sequenceId`, `_bindings`) and
// calls the methods our native code (native/addon) adds to its addon. Everything else in the project
// goes through the small surface exported here.
import {
  getLlama,
  LlamaGrammarEvaluationState,
  LlamaLogLevel,
  type Llama,
  type LlamaGrammar,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaModel,
  type Token,
} from "node-llama-cpp";
import { ADDON_METHODS, type AddonMethod } from "./addonMethods.js";
import { EngineNotBuiltError, SamplingBudgetError } from "./errors.js";

/** Methods our addon files (native/addon) add to node-llama-cpp's AddonContext: those of ADDON_METHODS, typed. */
interface SteeringAddonContext {
  steeringInfo(): {
    unsupportedReason: string | null;
    /** false with attention sinks: a bias on every KV position then changes attention */
    shiftInvariant: boolean;
    headsPerLayer: number[];
    vocabularySize: number;
  };
  steeringSet(sequenceId: number, bias: number, ranges: Int32Array, headMask: Uint8Array): number;
  steeringClear(sequenceId: number): void;
  steeringDiagnostics(sequenceId: number, emphasis: Int32Array): number;
  steeringTargetShare(sequenceId: number, share: number, emphasis: Int32Array): number;
  grammarCheck(
    grammar: string,
    fanOutLimit: number,
    optionalRunLimit: number,
    visitBudget: number,
  ): { error: string } | { fanOut: number; fanOutRule: string; optionalRun: number; optionalRunRule: string; exhausted: boolean };
  generationStart(onEvents: (events: LoopEvent[]) => void, deliveryIntervalUs: number): void;
  generationSubmit(
    jobs: Array<{
      id: number;
      sequenceId: number;
      keep: number;
      tokens: Uint32Array;
      sampler?: AddonSampler;
      maxTokens: number;
      minTokens?: number;
      samplingBudgetMs?: number;
      copyFrom?: number;
      topLogprobs: number;
      scoreFrom?: number;
      diagnostics?: boolean;
    }>,
  ): void;
  generationCancel(id: number): void;
  tokenPieces(tokens: Uint32Array, special: boolean): TokenPieces;
  tokenizeAsync(text: string, parseSpecial: boolean, prepend: number): Promise<Uint32Array>;
}

interface AddonSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}

/** What the native generation loop reports for a job: new tokens, and once, that it is done. */
interface LoopEvent {
  id: number;
  tokens: Int32Array;
  /** per token: [logprob, id0, logprob0, ...] (1 + 2 * topLogprobs values) */
  logprobs?: Float64Array;
  /** per sampling step of a job with diagnostics: one row (see llama_steering_take_diagnostics) */
  attention?: Float32Array;
  done: boolean;
  finish?: LoopFinish;
  error?: string;
  kvTokens?: number;
  /** done: leading positions taken from the cache */
  reused?: number;
}

// "overbudget": sampling one token took longer than the loop's budget (GenerationLoop.start)
type LoopFinish = "stop" | "length" | "cancelled" | "error" | "overbudget";

const REBUILD_HINT = 'Run "npm run build" (add "-- --cuda" for a CUDA build) to build the patched llama.cpp engine.';

/** Loads llama.cpp from our local patched build only: never a prebuilt (unpatched) binary. */
export async function loadPatchedLlama(options: { gpu: false | "cuda"; logLevel?: LlamaLogLevel }): Promise<Llama> {
  let llama: Llama;
  try {
    llama = await getLlama({
      gpu: options.gpu,
      build: "never",
      usePrebuiltBinaries: false,
      progressLogs: false,
      logLevel: options.logLevel ?? LlamaLogLevel.error,
    });
  } catch (err) {
    throw new EngineNotBuiltError(
      `The patched llama.cpp engine (${options.gpu || "cpu"}) is not built: ${(err as Error).message}. ${REBUILD_HINT}`,
    );
  }
  if (llama.buildType !== "localBuild") {
    throw new EngineNotBuiltError(`node-llama-cpp loaded a ${llama.buildType} binary, not our patched local build. ${REBUILD_HINT}`);
  }
  return llama;
}

// every method of the list is typed above, and every typed method is in the list
const sameMethods: [AddonMethod, keyof SteeringAddonContext] extends [keyof SteeringAddonContext, AddonMethod] ? true : never = true;
void sameMethods;

function addonOf(context: LlamaContext): SteeringAddonContext {
  const ctx = (context as unknown as { _ctx: Partial<SteeringAddonContext> })._ctx;
  const missing = ADDON_METHODS.filter((method) => typeof ctx?.[method] !== "function");
  if (missing.length === ADDON_METHODS.length) {
    throw new EngineNotBuiltError(`The loaded llama.cpp binary has no attention-steering support (unpatched build). ${REBUILD_HINT}`);
  }
  if (missing.length > 0) {
    throw new EngineNotBuiltError(`The loaded llama.cpp binary is an older patched build (no ${missing.join(", ")}). ${REBUILD_HINT}`);
  }
  return ctx as SteeringAddonContext;
}

/** Each token's raw bytes as the vocabulary spells it (special tokens by their text), concatenated. */
export interface TokenPieces {
  bytes: Uint8Array;
  /** where each token's piece ends in `bytes` */
  ends: Uint32Array;
}

/** The pieces of `tokens` (no leading space stripped): what exact character offsets are computed from. */
export function tokenPieces(context: LlamaContext, tokens: readonly Token[]): TokenPieces {
  return addonOf(context).tokenPieces(Uint32Array.from(tokens), true);
}

/**
 * `text`'s tokens as LlamaModel.tokenize gives them, tokenized on a libuv worker thread (a long
 * prompt takes tens to hundreds of milliseconds, which the event loop must not spend), `prepend`
 * first unless they start with it (the model's BOS). The model must outlive the promise (the
 * engine waits for it before disposing).
 */
export async function tokenizeOffThread(
  context: LlamaContext,
  text: string,
  options: { parseSpecial: boolean; prepend: Token | null },
): Promise<Token[]> {
  return Array.from(await addonOf(context).tokenizeAsync(text, options.parseSpecial, options.prepend ?? -1)) as Token[];
}

/**
 * What llama.cpp's GBNF parser finds wrong with a grammar (nothing reaches the log); else the most
 * parse stacks one position of it advances into and the most optional items it skips in a row, each
 * with its rule (checking stops past a limit, or after `visitBudget` stacks: `exhausted`).
 */
export function grammarCheck(context: LlamaContext, grammar: string, limits: { fanOut: number; optionalRun: number; visits: number }) {
  return addonOf(context).grammarCheck(grammar, limits.fanOut, limits.optionalRun, limits.visits);
}

/** Steering facts about a loaded context. */
export function steeringInfo(context: LlamaContext) {
  return addonOf(context).steeringInfo();
}

export interface NativeSamplerConfig {
  temperature: number;
  topK: number;
  topP: number;
  /** default 0: off */
  minP?: number;
  seed: number;
  grammar?: LlamaGrammar;
  /** llama_sampler_init_penalties over the last `window` tokens, starting with `history` */
  penalties?: { repeat: number; presence: number; frequency: number; window: number; history: readonly Token[] };
  logitBias?: ReadonlyArray<readonly [token: number, bias: number]>;
}

/** A native sampler (node-llama-cpp's llama_sampler chain): greedy at temperature 0. */
export class NativeSampler {
  private readonly sampler: AddonSampler;
  /**
   * `grammar`: sampling (and so the native loop) only picks tokens it allows; the sampler holds
   * the grammar's state for this one generation (node-llama-cpp's own sampler does the same).
   */
  constructor(model: LlamaModel, config: NativeSamplerConfig) {
    const bindings = (model as unknown as { _llama: { _bindings: { AddonSampler: new (m: unknown) => AddonSampler } } })._llama._bindings;
    this.sampler = new bindings.AddonSampler((model as unknown as { _model: unknown })._model);
    const grammarState = config.grammar
      ? (new LlamaGrammarEvaluationState({ model, grammar: config.grammar }) as unknown as { _state: unknown })._state
      : undefined;
    const { penalties, logitBias } = config;
    this.sampler.applyConfig({
      temperature: config.temperature,
      topK: config.topK,
      topP: config.topP,
      minP: config.minP ?? 0,
      seed: config.seed,
      ...(grammarState ? { grammarEvaluationState: grammarState } : {}),
      // the sampler starts from `history` and is then fed every token the loop samples
      ...(penalties
        ? {
            repeatPenalty: penalties.repeat,
            repeatPenaltyPresencePenalty: penalties.presence,
            repeatPenaltyFrequencyPenalty: penalties.frequency,
            repeatPenaltyMaxTokens: penalties.window,
            repeatPenaltyTokens: Uint32Array.from(penalties.history),
          }
        : {}),
      ...(logitBias && logitBias.length > 0
        ? {
            tokenBiasKeys: Uint32Array.from(logitBias, ([token]) => token),
            tokenBiasValues: Float32Array.from(logitBias, ([, bias]) => bias),
          }
        : {}),
    });
  }
  /** @internal */ get native() {
    return this.sampler;
  }
  dispose() {
    this.sampler.dispose();
  }
}

/** Native steering payload for one sequence (see llama_steering_set). */
export interface NativeSteering {
  bias: number;
  ranges: Int32Array;
  headMask: Uint8Array;
  /** attention diagnostics: the emphasized positions whose share of attention is measured */
  diagnostics?: Int32Array;
  /** target share: the bias is chosen per head and row so that `emphasis` gets `share` (llama_steering_set_target_share) */
  target?: { share: number; emphasis: Int32Array };
}

/**
 * One job for the native generation loop: `tokens` is the sequence from position 0; the first
 * `keep` may come from the sequence's cache (later positions are dropped first; the loop keeps fewer,
 * or none, when the rest would not be exact: sliding-window layers, recurrent state), the others
 * are evaluated; then it either samples up to `maxTokens` tokens (with a sampler) or scores: reports
 * the log-prob of each next input token.
 */
export interface LoopJob {
  keep: number;
  tokens: readonly Token[];
  sampler?: NativeSampler;
  maxTokens: number;
  /** end-of-generation tokens are not sampled before this many tokens */
  minTokens?: number;
  /** the sequence's cache starts as a copy of this sequence's (then `keep` applies): n > 1 */
  copyFrom?: number;
  /** -1: no log-probs; k >= 0: the token's own and the k most likely */
  topLogprobs: number;
  /** scoring: report the tokens from this index on (default 1: every token but the first) */
  scoreFrom?: number;
  /** collect the attention diagnostics row of each sampling step (the sequence's steering asks for them) */
  diagnostics?: boolean;
  /** sampled (or scored) tokens as they come, several at a time; returning false cancels the job */
  onTokens(tokens: Int32Array, logprobs: Float64Array | undefined): unknown;
}

export interface LoopResult {
  finish: LoopFinish;
  /** the sequence's KV positions now; -1 when unknown (a failed decode) */
  kvTokens: number;
  /** leading positions of `tokens` taken from the cache, at most `keep` */
  reused: number;
  /** with `diagnostics`: one row per sampling step, concatenated (the last step may be the end-of-generation token's) */
  attention?: Float32Array;
  /** why the job failed: the loop's error, or what `onTokens` threw (which cancels the job) */
  error?: Error;
}

/** A job on its way; `done` always resolves, `cancel` ends the job before the loop's next decode. */
export interface RunningJob {
  done: Promise<LoopResult>;
  cancel(): void;
}

/**
 * The context's native generation loop (native/addon/AddonGenerationLoop.cpp): one thread that owns
 * every decode of the context, batching all running jobs into each llama_decode. Start it once per
 * context with `GenerationLoop.start`; its sequences are `SteerableSequence`s.
 */
export class GenerationLoop {
  private nextId = 1;
  private unsubmitted: Parameters<SteeringAddonContext["generationSubmit"]>[0] = [];
  private readonly jobs = new Map<number, { job: LoopJob; resolve(r: LoopResult): void; failure?: Error; attention: Float32Array[] }>();
  private constructor(
    readonly context: LlamaContext,
    private readonly addon: SteeringAddonContext,
    private readonly samplingBudgetMs: number,
  ) {}

  /**
   * `deliveryIntervalMs`: tokens go to JavaScript at most this often (a job's first output and its
   * end at once). Each delivery wakes the JavaScript thread, which on a small machine costs about as
   * much CPU as a token's JavaScript work; 0 delivers every decoding step.
   * `samplingBudgetMs` (default 0: none): a job whose sampling of one token takes longer ends with finish
   * "overbudget" (samplers run on the loop's thread, so a slow one holds up every sequence).
   */
  static start(context: LlamaContext, options: { deliveryIntervalMs: number; samplingBudgetMs?: number }): GenerationLoop {
    const addon = addonOf(context);
    const loop = new GenerationLoop(context, addon, options.samplingBudgetMs ?? 0);
    addon.generationStart((events) => loop.dispatch(events), Math.round(options.deliveryIntervalMs * 1000));
    return loop;
  }

  run(sequenceId: number, job: LoopJob): RunningJob {
    const id = this.nextId++;
    const done = new Promise<LoopResult>((resolve) => this.jobs.set(id, { job, resolve, attention: [] }));
    // jobs started in the same turn of the event loop share their first batch: which requests
    // decode together, and so llama.cpp's float rounding, does not hang on thread timing
    if (this.unsubmitted.length === 0) setImmediate(() => this.submit());
    this.unsubmitted.push({
      id,
      sequenceId,
      keep: job.keep,
      tokens: Uint32Array.from(job.tokens),
      sampler: job.sampler?.native,
      maxTokens: job.maxTokens,
      ...(job.minTokens ? { minTokens: job.minTokens } : {}),
      ...(job.sampler && this.samplingBudgetMs > 0 ? { samplingBudgetMs: this.samplingBudgetMs } : {}),
      ...(job.copyFrom !== undefined ? { copyFrom: job.copyFrom } : {}),
      topLogprobs: job.topLogprobs,
      ...(job.scoreFrom !== undefined ? { scoreFrom: job.scoreFrom } : {}),
      ...(job.diagnostics ? { diagnostics: true } : {}),
    });
    return {
      done,
      cancel: () => {
        const waiting = this.unsubmitted.findIndex((j) => j.id === id);
        if (waiting >= 0) {
          this.unsubmitted.splice(waiting, 1);
          this.dispatch([{ id, tokens: new Int32Array(0), done: true, finish: "cancelled", kvTokens: -1 }]);
        } else if (this.jobs.has(id)) {
          this.cancelNative(id);
        }
      },
    };
  }

  /** Cancels a submitted job; once the context is disposed, the loop has ended every job itself. */
  private cancelNative(id: number) {
    try {
      this.addon.generationCancel(id);
    } catch {
      // "Context is disposed": nothing left to cancel
    }
  }

  private submit() {
    const jobs = this.unsubmitted;
    this.unsubmitted = [];
    if (jobs.length === 0) return;
    try {
      this.addon.generationSubmit(jobs);
    } catch (err) {
      this.dispatch(
        jobs.map(({ id }) => ({ id, tokens: new Int32Array(0), done: true, finish: "error", error: (err as Error).message, kvTokens: -1 })),
      );
    }
  }

  private dispatch(events: LoopEvent[]): void {
    for (const event of events) {
      const entry = this.jobs.get(event.id);
      if (!entry) continue;
      if (event.attention) entry.attention.push(event.attention);
      if (event.tokens.length > 0 && !entry.failure) {
        try {
          if (entry.job.onTokens(event.tokens, event.logprobs) === false) this.cancelNative(event.id);
        } catch (err) {
          // a throwing consumer ends its job; the loop thread never sees JavaScript errors
          entry.failure = err as Error;
          this.cancelNative(event.id);
        }
      }
      if (!event.done) continue;
      this.jobs.delete(event.id);
      const kvTokens = event.kvTokens ?? -1;
      const reused = event.reused ?? 0;
      const attention = entry.job.diagnostics ? { attention: concatRows(entry.attention) } : {};
      if (entry.failure) entry.resolve({ finish: "error", kvTokens, reused, error: entry.failure });
      else if (event.finish === "error")
        entry.resolve({ finish: "error", kvTokens, reused, error: new Error(event.error ?? "the generation loop failed") });
      else if (event.finish === "overbudget")
        entry.resolve({ finish: "error", kvTokens, reused, error: new SamplingBudgetError(event.error ?? "", this.samplingBudgetMs) });
      else entry.resolve({ finish: event.finish!, kvTokens, reused, ...attention });
    }
  }
}

function concatRows(chunks: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** One context sequence with steering; it decodes through the context's native generation loop. */
export class SteerableSequence {
  private readonly addon: SteeringAddonContext;
  constructor(
    private readonly loop: GenerationLoop,
    private readonly sequence: LlamaContextSequence,
  ) {
    this.addon = addonOf(loop.context);
  }

  get id(): number {
    return (this.sequence as unknown as { _sequenceId: number })._sequenceId;
  }

  /** Applies from the next decode on; llama.cpp snapshots it on its decoding thread. */
  setSteering(steering: NativeSteering): void {
    const rc = this.addon.steeringSet(this.id, steering.bias, steering.ranges, steering.headMask);
    if (rc !== 0) throw new Error(`llama_steering_set failed (${rc}) for sequence ${this.id}`);
    if (steering.diagnostics) {
      const diag = this.addon.steeringDiagnostics(this.id, steering.diagnostics);
      if (diag !== 0) throw new Error(`llama_steering_set_diagnostics failed (${diag}) for sequence ${this.id}`);
    }
    if (steering.target) {
      const target = this.addon.steeringTargetShare(this.id, steering.target.share, steering.target.emphasis);
      if (target !== 0) throw new Error(`llama_steering_set_target_share failed (${target}) for sequence ${this.id}`);
    }
  }

  clearSteering(): void {
    this.addon.steeringClear(this.id);
  }

  run(job: LoopJob): RunningJob {
    return this.loop.run(this.id, job);
  }
}
