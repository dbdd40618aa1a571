// Generation on one sequence: the prompt from the reusable prefix on, then sampled tokens until
// max_tokens, an end-of-generation token, a stop string or an abort. Text goes to `onText` as it
// becomes final (textAssembler.ts).
import type { LlamaModel, Token } from "node-llama-cpp";
import { ENGINE_DEFAULT_TEMPERATURE } from "../defaults.js";
import { NativeSampler } from "./binding.js";
import { readDiagnostics } from "./diagnostics.js";
import type { PooledSequence } from "./sequencePool.js";
import { TextAssembler } from "./textAssembler.js";
import { describeLogprobs, recordStride } from "./tokenText.js";
import type { GenerateRequest, GenerateResult, PreparedPrompt } from "./types.js";

export async function generateOn(
  model: LlamaModel,
  sequence: PooledSequence,
  prepared: PreparedPrompt,
  request: GenerateRequest,
  maxTokens: number,
): Promise<GenerateResult> {
  const { tokens: promptTokens, steering } = prepared;
  const sampler = new NativeSampler(model, {
    temperature: request.temperature ?? ENGINE_DEFAULT_TEMPERATURE,
    topK: request.topK ?? 0,
    topP: request.topP ?? 1,
    seed: request.seed ?? Math.floor(Math.random() * 2 ** 31),
    ...(request.grammar ? { grammar: request.grammar.grammar } : {}),
  });
  try {
    // at least the last prompt token is evaluated: its logits give the first sampled token
    const reuse = Math.min(sequence.reusablePrefix(promptTokens, steering?.spec), promptTokens.length - 1);
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
    );
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

async function decode(
  model: LlamaModel,
  sequence: PooledSequence,
  sampler: NativeSampler,
  promptTokens: Token[],
  reuse: number,
  request: GenerateRequest,
  maxTokens: number,
  diagnostics: boolean,
) {
  const wantLogprobs = request.logprobs !== undefined;
  const stride = recordStride(request.logprobs ?? 0);
  const assembler = new TextAssembler(
    (tokens, context) => model.detokenize(tokens, false, context),
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
      topLogprobs: wantLogprobs ? request.logprobs! : -1,
      diagnostics,
      onTokens: (ids, records) => {
        if (tokens.length === 0) firstTokenAt = performance.now();
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
