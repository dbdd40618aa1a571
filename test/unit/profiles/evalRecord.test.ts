// A profile's eval record (src/profiles/evalRecord.ts): recording a run keeps what earlier runs
// measured and this one did not, cell by cell (task, metric, arm).
import t from "tap";
import { addEvalRun, readEvalRecord, type EvalRecordRun } from "../../../src/profiles/evalRecord.js";
import { ProfileError } from "../../../src/profiles/errors.js";

const run = (command: string, summary: EvalRecordRun["summary"]): EvalRecordRun => ({
  command,
  date: "2026-12-07T00:00:00.000Z",
  machine: "2 x test CPU, linux-x64",
  summary,
});

const pronoun = run("pasta-server eval --tasks pronoun_change --arms unsteered,profile --record", [
  { task: "pronoun_change", metric: "person", items: 48, by_arm: { unsteered: 0.0625, profile: 0.3125 } },
]);
const openBook = run("pasta-server eval --tasks open_book --arms unsteered,profile --record", [
  { task: "open_book", metric: "efficacy", items: 48, by_arm: { unsteered: 0.79, profile: 0.92 } },
  { task: "open_book", metric: "correct", items: 48, by_arm: { unsteered: 0.73, profile: 0.92 } },
]);

t.test("a run of other tasks is added after the earlier ones, which stay whole", async (t) => {
  t.same(addEvalRun(undefined, pronoun), [pronoun], "the first run");
  t.same(addEvalRun([pronoun], openBook), [pronoun, openBook]);
});

t.test("the record written before runs were kept (one run, not a list) is the first run", async (t) => {
  t.same(addEvalRun(pronoun, openBook), [pronoun, openBook]);
});

t.test("a cell measured again replaces the earlier value; the earlier run keeps its other cells", async (t) => {
  const again = run("pasta-server eval --tasks open_book --limit 16 --arms auto,profile --record", [
    { task: "open_book", metric: "correct", items: 16, by_arm: { profile: 0.75, auto: 0.625 } },
    { task: "open_book", metric: "auto_gold", items: 16, by_arm: { auto: 0.5 } },
  ]);
  t.same(addEvalRun([pronoun, openBook], again), [
    pronoun,
    {
      ...openBook,
      summary: [openBook.summary[0], { task: "open_book", metric: "correct", items: 48, by_arm: { unsteered: 0.73 } }],
    },
    again,
  ]);
});

t.test("a run whose every cell was measured again leaves the record", async (t) => {
  const whole = run("pasta-server eval --tasks pronoun_change,open_book --arms unsteered,profile --record", [
    ...pronoun.summary,
    ...openBook.summary,
  ]);
  t.same(addEvalRun([pronoun, openBook], whole), [whole]);
});

t.test("a field this code did not write is an error, not dropped", async (t) => {
  for (const bad of [{ command: "x" }, [pronoun, { ...openBook, summary: "none" }], "2026-12-07", 3]) {
    t.throws(() => readEvalRecord(bad), ProfileError);
    t.throws(() => addEvalRun(bad, pronoun), /the profile's "eval" field is not a record pasta-server eval --record writes/);
  }
  t.same(readEvalRecord(undefined), [], "a profile with no record yet");
});
