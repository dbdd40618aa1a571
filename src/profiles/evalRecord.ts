// A profile's eval record (`pasta-server eval --record`): the runs that measured it, newest last.
// Every eval run starts from a cold cache, so cells of separate runs add up to one table; a run
// that measures a cell again (the same task, metric and arm) replaces the earlier value, and a run
// whose cells have all been measured again leaves the record. Recording one family thus keeps what
// earlier runs measured of the others.
import { z } from "zod";
import { ProfileError } from "./errors.js";

const row = z
  .object({
    task: z.string(),
    metric: z.string(),
    items: z.number().int().nonnegative(),
    by_arm: z.record(z.string(), z.number().nullable()),
  })
  .strict();
const run = z.object({ command: z.string(), date: z.string(), machine: z.string(), summary: z.array(row) }).strict();

export type EvalRecordRow = z.infer<typeof row>;
export type EvalRecordRun = z.infer<typeof run>;

/** `previous`: the profile's `eval` field as read (absent, one run as written before 2026-12-07, or a list of runs). */
export function addEvalRun(previous: unknown, latest: EvalRecordRun): EvalRecordRun[] {
  const earlier = readEvalRecord(previous);
  const measured = new Set(latest.summary.flatMap((r) => Object.keys(r.by_arm).map((arm) => cellKey(r.task, r.metric, arm))));
  const kept = earlier.flatMap((old) => {
    const summary = old.summary.flatMap((r) => {
      const byArm = Object.fromEntries(Object.entries(r.by_arm).filter(([arm]) => !measured.has(cellKey(r.task, r.metric, arm))));
      return Object.keys(byArm).length > 0 ? [{ ...r, by_arm: byArm }] : [];
    });
    return summary.length > 0 ? [{ ...old, summary }] : [];
  });
  return [...kept, latest];
}

/** The runs of a profile's `eval` field; a field this code did not write is an error (checked before a run with --record starts). */
export function readEvalRecord(previous: unknown): EvalRecordRun[] {
  if (previous === undefined) return [];
  const parsed = z.union([run, z.array(run)]).safeParse(previous);
  // a record this code did not write is not dropped silently: the user decides what to keep
  if (!parsed.success)
    throw new ProfileError(
      `the profile's "eval" field is not a record pasta-server eval --record writes (runs of {command, date, machine, summary}): ` +
        "move it out of the file, or record into a copy of it",
    );
  return Array.isArray(parsed.data) ? parsed.data : [parsed.data];
}

const cellKey = (task: string, metric: string, arm: string) => JSON.stringify([task, metric, arm]);
