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
  let next = 1;
  // every position needs its logits, so nothing cached can be reused (keep 0)
  await sequence.run(
    {
      keep: 0,
      tokens,
      maxTokens: 0,
      topLogprobs: request.topLogprobs,
      onTokens: (_ids, records) => {
        for (let at = 0; at < records!.length; at += stride, next++) {
          const described = describeLogprobs(model, tokens[next]!, records!.subarray(at, at + stride), tokens[next - 1]);
          scored[next]!.logprob = described.logprob;
          scored[next]!.top = described.top;
        }
      },
    },
    () => tokens,
    request.signal,
  );
  if (request.signal?.aborted) throw request.signal.reason;
  return { tokens: scored, ...(steering ? { steering: { spans: steering.spans } } : {}) };
}
