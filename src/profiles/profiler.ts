// Head profiling: which attention heads, steered, make each task's target more likely. Independent
// of the CLI, so that the server can profile a model it has loaded (`serve --profile auto`).
import { z } from "zod";
import type { SteeringEngine } from "../engine/engine.js";
import { DEFAULT_ALPHA } from "../engine/steering.js";
import { ProfileError } from "./errors.js";
import { TargetScorer } from "./scoring.js";
import {
  coarseToFineSearch,
  headMap,
  perHeadSearch,
  plannedPasses,
  type CombineMode,
  type ProfileMethod,
  type TaskSearchScores,
} from "./search.js";
import { sweepHeldOut, sweepPasses, type SweepGrid, type SweepResult } from "./sweep.js";
import { splitExamples, taskDigest, type Task } from "./tasks.js";
import type { ChatTemplate } from "../prompt/chatTemplate.js";

export type { CombineMode, HeadRef, ProfileMethod } from "./search.js";
export { headMap } from "./search.js";
export { ProfileError } from "./errors.js";

/**
 * Fast enough for the models people run (issue #25's targets on 2 cores: Qwen2.5-Coder-0.5B in 15
 * minutes, 1.5B in 45): coarse-to-fine on 6 profiling examples per task, layers ranked on 4. On
 * Qwen 0.5B the search before (every example, layers ranked on 12) took twice the search passes and
 * the full per-head search (`method: "pasta"`) 7.5 times; the slower search's heads eval within 2
 * of 48 items of these (docs/profiling.md "Defaults").
 */
export const PROFILE_DEFAULTS = {
  method: "coarse-to-fine" as ProfileMethod,
  /** heads kept per task before the tasks are combined */
  topK: 4,
  combine: "intersection" as CombineMode,
  seed: 0,
  alpha: DEFAULT_ALPHA,
  /** coarse-to-fine: layers searched head by head */
  keepLayers: 2,
  /**
   * coarse-to-fine: profiling examples per task that rank the layers (steering a whole layer moves
   * the target far more than one head does, so a few examples rank layers; heads get them all)
   */
  coarseExamples: 4,
  /** profiling examples per task, at most; Infinity: all of them */
  examples: 6,
};

