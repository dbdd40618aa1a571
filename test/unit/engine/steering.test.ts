import t from "tap";
import { SteeringError } from "../../../src/engine/errors.js";
import {
  biasedPositions,
  resolveHeads,
  steeringFreePrefix,
  toNativeSteering,
  validateAlpha,
  type SteeringSpec,
} from "../../../src/engine/steering.js";
import { spansToTokenRanges } from "../../../src/engine/tokenSpans.js";

const heads = [4, 4, 4];

t.test("head selections", async (t) => {
  t.same(
    [...resolveHeads({ "1": [3, 0], "2": [1] }, heads)],
    [
      [1, [0, 3]],
      [2, [1]],
    ],
  );
  t.same([...resolveHeads([0], heads)], [[0, [0, 1, 2, 3]]], "a list of layers steers all their heads");
  t.throws(() => resolveHeads({ "1": [4] }, heads), {
    name: "SteeringError",
    message: /head 4 of layer 1 is out of range: layer 1 has query heads 0-3/,
  });
  t.throws(() => resolveHeads({ "3": [0] }, heads), { message: /layer "3" is out of range: this model has layers 0-2/ });
  t.throws(() => resolveHeads([-1], heads), SteeringError);
  t.throws(() => resolveHeads({ x: [0] }, heads), SteeringError);
  t.throws(() => resolveHeads({ "0": [] }, heads), { message: /no head/ });
});

t.test("alpha", async (t) => {
  t.doesNotThrow(() => validateAlpha(0.01, "exclude"));
  t.doesNotThrow(() => validateAlpha(1, "exclude"));
  t.doesNotThrow(() => validateAlpha(5, "include"));
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) t.throws(() => validateAlpha(bad, "exclude"), SteeringError);
  t.throws(() => validateAlpha(2, "exclude"), { message: /\(0, 1\] in exclude mode/ });
});

const spec = (mode: SteeringSpec["mode"]): SteeringSpec => ({
  emphasized: [
    { start: 3, end: 5 },
    { start: 8, end: 9 },
  ],
  heads: new Map([[1, [2]]]),
  alpha: 0.01,
  mode,
});

t.test("PASTA modes: which prompt positions get the bias", async (t) => {
  t.same(biasedPositions(spec("exclude"), 12), [
    { start: 0, end: 3 },
    { start: 5, end: 8 },
    { start: 9, end: 12 },
  ]);
  // pastalib's include: +log(alpha) inside the sections, -log(alpha) over the prompt = -log(alpha) outside them
  t.same(biasedPositions(spec("include"), 12), [
    { start: 0, end: 3 },
    { start: 5, end: 8 },
    { start: 9, end: 12 },
  ]);
  t.same(biasedPositions(spec("generation"), 12), [{ start: 0, end: 12 }]);
});

t.test("steering-free prefix (prefix-cache reuse limit)", async (t) => {
  t.equal(steeringFreePrefix(undefined, 12, true), Number.POSITIVE_INFINITY);
  t.equal(steeringFreePrefix(spec("exclude"), 12, true), 3);
  t.equal(steeringFreePrefix(spec("include"), 12, true), 3);
  t.equal(steeringFreePrefix(spec("generation"), 12, true), 12);
  // attention sinks: no bias is uniform over a row that also has the sink logit
  t.equal(steeringFreePrefix(undefined, 12, false), Number.POSITIVE_INFINITY);
  t.equal(steeringFreePrefix(spec("exclude"), 12, false), 0);
  t.equal(steeringFreePrefix(spec("generation"), 12, false), 0);
});

t.test("native payload", async (t) => {
  const native = toNativeSteering(spec("exclude"), 12, heads);
  t.equal(native.bias, Math.log(0.01));
  t.same([...native.ranges], [0, 3, 5, 8, 9, 12]);
  t.same([...native.headMask], [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
  t.equal(toNativeSteering(spec("include"), 12, heads).bias, -Math.log(0.01), "include: exclude with 1/alpha");
  t.equal(toNativeSteering(spec("generation"), 12, heads).bias, Math.log(0.01));
});

t.test("a token is emphasized when its characters overlap a span", async (t) => {
  const offsets: Array<[number, number]> = [
    [0, 0],
    [0, 4],
    [4, 8],
    [8, 9],
    [9, 14],
  ];
  t.same(spansToTokenRanges(offsets, [{ start: 5, end: 9 }]), [{ start: 2, end: 4 }]);
  t.same(
    spansToTokenRanges(offsets, [
      { start: 8, end: 9 },
      { start: 13, end: 14 },
    ]),
    [{ start: 3, end: 5 }],
  );
  t.same(spansToTokenRanges(offsets, [{ start: 4, end: 4 }]), [], "an empty span covers nothing");
});
