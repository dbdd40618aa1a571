// Search strategies over attention heads, and how per-task rankings become one head set.
//   pasta:          every head steered alone on every task (Zhang et al., 2024, multi-task profiling)
//   coarse-to-fine: whole layers first, then single heads inside the best layers only (AutoPASTA)
import type { TaskExample } from "./tasks.js";
import type { TargetScorer } from "./scoring.js";

export type ProfileMethod = "pasta" | "coarse-to-fine";
export type CombineMode = "intersection" | "union";

export interface HeadRef {
  layer: number;
  head: number;
}

/** A task's profiling examples. */
export interface TaskSample {
  name: string;
  examples: readonly TaskExample[];
}

export interface TaskSearchScores {
  task: string;
  /** mean gain of each layer steered whole; null where not evaluated (coarse-to-fine only) */
  layers?: Array<number | null>;
  /** mean gain of each head steered alone, [layer][head]; null where not evaluated */
  heads: Array<Array<number | null>>;
  /** the evaluated heads, best first */
  ranking: HeadRef[];
}

export interface SearchResult {
  scores: TaskSearchScores[];
  /** coarse-to-fine: the layers searched head by head, best first */
  keptLayers?: number[];
  heads: HeadRef[];
  /** why the chosen heads are not the plain intersection, or null */
  fallback: string | null;
}

export interface SearchOptions {
  topK: number;
  combine: CombineMode;
  /** coarse-to-fine: how many layers to search head by head */
  keepLayers: number;
  /** coarse-to-fine: how many of each task's examples rank the layers (the first ones) */
  coarseExamples: number;
}

const key = (h: HeadRef) => `${h.layer}:${h.head}`;

/** Heads as a profile and a request write them: {"<layer>": [head, ...]}, sorted. */
export function headMap(heads: readonly HeadRef[]): Record<string, number[]> {
  const map: Record<string, number[]> = {};
  for (const { layer, head } of [...heads].sort((a, b) => a.layer - b.layer || a.head - b.head)) (map[String(layer)] ??= []).push(head);
  return map;
}
const byIndex = (a: HeadRef, b: HeadRef) => a.layer - b.layer || a.head - b.head;

/** Best first; ties (equal gains) go to the lower layer, then the lower head. */
function rank(heads: HeadRef[], gain: (h: HeadRef) => number): HeadRef[] {
  return [...heads].sort((a, b) => gain(b) - gain(a) || byIndex(a, b));
}

async function scoreHeads(
  scorer: TargetScorer,
  sample: TaskSample,
  heads: readonly HeadRef[],
  headsPerLayer: readonly number[],
): Promise<Array<Array<number | null>>> {
  const grid = headsPerLayer.map((n) => Array<number | null>(n).fill(null));
  const gains = await scorer.meanGains(
    sample.examples,
    heads.map((h) => ({ [h.layer]: [h.head] })),
  );
  for (const [i, h] of heads.entries()) grid[h.layer]![h.head] = gains[i]!;
  return grid;
}

/** Mean rank (0 = best) of each item over several rankings of the same items. */
function meanRanks(rankings: HeadRef[][]): Map<string, number> {
  const sums = new Map<string, number>();
  for (const ranking of rankings)
    ranking.forEach((h, i) => {
      sums.set(key(h), (sums.get(key(h)) ?? 0) + i);
    });
  return new Map([...sums].map(([k, s]) => [k, s / rankings.length]));
}

/**
 * One head set from per-task rankings: the intersection (or union) of each task's top k. An empty
 * intersection falls back to the k heads with the best mean rank over the tasks.
 */
export function combineRankings(rankings: HeadRef[][], topK: number, combine: CombineMode): { heads: HeadRef[]; fallback: string | null } {
  const tops = rankings.map((r) => r.slice(0, topK));
  if (combine === "union") {
    const union = new Map(tops.flat().map((h) => [key(h), h]));
    return { heads: [...union.values()].sort(byIndex), fallback: null };
  }
  const common = tops[0]!.filter((h) => tops.every((top) => top.some((o) => key(o) === key(h))));
  if (common.length > 0) return { heads: common.sort(byIndex), fallback: null };
  const ranks = meanRanks(rankings);
  const best = rank(rankings[0]!, (h) => -ranks.get(key(h))!).slice(0, topK);
  return {
    heads: best.sort(byIndex),
    fallback: `the intersection of the ${rankings.length} tasks' top-${topK} heads is empty; chose the ${best.length} heads with the best mean rank over the tasks instead`,
  };
}

