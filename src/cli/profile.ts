// `pasta-server profile`: choose a model's steering heads on tasks (src/profiles/) and write them
// as a head profile. Progress on stderr, a summary on stdout.
import { parseArgs } from "node:util";
import { modelFileInfo, writeProfile } from "../profiles/profileFile.js";
import { PROFILE_DEFAULTS, profileHeads, type CombineMode, type ProfileMethod, type ProfileResult } from "../profiles/profiler.js";
import { DEFAULT_SWEEP_GRID, type SweepGrid } from "../profiles/sweep.js";
import { loadTasks } from "../profiles/tasks.js";
import { modelChatTemplate } from "../prompt/modelTemplate.js";
import { ConfigError } from "./config.js";
import { progressLine } from "./progress.js";
import { modelCacheDir, resolveModel } from "./modelSource.js";

export const PROFILE_USAGE = `pasta-server profile [--model <name|file.gguf|hf:...>] --out <profile.json> [--tasks builtin|<file.jsonl>,...]
                     [--format chat|raw] [--method coarse-to-fine|pasta] [--top-k 4] [--combine intersection|union] [--keep-layers 2] [--coarse-examples 4]
                     [--seed 0] [--examples 6|all] [--alpha 0.01] [--parallel 4] [--ctx-size 512] [--threads n] [--gpu none|cuda]
                     [--sweep-k 4,8,16] [--sweep-alpha 0.01,0.1] [--no-sweep]
  k and alpha are chosen on the held-out examples from the sweep grids, unless --top-k / --alpha fix them
  (--no-sweep: --top-k 4 and --alpha 0.01 unless given); --method pasta --examples all is the full search`;

/** Built-in examples fit in 512 tokens; a longer task file needs --ctx-size. */
const DEFAULT_CONTEXT = 512;
/**
 * Examples scored at once, each on a sequence that keeps its prompt cached between passes (see
 * TargetScorer): on SmolLM2 and 2 cores, 2 to 8 give the same passes per second within noise,
 * above one at a time (docs/profiling.md).
 */
const DEFAULT_PROFILE_PARALLEL = 4;

function integer(
  value: string | undefined,
  name: string,
  fallback: number | undefined,
  min: number,
  alsoAccepted = "",
): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new ConfigError(`--${name} must be an integer >= ${min}${alsoAccepted}, got ${JSON.stringify(value)}`);
  return n;
}

function choice<T extends string>(value: string, name: string, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) throw new ConfigError(`--${name} must be ${allowed.join(" or ")}, got ${JSON.stringify(value)}`);
  return value as T;
}

function numberList(value: string | undefined, name: string, fallback: readonly number[], valid: (n: number) => boolean): number[] {
  if (value === undefined) return [...fallback];
  const items = value.split(",").map((v) => Number(v.trim()));
  if (items.length === 0 || items.some((n) => !valid(n))) throw new ConfigError(`--${name}: cannot use ${JSON.stringify(value)}`);
  return [...new Set(items)].sort((a, b) => a - b);
}

function summary(result: ProfileResult, out: string, seconds: number): string {
  const lines = [`heads: ${JSON.stringify(result.heads)}`];
  if (result.sweep) {
    const { chosen, points } = result.sweep;
    lines.push(`chosen on the held-out examples among ${points.length} (k, alpha) points: top-k ${chosen.topK}, alpha ${chosen.alpha}`);
    for (const t of chosen.tasks) {
      const base = result.sweep.unsteered.find((u) => u.task === t.task)!.greedy;
      lines.push(
        `  ${t.task}: greedy replies that begin with the target ${(100 * base).toFixed(0)}% -> ${(100 * (t.greedy ?? 0)).toFixed(0)}%`,
      );
    }
  }
  if (result.fallback) lines.push(`note: ${result.fallback}`);
  if (result.keptLayers) lines.push(`layers searched head by head: ${result.keptLayers.join(", ")}`);
  const { used, fullSearch } = result.forwardPasses;
  lines.push(
    `forward passes: ${used}${result.method === "pasta" ? "" : ` (the full per-head search takes ${fullSearch}: ${((100 * used) / fullSearch).toFixed(0)}%)`}`,
  );
  for (const h of result.heldOut ?? []) {
    lines.push(
      `held-out ${h.task} (${h.examples} example${h.examples === 1 ? "" : "s"}): mean target log-likelihood ${h.unsteered.toFixed(3)} unsteered, ${h.steered.toFixed(3)} steered (${h.steered >= h.unsteered ? "+" : ""}${(h.steered - h.unsteered).toFixed(3)})`,
    );
  }
  lines.push(`wrote ${out} in ${seconds.toFixed(1)}s`);
  return lines.join("\n");
}

