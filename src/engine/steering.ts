// Steering spec -> what the native patch needs: the bias log(alpha), the KV positions that get it,
// and a [layer][head] mask. PASTA's three modes (Zhang et al., 2024), with several spans as one union.
import type { NativeSteering } from "./binding.js";
import { SteeringError } from "./errors.js";

export type SteeringMode = "exclude" | "include" | "generation";

export { DEFAULT_ALPHA } from "../defaults.js";

/** [start, end) token indices into the evaluated sequence (BOS, if any, is 0). */
export interface TokenRange {
  start: number;
  end: number;
}

/** Steered query heads: layer -> heads, validated against the model. */
export type HeadSet = ReadonlyMap<number, readonly number[]>;

/** As in PASTA's head configs: {"layer": [heads]} or a list of layers (all their heads). */
export type HeadSelection = Record<string, number[]> | number[];

export interface SteeringSpec {
  /** emphasized tokens, sorted and disjoint */
  emphasized: TokenRange[];
  heads: HeadSet;
  alpha: number;
  mode: SteeringMode;
  /**
   * Target-share steering (exclude mode): instead of log(alpha) everywhere, each steered head and query
   * row gets the bias that gives the emphasized tokens share targetShare of its attention, computed
   * natively from its unsteered attention (llama_steering_set_target_share); alpha is the floor.
   */
  targetShare?: number;
}

export function resolveHeads(selection: HeadSelection, headsPerLayer: readonly number[]): HeadSet {
  const nLayers = headsPerLayer.length;
  const layerIndex = (raw: string | number): number => {
    const layer = typeof raw === "number" ? raw : /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(layer) || layer < 0 || layer >= nLayers) {
      throw new SteeringError("heads", `: layer ${JSON.stringify(raw)} is out of range: this model has layers 0-${nLayers - 1}`);
    }
    return layer;
  };
  const heads = new Map<number, number[]>();
  if (Array.isArray(selection)) {
    for (const raw of selection) {
      const layer = layerIndex(raw);
      heads.set(
        layer,
        Array.from({ length: headsPerLayer[layer]! }, (_, h) => h),
      );
    }
  } else {
    for (const [raw, list] of Object.entries(selection)) {
      const layer = layerIndex(raw);
      const n = headsPerLayer[layer]!;
      for (const h of list) {
        if (!Number.isInteger(h) || h < 0 || h >= n) {
          throw new SteeringError("heads", `: head ${h} of layer ${layer} is out of range: layer ${layer} has query heads 0-${n - 1}`);
        }
      }
      heads.set(
        layer,
        [...new Set([...(heads.get(layer) ?? []), ...list])].sort((a, b) => a - b),
      );
    }
  }
  if ([...heads.values()].every((h) => h.length === 0)) throw new SteeringError("heads", ": no head is selected");
  return heads;
}

export function validateAlpha(alpha: number, mode: SteeringMode): void {
  if (!Number.isFinite(alpha) || alpha <= 0) throw new SteeringError("alpha", ` must be a positive number, got ${alpha}`);
  if (mode !== "include" && alpha > 1) {
    throw new SteeringError("alpha", ` must be in (0, 1] in ${mode} mode (it scales down attention outside the emphasis), got ${alpha}`);
  }
}

/** alpha: the strongest bias target-share steering may use, log(alpha): it must scale weight down. */
export function validateTargetShare(targetShare: number, mode: SteeringMode, alpha: number): void {
  if (!Number.isFinite(targetShare) || targetShare <= 0 || targetShare >= 1) {
    throw new SteeringError("targetShare", ` must be a number in (0, 1), got ${targetShare}`);
  }
  if (mode !== "exclude") {
    throw new SteeringError(
      "targetShare",
      ` works in exclude mode only (it sets the weight of the tokens outside the emphasis), got mode ${mode}`,
    );
  }
  if (!(alpha < 1)) {
    throw new SteeringError("alpha", ` is the strongest bias target-share steering may use and must be below 1, got ${alpha}`);
  }
}

function complement(ranges: readonly TokenRange[], length: number): TokenRange[] {
  const out: TokenRange[] = [];
  let cursor = 0;
  for (const r of ranges) {
    if (r.start > cursor) out.push({ start: cursor, end: r.start });
    cursor = Math.max(cursor, r.end);
  }
  if (cursor < length) out.push({ start: cursor, end: length });
  return out;
}

/**
 * KV positions that receive the bias (steeringBias). Positions equal token indices: prompts start at 0.
 * - exclude: every prompt token outside the emphasis gets log(alpha) (PASTA's default).
 * - include: as the authors' library does it: log(alpha) on the emphasized tokens and -log(alpha) on
 *   the whole prompt, so the emphasized tokens keep their weight relative to generated tokens and the
 *   rest of the prompt gets -log(alpha): exactly exclude with 1/alpha.
 * - generation: the whole prompt gets log(alpha), relative to the generated tokens.
 */
export function biasedPositions(spec: SteeringSpec, promptLength: number): TokenRange[] {
  switch (spec.mode) {
    case "exclude":
    case "include":
      return complement(spec.emphasized, promptLength);
    case "generation":
      return [{ start: 0, end: promptLength }];
  }
}

/** The bias added to the scores at biasedPositions. */
export function steeringBias(spec: SteeringSpec): number {
  return spec.mode === "include" ? -Math.log(spec.alpha) : Math.log(spec.alpha);
}

/**
 * How many leading positions are computed exactly as without steering: every query there sees a
 * uniform bias (softmax is shift-invariant), so a cached prefix this long can be reused. None on a
 * model with attention sinks (`shiftInvariant` false): the sink logit takes no bias, so a uniform
 * bias on the positions moves weight between them and the sink.
 */
export function steeringFreePrefix(spec: SteeringSpec | undefined, promptLength: number, shiftInvariant: boolean): number {
  if (!spec) return Number.POSITIVE_INFINITY;
  if (!shiftInvariant) return 0;
  if (spec.mode === "generation") return promptLength;
  return spec.emphasized[0]?.start ?? promptLength;
}

/** `diagnostics`: also measure each steered layer's attention share on the emphasized tokens (diagnostics.ts). */
export function toNativeSteering(
  spec: SteeringSpec,
  promptLength: number,
  headsPerLayer: readonly number[],
  diagnostics = false,
): NativeSteering {
  const ranges = biasedPositions(spec, promptLength);
  const emphasis = () => Int32Array.from(spec.emphasized.flatMap((r) => [r.start, r.end]));
  const headMax = Math.max(...headsPerLayer);
  const headMask = new Uint8Array(headsPerLayer.length * headMax);
  for (const [layer, heads] of spec.heads) for (const h of heads) headMask[layer * headMax + h] = 1;
  return {
    bias: steeringBias(spec),
    ranges: Int32Array.from(ranges.flatMap((r) => [r.start, r.end])),
    headMask,
    ...(diagnostics ? { diagnostics: emphasis() } : {}),
    ...(spec.targetShare !== undefined ? { target: { share: spec.targetShare, emphasis: emphasis() } } : {}),
  };
}
