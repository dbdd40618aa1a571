// The engine refuses or works exactly, never silently differently (issue #14): the length check before
// any per-token work, include mode as the authors' library computes it, generation mode without
// emphasis, scoring that keeps a warm prefix cache, and generated text as llama.cpp detokenizes it.
import t from "tap";
import { STORIES_MODEL } from "../../../harness/index.js";
import { emphasize } from "../../../src/emphasis/markup.js";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { ContextLengthError } from "../../../src/engine/errors.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

const PROMPT = "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the";
const HEADS = { "2": [0, 3, 5], "3": [1, 6] };

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 256, parallel: 2 });
t.teardown(() => engine.dispose());

t.test("a steered prompt too long for the context is refused before any per-token work", async (t) => {
  const long = "Tom had a blue kite. ".repeat(200);
  // character offsets start from each token's piece (the addon's tokenPieces, counted through a proxy of the addon)
  const holder = engine.context as unknown as { _ctx: Record<string, unknown> };
  const addon = holder._ctx;
  let pieced = 0;
  holder._ctx = new Proxy(addon, {
    get(target, name: string) {
      const value = target[name];
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (name === "tokenPieces") pieced++;
        return value.apply(target, args);
      };
    },
  });
  t.teardown(() => {
    holder._ctx = addon;
  });
  await t.rejects(
    engine.prepare({ prompt: long, steering: { emphasis: emphasize(long, ["blue kite"]), heads: HEADS } }, 16),
    ContextLengthError,
  );
  t.equal(pieced, 0, "no token offsets were computed for it");
  await engine.prepare({ prompt: PROMPT, steering: { emphasis: emphasize(PROMPT, ["blue kite"]), heads: HEADS } }, 16);
  t.equal(pieced, 1, "a prompt that fits has its offsets computed (the count sees them)");
});

t.test("include mode is pastalib's: the same as exclude with 1/alpha, on every generated token", async (t) => {
  const emphasis = emphasize(PROMPT, ["Tom had a blue kite."]);
  const run = (mode: "include" | "exclude", alpha: number) =>
    engine.generate({ prompt: PROMPT, maxTokens: 12, temperature: 0, logprobs: 5, steering: { emphasis, heads: HEADS, alpha, mode } });
  const include = await run("include", 100);
  const exclude = await run("exclude", 0.01);
  t.same(include.tokens, exclude.tokens, "same greedy tokens");
  let worst = 0;
  include.logprobs!.forEach((lp, i) => {
    const other = exclude.logprobs![i]!;
    worst = Math.max(worst, Math.abs(lp.logprob - other.logprob), ...lp.top.map((alt, j) => Math.abs(alt.logprob - other.top[j]!.logprob)));
  });
  t.ok(worst <= 1e-5, `log-probs of all 12 tokens agree (max diff ${worst.toExponential(2)})`);
});

t.test("generation mode needs no emphasis", async (t) => {
  const result = await engine.generate({
    prompt: PROMPT,
    maxTokens: 4,
    temperature: 0,
    steering: { emphasis: [], heads: HEADS, alpha: 0.5, mode: "generation" },
  });
  t.equal(result.tokens.length, 4);
  t.same(result.steering?.spans, [], "no spans");
});

t.test("scoring takes the coldest sequence: a warm prefix cache survives it", async (t) => {
  await engine.generate({ prompt: PROMPT, maxTokens: 2, temperature: 0 });
  await engine.score({ prompt: "The sun was hot and the cat was sleepy.", topLogprobs: 0 });
  const again = await engine.generate({ prompt: PROMPT, maxTokens: 2, temperature: 0 });
  t.equal(again.evaluatedPromptTokens, 1, "only the last prompt token is evaluated again");
});

t.test("the first generated token keeps its leading space, as llama-server's text does", async (t) => {
  const prompt = PROMPT; // "... Lily wanted to play with the": " ball."
  const result = await engine.generate({ prompt, maxTokens: 6, temperature: 0 });
  const { tokens } = engine.tokenizePrompt(prompt);
  // llama.cpp's own detokenization of prompt + answer, minus the prompt's: the answer as it reads in context
  const inContext = engine.model.detokenize([...tokens, ...result.tokens]).slice(engine.model.detokenize(tokens).length);
  t.equal(result.text, inContext);
  t.ok(result.text.startsWith(" "), `a word-initial first token keeps its space: ${JSON.stringify(result.text)}`);
});

t.test("token offsets come from the tokens' bytes: a lone surrogate or a byte-fallback character shifts nothing after it", async (t) => {
  const prompt = "Lily had a \uD800 red ball. Tom had a \u{1F600} blue kite and a caf\u00E9 cake.";
  const { tokens, offsets } = engine.tokenizePrompt(prompt);
  t.equal(offsets.length, tokens.length);
  for (let i = 1; i < offsets.length; i++) t.ok(offsets[i]![0] >= offsets[i - 1]![0], `offsets never go back (token ${i})`);
  const prepared = await engine.prepare({ prompt, steering: { emphasis: emphasize(prompt, ["blue kite"]), heads: HEADS } }, 4);
  const span = prepared.steering!.spans[0]!;
  const covered = offsets.slice(span.tokenStart, span.tokenEnd);
  t.equal(prompt.slice(covered[0]![0], covered.at(-1)![1]).trim(), "blue kite", "the span's tokens spell the emphasized text");
  const scored = await engine.score({ prompt, topLogprobs: 0 });
  t.equal(scored.tokens.map((tok) => tok.text).join(""), prompt, "echo token texts join to the prompt");
  t.ok(
    scored.tokens.slice(-4).every((tok) => tok.text.length > 0),
    "tokens after the surrogate have their text",
  );
});

t.test("the same on a byte-level BPE tokenizer (SmolLM2), through a chat template's special tokens", async (t) => {
  const smol = await SteeringEngine.load({ modelPath: SMOLLM2_MODEL, contextSize: 256 });
  t.teardown(() => smol.dispose());
  const prompt = "<|im_start|>user\nTom had a \uD800 red ball, a \u{1F600} kite and a caf\u00E9 cake.<|im_end|>\n<|im_start|>assistant\n";
  const { tokens, offsets } = smol.tokenizePrompt(prompt, true);
  t.equal(offsets.length, tokens.length);
  const scored = await smol.score({ prompt, specialTokens: true, topLogprobs: 0 });
  t.equal(scored.tokens.map((tok) => tok.text).join(""), prompt, "token texts join to the prompt, special tokens included");
  const prepared = await smol.prepare(
    { prompt, specialTokens: true, steering: { emphasis: emphasize(prompt, ["caf\u00E9 cake"]), heads: [0] } },
    4,
  );
  const span = prepared.steering!.spans[0]!;
  t.equal(prompt.slice(offsets[span.tokenStart]![0], offsets[span.tokenEnd - 1]![1]).trim(), "caf\u00E9 cake");
});
