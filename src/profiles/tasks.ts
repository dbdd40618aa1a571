// Profiling tasks: JSONL files of {"context", "emphasis", "target"} examples (docs/profiling.md),
// the built-in ones under prompts/tasks/, and their deterministic profiling / held-out split.
import { UserError } from "../errors.js";
import { readdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { basename, join, relative } from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT } from "../util/packageRoot.js";
import { hashString, seededRandom, shuffled } from "../util/random.js";

export interface TaskExample {
  /** the prompt, emphasis included */
  context: string;
  /** the substring of the context to emphasize (its first occurrence) */
  emphasis: string;
  /** the continuation steering should make likely, scored right after the context */
  target: string;
}

export interface Task {
  name: string;
  /** where it was read from, if from a file (built-ins: relative to the package, prompts/tasks/...) */
  file?: string;
  examples: TaskExample[];
}

export class TaskFileError extends UserError {
  override name = "TaskFileError";
}

const exampleSchema = z.object({
  context: z.string().min(1),
  emphasis: z.string().min(1),
  target: z.string().min(1),
});

export const BUILTIN_TASKS_DIR = join(PACKAGE_ROOT, "prompts", "tasks");

/** Parses JSONL text (blank lines and lines starting with // are skipped). */
export function parseTaskExamples(text: string, source: string): TaskExample[] {
  const examples: TaskExample[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("//")) continue;
    const where = `${source}:${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      throw new TaskFileError(`${where}: not JSON: ${(err as Error).message}`);
    }
    const parsed = exampleSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new TaskFileError(
        `${where}: expected {"context", "emphasis", "target"} strings: ${issue?.path.join(".") || "line"}: ${issue?.message}`,
      );
    }
    const example = parsed.data;
    if (!example.context.includes(example.emphasis)) throw new TaskFileError(`${where}: "emphasis" is not a substring of "context"`);
    examples.push(example);
  }
  if (examples.length === 0) throw new TaskFileError(`${source} has no examples`);
  return examples;
}

export function loadTaskFile(file: string): Task {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new TaskFileError(`cannot read task file ${file}: ${(err as Error).message}`);
  }
  return { name: basename(file).replace(/\.jsonl$/i, ""), file, examples: parseTaskExamples(text, file) };
}

/** The built-in tasks (prompts/tasks/*.jsonl), in file-name order. */
export function loadBuiltinTasks(): Task[] {
  const files = readdirSync(BUILTIN_TASKS_DIR)
    .filter((f) => f.endsWith(".jsonl"))
    .sort();
  // recorded relative to the package: a profile does not depend on where it is installed
  return files.map((f) => ({ ...loadTaskFile(join(BUILTIN_TASKS_DIR, f)), file: relative(PACKAGE_ROOT, join(BUILTIN_TASKS_DIR, f)) }));
}

/** `builtin` and/or task files, comma-separated (the CLI's --tasks). */
export function loadTasks(spec: string): Task[] {
  const tasks = spec
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .flatMap((item) => (item === "builtin" ? loadBuiltinTasks() : [loadTaskFile(item)]));
  if (tasks.length === 0) throw new TaskFileError("no task given");
  const names = tasks.map((t) => t.name);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) throw new TaskFileError(`two tasks are named ${JSON.stringify(duplicate)} (a task is named after its file)`);
  return tasks;
}

/** sha256 of a task's examples (not of its file: formatting and comments do not count). */
export function taskDigest(task: Task): string {
  return createHash("sha256")
    .update(JSON.stringify(task.examples.map((e) => [e.context, e.emphasis, e.target])))
    .digest("hex");
}

/**
 * Splits a task's examples into a profiling half (heads are chosen on it; the larger half when the
 * count is odd) and a held-out half (to check the choice), shuffled by the seed and the task name.
 */
export function splitExamples(task: Task, seed: number): { profiling: TaskExample[]; heldOut: TaskExample[] } {
  const order = shuffled(task.examples, seededRandom(hashString(task.name, seed)));
  const half = Math.ceil(order.length / 2);
  return { profiling: order.slice(0, half), heldOut: order.slice(half) };
}
