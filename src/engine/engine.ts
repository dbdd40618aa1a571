// The steering engine: a model, a context with a pool of sequences, and generation under PASTA
// steering. Prompt text + emphasized character spans in; tokens, log-probs and the token ranges
// that were emphasized out.
import type { LlamaContext, LlamaModel, Llama, Token } from "node-llama-cpp";
import { resolveEmphasis, unionSpans, type CharSpan } from "../emphasis/markup.js";
import { GenerationLoop, loadPatchedLlama, NativeSampler, SteerableSequence, steeringInfo, type LoopJob, type LoopResult } from "./binding.js";
import { ContextLengthError, SteeringError, UnsupportedModelError } from "./errors.js";
import {
  DEFAULT_ALPHA, resolveHeads, steeringFreePrefix, toNativeSteering, validateAlpha,
  type HeadSelection, type SteeringMode, type SteeringSpec,
} from "./steering.js";
import { defaultThreads } from "./threads.js";
import { spansToTokenRanges, tokenOffsets } from "./tokenSpans.js";

export interface EngineOptions {
  modelPath: string;
  contextSize?: number;
  /** sequences decoded at once */
  parallel?: number;
  /** flash attention (default on); steered layers keep it too */
  flashAttention?: boolean;
  /** math threads; default: one per physical core, within the process's CPU affinity and quota (threads.ts) */
  threads?: number;
  gpu?: false | "cuda";
  /**
   * generated tokens reach JavaScript (and streams) at most this often, in ms (default 10; 0: every
   * decoding step). The first token and the end are never held back. See GenerationLoop.start.
   */
  deliveryIntervalMs?: number;
}

export interface SteeringRequest {
  /** emphasized character spans (or substrings) of the prompt */
  emphasis: ReadonlyArray<CharSpan | string>;
  heads: HeadSelection;
  alpha?: number;
  mode?: SteeringMode;
}

export interface SamplingOptions {
  /** 0 = greedy (plain argmax of the logits) */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export interface PromptInput {
  prompt: string;
  /** parse special-token text (chat templates) instead of treating the prompt as plain text */
  specialTokens?: boolean;
  steering?: SteeringRequest;
}

export interface GenerateRequest extends SamplingOptions, PromptInput {
  maxTokens?: number;
  stop?: string[];
  /** log-probs per generated token: the chosen token's plus this many most likely (undefined = none) */
  logprobs?: number;
  signal?: AbortSignal;
  /**
   * Called with each new piece of text once it is final (text that could start a stop string is
   * held back), with the log-probs of the tokens completed since the previous call.
   */
  onText?: (text: string, logprobs: GeneratedTokenLogprobs[]) => void;
  /** called once the prompt is tokenized and the steering resolved, before any decoding */
  onPrompt?: (prompt: { tokens: number; steering?: { spans: SteeredSpan[] } }) => void;
}

/** A tokenized, validated prompt (see SteeringEngine.prepare). */
export interface PreparedPrompt {
  tokens: Token[];
  /** character offsets of the tokens: computed only where needed (steering, scoring) */
  offsets?: Array<[number, number]>;
  steering?: { spec: SteeringSpec; spans: SteeredSpan[] };
}

export interface ScoreRequest extends PromptInput {
  /** most likely alternatives per token besides the token itself */
  topLogprobs: number;
  signal?: AbortSignal;
}

/** A prompt token with its log-probability given the tokens before it (null for the first). */
export interface ScoredToken {
  id: Token;
  text: string;
  /** character offset of the token in the prompt */
  offset: number;
  logprob: number | null;
  top: TokenLogprob[] | null;
}

export interface ScoreResult {
  tokens: ScoredToken[];
  steering?: { spans: SteeredSpan[] };
}

export interface TokenLogprob {
  id: Token;
  text: string;
  logprob: number;
}

export interface GeneratedTokenLogprobs extends TokenLogprob {
  top: TokenLogprob[];
}

export interface SteeredSpan {
  start: number;
  end: number;
  text: string;
  token_start: number;
  token_end: number;
}

export interface GenerateResult {
  text: string;
  tokens: Token[];
  finishReason: "stop" | "length";
  promptTokens: number;
  /** prompt tokens actually evaluated (the rest came from the prefix cache) */
  evaluatedPromptTokens: number;
  logprobs?: GeneratedTokenLogprobs[];
  steering?: { spans: SteeredSpan[] };
  /** prompt evaluation up to the first token, then the remaining tokens */
  timings: { promptMs: number; generationMs: number };
}

interface PooledSequence {
  seq: SteerableSequence;
  busy: boolean;
  /** leading KV positions that were computed exactly as without steering */
  cleanPrefix: number;
  /** the tokens whose KV entries the sequence holds, from position 0 */
  cachedTokens: readonly Token[];
}

export class SteeringEngine {
  private readonly waiters: Array<() => void> = [];
  private constructor(
    readonly llama: Llama,
    readonly model: LlamaModel,
    readonly context: LlamaContext,
    private readonly pool: PooledSequence[],
    /** query heads per layer */
    readonly headsPerLayer: readonly number[],
    /** why this model cannot be steered, or null */
    readonly unsupportedReason: string | null,
  ) {}

