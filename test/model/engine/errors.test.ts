// Bad input to the engine throws typed errors whose messages say what to fix.
import t from "tap";
import { emphasize } from "../../../src/emphasis/markup.js";
import { loadPatchedLlama } from "../../../src/engine/binding.js";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { ContextLengthError, EngineNotBuiltError, SteeringError, UnsupportedModelError } from "../../../src/engine/errors.js";
import { STORIES_MODEL, tinyModel } from "../../support/models.js";

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 128 });
t.teardown(() => engine.dispose());
const prompt = "Lily had a red ball. Tom had a blue kite.";
const steer = (steering: object) =>
  engine.generate({ prompt, maxTokens: 2, steering: { emphasis: emphasize(prompt, ["Tom"]), heads: { "2": [0] }, ...steering } });

t.rejects(steer({ heads: { "2": [8] } }), {
  name: "SteeringError",
  message: /head 8 of layer 2 is out of range: layer 2 has query heads 0-7/,
});
t.rejects(steer({ heads: [5] }), { name: "SteeringError", message: /layers 0-4/ });
t.rejects(steer({ emphasis: [{ start: 10, end: 500 }] }), { name: "SteeringError", param: "emphasis", message: /^emphasis\[0\] / });
// substrings are resolved before the engine (src/prompt/ for the server, emphasize() in process)
t.throws(() => emphasize(prompt, ["Sue"]), { name: "EmphasisError", message: /does not occur/ });
t.rejects(steer({ alpha: 0 }), SteeringError);
t.rejects(steer({ alpha: -0.5 }), SteeringError);
t.rejects(engine.generate({ prompt: prompt.repeat(20), maxTokens: 8 }), ContextLengthError);

t.test("a model whose attention cannot be steered is refused, never steered as a no-op", async (t) => {
  const mamba = await SteeringEngine.load({ modelPath: tinyModel("mamba"), contextSize: 128 });
  t.teardown(() => mamba.dispose());
  t.match(mamba.unsupportedReason, /recurrent/);
  t.rejects(
    mamba.generate({ prompt, maxTokens: 2, steering: { emphasis: emphasize(prompt, ["Tom"]), heads: [0] } }),
    UnsupportedModelError,
  );
  const plain = await mamba.generate({ prompt, maxTokens: 2, temperature: 0 });
  t.equal(plain.tokens.length, 2, "it still generates without steering");
});

t.test("no silent fallback to an unpatched binary", async (t) => {
  // this machine has no CUDA build of the patched engine
  await t.rejects(loadPatchedLlama({ gpu: "cuda" }), { name: "EngineNotBuiltError", message: /npm run build/ });
  t.ok(new EngineNotBuiltError("x") instanceof Error);
});
