// What goes into the engine and what comes out. Emphasis arrives resolved: character spans of the
// prompt (src/prompt/ resolves markup and substrings once); the engine maps them onto tokens.
import type { Token } from "node-llama-cpp";
import type { CharSpan } from "../emphasis/markup.js";
import type { OutputGrammar } from "./grammar.js";
import type { HeadSelection, SteeringMode, SteeringSpec } from "./steering.js";

export interface EngineOptions {
  modelPath: string;
  /** tokens per sequence (default DEFAULT_CONTEXT_SIZE) */
  contextSize?: number;
  /** sequences decoded at once */
  parallel?: number;
  /** flash attention (default on); steered layers keep it too */
  flashAttention?: boolean;
  /**
   * KV cache precision (default F16, llama.cpp's). F32 is for exactness checks against a float
   * reference (test/support/referenceLlama.ts); node-llama-cpp marks the option experimental.
   */
  kvCacheType?: "F16" | "F32";
  /** math threads; default: one per physical core, within the process's CPU affinity and quota (threads.ts) */
  threads?: number;
  gpu?: false | "cuda";
  /**
   * generated tokens reach JavaScript (and streams) at most this often, in ms (default 10; 0: every
   * decoding step). The first token and the end are never held back. See GenerationLoop.start.
   */
  deliveryIntervalMs?: number;
  /**
   * Start a job from the KV cache its sequence already holds, when their prompts share a prefix
   * (default true). false: every job evaluates its whole prompt, so its answer depends on its input
   * alone (eval). With flash attention, llama.cpp's CPU kernel sums attention in half precision, and
   * a prompt decoded after a reused prefix comes out a little apart from a cold one (on SmolLM2 up
   * to 0.25 in a token's log-probability: enough to change a greedy answer).
   */
  prefixReuse?: boolean;
  /**
   * a request whose sampling of one token takes longer, in ms, ends with a SamplingBudgetError
   * (default DEFAULT_SAMPLING_BUDGET_MS; 0: no budget). Sampling runs between decodes on the loop's
   * one thread: this bounds how long one request's sampler (its grammar) can hold up the others.
   */
  samplingBudgetMs?: number;
  /** requests that may wait for a sequence (default: unbounded); more are refused with QueueFullError */
  maxQueue?: number;
  /** seconds suggested to a refused client */
  retryAfterSeconds?: number;
}

export interface SteeringRequest {
  /** emphasized character spans of the prompt; overlapping ones are one emphasized set */
  emphasis: readonly CharSpan[];
  heads: HeadSelection;
  alpha?: number;
  mode?: SteeringMode;
  /**
   * 0 < t < 1 (exclude mode): per steered head and query row, the bias is chosen from the head's own
   * attention so that the emphasized tokens get at least share t of it: none where they have it
   * already, and never stronger than log(alpha). See SteeringSpec.targetShare.
   */
  targetShare?: number;
  /** report where the steered heads look (generation only): see AttentionDiagnostics */
  diagnostics?: DiagnosticsOptions;
}

export interface DiagnosticsOptions {
  /** every head of the steered layers, not only the steered heads */
  allHeads?: boolean;
  /** every generated token, not only the first */
  everyToken?: boolean;
}

/** One query head's share of attention on the emphasized tokens, with the request's steering and without it. */
export interface HeadAttention {
  layer: number;
  head: number;
  /** whether the request steers this head (false only with allHeads: then steered equals unsteered) */
  steeredHead: boolean;
  steered: number;
  unsteered: number;
}

/**
 * Where attention goes, computed natively from the real attention scores (F32, also under flash
 * attention). `tokens[i]` is for generated token i: the attention of the query whose output
 * predicts it (the last prompt token's for the first), head by head; one entry unless everyToken.
 */
export interface AttentionDiagnostics {
  tokens: HeadAttention[][];
}

