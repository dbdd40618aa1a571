// The steering engine: a model, a context with a pool of sequences, and generation under PASTA
// steering. Prompt text + emphasized character spans in; tokens, log-probs and the token ranges
// that were emphasized out.
import os from "node:os";
import type { LlamaContext, LlamaModel, Llama, Token } from "node-llama-cpp";
import { resolveEmphasis, unionSpans, type CharSpan } from "../emphasis/markup.js";
import { loadPatchedLlama, NativeSampler, SteerableSequence, steeringInfo } from "./binding.js";
import { ContextLengthError, SteeringError, UnsupportedModelError } from "./errors.js";
import {
  DEFAULT_ALPHA, resolveHeads, steeringFreePrefix, toNativeSteering, validateAlpha,
  type HeadSelection, type SteeringMode, type SteeringSpec,
} from "./steering.js";
import { spansToTokenRanges, tokenOffsets } from "./tokenSpans.js";

export interface EngineOptions {
  modelPath: string;
  contextSize?: number;
  /** sequences decoded at once */
  parallel?: number;
  /** flash attention (default on); steered layers keep it too */
  flashAttention?: boolean;
  /** math threads; default: one per physical core */
  threads?: number;
  gpu?: false | "cuda";
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

export interface GenerateRequest extends SamplingOptions {
  prompt: string;
  steering?: SteeringRequest;
  maxTokens?: number;
  stop?: string[];
  /** top log-probs per generated token (0 = none) */
  logprobs?: number;
  signal?: AbortSignal;
  /** called with each new piece of text as it is final (stop strings withheld) */
  onText?: (text: string) => void;
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

/** Physical cores: llama.cpp's math threads contend with each other on SMT siblings. */
function defaultThreads(): number {
  return Math.max(1, Math.floor(os.availableParallelism() / (os.cpus().length > 2 ? 2 : 1)));
}

interface PooledSequence {
  seq: SteerableSequence;
  busy: boolean;
  /** leading KV positions that were computed exactly as without steering */
  cleanPrefix: number;
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
    const pool = Array.from({ length: parallel }, () => ({
      seq: new SteerableSequence(context, context.getSequence()), busy: false, cleanPrefix: 0,
    }));
    const info = steeringInfo(context);
    return new SteeringEngine(llama, model, context, pool, info.headsPerLayer, info.unsupportedReason);
  }

  get contextSize(): number {
    return this.context.contextSize;
  }

  tokenize(text: string): Token[] {
    return this.model.tokenize(text, false);
  }