  static async load(options: EngineOptions): Promise<SteeringEngine> {
    const llama = await loadPatchedLlama({ gpu: options.gpu ?? false });
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const parallel = options.parallel ?? 1;
    const context = await model.createContext({
      contextSize: options.contextSize ?? 2048,
      sequences: parallel,
      flashAttention: options.flashAttention ?? true,
      threads: options.threads ?? defaultThreads(),
    });
    const loop = GenerationLoop.start(context, { deliveryIntervalMs: options.deliveryIntervalMs ?? 10 });
    const pool = Array.from({ length: parallel }, () => ({
      seq: new SteerableSequence(loop, context.getSequence()), busy: false, cleanPrefix: 0, cachedTokens: [],
    }));
    const info = steeringInfo(context);
    return new SteeringEngine(llama, model, context, pool, info.headsPerLayer, info.unsupportedReason);
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
    return { tokens, offsets: tokenOffsets(this.model, tokens, text) };
  }

  private promptTokens(text: string, specialTokens = false): Token[] {
    const tokens = this.model.tokenize(text, specialTokens);
    const bos = this.model.tokens.bos;
    return bos != null && this.model.tokens.shouldPrependBosToken && tokens[0] !== bos ? [bos, ...tokens] : tokens;
  }

  /**
   * Text of one token (special tokens by their text). After `previous`, a word-initial token keeps
   * its leading space, which a tokenizer drops at the start of a text.
   */
  tokenText(token: Token, previous?: Token): string {
    return this.model.detokenize([token], true, previous === undefined ? undefined : [previous]);
  }

  /** Validates a steering request against the model and maps its spans onto the prompt's tokens. */
  resolveSteering(text: string, offsets: ReadonlyArray<readonly [number, number]>, request: SteeringRequest): { spec: SteeringSpec; spans: SteeredSpan[] } {
    if (this.unsupportedReason) throw new UnsupportedModelError(`This model cannot be steered: ${this.unsupportedReason}`);
    const mode = request.mode ?? "exclude";
    const alpha = request.alpha ?? DEFAULT_ALPHA;
    validateAlpha(alpha, mode);
    const heads = resolveHeads(request.heads, this.headsPerLayer);
    const chars = unionSpans(resolveEmphasis(text, request.emphasis));
    if (chars.length === 0) throw new SteeringError("steering.emphasis: nothing is emphasized", "steering.emphasis");
    const spans = chars.map((c) => {
      const ranges = spansToTokenRanges(offsets, [c]);
      if (ranges.length === 0) throw new SteeringError(`steering.emphasis: characters ${c.start}-${c.end} cover no token`, "steering.emphasis");
      return { start: c.start, end: c.end, text: text.slice(c.start, c.end), token_start: ranges[0]!.start, token_end: ranges.at(-1)!.end };
    });
    const emphasized = spansToTokenRanges(offsets, chars);
    return { spec: { emphasized, heads, alpha, mode }, spans };
  }

  /**
   * Tokenizes the prompt and validates its steering and length: every error a request can be
   * refused for, found before it waits for a sequence. `generate` and `score` take the result.
   */
  prepare(input: PromptInput, newTokens: number): PreparedPrompt {
    if (!input.steering) {
      // character offsets take a detokenization per token (milliseconds for a long prompt): only steering needs them here
      const tokens = this.promptTokens(input.prompt, input.specialTokens);
      this.checkLength(tokens, newTokens);
      return { tokens };
    }
    const { tokens, offsets } = this.tokenizePrompt(input.prompt, input.specialTokens);
    const steering = this.resolveSteering(input.prompt, offsets, input.steering);
    this.checkLength(tokens, newTokens);
    return { tokens, offsets, steering };
  }

  private checkLength(tokens: readonly Token[], newTokens: number) {
    if (tokens.length + newTokens >= this.contextSize) {
      throw new ContextLengthError(`the prompt is ${tokens.length} tokens and ${newTokens} more are asked for, but the context holds ${this.contextSize - 1}`);
    }
  }

