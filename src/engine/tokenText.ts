// Token ids -> their text, and the native loop's log-prob records -> named alternatives.
import type { LlamaModel, Token } from "node-llama-cpp";
import type { GeneratedTokenLogprobs, TokenLogprob } from "./types.js";

/**
 * Text of one token (special tokens by their text). After `previous`, a word-initial token keeps
 * its leading space, which a tokenizer drops at the start of a text.
 */
export function tokenText(model: LlamaModel, token: Token, previous?: Token): string {
  return model.detokenize([token], true, previous === undefined ? undefined : [previous]);
}

/**
 * One record of the native loop's log-probs: [logprob of the token, then (id, logprob) pairs of
 * the most likely alternatives].
 */
export function describeLogprobs(
  model: LlamaModel,
  token: Token,
  record: Float64Array,
  previous: Token | undefined,
): GeneratedTokenLogprobs {
  const top: TokenLogprob[] = [];
  for (let i = 1; i + 1 < record.length; i += 2) {
    const id = record[i]! as Token;
    top.push({ id, text: tokenText(model, id, previous), logprob: record[i + 1]! });
  }
  return { id: token, text: tokenText(model, token, previous), logprob: record[0]!, top };
}

/** Floats per token in a log-prob record with `top` alternatives. */
export const recordStride = (top: number) => 1 + 2 * top;