function allHeads(headsPerLayer: readonly number[], layers?: readonly number[]): HeadRef[] {
  return (layers ?? headsPerLayer.map((_, l) => l)).flatMap((layer) =>
    Array.from({ length: headsPerLayer[layer]! }, (_, head) => ({ layer, head })),
  );
}

/** Forward passes each strategy will take (unsteered passes included), for progress. */
export function plannedPasses(
  method: ProfileMethod,
  samples: readonly TaskSample[],
  headsPerLayer: readonly number[],
  options: Pick<SearchOptions, "keepLayers" | "coarseExamples">,
): number {
  const examples = samples.reduce((n, s) => n + s.examples.length, 0);
  const totalHeads = headsPerLayer.reduce((a, b) => a + b, 0);
  if (method === "pasta") return examples * (1 + totalHeads);
  const coarse = samples.reduce((n, s) => n + Math.min(s.examples.length, options.coarseExamples), 0);
  const kept = Math.min(options.keepLayers, headsPerLayer.length);
  // the widest layers, as an upper bound before the layers are known
  const keptHeads = [...headsPerLayer]
    .sort((a, b) => b - a)
    .slice(0, kept)
    .reduce((a, b) => a + b, 0);
  return examples * (1 + keptHeads) + coarse * headsPerLayer.length;
}

/** PASTA: every head alone on every task. */
export async function perHeadSearch(
  scorer: TargetScorer,
  samples: readonly TaskSample[],
  headsPerLayer: readonly number[],
  options: SearchOptions,
): Promise<SearchResult> {
  const candidates = allHeads(headsPerLayer);
  const scores: TaskSearchScores[] = [];
  for (const sample of samples) {
    const heads = await scoreHeads(scorer, sample, candidates, headsPerLayer);
    scores.push({ task: sample.name, heads, ranking: rank(candidates, (h) => heads[h.layer]![h.head]!) });
  }
  return {
    scores,
    ...combineRankings(
      scores.map((s) => s.ranking),
      options.topK,
      options.combine,
    ),
  };
}

/** AutoPASTA coarse-to-fine: rank layers steered whole, then heads inside the best layers. */
export async function coarseToFineSearch(
  scorer: TargetScorer,
  samples: readonly TaskSample[],
  headsPerLayer: readonly number[],
  options: SearchOptions,
): Promise<SearchResult> {
  const layers = headsPerLayer.map((_, layer) => ({ layer, head: 0 }));
  const layerScores: Array<Array<number | null>> = [];
  const layerRankings: HeadRef[][] = [];
  for (const sample of samples) {
    const gains = await scorer.meanGains(
      sample.examples.slice(0, options.coarseExamples),
      layers.map(({ layer }) => [layer]),
    );
    layerScores.push(gains);
    layerRankings.push(rank(layers, (l) => gains[l.layer]!));
  }
  const ranks = meanRanks(layerRankings);
  const kept = rank(layers, (l) => -ranks.get(key(l))!)
    .slice(0, Math.max(1, options.keepLayers))
    .map((l) => l.layer);

  const candidates = allHeads(
    headsPerLayer,
    [...kept].sort((a, b) => a - b),
  );
  const scores: TaskSearchScores[] = [];
  for (const [i, sample] of samples.entries()) {
    const heads = await scoreHeads(scorer, sample, candidates, headsPerLayer);
    scores.push({ task: sample.name, layers: layerScores[i]!, heads, ranking: rank(candidates, (h) => heads[h.layer]![h.head]!) });
  }
  return {
    scores,
    keptLayers: kept,
    ...combineRankings(
      scores.map((s) => s.ranking),
      options.topK,
      options.combine,
    ),
  };
}
