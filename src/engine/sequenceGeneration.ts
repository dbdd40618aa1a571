// Generation on one sequence: the prompt from the reusable prefix on, then sampled tokens until
// max_tokens, an end-of-generation token, a stop string or an abort. Text goes to `onText` as it
// becomes final (textAssembler.ts).
import type { LlamaModel, Token } from "node-llama-cpp";
import { ENGINE_DEFAULT_TEMPERATURE } from "../defaults.js";
import { NativeSampler } from "./binding.js";
import { SamplingBudgetError } from "./errors.js";
import { GrammarError } from "./grammar.js";
import { readDiagnostics } from "./diagnostics.js";
import type { PooledSequence } from "./sequencePool.js";
import { TextAssembler } from "./textAssembler.js";
import { describeLogprobs, recordStride } from "./tokenText.js";
import type { GenerateRequest, GenerateResult, Penalties, PreparedPrompt } from "./types.js";

/** Where a generation's prompt comes from when it is one of several choices (n > 1). */
export interface PromptSource {
  /** start from a copy of this sequence's cache, which holds the prompt evaluated under the same steering */
  copyFrom?: PooledSequence;
  /** called once the prompt is in this sequence's cache (its first token is sampled, or it ended) */
  onPromptEvaluated?: () => void;
}

export async function generateOn(
  model: LlamaModel,
  sequence: PooledSequence,
  prepared: PreparedPrompt,
  request: GenerateRequest,
  maxTokens: number,
  source: PromptSource = {},
): Promise<GenerateResult> {
  const { tokens: promptTokens, steering } = prepared;
  const sampler = new NativeSampler(model, {
    temperature: request.temperature ?? ENGINE_DEFAULT_TEMPERATURE,
    topK: request.topK ?? 0,
    topP: request.topP ?? 1,
    minP: request.minP ?? 0,
    seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    ...(request.grammar ? { grammar: request.grammar.grammar } : {}),
    ...(request.penalties ? { penalties: nativePenalties(request.penalties, promptTokens, maxTokens) } : {}),
    ...(request.logitBias ? { logitBias: request.logitBias } : {}),
  });
  try {
    // at least the last prompt token is evaluated: its logits give the first sampled token; a copied
    // cache was computed for this very prompt and steering, so all of it serves
    const reuse = source.copyFrom
      ? promptTokens.length - 1
      : Math.min(sequence.reusablePrefix(promptTokens, steering?.spec), promptTokens.length - 1);
    const diagnostics = steering?.diagnostics;
    sequence.steer(steering?.spec, promptTokens.length, diagnostics !== undefined);
    const { reused, attention, ...generated } = await decode(
      model,
      sequence,
      sampler,
      promptTokens,
      reuse,
      request,
      maxTokens,
      !!diagnostics,
      source,
    ).catch((err: unknown) => {
      // the grammar is what makes sampling slow (nothing else a request sets costs more than a pass
      // over the vocabulary): the client's field is named, as for a grammar refused up front
      const grammar = request.grammar;
      if (!(err instanceof SamplingBudgetError) || !grammar) throw err;
      throw new GrammarError(
        grammar.field,
        `: too costly to enforce: ${err.message}`,
        grammar.field === "grammar" ? "invalid_grammar" : "unsupported_schema",
      );
    });
    const report =
      steering && diagnostics && attention
        ? { diagnostics: readDiagnostics(attention, steering.spec, sequence.headsPerLayer, diagnostics, generated.tokens.length) }
        : {};
    return {
      ...generated,
      promptTokens: promptTokens.length,
      evaluatedPromptTokens: promptTokens.length - reused,
      ...(steering ? { steering: { spans: steering.spans, ...report } } : {}),
    };
  } finally {
    sampler.dispose();
  }
}

/** The penalties' window: the prompt's last tokens start it, each sampled token joins it. */
function nativePenalties(penalties: Penalties, promptTokens: readonly Token[], maxTokens: number) {
  const window = penalties.lastTokens < 0 ? promptTokens.length + maxTokens : penalties.lastTokens;
  const { repeat, presence, frequency } = penalties;
  return { repeat, presence, frequency, window, history: window === 0 ? [] : promptTokens.slice(-window) };
}

async function decode(
  model: LlamaModel,
  sequence: PooledSequence,
  sampler: NativeSampler,
  promptTokens: Token[],
  reuse: number,
  request: GenerateRequest,
  maxTokens: number,
  diagnostics: boolean,
  source: PromptSource,
) {
  const wantLogprobs = request.logprobs !== undefined;
  const stride = recordStride(request.logprobs ?? 0);
  const assembler = new TextAssembler(
    (tokens, context) => model.detokenize(tokens, request.specialTokensInAnswer ?? false, context),
    [...(request.stop ?? []), ...(request.grammar?.stop ?? [])],
    promptTokens,
  );
  const { tokens, logprobs } = assembler;
  let stopped = false;
  const start = performance.now();
  let firstTokenAt = start;

  // the KV cache ends up holding the prompt, then every generated token but the last sampled one
  const result = await sequence.run(
    {
      keep: reuse,
      tokens: promptTokens,
      sampler,
      maxTokens,
      minTokens: request.ignoreEos ? maxTokens : (request.minTokens ?? 0),
      ...(source.copyFrom ? { copyFrom: source.copyFrom.id } : {}),
      topLogprobs: wantLogprobs ? request.logprobs! : -1,
      diagnostics,
      onTokens: (ids, records) => {
        if (tokens.length === 0) {
          firstTokenAt = performance.now();
          source.onPromptEvaluated?.();
        }
        for (let i = 0; i < ids.length && !stopped && !request.signal?.aborted; i++) {
          const token = ids[i] as Token;
          const previous = tokens.at(-1) ?? promptTokens.at(-1);
          const described = records ? describeLogprobs(model, token, records.subarray(i * stride, (i + 1) * stride), previous) : undefined;
          stopped = !assembler.accept(token, described);
        }
        // once per batch of tokens, so that a client that fell behind catches up
        const piece = stopped ? null : assembler.takeFinal();
        if (piece) request.onText?.(piece.text, piece.logprobs);
        return !stopped; // tokens sampled after a stop string or an abort are dropped
      },
    },
    () => [...promptTokens, ...tokens],
    request.signal,
  );

  const rest = assembler.takeRest();
  if (rest) request.onText?.(rest.text, rest.logprobs);
  // "cancelled" is a client gone or a deadline: the server reports what it has as cut at length
  const finishReason: "stop" | "length" = stopped || result.finish === "stop" ? "stop" : "length";
  const timings = { promptMs: firstTokenAt - start, generationMs: performance.now() - firstTokenAt };
  return {
    text: assembler.fullText,
    tokens,
    finishReason,
    timings,
    reused: result.reused,
    attention: result.attention,
    ...(wantLogprobs ? { logprobs } : {}),
  };
}
