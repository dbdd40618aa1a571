// AutoPASTA's match threshold chosen on labelled pass-1 answers (src/autopasta/threshold.ts): each
// threshold re-matches the same answers; the best F1 wins, ties to the higher threshold.
import t from "tap";
import { matchSentences } from "../../../src/autopasta/sentences.js";
import { bestThreshold, thresholdSweep, type ThresholdPoint } from "../../../src/autopasta/threshold.js";

const context = "Mia planned to bake a lemon cake. The shop had no lemons left. She baked a carrot cake instead. Her guests loved it.";
const gold = "She baked a carrot cake instead.";
const exact = { context, selection: gold, gold };
// keeps two of the gold sentence's four content words: matched at a low threshold only
const loose = { context, selection: "A carrot was used.", gold };
const wrong = { context, selection: "Mia planned to bake a lemon cake.", gold };

t.test("recall and precision at each threshold are what matchSentences maps", async (t) => {
  const looseScore = matchSentences(context, loose.selection, { threshold: 0 }).sentences[0]!;
  t.equal(looseScore.text, gold, "the loose answer's best sentence is the gold one");
  const [below, above] = [looseScore.score - 0.01, looseScore.score + 0.01];
  const [low, high] = thresholdSweep([exact, loose, wrong], [below, above]);
  t.same(
    low,
    { threshold: below, recall: 2 / 3, precision: 2 / 3, f1: 2 / 3 },
    "below the loose score: both gold answers map, the wrong one too",
  );
  t.equal(high!.recall, 1 / 3, "above it: only the exact quote maps onto the gold sentence");
  t.equal(high!.precision, 1 / 2, "and the wrong quote still maps (it is exact)");
  t.same(thresholdSweep([], [0.5]), [{ threshold: 0.5, recall: 0, precision: 1, f1: 0 }], "no answers: nothing mapped");
});

t.test("the best F1 wins; a tie goes to the higher threshold", async (t) => {
  const point = (threshold: number, f1: number): ThresholdPoint => ({ threshold, recall: f1, precision: f1, f1 });
  t.equal(bestThreshold([point(0.3, 0.5), point(0.5, 0.7), point(0.7, 0.6)]).threshold, 0.5);
  t.equal(bestThreshold([point(0.3, 0.7), point(0.5, 0.7), point(0.7, 0.6)]).threshold, 0.5, "tie: the higher");
});

t.test("an answer naming most of the context is mapped onto nothing at every threshold, as the server does", async (t) => {
  const copy = { context, selection: context, gold };
  const [point] = thresholdSweep([copy, exact], [0.5]);
  t.same(point, { threshold: 0.5, recall: 1 / 2, precision: 1, f1: 2 / 3 }, "the copy names no sentence, gold or not");
});
