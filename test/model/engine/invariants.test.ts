// Steering invariants that any correct implementation passes, on the real stories260K model and on
// generated models of each supported attention path (GQA llama, qwen2 with QKV biases, gemma2 with
// sliding-window layers and logit softcapping, mpt with ALiBi, granite_swa with attention sinks).
import t from "tap";
import { emphasize } from "../../../src/emphasis/markup.js";
import { SteeringEngine, type GenerateRequest, type GenerateResult } from "../../../src/engine/engine.js";
import { maxLogprobDiff, STORIES_MODEL, tinyModel } from "../../support/models.js";

/** bias 0, or a uniform bias, on the F32 attention path: only float rounding differs */
const EXACT = 1e-5;
/** CPU flash attention accumulates V in F16 (issue #2 target) */
const FLASH_VS_F32 = 1e-3;
/** cached prefix vs recompute (issue #2 target) */
const BATCHING = 1e-4;
/**
 * A sequence decoded in the same batches as others vs alone. llama.cpp's CPU kernels round
 * differently when several sequences share a ubatch (up to ~6e-3 on stories260K, without steering
 * too); a steering leak between sequences is checked exactly, against the same batching unsteered.
 */
const BATCHED_WITH_OTHERS = 1e-2;
/** log(alpha) for "invisible": exp() of it is 0 in float32 */
const INVISIBLE_ALPHA = Number.MIN_VALUE;

const PROMPT = "Once upon a time there was a little dog named Max. Max loved to run in the park with his friend Sue. One day";
const PROMPT_OTHER_WORD = PROMPT.replace("dog", "cat");

const models: Array<{
  name: string;
  path: string;
  heads: Record<string, number[]>;
  /** attention sinks: a bias on every position is not uniform (the sink logit takes none) */
  sinks?: boolean;
  /**
   * ALiBi: under flash attention a steered layer runs F32 attention for the whole batch (flash
   * attention would scale the bias by each head's slope), so neighbours differ by kernel rounding
   */
  alibi?: boolean;
}> = [
  { name: "stories260K (llama, GQA)", path: STORIES_MODEL, heads: { "2": [0, 3, 5], "3": [1, 6] } },
  { name: "generated llama (GQA)", path: tinyModel("llama"), heads: { "0": [1, 2], "2": [0, 7] } },
  { name: "generated qwen2 (GQA, QKV bias)", path: tinyModel("qwen2"), heads: { "1": [0, 3] } },
  { name: "generated gemma2 (sliding window, softcap)", path: tinyModel("gemma2"), heads: { "0": [0, 2], "1": [1] } },
  { name: "generated mpt (ALiBi)", path: tinyModel("mpt"), heads: { "0": [1], "1": [0, 3] }, alibi: true },
  { name: "generated granite_swa (attention sinks)", path: tinyModel("granite_swa"), heads: { "0": [0], "1": [1, 2] }, sinks: true },
];

function allDiffs(a: GenerateResult, b: GenerateResult): number {
  return Math.max(...a.logprobs!.map((lp, i) => maxLogprobDiff(lp, b.logprobs![i]!)));
}

