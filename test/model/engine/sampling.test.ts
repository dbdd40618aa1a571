// Sampling options of the engine: greedy, seeded sampling, top-k, stop strings, max tokens.
import t from "tap";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { STORIES_MODEL } from "../../support/models.js";

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 256 });
t.teardown(() => engine.dispose());
const prompt = "Once upon a time there was a little dog named Max.";

t.test("seeded sampling is reproducible; top_k = 1 is greedy", async (t) => {
  const a = await engine.generate({ prompt, maxTokens: 16, temperature: 1, seed: 7 });
  const b = await engine.generate({ prompt, maxTokens: 16, temperature: 1, seed: 7 });
  t.same(a.tokens, b.tokens);
  t.equal(
    a.text,
    engine.model.detokenize(a.tokens, false, engine.tokenizePrompt(prompt).tokens),
    "incremental detokenization equals detokenizing all tokens after the prompt",
  );
  const greedy = await engine.generate({ prompt, maxTokens: 16, temperature: 0 });
  const topK1 = await engine.generate({ prompt, maxTokens: 16, temperature: 1, topK: 1, seed: 3 });
  t.same(topK1.tokens, greedy.tokens);
  t.equal(greedy.finishReason, "length");
  t.equal(greedy.tokens.length, 16, "max tokens");
});

t.test("a stop string ends generation and is not returned", async (t) => {
  const greedy = await engine.generate({ prompt, maxTokens: 24, temperature: 0 });
  const word = greedy.text.trim().split(/\s+/)[2]!;
  const stopped = await engine.generate({ prompt, maxTokens: 24, temperature: 0, stop: [word] });
  t.equal(stopped.finishReason, "stop");
  t.equal(stopped.text, greedy.text.slice(0, greedy.text.indexOf(word)));
  let streamed = "";
  await engine.generate({
    prompt,
    maxTokens: 24,
    temperature: 0,
    stop: [word],
    onText: (piece) => {
      streamed += piece;
    },
  });
  t.equal(streamed, stopped.text, "streamed text never shows the stop string");
});

t.test("greedy log-probs: the chosen token is the most likely one", async (t) => {
  const r = await engine.generate({ prompt, maxTokens: 4, temperature: 0, logprobs: 5 });
  for (const lp of r.logprobs!) {
    t.equal(lp.top[0]!.id, lp.id);
    t.ok(
      lp.top.every((x, i) => i === 0 || x.logprob <= lp.top[i - 1]!.logprob),
      "sorted",
    );
    const mass = lp.top.reduce((s, x) => s + Math.exp(x.logprob), 0);
    t.ok(mass <= 1 + 1e-6, "a distribution");
  }
});