export interface SamplingOptions {
  /** 0 = greedy (plain argmax of the logits); default 0 */
  temperature?: number;
  topP?: number;
  topK?: number;
  /** keep only tokens at least this fraction as likely as the most likely one (0: off; no effect when greedy) */
  minP?: number;
  seed?: number;
  /** llama.cpp's penalties (llama_sampler_init_penalties), over the last tokens of the prompt and the answer */
  penalties?: Penalties;
  /** added to a token's logit before sampling; -Infinity: the token is never sampled */
  logitBias?: ReadonlyArray<readonly [token: number, bias: number]>;
}

/**
 * llama.cpp's repetition penalties, as llama-server applies them: each token seen in the window has
 * its logit divided by `repeat` (multiplied, where negative), then lowered by `frequency` times its
 * count and by `presence` once.
 */
export interface Penalties {
  repeat: number;
  presence: number;
  frequency: number;
  /** the window: the last this many tokens (prompt included); -1: the whole context */
  lastTokens: number;
}

export interface PromptInput {
  prompt: string;
  /** parse special-token text (chat templates) instead of treating the prompt as plain text */
  specialTokens?: boolean;
  steering?: SteeringRequest;
}

export interface GenerateRequest extends SamplingOptions, PromptInput {
  maxTokens?: number;
  /** end-of-generation tokens are not sampled before this many tokens (stop strings still end the answer) */
  minTokens?: number;
  /** end-of-generation tokens are never sampled: the answer runs to maxTokens or a stop string */
  ignoreEos?: boolean;
  /**
   * special tokens in the answer are written as their text instead of dropped: tool calls, whose
   * markers (Qwen's `<tool_call>`) are special tokens of the model
   */
  specialTokensInAnswer?: boolean;
  stop?: string[];
  /** structured output: only tokens this grammar allows are sampled (SteeringEngine.compileGrammar) */
  grammar?: OutputGrammar;
  /** log-probs per generated token: the chosen token's plus this many most likely (undefined = none) */
  logprobs?: number;
  signal?: AbortSignal;
  /**
   * Called with each new piece of text once it is final (text that could start a stop string is
   * held back), with the log-probs of the tokens completed since the previous call.
   */
  onText?: (text: string, logprobs: GeneratedTokenLogprobs[]) => void;
}

/** A tokenized, validated prompt (see SteeringEngine.prepare). */
export interface PreparedPrompt {
  prompt: string;
  tokens: Token[];
  /** character offsets of the tokens: computed only where needed (steering, scoring) */
  offsets?: Array<[number, number]>;
  steering?: ResolvedSteering;
}

export interface ResolvedSteering {
  spec: SteeringSpec;
  spans: SteeredSpan[];
  diagnostics?: DiagnosticsOptions;
}

export interface ScoreRequest extends PromptInput {
  /** most likely alternatives per token besides the token itself */
  topLogprobs: number;
  /**
   * Only tokens from this index on need their log-probs (earlier ones may be null): the positions
   * before may then come from a sequence's cache, as generation reuses a prefix. Default: every token.
   */
  scoreFrom?: number;
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
  /** prompt tokens evaluated (the rest came from the sequence's cache: see ScoreRequest.scoreFrom) */
  evaluatedTokens: number;
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

/** An emphasized span: its characters in the prompt and the tokens [tokenStart, tokenEnd) steered for it. */
export interface SteeredSpan {
  start: number;
  end: number;
  text: string;
  tokenStart: number;
  tokenEnd: number;
}

export interface GenerateResult {
  text: string;
  tokens: Token[];
  finishReason: "stop" | "length";
  promptTokens: number;
  /** prompt tokens actually evaluated (the rest came from the prefix cache) */
  evaluatedPromptTokens: number;
  logprobs?: GeneratedTokenLogprobs[];
  steering?: { spans: SteeredSpan[]; diagnostics?: AttentionDiagnostics };
  /** prompt evaluation up to the first token, then the remaining tokens */
  timings: { promptMs: number; generationMs: number };
}
