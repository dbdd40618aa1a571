// The profile file `pasta-server profile` writes: the chosen heads with everything needed to tell
// where they came from (model file, tasks, method, seed) and how good they were. Deterministic:
// the same model, tasks and seed give the same bytes apart from created_at.
import { statSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { GgufType, readGgufMetadata } from "../gguf/gguf.js";
import { sha256File } from "../util/fileHash.js";
import type { ProfileResult } from "./profiler.js";

export const PROFILE_FORMAT = "pasta-server head profile";
export const PROFILE_VERSION = 1;

export interface ModelFileInfo {
  /** GGUF general.name, else the file name without .gguf */
  name: string;
  file: string;
  sha256: string;
  size: number;
}

/** Name, size and sha256 of a model file: what a cached profile is keyed by. */
export async function modelFileInfo(path: string): Promise<ModelFileInfo> {
  let name = basename(path).replace(/\.gguf$/i, "");
  try {
    const value = readGgufMetadata(path).get("general.name");
    if (value?.type === GgufType.STRING && typeof value.value === "string" && value.value.trim() !== "") name = value.value;
  } catch {
    // not readable as GGUF here: llama.cpp loaded it, so the file name will do
  }
  return { name, file: basename(path), sha256: await sha256File(path), size: statSync(path).size };
}

/** Scores are rounded: the file records rankings, not float noise. */
const round = (x: number | null) => (x === null ? null : Math.round(x * 1e6) / 1e6);

/** The file's JSON (snake_case, as the API). `command`: what made it, so that it can be made again. */
export function profileDocument(
  result: ProfileResult,
  model: ModelFileInfo,
  command: string,
  createdAt = new Date(),
): Record<string, unknown> {
  return {
    format: PROFILE_FORMAT,
    version: PROFILE_VERSION,
    command,
    model: { ...model, n_layers: result.headsPerLayer.length, heads_per_layer: result.headsPerLayer },
    // "chat": examples rendered in the model's chat template; "raw": plain text
    prompt_format: result.format,
    method: result.method,
    alpha: result.alpha,
    mode: result.mode,
    seed: result.seed,
    top_k: result.topK,
    combine: result.combine,
    tasks: result.tasks.map((t) => ({
      name: t.name,
      ...(t.file ? { file: t.file } : {}),
      sha256: t.sha256,
      examples: t.examples,
      profiling: t.profiling,
      held_out: t.heldOut,
    })),
    scores: Object.fromEntries(
      result.scores.map((s) => [
        s.task,
        {
          unsteered: round(s.unsteered),
          ...(s.layers ? { layers: s.layers.map(round) } : {}),
          heads: Object.fromEntries(
            s.heads.map((row, layer) => [String(layer), row.map(round)]).filter(([, row]) => (row as unknown[]).some((x) => x !== null)),
          ),
        },
      ]),
    ),
    ...(result.keptLayers ? { kept_layers: result.keptLayers } : {}),
    forward_passes: {
      used: result.forwardPasses.used,
      full_search: result.forwardPasses.fullSearch,
      held_out: result.forwardPasses.heldOut,
    },
    fallback: result.fallback,
    held_out:
      result.heldOut?.map((h) => ({ task: h.task, examples: h.examples, unsteered: round(h.unsteered), steered: round(h.steered) })) ??
      null,
    sweep: result.sweep && {
      criterion: result.sweep.criterion,
      grid: { top_k: result.sweep.grid.topK, alpha: result.sweep.grid.alpha },
      unsteered_greedy: Object.fromEntries(result.sweep.unsteered.map((u) => [u.task, round(u.greedy)])),
      points: result.sweep.points.map((p) => ({
        top_k: p.topK,
        alpha: p.alpha,
        heads: p.heads,
        ...(p.fallback ? { fallback: p.fallback } : {}),
        held_out: Object.fromEntries(p.tasks.map((t) => [t.task, { gain: round(t.gain), greedy: round(t.greedy) }])),
      })),
      chosen: { top_k: result.sweep.chosen.topK, alpha: result.sweep.chosen.alpha },
    },
    heads: result.heads,
    created_at: createdAt.toISOString(),
  };
}

/** Indented JSON with each list of numbers on one line (score rows stay readable). */
export function formatProfile(document: Record<string, unknown>): string {
  return `${JSON.stringify(document, null, 2).replace(/\[\s*((?:-?[\d.e+-]+|null)(?:,\s*(?:-?[\d.e+-]+|null))*)\s*\]/g, (_, items: string) => `[${items.split(/,\s*/).join(", ")}]`)}\n`;
}

export function writeProfile(path: string, result: ProfileResult, model: ModelFileInfo, command: string): void {
  writeFileSync(path, formatProfile(profileDocument(result, model, command)));
}
