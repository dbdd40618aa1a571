// Sampling options of the engine: greedy, seeded sampling, top-k, min-p, stop strings, max tokens,
// logit bias, min_tokens / ignore_eos, repetition penalties.
import t from "tap";
import type { Token } from "node-llama-cpp";
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

t.test("logit bias: -Infinity removes the greedy token, the next most likely takes its place; a large bias picks a token", async (t) => {
  const plain = await engine.generate({ prompt, maxTokens: 1, temperature: 0, logprobs: 2 });
  const [greedy, second] = plain.logprobs![0]!.top;
  const banned = await engine.generate({ prompt, maxTokens: 1, temperature: 0, logitBias: [[greedy!.id, Number.NEGATIVE_INFINITY]] });
  t.same(banned.tokens, [second!.id]);
  const other = greedy!.id === 100 ? 101 : 100;
  const pushed = await engine.generate({ prompt, maxTokens: 1, temperature: 0, logitBias: [[other, 1000]] });
  t.same(pushed.tokens, [other]);
});

t.test("min_p 1 keeps only the most likely token: sampling at temperature 1 is then greedy", async (t) => {
  const greedy = await engine.generate({ prompt, maxTokens: 12, temperature: 0 });
  for (const seed of [1, 2, 3]) {
    const sampled = await engine.generate({ prompt, maxTokens: 12, temperature: 1, minP: 1, seed });
    t.same(sampled.tokens, greedy.tokens, `seed ${seed}`);
  }
});

t.test("min_tokens and ignore_eos: no end-of-generation token before min_tokens, none at all with ignore_eos", async (t) => {
  // stories260K never ends greedily on its own: a bias makes its end-of-generation token the first choice
  const eos = engine.model.tokens.eos!;
  const endsAtOnce = { prompt, maxTokens: 12, temperature: 0, logitBias: [[eos, 1000]] as const };
  const free = await engine.generate(endsAtOnce);
  t.same([free.finishReason, free.tokens.length], ["stop", 0], "the answer ends before its first token");
  const held = await engine.generate({ ...endsAtOnce, minTokens: 5 });
  t.same([held.finishReason, held.tokens.length], ["stop", 5], "it ends as soon as min_tokens allows");
  const endless = await engine.generate({ ...endsAtOnce, ignoreEos: true });
  t.same([endless.finishReason, endless.tokens.length], ["length", 12], "it runs to max_tokens");
  t.notOk(
    endless.tokens.some((token) => engine.model.isEogToken(token)),
    "no end-of-generation token in the answer",
  );
  const unbiased = await engine.generate({ prompt, maxTokens: 12, temperature: 0 });
  t.same(held.tokens, unbiased.tokens.slice(0, 5), "before min_tokens, the answer the model gives without the bias");
});

t.test("repetition penalties equal llama.cpp's sampler fed the same window by node-llama-cpp's own evaluation", async (t) => {
  const penalties = { repeat: 1.6, presence: 0.4, frequency: 0.3, lastTokens: 24 };
  const maxTokens = 24;
  const ours = await engine.generate({ prompt, maxTokens, temperature: 0, penalties });
  const plain = await engine.generate({ prompt, maxTokens, temperature: 0 });
  t.notSame(ours.tokens, plain.tokens, "the penalties change the answer");

  const context = await engine.model.createContext({ contextSize: 256, sequences: 1, flashAttention: true });
  t.teardown(() => context.dispose());
  const sequence = context.getSequence();
  const promptTokens = engine.tokenizePrompt(prompt).tokens;
  const reference: Token[] = [];
  const window = () => [...promptTokens, ...reference].slice(-penalties.lastTokens);
  for await (const token of sequence.evaluate(promptTokens, {
    temperature: 0,
    repeatPenalty: {
      punishTokens: window,
      maxPunishTokens: penalties.lastTokens,
      penalty: penalties.repeat,
      presencePenalty: penalties.presence,
      frequencyPenalty: penalties.frequency,
    },
  })) {
    if (engine.model.isEogToken(token)) break;
    reference.push(token);
    if (reference.length >= maxTokens) break;
  }
  t.same(ours.tokens, reference);
});

t.test("sampling fields the model must check: token ids, min_tokens against the length, end bans against a grammar", async (t) => {
  await t.rejects(engine.prepare({ prompt, logitBias: [[engine.vocabularySize, -1]] }, 8), {
    param: "logitBias",
    message: /^logitBias\.\d+: no such token/,
  });
  await t.rejects(engine.prepare({ prompt, minTokens: 9 }, 8), { param: "minTokens", message: /9 is more than the 8 tokens/ });
  const grammar = engine.compileGrammar({ type: "json_object" });
  await t.rejects(engine.prepare({ prompt, ignoreEos: true, grammar }, 8), { param: "ignoreEos", message: /structured output/ });
});