export async function profileCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      tasks: { type: "string", default: "builtin" },
      format: { type: "string" },
      method: { type: "string", default: PROFILE_DEFAULTS.method },
      "top-k": { type: "string" },
      combine: { type: "string", default: PROFILE_DEFAULTS.combine },
      "keep-layers": { type: "string" },
      "coarse-examples": { type: "string" },
      seed: { type: "string" },
      examples: { type: "string" },
      alpha: { type: "string" },
      "ctx-size": { type: "string" },
      parallel: { type: "string" },
      threads: { type: "string" },
      gpu: { type: "string", default: "none" },
      "sweep-k": { type: "string" },
      "sweep-alpha": { type: "string" },
      "no-sweep": { type: "boolean", default: false },
    },
  });
  if (!values.out) throw new ConfigError("--out <profile.json> is required");
  const method = choice<ProfileMethod>(values.method, "method", ["pasta", "coarse-to-fine"]);
  const combine = choice<CombineMode>(values.combine, "combine", ["intersection", "union"]);
  const gpu = choice(values.gpu, "gpu", ["none", "cuda"]);
  const format = values.format === undefined ? undefined : choice(values.format, "format", ["chat", "raw"]);
  const alpha = values.alpha === undefined ? PROFILE_DEFAULTS.alpha : Number(values.alpha);
  // what the user fixes is not swept
  const grid: SweepGrid = {
    topK:
      values["top-k"] !== undefined
        ? [Number(values["top-k"])]
        : numberList(values["sweep-k"], "sweep-k", DEFAULT_SWEEP_GRID.topK, (n) => Number.isInteger(n) && n >= 1),
    alpha:
      values.alpha !== undefined
        ? [alpha]
        : numberList(values["sweep-alpha"], "sweep-alpha", DEFAULT_SWEEP_GRID.alpha, (n) => n > 0 && n <= 1),
  };
  const sweep = values["no-sweep"] || grid.topK.length * grid.alpha.length === 1 ? false : grid;
  if (!(alpha > 0 && alpha <= 1)) throw new ConfigError(`--alpha must be in (0, 1], got ${JSON.stringify(values.alpha)}`);
  const tasks = loadTasks(values.tasks);
  const examples =
    values.examples === "all" ? Number.POSITIVE_INFINITY : integer(values.examples, "examples", PROFILE_DEFAULTS.examples, 1, " or all")!;
  const threads = integer(values.threads, "threads", undefined, 1);
  const topK = integer(values["top-k"], "top-k", PROFILE_DEFAULTS.topK, 1)!;
  const keepLayers = integer(values["keep-layers"], "keep-layers", PROFILE_DEFAULTS.keepLayers, 1)!;
  const coarseExamples = integer(values["coarse-examples"], "coarse-examples", PROFILE_DEFAULTS.coarseExamples, 1)!;
  const seed = integer(values.seed, "seed", PROFILE_DEFAULTS.seed, 0)!;
  const contextSize = integer(values["ctx-size"], "ctx-size", DEFAULT_CONTEXT, 64)!;
  const parallel = integer(values.parallel, "parallel", DEFAULT_PROFILE_PARALLEL, 1)!;

  const started = performance.now();
  const modelPath = await resolveModel(values.model, { cacheDir: modelCacheDir(), progress: true });
  // loaded after the flags are checked: node-llama-cpp takes a second or two to import
  const { SteeringEngine } = await import("../engine/engine.js");
  const engine = await SteeringEngine.load({
    modelPath,
    contextSize,
    parallel,
    gpu: gpu === "cuda" ? "cuda" : false,
    ...(threads ? { threads } : {}),
  });
  // as the model is served: in its own chat template, raw text for a model without one
  const template = format === "raw" ? null : modelChatTemplate(engine);
  if (format === "chat" && !template) {
    await engine.dispose();
    throw new ConfigError("--format chat: this model's GGUF has no chat template; profile it with --format raw");
  }
  const line = progressLine(
    `profiling ${tasks.map((t) => t.name).join(", ")}${template ? " in the model's chat template" : " as raw text"}`,
  );
  const bar = {
    update: (done: number, total: number) =>
      line.update(total > 0 ? done / total : 0, `${done}/${total} forward passes ${((performance.now() - started) / 1000).toFixed(1)}s`),
    end: line.end,
  };
  let result: ProfileResult;
  try {
    result = await profileHeads(engine, {
      tasks,
      template,
      method,
      combine,
      alpha,
      topK,
      keepLayers,
      coarseExamples,
      seed,
      sweep,
      examples,
      onProgress: bar.update,
    });
  } finally {
    bar.end();
    await engine.dispose();
  }
  writeProfile(values.out, result, await modelFileInfo(modelPath), ["pasta-server profile", ...argv].join(" "));
  console.log(summary(result, values.out, (performance.now() - started) / 1000));
}