export interface ProfileOptions {
  tasks: Task[];
  /** render examples in this chat template, as the model is served (renderExample); default: raw text */
  template?: ChatTemplate | null;
  method?: ProfileMethod;
  topK?: number;
  combine?: CombineMode;
  /** splits each task's examples into profiling and held-out ones (splitExamples) */
  seed?: number;
  alpha?: number;
  /** at most this many profiling examples per task (Infinity: all of them) */
  examples?: number;
  keepLayers?: number;
  coarseExamples?: number;
  /** also score the chosen heads on the held-out examples (default true) */
  evaluate?: boolean;
  /**
   * choose k and alpha on the held-out examples (sweep.ts) from this grid; false: the given topK and
   * alpha as they are. Default false (the search alone); the CLI sweeps what the user does not fix.
   */
  sweep?: SweepGrid | false;
  /** forward passes done and planned (the plan can shrink once coarse-to-fine knows its layers) */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface TaskSummary {
  name: string;
  file?: string;
  /** taskDigest: which examples, whatever the file is called */
  sha256: string;
  examples: number;
  profiling: number;
  heldOut: number;
}

export interface HeldOutScore {
  task: string;
  examples: number;
  /** mean target log-likelihood over the held-out examples */
  unsteered: number;
  steered: number;
}

export interface ProfileResult {
  /** how examples were rendered: in the model's chat template, or as raw text */
  format: "chat" | "raw";
  method: ProfileMethod;
  topK: number;
  combine: CombineMode;
  seed: number;
  alpha: number;
  mode: "exclude";
  headsPerLayer: number[];
  tasks: TaskSummary[];
  /** per task: the mean unsteered target log-likelihood of its profiling examples and each candidate's mean gain over it */
  scores: Array<TaskSearchScores & { unsteered: number }>;
  keptLayers?: number[];
  forwardPasses: {
    /** to choose the heads, unsteered passes included */
    used: number;
    /** what the full per-head search takes on the same examples: (heads + 1) x examples */
    fullSearch: number;
    /** to score the chosen heads on the held-out examples */
    heldOut: number;
  };
  /** the chosen heads, {"<layer>": [head, ...]} */
  heads: Record<string, number[]>;
  /** why the heads are not the plain intersection of the tasks' top k, or null */
  fallback: string | null;
  heldOut: HeldOutScore[] | null;
  /** how topK and alpha were chosen, when they were swept */
  sweep: SweepResult | null;
}

const positiveInteger = z.number().int("must be a positive integer").min(1, "must be a positive integer");

/** The numeric and named settings of ProfileOptions, with their defaults. */
const profileSettings = z.object({
  method: z.enum(["pasta", "coarse-to-fine"]).default(PROFILE_DEFAULTS.method),
  topK: positiveInteger.default(PROFILE_DEFAULTS.topK),
  combine: z.enum(["intersection", "union"]).default(PROFILE_DEFAULTS.combine),
  seed: z.number().int("must be an integer").default(PROFILE_DEFAULTS.seed),
  alpha: z
    .number()
    .refine((a) => a > 0 && a <= 1, "must be in (0, 1] (exclude mode)")
    .default(PROFILE_DEFAULTS.alpha),
  keepLayers: positiveInteger.default(PROFILE_DEFAULTS.keepLayers),
  coarseExamples: positiveInteger.default(PROFILE_DEFAULTS.coarseExamples),
  examples: z.union([positiveInteger, z.literal(Number.POSITIVE_INFINITY)]).default(PROFILE_DEFAULTS.examples),
});

/** The options' settings with defaults filled in; the first bad one is a ProfileError naming it. */
function profileSettingsOf(options: ProfileOptions): z.infer<typeof profileSettings> {
  const parsed = profileSettings.safeParse(options);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const key = issue.path.join(".");
  throw new ProfileError(`${key} ${issue.message}, got ${JSON.stringify(options[key as keyof ProfileOptions])}`);
}

export async function profileHeads(engine: SteeringEngine, options: ProfileOptions): Promise<ProfileResult> {
  const { method, topK, combine, seed, alpha, keepLayers, coarseExamples, examples } = profileSettingsOf(options);
  if (engine.unsupportedReason) throw new ProfileError(`this model cannot be steered: ${engine.unsupportedReason}`);
  if (options.tasks.length === 0) throw new ProfileError("profiling needs at least one task");
  const headsPerLayer = [...engine.headsPerLayer];

  const splits = options.tasks.map((task) => {
    const { profiling, heldOut } = splitExamples(task, seed);
    return { task, profiling: profiling.slice(0, examples), heldOut };
  });
  const samples = splits.map((s) => ({ name: s.task.name, examples: s.profiling }));
  const evaluate = options.evaluate ?? true;
  const grid = options.sweep || null;
  const heldOutSamples = splits.filter((s) => s.heldOut.length > 0).map((s) => ({ name: s.task.name, examples: s.heldOut }));
  if (grid && heldOutSamples.length < splits.length) throw new ProfileError("sweeping k and alpha needs held-out examples in every task");
  const heldOutExamples = splits.reduce((n, s) => n + s.heldOut.length, 0);
  // the sweep scores every held-out example unsteered once; the final check then needs only the steered pass
  const heldOutPasses = (grid ? sweepPasses(grid, heldOutSamples) : 0) + (evaluate ? (grid ? 1 : 2) * heldOutExamples : 0);
  const searchOptions = { topK, combine, keepLayers, coarseExamples };
  let total = plannedPasses(method, samples, headsPerLayer, searchOptions) + heldOutPasses;
  let done = 0;
  const progress = () => options.onProgress?.(done, total);
  const scorer = new TargetScorer(engine, {
    alpha,
    onPass: () => {
      done++;
      progress();
    },
    ...(options.signal ? { signal: options.signal } : {}),
    template: options.template ?? null,
  });
  progress();

  const search = method === "pasta" ? perHeadSearch : coarseToFineSearch;
  const found = await search(scorer, samples, headsPerLayer, searchOptions);
  const used = scorer.passes;
  if (total !== used + heldOutPasses) {
    total = used + heldOutPasses;
    progress();
  }

  const sweep = grid
    ? await sweepHeldOut(
        scorer,
        found.scores.map((s) => s.ranking),
        combine,
        heldOutSamples,
        grid,
      )
    : null;
  const chosen = sweep?.chosen;
  const heads = chosen?.heads ?? headMap(found.heads);
  const chosenAlpha = chosen?.alpha ?? alpha;
  const scores = [];
  // the search scored every profiling example unsteered: no pass here
  for (const [i, s] of found.scores.entries()) scores.push({ ...s, unsteered: await scorer.mean(samples[i]!.examples, null) });
  let heldOut: HeldOutScore[] | null = null;
  if (evaluate) {
    heldOut = [];
    for (const { task, heldOut: examples } of splits) {
      if (examples.length === 0) continue;
      heldOut.push({
        task: task.name,
        examples: examples.length,
        unsteered: await scorer.mean(examples, null),
        steered: await scorer.mean(examples, heads, chosenAlpha),
      });
    }
  }
  const totalHeads = headsPerLayer.reduce((a, b) => a + b, 0);
  const profilingExamples = samples.reduce((n, s) => n + s.examples.length, 0);
  return {
    format: options.template ? "chat" : "raw",
    method,
    topK: chosen?.topK ?? topK,
    combine,
    seed,
    alpha: chosenAlpha,
    mode: "exclude",
    headsPerLayer,
    tasks: splits.map(({ task, profiling, heldOut }) => ({
      name: task.name,
      ...(task.file ? { file: task.file } : {}),
      sha256: taskDigest(task),
      examples: task.examples.length,
      profiling: profiling.length,
      heldOut: heldOut.length,
    })),
    scores,
    ...(found.keptLayers ? { keptLayers: found.keptLayers } : {}),
    forwardPasses: { used, fullSearch: profilingExamples * (totalHeads + 1), heldOut: scorer.passes - used },
    heads,
    fallback: chosen ? chosen.fallback : found.fallback,
    heldOut,
    sweep,
  };
}