  async generate(request: GenerateRequest, prepared?: PreparedPrompt): Promise<GenerateResult> {
    const maxTokens = request.maxTokens ?? 256;
    const { tokens: promptTokens, steering } = prepared ?? this.prepare(request, maxTokens);
    request.onPrompt?.({ tokens: promptTokens.length, ...(steering ? { steering: { spans: steering.spans } } : {}) });

    const slot = await this.acquire(promptTokens, steering?.spec);
    const sampler = new NativeSampler(this.model, {
      temperature: request.temperature ?? 0, topK: request.topK ?? 0, topP: request.topP ?? 1,
      seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    });
    try {
      const reuse = Math.min(this.reusablePrefix(slot, promptTokens, steering?.spec), promptTokens.length - 1);
      if (steering) slot.seq.setSteering(toNativeSteering(steering.spec, promptTokens.length, this.headsPerLayer));
      else slot.seq.clearSteering();
      // what this request writes into the KV cache is steering-free up to here
      slot.cleanPrefix = steeringFreePrefix(steering?.spec, promptTokens.length);

      const generated = await this.decodeLoop(slot, sampler, promptTokens, reuse, request, maxTokens);
      return {
        ...generated,
        promptTokens: promptTokens.length,
        evaluatedPromptTokens: promptTokens.length - reuse,
        ...(steering ? { steering: { spans: steering.spans } } : {}),
      };
    } finally {
      sampler.dispose();
      slot.seq.clearSteering();
      this.release(slot);
    }
  }

  /**
   * Log-probability of every prompt token given the ones before it, under the request's steering
   * (lm-evaluation-harness's log-likelihood: echo + logprobs + max_tokens 0).
   */
  async score(request: ScoreRequest, prepared?: PreparedPrompt): Promise<ScoreResult> {
    const { tokens, steering, offsets = tokenOffsets(this.model, tokens, request.prompt) } = prepared ?? this.prepare(request, 0);
    const slot = await this.acquire([], undefined);
    try {
      slot.cleanPrefix = steeringFreePrefix(steering?.spec, tokens.length);
      if (steering) slot.seq.setSteering(toNativeSteering(steering.spec, tokens.length, this.headsPerLayer));
      else slot.seq.clearSteering();
      // each token's text is its stretch of the prompt, so the texts join to the prompt
      const scored: ScoredToken[] = tokens.map((id, i) => {
        const [start, end] = offsets[i]!;
        const sharesPrevious = i > 0 && offsets[i - 1]![1] > offsets[i - 1]![0] && offsets[i - 1]![0] === start;
        return { id, text: sharesPrevious ? "" : request.prompt.slice(start, end), offset: start, logprob: null, top: null };
      });
      if (request.signal?.aborted) throw request.signal.reason;
      const stride = 1 + 2 * request.topLogprobs;
      let next = 1;
      // every position needs its logits, so nothing cached can be reused (keep 0)
      await this.runOnSlot(slot, () => tokens, request.signal, {
        keep: 0, tokens, maxTokens: 0, topLogprobs: request.topLogprobs,
        onTokens: (_ids, logprobs) => {
          for (let at = 0; at < logprobs!.length; at += stride, next++) {
            const described = this.describeLogprobs(tokens[next]!, logprobs!.subarray(at, at + stride), tokens[next - 1]);
            scored[next]!.logprob = described.logprob;
            scored[next]!.top = described.top;
          }
        },
      });
      if (request.signal?.aborted) throw request.signal.reason;
      return { tokens: scored, ...(steering ? { steering: { spans: steering.spans } } : {}) };
    } finally {
      slot.seq.clearSteering();
      this.release(slot);
    }
  }

  /**
   * Runs one job of the native generation loop on a slot, cancelling it on abort, and records
   * what the slot's KV cache holds afterwards: the first `kvTokens` of `evaluated`.
   */
  private async runOnSlot(slot: PooledSequence, evaluated: () => readonly Token[], signal: AbortSignal | undefined, job: LoopJob): Promise<LoopResult> {
    const running = slot.seq.run(job);
    const cancel = () => running.cancel();
    signal?.addEventListener("abort", cancel);
    if (signal?.aborted) cancel();
    const result = await running.done; // never rejects
    signal?.removeEventListener("abort", cancel);
    slot.cachedTokens = result.kvTokens < 0 ? [] : evaluated().slice(0, result.kvTokens);
    if (result.error) throw result.error;
    return result;
  }

