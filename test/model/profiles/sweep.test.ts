// Choosing k and alpha on held-out examples (src/profiles/sweep.ts) on stories260K: every point of
// the grid is the per-task top-k combination of the search's own rankings, its held-out numbers are
// what a direct scoring of those heads gives, and the profile keeps the point the criterion picks,
// with its alpha. (choosePoint's rule on its own: test/unit/profiles/sweep.test.ts.)
import t from "tap";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { profileDocument } from "../../../src/profiles/profileFile.js";
import { profileHeads } from "../../../src/profiles/profiler.js";
import { GREEDY_MAX_TOKENS, TargetScorer } from "../../../src/profiles/scoring.js";
import { combineRankings, headMap } from "../../../src/profiles/search.js";
import { choosePoint, GREEDY_POINTS } from "../../../src/profiles/sweep.js";
import { splitExamples } from "../../../src/profiles/tasks.js";
import { STORIES_MODEL } from "../../support/models.js";
import { storyTask } from "../../support/profiling.js";

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512, parallel: 2 });
t.teardown(() => engine.dispose());
// two tasks from the same stories: their profiling and held-out halves differ (the split is by task name)
const tasks = [storyTask(), { ...storyTask(), name: "stories-again" }];
const grid = { topK: [1, 4, 16], alpha: [0.01, 0.3] };
const seed = 3;
const result = await profileHeads(engine, { tasks, seed, method: "coarse-to-fine", keepLayers: 2, sweep: grid });
const sweep = result.sweep!;

t.test("every (k, alpha) of the grid, each the search's per-task top-k combined", async (t) => {
  t.same(
    sweep.points.map((p) => [p.topK, p.alpha]),
    grid.topK.flatMap((k) => grid.alpha.map((a) => [k, a])),
    "the grid, k-major",
  );
  const rankings = result.scores.map((s) => s.ranking);
  for (const p of sweep.points) t.same(p.heads, headMap(combineRankings(rankings, p.topK, "intersection").heads), `k ${p.topK}`);
  t.ok(
    sweep.points.some((p) => p.tasks.some((task) => (task.greedy ?? 0) > 0)),
    "stories260K gets some greedy replies right: the greedy check is not vacuous",
  );
});

t.test("the greedy check goes to the points best by likelihood, and only to them", async (t) => {
  const checked = sweep.points.filter((p) => p.tasks.every((task) => task.greedy !== null));
  t.equal(checked.length, GREEDY_POINTS);
  t.ok(
    sweep.points.every((p) => checked.includes(p) || p.tasks.every((task) => task.greedy === null)),
    "the others have no greedy numbers",
  );
  const worst = (p: (typeof checked)[number]) => Math.min(...p.tasks.map((task) => task.gain));
  const lowestChecked = Math.min(...checked.map(worst));
  t.ok(
    sweep.points.filter((p) => !checked.includes(p)).every((p) => worst(p) <= lowestChecked),
    "no unchecked point has a better worst-task likelihood gain than a checked one",
  );
  t.ok(checked.includes(sweep.chosen), "the chosen point is a checked one");
});

t.test("a point's held-out numbers are a direct scoring of its heads at its alpha", async (t) => {
  const scorer = new TargetScorer(engine, { alpha: 0.01 });
  const checked = sweep.points.filter((p) => p.tasks[0]!.greedy !== null);
  const unchecked = sweep.points.find((p) => p.tasks[0]!.greedy === null)!;
  for (const p of [checked[0]!, checked.at(-1)!, unchecked]) {
    for (const [i, task] of tasks.entries()) {
      const { heldOut } = splitExamples(task, seed);
      const [gain] = await scorer.meanGains(heldOut, [p.heads], p.alpha);
      t.ok(Math.abs(gain! - p.tasks[i]!.gain) < 1e-9, `k ${p.topK}, alpha ${p.alpha}, ${task.name}: likelihood gain ${gain!.toFixed(4)}`);
      if (p !== unchecked) t.equal(await scorer.greedyRate(heldOut, p.heads, p.alpha), p.tasks[i]!.greedy, `${task.name}: greedy rate`);
    }
  }
  for (const [i, task] of tasks.entries()) {
    t.equal(
      await scorer.greedyRate(splitExamples(task, seed).heldOut, null),
      sweep.unsteered[i]!.greedy,
      `${task.name}: unsteered greedy rate`,
    );
  }
});

t.test("the profile keeps the chosen point: its heads, k and alpha, and records the sweep", async (t) => {
  const chosen = choosePoint(sweep.points, sweep.unsteered);
  t.equal(sweep.chosen, chosen);
  t.same(result.heads, chosen.heads);
  t.equal(result.topK, chosen.topK);
  t.equal(result.alpha, chosen.alpha, "requests steering the profile's heads without alpha get this one");
  t.ok(
    result.heldOut!.every((h, i) => Math.abs(h.steered - h.unsteered - chosen.tasks[i]!.gain) < 1e-9),
    "the held-out report is the chosen point's",
  );
  const doc = profileDocument(result, { name: "stories260K", file: "stories260K.gguf", sha256: "x", size: 1 }, "test") as Record<
    string,
    any
  >;
  t.same(doc.sweep.chosen, { top_k: chosen.topK, alpha: chosen.alpha });
  t.equal(doc.sweep.points.length, grid.topK.length * grid.alpha.length);
  t.same(doc.sweep.grid, { top_k: grid.topK, alpha: grid.alpha });
  t.equal(doc.alpha, chosen.alpha);
});

t.test("without a sweep, the given k and alpha stand", async (t) => {
  const options = { tasks, seed, method: "coarse-to-fine", keepLayers: 2, topK: 4, evaluate: false } as const;
  const fixed = await profileHeads(engine, { ...options, alpha: 0.05 });
  t.equal(fixed.sweep, null);
  t.equal(fixed.alpha, 0.05);
  t.equal(fixed.topK, 4);
  // the search ranks heads at the alpha it is given; the sweep's search ran at the default, 0.01
  const atDefault = await profileHeads(engine, options);
  t.same(
    atDefault.heads,
    sweep.points.find((p) => p.topK === 4)!.heads,
    "at the search's alpha: the same heads as the sweep's k = 4 points",
  );
});

t.test("the greedy check: case-blind, and a long target is judged on its first GREEDY_MAX_TOKENS tokens", async (t) => {
  const scorer = new TargetScorer(engine, { alpha: 0.01 });
  const context = "Once upon a time, there was a little girl named Lily.";
  const emphasis = "Lily";
  const reply = await engine.generate({ prompt: context, maxTokens: GREEDY_MAX_TOKENS + 16, temperature: 0 });
  const words = reply.text.split(" ");
  t.ok(engine.tokenizePrompt(reply.text).tokens.length > GREEDY_MAX_TOKENS + 8, "the greedy reply is longer than the cap");
  const rate = (target: string) => scorer.greedyRate([{ context, emphasis, target }], null);
  t.equal(await rate(reply.text), 1, "the reply itself");
  t.equal(await rate(reply.text.toUpperCase()), 1, "in capitals");
  t.equal(
    await rate(`${words.slice(0, -2).join(" ")} and then something else entirely`),
    1,
    "a target that leaves the reply after the cap",
  );
  t.equal(await rate([words[0], "zebra", ...words.slice(1)].join(" ")), 0, "a target that leaves the reply in its first words");
});