for (const model of models) {
  t.test(model.name, async (t) => {
    const flash = await SteeringEngine.load({ modelPath: model.path, contextSize: 512, parallel: 2, flashAttention: true });
    const f32 = await SteeringEngine.load({ modelPath: model.path, contextSize: 512, parallel: 1, flashAttention: false });
    t.teardown(async () => {
      await flash.dispose();
      await f32.dispose();
    });

    const steering = { emphasis: emphasize(PROMPT, ["named Max"]), heads: model.heads, alpha: 0.01 };
    const base: GenerateRequest = { prompt: PROMPT, maxTokens: 6, temperature: 0, logprobs: 10 };
    const next = async (engine: SteeringEngine, request: Partial<GenerateRequest>) =>
      (await engine.generate({ ...base, ...request, maxTokens: 1 })).logprobs![0]!;

    const unsteered = await next(f32, {});
    const steered = await next(f32, { steering });
    t.ok(
      maxLogprobDiff(steered, unsteered) > 1e-2,
      `steering changes the next-token distribution (${maxLogprobDiff(steered, unsteered).toExponential(2)})`,
    );

    t.test("alpha = 1 gives the unsteered logits", async (t) => {
      const d = maxLogprobDiff(await next(f32, { steering: { ...steering, alpha: 1 } }), unsteered);
      t.ok(d <= EXACT, `F32 attention: max diff ${d.toExponential(2)}`);
      const dFlash = maxLogprobDiff(await next(flash, { steering: { ...steering, alpha: 1 } }), await next(flash, {}));
      t.ok(dFlash <= FLASH_VS_F32, `flash attention on: max diff ${dFlash.toExponential(2)}`);
    });

    t.test("a uniform bias over the whole prompt changes nothing, unless the model has attention sinks", async (t) => {
      const d = maxLogprobDiff(await next(f32, { steering: { ...steering, mode: "generation" } }), unsteered);
      if (model.sinks) t.ok(d > 1e-3, `sinks take no bias: the prompt loses weight to them (max diff ${d.toExponential(2)})`);
      else t.ok(d <= EXACT, `max diff ${d.toExponential(2)}`);
    });

    t.test("an invisible span: changing its tokens leaves the logits unchanged", async (t) => {
      const allLayers = Object.keys(flash.headsPerLayer).map(Number);
      const hide = { emphasis: emphasize(PROMPT, ["dog"]), heads: allLayers, alpha: INVISIBLE_ALPHA, mode: "include" as const };
      const hideOther = { ...hide, emphasis: emphasize(PROMPT_OTHER_WORD, ["cat"]) };
      const control = maxLogprobDiff(await next(f32, {}), await next(f32, { prompt: PROMPT_OTHER_WORD }));
      t.ok(control > 1e-3, `without steering the word matters (${control.toExponential(2)})`);
      const d = maxLogprobDiff(await next(f32, { steering: hide }), await next(f32, { prompt: PROMPT_OTHER_WORD, steering: hideOther }));
      t.ok(d <= EXACT, `with the span hidden: max diff ${d.toExponential(2)}`);
    });

    t.test("flash attention on vs off agree", async (t) => {
      // llama.cpp's own CPU flash attention (F16 Q and V accumulation) sets the floor: steering must
      // stay within 1e-3, or within 1.5x what llama.cpp itself shows on this model without steering
      const plain = maxLogprobDiff(await next(flash, {}), unsteered);
      const d = maxLogprobDiff(await next(flash, { steering }), steered);
      t.ok(d <= Math.max(FLASH_VS_F32, 1.5 * plain), `steered: max diff ${d.toExponential(2)} (unsteered: ${plain.toExponential(2)})`);
    });

    t.test("a steered request leaves the requests decoded in the same batches unchanged", async (t) => {
      const other = { ...base, prompt: PROMPT_OTHER_WORD };
      const soloSteered = await flash.generate({ ...base, steering });
      const soloPlain = await flash.generate({ ...base });
      // requests started together share every batch (see GenerationLoop), so these two runs batch the same way
      const [steeredA, otherNextToSteered] = await Promise.all([flash.generate({ ...base, steering }), flash.generate(other)]);
      const [plainA, otherNextToPlain] = await Promise.all([flash.generate({ ...base }), flash.generate(other)]);
      t.same(otherNextToSteered.tokens, otherNextToPlain.tokens);
      t.ok(
        allDiffs(otherNextToSteered, otherNextToPlain) <= (model.alibi ? FLASH_VS_F32 : EXACT),
        `a steered neighbour changes nothing: max diff ${allDiffs(otherNextToSteered, otherNextToPlain).toExponential(2)}`,
      );
      // batched vs solo: llama.cpp's kernels round differently when sequences share a ubatch, steered or not
      t.same(steeredA.tokens, soloSteered.tokens);
      t.same(plainA.tokens, soloPlain.tokens);
      const plain = allDiffs(plainA, soloPlain);
      const steered = allDiffs(steeredA, soloSteered);
      t.ok(plain <= BATCHED_WITH_OTHERS, `unsteered, batched vs solo: max diff ${plain.toExponential(2)}`);
      t.ok(steered <= Math.max(BATCHED_WITH_OTHERS, 1.5 * plain), `steered, batched vs solo: max diff ${steered.toExponential(2)}`);
    });

    t.test("target share: flash attention on vs off agree, and a neighbour is left unchanged", async (t) => {
      const target = { ...steering, alpha: 1e-4, targetShare: 0.9 };
      const onF32 = await next(f32, { steering: target });
      t.ok(maxLogprobDiff(onF32, unsteered) > 1e-3, `it steers (max diff ${maxLogprobDiff(onF32, unsteered).toExponential(2)})`);
      const plain = maxLogprobDiff(await next(flash, {}), unsteered);
      const d = maxLogprobDiff(await next(flash, { steering: target }), onF32);
      t.ok(d <= Math.max(FLASH_VS_F32, 1.5 * plain), `flash vs F32: max diff ${d.toExponential(2)} (unsteered: ${plain.toExponential(2)})`);

      // a fixed-alpha request and a plain one next to a target-share request, as next to a plain one
      const other = { ...base, prompt: PROMPT_OTHER_WORD };
      for (const neighbour of [{ ...other, steering: { ...steering, emphasis: emphasize(PROMPT_OTHER_WORD, ["cat"]) } }, other]) {
        const [, nextToTarget] = await Promise.all([flash.generate({ ...base, steering: target }), flash.generate(neighbour)]);
        const [, nextToPlain] = await Promise.all([flash.generate({ ...base }), flash.generate(neighbour)]);
        t.same(nextToTarget.tokens, nextToPlain.tokens);
        const diff = allDiffs(nextToTarget, nextToPlain);
        t.ok(
          diff <= (model.alibi ? FLASH_VS_F32 : EXACT),
          `${neighbour.steering ? "a steered" : "a plain"} neighbour: max diff ${diff.toExponential(2)}`,
        );
      }
    });

    t.test("generation with a reused prefix equals a full recompute", async (t) => {
      const cold = await SteeringEngine.load({ modelPath: model.path, contextSize: 512, parallel: 1, flashAttention: true });
      t.teardown(() => cold.dispose());
      const late = { ...steering, emphasis: emphasize(PROMPT, ["his friend Sue"]) };
      const first = await cold.generate({ ...base, steering: late });
      t.equal(first.evaluatedPromptTokens, first.promptTokens, "a cold sequence evaluates the whole prompt");
      const reused = await cold.generate({ ...base, steering: late });
      const firstEmphasized = reused.steering!.spans[0]!.tokenStart;
      if (model.sinks) t.equal(reused.evaluatedPromptTokens, reused.promptTokens, "attention sinks: nothing is steering-free");
      else
        t.equal(
          reused.evaluatedPromptTokens,
          reused.promptTokens - firstEmphasized,
          "the cache is reused up to the first emphasized token",
        );
      t.same(reused.tokens, first.tokens);
      t.ok(allDiffs(reused, first) <= BATCHING, `steered: max diff ${allDiffs(reused, first).toExponential(2)}`);

      const plainCold = await f32.generate({ ...base, prompt: `${PROMPT} they` });
      const plainReused = await f32.generate({ ...base, prompt: `${PROMPT} they` });
      t.equal(plainReused.evaluatedPromptTokens, 1, "unsteered: only the last prompt token is evaluated again");
      t.ok(allDiffs(plainReused, plainCold) <= BATCHING, `unsteered: max diff ${allDiffs(plainReused, plainCold).toExponential(2)}`);
    });

    t.test("a steered request after an unsteered one reuses only what steering leaves exact", async (t) => {
      const warm = await SteeringEngine.load({ modelPath: model.path, contextSize: 512, parallel: 1, flashAttention: true });
      const cold = await SteeringEngine.load({ modelPath: model.path, contextSize: 512, parallel: 1, flashAttention: true });
      t.teardown(async () => {
        await warm.dispose();
        await cold.dispose();
      });
      const late = { ...steering, emphasis: emphasize(PROMPT, ["his friend Sue"]) };
      await warm.generate({ ...base }); // the cache now holds the prompt, computed unsteered
      const afterPlain = await warm.generate({ ...base, steering: late });
      const fresh = await cold.generate({ ...base, steering: late });
      const firstEmphasized = fresh.steering!.spans[0]!.tokenStart;
      t.equal(
        afterPlain.evaluatedPromptTokens,
        model.sinks ? fresh.promptTokens : fresh.promptTokens - firstEmphasized,
        model.sinks ? "attention sinks: the unsteered cache is not reused" : "the unsteered cache serves up to the first emphasized token",
      );
      t.same(afterPlain.tokens, fresh.tokens);
      // the reused prefix was computed by plain flash attention, the cold one by the steered kernel
      // (a biased mask, or F32 attention for ALiBi): equal up to their rounding
      const d = allDiffs(afterPlain, fresh);
      t.ok(d <= FLASH_VS_F32, `equals a cold steered run: max diff ${d.toExponential(2)}`);
    });
  });
}
