// Profiling task files (src/profiles/tasks.ts): the built-in tasks, the deterministic split, parse
// errors that name the line, and task lists of built-ins and files.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { loadBuiltinTasks, loadTasks, parseTaskExamples, splitExamples, TaskFileError } from "../../../src/profiles/tasks.js";

t.test("task files", async (t) => {
  const tasks = loadBuiltinTasks();
  t.same(
    tasks.map((task) => task.name),
    ["counterfactual", "first_person", "json_format", "key_sentence"],
    "four built-in tasks",
  );
  for (const task of tasks) {
    t.ok(task.examples.length >= 16 && task.examples.length <= 24, `${task.name}: ${task.examples.length} examples`);
    t.ok(
      task.examples.every((e) => e.context.includes(e.emphasis) && e.target.trim() !== ""),
      `${task.name}: every emphasis is in its context`,
    );
    t.match(task.file, /^prompts\/tasks\/.*\.jsonl$/, `${task.name}: recorded relative to the package`);
  }

  const task = tasks[0]!;
  const split = splitExamples(task, 0);
  t.same(splitExamples(task, 0), split, "the split is deterministic for a seed");
  t.equal(split.profiling.length, Math.ceil(task.examples.length / 2), "profiling gets the larger half");
  t.same(
    [...split.profiling, ...split.heldOut].sort((a, b) => a.context.localeCompare(b.context)),
    [...task.examples].sort((a, b) => a.context.localeCompare(b.context)),
    "the halves are disjoint and cover the task",
  );
  t.not(JSON.stringify(splitExamples(task, 1).profiling), JSON.stringify(split.profiling), "another seed, another split");

  t.throws(() => parseTaskExamples('{"context": "a b", "emphasis": "c", "target": " d"}', "x.jsonl"), {
    name: "TaskFileError",
    message: /x\.jsonl:1: "emphasis" is not a substring/,
  });
  t.throws(() => parseTaskExamples('\n{"context": "a b"', "x.jsonl"), { message: /x\.jsonl:2: not JSON/ });
  t.throws(() => parseTaskExamples('{"context": "a b", "emphasis": "a"}', "x.jsonl"), { message: /x\.jsonl:1: .*target/ });
  t.throws(() => parseTaskExamples("// only a comment\n", "x.jsonl"), { message: /has no examples/ });
  t.same(
    parseTaskExamples('// a comment\n\n{"context": "a b", "emphasis": "a", "target": " c", "note": "ignored"}\n', "x.jsonl"),
    [{ context: "a b", emphasis: "a", target: " c" }],
    "comments, blank lines and extra fields",
  );

  const dir = mkdtempSync(join(tmpdir(), "pasta-tasks-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "mine.jsonl");
  writeFileSync(file, '{"context": "a b", "emphasis": "a", "target": " c"}\n');
  t.same(
    loadTasks(`builtin,${file}`).map((x) => x.name),
    ["counterfactual", "first_person", "json_format", "key_sentence", "mine"],
    "builtin plus a file",
  );
  t.throws(() => loadTasks(`${file},${file}`), TaskFileError, "two tasks of one name");
  t.throws(() => loadTasks(join(dir, "missing.jsonl")), { message: /cannot read task file/ });
});
