// Tokenization runs on a libuv worker thread (#26): the event loop keeps turning while a long prompt
// is tokenized, and the tokens are exactly node-llama-cpp's own (LlamaModel.tokenize), BOS and
// special-token parsing included, on a SentencePiece and a byte-level BPE vocabulary.
import t from "tap";
import { STORIES_MODEL } from "../../../harness/index.js";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

// ~14k tokens on stories260K's 512-token vocabulary, ~7k on SmolLM2's
const LONG = "Lily had a red ball. Tom had a blue kite and a caf\u00E9 cake \u{1F600}. ".repeat(400);

/** setImmediate turns the event loop completes while `work` is pending: 0 when it holds the loop until it settles. */
async function turnsDuring<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let pending = true;
  const spin = () => {
    turns++;
    if (pending) setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { result: await work(), turns };
  } finally {
    pending = false;
  }
}

for (const [name, modelPath] of [
  ["stories260K (SentencePiece, BOS added)", STORIES_MODEL],
  ["SmolLM2 (byte-level BPE)", SMOLLM2_MODEL],
] as const) {
  t.test(name, async (t) => {
    const engine = await SteeringEngine.load({ modelPath, contextSize: 16384, parallel: 1 });
    t.teardown(() => engine.dispose());
    // (tokenized on the event loop, the work would be done before the first turn)
    const huge = LONG.repeat(4);
    const { result: pieces, turns } = await turnsDuring(() => engine.tokenize(huge, { addSpecial: true, parseSpecial: false }));
    t.ok(turns > 10, `the event loop turned ${turns} times while ${huge.length} characters became ${pieces.length} tokens`);
    const prepared = await engine.prepare({ prompt: LONG }, 1);

    const own = engine.model.tokenize(LONG);
    const bos = engine.model.tokens.shouldPrependBosToken ? [engine.model.tokens.bos!] : [];
    t.same(
      prepared.tokens,
      [...bos, ...own],
      `the prompt's ${prepared.tokens.length} tokens are node-llama-cpp's, BOS first where the model adds one`,
    );

    const chat = "<|im_start|>user\nHi<|im_end|>\n";
    t.same(
      (await engine.tokenize(chat, { addSpecial: false, parseSpecial: true })).map((token) => token.id),
      engine.model.tokenize(chat, true),
      "special-token text parsed as node-llama-cpp parses it",
    );
    t.same(
      (await engine.tokenize(chat, { addSpecial: false, parseSpecial: false })).map((token) => token.id),
      engine.model.tokenize(chat, false),
      "and left as text when not asked",
    );
    t.same(await engine.tokenize("", { addSpecial: false, parseSpecial: false }), [], "no text, no tokens");
  });
}

t.test("an engine disposed while tokenizing waits for the worker thread first", async (t) => {
  const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 16384, parallel: 1 });
  const tokenizing = engine.prepare({ prompt: LONG }, 1);
  await engine.dispose();
  t.ok((await tokenizing).tokens.length > 10_000, "the tokenization finished with its tokens, the model freed after it");
});
