// Prefix reuse on a sliding-window model (issue #14): a sliding-window layer's cache keeps only
// about a window plus a ubatch of cells per sequence, so after a long request the cells a shorter
// shared prefix needs may be gone. The loop then re-evaluates the prompt instead of reusing a cache
// that is no longer exact; while the window still holds the prefix, all of it is reused.
// (The same on a real model, Gemma 3 270M: `npm run check:swa`, bench/swaReuse.ts.)
import t from "tap";
import { SteeringEngine, type GenerateRequest, type GenerateResult } from "../../../src/engine/engine.js";
import { maxLogprobDiff, tinyModel } from "../../support/models.js";

/** cached prefix vs recompute (as in invariants.test.ts) */
const BATCHING = 1e-4;
const WORDS = "the cat sat on a mat and saw one big red ball near an old tree by the river so it ran home fast".split(" ");
const words = (n: number, seed: number) => Array.from({ length: n }, (_, i) => WORDS[(i * 7 + seed) % WORDS.length]).join(" ");

// the generated gemma2 has a window of 6 tokens (src/testModels/randomModel.ts TINY_SHAPES)
const path = tinyModel("gemma2");
// F32 attention: a cached prefix then equals a recompute to float rounding (flash attention adds F16 noise)
const warm = await SteeringEngine.load({ modelPath: path, contextSize: 4096, parallel: 1, flashAttention: false });
const cold = await SteeringEngine.load({ modelPath: path, contextSize: 4096, parallel: 1, flashAttention: false });
t.teardown(async () => {
  await warm.dispose();
  await cold.dispose();
});

const SHARED = words(30, 1);
const NEXT = `${SHARED} and then the dog came back with a stick`;
const ask = (prompt: string): GenerateRequest => ({ prompt, maxTokens: 6, temperature: 0, logprobs: 5 });
const sharedTokens = (a: string, b: string) => {
  const [x, y] = [warm.tokenizePrompt(a).tokens, warm.tokenizePrompt(b).tokens];
  let n = 0;
  while (n < x.length && n < y.length && x[n] === y[n]) n++;
  return n;
};
const worstDiff = (a: GenerateResult, b: GenerateResult) => Math.max(...a.logprobs!.map((lp, i) => maxLogprobDiff(lp, b.logprobs![i]!)));

t.test("the window has moved past the shared prefix: nothing is reused, and warm equals cold", async (t) => {
  const long = `${SHARED} ${words(1500, 2)}`;
  t.ok(warm.tokenizePrompt(long).tokens.length > 1000, "the long prompt is more than a window plus a ubatch");
  await warm.generate({ prompt: long, maxTokens: 4, temperature: 0 });
  t.ok(sharedTokens(long, NEXT) > 20, "the next prompt shares a prefix with it");
  const reused = await warm.generate(ask(NEXT));
  t.equal(reused.promptTokens - reused.evaluatedPromptTokens, 0, "0 cached tokens");
  const fresh = await cold.generate(ask(NEXT));
  t.same(reused.tokens, fresh.tokens, "the same tokens as a cold sequence");
  t.ok(worstDiff(reused, fresh) <= BATCHING, `log-probs: max diff ${worstDiff(reused, fresh).toExponential(2)}`);
});

t.test("the window still holds the shared prefix: all of it is reused, exactly", async (t) => {
  const short = `${SHARED} ${words(12, 3)}`;
  await warm.generate({ prompt: short, maxTokens: 4, temperature: 0 });
  const shared = sharedTokens(short, NEXT);
  const reused = await warm.generate(ask(NEXT));
  t.equal(reused.promptTokens - reused.evaluatedPromptTokens, shared, `the ${shared} shared tokens come from the cache`);
  const fresh = await cold.generate(ask(NEXT));
  t.same(reused.tokens, fresh.tokens);
  t.ok(worstDiff(reused, fresh) <= BATCHING, `log-probs: max diff ${worstDiff(reused, fresh).toExponential(2)}`);
});