  /** Tokens of the evaluated prompt (BOS first when the model adds one) with their character offsets. */
  tokenizePrompt(text: string): { tokens: Token[]; offsets: Array<[number, number]> } {
    const tokens = this.model.tokenize(text, false);
    const bos = this.model.tokens.bos;
    const withBos = bos != null && this.model.tokens.shouldPrependBosToken && tokens[0] !== bos ? [bos, ...tokens] : tokens;
    return { tokens: withBos, offsets: tokenOffsets(this.model, withBos, text) };
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

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const { tokens: promptTokens, offsets } = this.tokenizePrompt(request.prompt);
    const steering = request.steering ? this.resolveSteering(request.prompt, offsets, request.steering) : undefined;
    const maxTokens = request.maxTokens ?? 256;
    if (promptTokens.length + maxTokens >= this.contextSize) {
      throw new ContextLengthError(`the prompt is ${promptTokens.length} tokens and ${maxTokens} more are asked for, but the context holds ${this.contextSize - 1}`);
    }

    const slot = await this.acquire(promptTokens, steering?.spec);
    const sampler = new NativeSampler(this.model, {
      temperature: request.temperature ?? 0, topK: request.topK ?? 0, topP: request.topP ?? 1,
      seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    });
    try {
      const { seq } = slot;
      const reuse = Math.min(
        seq.sequence.compareContextTokens(promptTokens).firstDifferentIndex,
        slot.cleanPrefix,
        steeringFreePrefix(steering?.spec, promptTokens.length),
        promptTokens.length - 1,
      );
      if (reuse < seq.sequence.nextTokenIndex) {
        await seq.sequence.eraseContextTokenRanges([{ start: reuse, end: seq.sequence.nextTokenIndex }]);
      }
      if (steering) seq.setSteering(toNativeSteering(steering.spec, promptTokens.length, this.headsPerLayer));
      else seq.clearSteering();
      // what this request writes into the KV cache is steering-free up to here
      slot.cleanPrefix = steeringFreePrefix(steering?.spec, promptTokens.length);

      const generated = await this.decodeLoop(seq, sampler, promptTokens.slice(reuse), request, maxTokens);
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

  private async decodeLoop(seq: SteerableSequence, sampler: NativeSampler, firstInput: Token[], request: GenerateRequest, maxTokens: number) {
    const stop = request.stop ?? [];
    const topK = request.logprobs ?? 0;
    const tokens: Token[] = [];
    const logprobs: GeneratedTokenLogprobs[] = [];
    let text = "";
    let emitted = 0;
    let finishReason: "stop" | "length" = "length";
    let input = firstInput;
    const last = () => input.length - 1;
    const start = performance.now();
    let firstTokenAt = start;
    // text that could still become a stop string is held back from onText
    const holdBack = Math.max(0, ...stop.map((s) => s.length - 1));
    // detokenize only what is new: the text of tokens[0, settledTokens) ends on a whole character
    let settledText = "";
    let settledTokens = 0;

    while (tokens.length < maxTokens && !request.signal?.aborted) {
      const [next] = (await seq.decode(input, (i) => i === last(), async (batchIndex) => {
        const token = await seq.sample(batchIndex, sampler);
        const lp = topK > 0 ? seq.logprobsAt(batchIndex, topK, token) : undefined;
        return { token, lp };
      })).slice(-1);
      if (!next || next.token === -1) throw new Error("sampling failed");
      if (tokens.length === 0) firstTokenAt = performance.now();
      const token = next.token as Token;
      if (this.model.isEogToken(token)) { finishReason = "stop"; break; }
      tokens.push(token);
      if (next.lp) logprobs.push(this.describeLogprobs(token, next.lp));
      const tail = this.model.detokenize(tokens.slice(settledTokens), false, tokens.slice(Math.max(0, settledTokens - 8), settledTokens));
      text = settledText + tail;
      if (!tail.endsWith("\uFFFD")) { settledText = text; settledTokens = tokens.length; }
      const hit = stop.map((s) => text.indexOf(s, Math.max(0, emitted - s.length))).filter((i) => i >= 0);
      if (hit.length > 0) {
        text = text.slice(0, Math.min(...hit));
        finishReason = "stop";
        break;
      }
      const safe = Math.min(settledText.length, text.length - holdBack);
      if (safe > emitted) { request.onText?.(text.slice(emitted, safe)); emitted = safe; }
      input = [token];
    }
    if (text.length > emitted) request.onText?.(text.slice(emitted));
    const timings = { promptMs: firstTokenAt - start, generationMs: performance.now() - firstTokenAt };
    return { text, tokens, finishReason, timings, ...(topK > 0 ? { logprobs } : {}) };
  }

  private describeLogprobs(token: Token, lp: { top: Float64Array; tokenLogprob: number | null }): GeneratedTokenLogprobs {
    const top: TokenLogprob[] = [];
    for (let i = 0; i < lp.top.length; i += 2) {
      const id = lp.top[i]! as Token;
      top.push({ id, text: this.model.detokenize([id], true), logprob: lp.top[i + 1]! });
    }
    return { id: token, text: this.model.detokenize([token], true), logprob: lp.tokenLogprob ?? Number.NaN, top };
  }

  /** A free sequence, preferring the one whose cached tokens share the longest clean prefix. */
  private async acquire(promptTokens: Token[], spec: SteeringSpec | undefined): Promise<PooledSequence> {
    for (;;) {
      const free = this.pool.filter((p) => !p.busy);
      if (free.length > 0) {
        const limit = steeringFreePrefix(spec, promptTokens.length);
        const score = (p: PooledSequence) => Math.min(p.cleanPrefix, limit, p.seq.sequence.compareContextTokens(promptTokens).firstDifferentIndex);
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