  private async decodeLoop(slot: PooledSequence, sampler: NativeSampler, promptTokens: Token[], reuse: number, request: GenerateRequest, maxTokens: number) {
    const stop = request.stop ?? [];
    const wantLogprobs = request.logprobs !== undefined;
    const topK = request.logprobs ?? 0;
    const stride = 1 + 2 * topK;
    const tokens: Token[] = [];
    const logprobs: GeneratedTokenLogprobs[] = [];
    let text = "";
    let emitted = 0;
    let emittedLogprobs = 0;
    let stopped = false;
    const start = performance.now();
    let firstTokenAt = start;
    // text that could still become a stop string is held back from onText
    const holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
    // detokenize only what is new: the text of tokens[0, settledTokens) ends on a whole character
    let settledText = "";
    let settledTokens = 0;

    /** Takes one sampled token; false once a stop string ends the text. */
    const accept = (token: Token, lp: Float64Array | undefined): boolean => {
      const previous = tokens.at(-1) ?? promptTokens.at(-1);
      tokens.push(token);
      if (lp) logprobs.push(this.describeLogprobs(token, lp, previous));
      const tail = this.model.detokenize(tokens.slice(settledTokens), false, tokens.slice(Math.max(0, settledTokens - 8), settledTokens));
      text = settledText + tail;
      if (!tail.endsWith("\uFFFD")) { settledText = text; settledTokens = tokens.length; }
      if (stop.length === 0) return true;
      const hit = stop.map((s) => text.indexOf(s, Math.max(0, emitted - s.length))).filter((i) => i >= 0);
      if (hit.length === 0) return true;
      text = text.slice(0, Math.min(...hit));
      return false;
    };
    /** Hands the text that is final so far to onText: once per batch of tokens, so a client that fell behind catches up. */
    const emit = () => {
      const safe = Math.min(settledText.length, text.length - holdBack);
      if (safe > emitted) {
        request.onText?.(text.slice(emitted, safe), logprobs.slice(emittedLogprobs));
        emitted = safe;
        emittedLogprobs = logprobs.length;
      }
    };

    // the KV cache ends up holding the prompt, then every generated token but the last sampled one
    const result = await this.runOnSlot(slot, () => [...promptTokens, ...tokens], request.signal, {
      keep: reuse, tokens: promptTokens.slice(reuse), sampler, maxTokens, topLogprobs: wantLogprobs ? topK : -1,
      onTokens: (ids, lps) => {
        if (tokens.length === 0) firstTokenAt = performance.now();
        for (let i = 0; i < ids.length && !stopped && !request.signal?.aborted; i++) stopped = !accept(ids[i] as Token, lps?.subarray(i * stride, (i + 1) * stride));
        if (!stopped) emit();
        return !stopped; // tokens sampled after a stop string or an abort are dropped
      },
    });

    if (text.length > emitted || logprobs.length > emittedLogprobs) request.onText?.(text.slice(emitted), logprobs.slice(emittedLogprobs));
    // "cancelled" is a client gone or a deadline: the server reports what it has as cut at length
    const finishReason: "stop" | "length" = stopped || result.finish === "stop" ? "stop" : "length";
    const timings = { promptMs: firstTokenAt - start, generationMs: performance.now() - firstTokenAt };
    return { text, tokens, finishReason, timings, ...(wantLogprobs ? { logprobs } : {}) };
  }

  private describeLogprobs(token: Token, lp: Float64Array, previous: Token | undefined): GeneratedTokenLogprobs {
    const top: TokenLogprob[] = [];
    for (let i = 1; i + 1 < lp.length; i += 2) {
      const id = lp[i]! as Token;
      top.push({ id, text: this.tokenText(id, previous), logprob: lp[i + 1]! });
    }
    return { id: token, text: this.tokenText(token, previous), logprob: lp[0]!, top };
  }

  /** Leading prompt tokens whose KV entries on this slot can serve the request as they are. */
  private reusablePrefix(slot: PooledSequence, promptTokens: readonly Token[], spec: SteeringSpec | undefined): number {
    let same = 0;
    const cached = slot.cachedTokens;
    while (same < cached.length && same < promptTokens.length && cached[same] === promptTokens[same]) same++;
    return Math.min(same, slot.cleanPrefix, steeringFreePrefix(spec, promptTokens.length));
  }

  /** A free sequence, preferring the one whose cached tokens share the longest clean prefix. */
  private async acquire(promptTokens: Token[], spec: SteeringSpec | undefined): Promise<PooledSequence> {
    for (;;) {
      const free = this.pool.filter((p) => !p.busy);
      if (free.length > 0) {
        const score = (p: PooledSequence) => this.reusablePrefix(p, promptTokens, spec);
        const best = free.reduce((a, b) => (score(b) > score(a) ? b : a));
        best.busy = true;
        return best;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private release(slot: PooledSequence) {
    slot.busy = false;
    this.waiters.shift()?.();
  }

  async dispose(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
  }
}

