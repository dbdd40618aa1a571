// choosePoint (src/profiles/sweep.ts): the (k, alpha) kept is the best for the task it helps least.
import t from "tap";
import { choosePoint, type SweepPoint } from "../../../src/profiles/sweep.js";

const unsteered = [
  { task: "a", greedy: 0.5 },
  { task: "b", greedy: 0.2 },
];
const point = (topK: number, alpha: number, greedy: [number, number], gain: [number, number], heads = topK): SweepPoint => ({
  topK,
  alpha,
  heads: { "0": Array.from({ length: heads }, (_, h) => h) },
  fallback: null,
  tasks: [
    { task: "a", greedy: greedy[0], gain: gain[0] },
    { task: "b", greedy: greedy[1], gain: gain[1] },
  ],
});

t.test("a point that helps one task and hurts another loses to one that helps both a little", async (t) => {
  const lopsided = point(2, 0.01, [0.9, 0.1], [3, -1]);
  const even = point(4, 0.01, [0.6, 0.3], [0.5, 0.5]);
  t.equal(choosePoint([lopsided, even], unsteered), even);
});

t.test("equal greedy gains: the better worst likelihood gain, then the mean greedy gain, then fewer heads", async (t) => {
  const worseLikelihood = point(2, 0.01, [0.6, 0.3], [2, -0.1]);
  const better = point(4, 0.1, [0.6, 0.3], [0.2, 0.1]);
  t.equal(choosePoint([worseLikelihood, better], unsteered), better, "min likelihood gain");
  const moreGreedy = point(8, 0.1, [0.8, 0.3], [0.2, 0.1]);
  t.equal(choosePoint([better, moreGreedy], unsteered), moreGreedy, "same minimum greedy gain (task b), higher mean");
  const fewer = point(8, 0.3, [0.6, 0.3], [0.2, 0.1], 2);
  t.equal(choosePoint([better, fewer], unsteered), fewer, "a full tie otherwise: fewer heads");
  t.equal(choosePoint([better, point(4, 0.3, [0.6, 0.3], [0.2, 0.1])], unsteered), better, "and then the earlier point");
});
