// Scoring on one sequence: the log-probability of every prompt token given the ones before it,
// under the request's steering (lm-evaluation-harness's log-likelihood: echo + logprobs + max_tokens 0).
import type { LlamaModel } from "node-llama-cpp";
import type { PooledSequence } from "./sequencePool.js";
import { describeLogprobs, recordStride } from "./tokenText.js";
import type { PreparedPrompt, ScoredToken, ScoreRequest, ScoreResult } from "./types.js";

export async function scoreOn(
  model: LlamaModel,
  sequence: PooledSequence,
  prepared: PreparedPrompt & { offsets: Array<[number, number]> },
  request: ScoreRequest,
): Promise<ScoreResult> {
  const { tokens, steering, offsets } = prepared;
  // log-probs from scoreFrom on: the positions before the one that predicts it may come from the cache
  const keep =
    request.scoreFrom === undefined ? 0 : Math.max(0, Math.min(sequence.reusablePrefix(tokens, steering?.spec), request.scoreFrom - 1));
  sequence.steer(steering?.spec, tokens.length);
  // each token's text is the part of its characters no earlier token has: the texts join to the
  // prompt, and a character that several byte tokens form goes to the first of them
  let covered = 0;
  const scored: ScoredToken[] = tokens.map((id, i) => {
    const [start, end] = offsets[i]!;
    const from = Math.max(start, covered);
    covered = Math.max(covered, end);
    return { id, text: end > from ? prepared.prompt.slice(from, end) : "", offset: start, logprob: null, top: null };
  });
  if (request.signal?.aborted) throw request.signal.reason;
  const stride = recordStride(request.topLogprobs);
  const records: Float64Array[] = [];
  // in order, the log-probs of the tokens from max(scoreFrom, the first position not taken from the cache + 1) on
  const scoreFrom = Math.max(1, request.scoreFrom ?? 1);
  const { reused } = await sequence.run(
    { keep, tokens, maxTokens: 0, topLogprobs: request.topLogprobs, scoreFrom, onTokens: (_ids, batch) => records.push(batch!) },
    () => tokens,
    request.signal,
  );
  if (request.signal?.aborted) throw request.signal.reason;
  let next = Math.max(reused + 1, scoreFrom);
  for (const batch of records) {
    for (let at = 0; at < batch.length; at += stride, next++) {
      const described = describeLogprobs(model, tokens[next]!, batch.subarray(at, at + stride), tokens[next - 1]);
      scored[next]!.logprob = described.logprob;
      scored[next]!.top = described.top;
    }
  }
  return { tokens: scored, evaluatedTokens: tokens.length - reused, ...(steering ? { steering: { spans: steering.spans } } : {}) };
}
