// Which head set and alpha to keep: PASTA's per-task top-k, combined, for each k and alpha of a grid,
// judged on the held-out examples of every task (Zhang et al. sweep k on held-out data too). Every
// point gets the mean target log-likelihood gain over unsteered; the best few of them by that also
// get the share of greedy replies that begin with the target (what the eval judges is generated
// text; generating costs as much as scoring, so not for points the likelihood already rules out).
// The point kept is the best for the task it helps least, so that no task pays for another's gain.
import type { HeadSelection } from "../engine/steering.js";
import type { TargetScorer } from "./scoring.js";
import { combineRankings, headMap, type CombineMode, type HeadRef, type TaskSample } from "./search.js";

export interface SweepGrid {
  topK: readonly number[];
  alpha: readonly number[];
}

/**
 * k and alpha when the user fixes neither: PASTA's handful of heads to a layer's worth, its alpha and a
 * milder one. 6 points (the 5 x 4 grid this replaced doubled the held-out passes and chose k 8 or 16,
 * alpha 0.01 on every swept shipped profile: docs/profiling.md "Defaults").
 */
export const DEFAULT_SWEEP_GRID: SweepGrid = { topK: [4, 8, 16], alpha: [0.01, 0.1] };

export interface TaskHeldOut {
  task: string;
  /** mean (steered - unsteered) target log-likelihood */
  gain: number;
  /** share of greedy replies that begin with the target; null: the point was not among the best by likelihood */
  greedy: number | null;
}

export interface SweepPoint {
  topK: number;
  alpha: number;
  heads: Record<string, number[]>;
  fallback: string | null;
  tasks: TaskHeldOut[];
}

export interface SweepResult {
  grid: SweepGrid;
  /** held-out greedy rate of each task unsteered */
  unsteered: Array<{ task: string; greedy: number }>;
  points: SweepPoint[];
  chosen: SweepPoint;
  criterion: string;
}

/** How many points, the best by likelihood, also get the greedy check. */
export const GREEDY_POINTS = 4;

export const SWEEP_CRITERION = `among the ${GREEDY_POINTS} points with the highest minimum over tasks of the log-likelihood gain (then mean gain, then fewer heads): highest minimum over tasks of the greedy-rate gain over unsteered; then highest minimum over tasks of the log-likelihood gain; then highest mean greedy-rate gain; then highest mean log-likelihood gain; then fewer heads`;

/** Greedy-rate gains of a point over unsteered, per task (a point without the greedy check: none). */
function greedyGains(point: SweepPoint, unsteered: SweepResult["unsteered"]): number[] {
  return point.tasks.map((t, i) => (t.greedy ?? Number.NEGATIVE_INFINITY) - unsteered[i]!.greedy);
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const headCount = (heads: Record<string, number[]>) => Object.values(heads).reduce((n, h) => n + h.length, 0);

/** The points ordered by a key, highest first, compared entry by entry; ties keep the grid's order (smaller k, then smaller alpha). */
function bestFirst(points: readonly SweepPoint[], key: (p: SweepPoint) => number[]): SweepPoint[] {
  return [...points].sort((p, q) => {
    const [a, b] = [key(p), key(q)];
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return b[i]! - a[i]!;
    return 0;
  });
}

/** The point SWEEP_CRITERION keeps; exported for tests. */
export function choosePoint(points: readonly SweepPoint[], unsteered: SweepResult["unsteered"]): SweepPoint {
  return bestFirst(points, (p) => {
    const greedy = greedyGains(p, unsteered);
    const likelihood = p.tasks.map((t) => t.gain);
    return [Math.min(...greedy), Math.min(...likelihood), mean(greedy), mean(likelihood), -headCount(p.heads)];
  })[0]!;
}

/** Best first by likelihood alone: which points get the greedy check. */
function byLikelihood(points: readonly SweepPoint[]): SweepPoint[] {
  return bestFirst(points, (p) => {
    const gains = p.tasks.map((t) => t.gain);
    return [Math.min(...gains), mean(gains), -headCount(p.heads)];
  });
}

/** Held-out passes a sweep takes: one scored pass per point and example, one greedy per example for unsteered and each checked point. */
export function sweepPasses(grid: SweepGrid, heldOut: readonly TaskSample[]): number {
  const examples = heldOut.reduce((n, s) => n + s.examples.length, 0);
  const points = grid.topK.length * grid.alpha.length;
  return points * examples + Math.min(GREEDY_POINTS, points) * examples + examples * 2;
}

export async function sweepHeldOut(
  scorer: TargetScorer,
  rankings: HeadRef[][],
  combine: CombineMode,
  heldOut: readonly TaskSample[],
  grid: SweepGrid,
): Promise<SweepResult> {
  const unsteered = [];
  for (const sample of heldOut) unsteered.push({ task: sample.name, greedy: await scorer.greedyRate(sample.examples, null) });
  const points: SweepPoint[] = [];
  for (const topK of grid.topK) {
    const { heads, fallback } = combineRankings(rankings, topK, combine);
    const selection: HeadSelection = headMap(heads);
    for (const alpha of grid.alpha) {
      const tasks: TaskHeldOut[] = [];
      for (const sample of heldOut) {
        const [gain] = await scorer.meanGains(sample.examples, [selection], alpha);
        tasks.push({ task: sample.name, gain: gain!, greedy: null });
      }
      points.push({ topK, alpha, heads: headMap(heads), fallback, tasks });
    }
  }
  const checked = byLikelihood(points).slice(0, GREEDY_POINTS);
  for (const point of checked) {
    for (const [i, sample] of heldOut.entries())
      point.tasks[i]!.greedy = await scorer.greedyRate(sample.examples, point.heads, point.alpha);
  }
  return { grid, unsteered, points, chosen: choosePoint(checked, unsteered), criterion: SWEEP_CRITERION };
}
