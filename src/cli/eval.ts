// `pasta-server eval`: how much does steering help this model? Runs the eval's task families
// (src/eval/) under each arm and prints a Markdown table; progress on stderr.
import { readFileSync, writeFileSync } from "node:fs";
import { arch, cpus, platform } from "node:os";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { DEFAULT_ALPHA } from "../engine/steering.js";
import { ARM_NAMES, buildArms, DEFAULT_ARMS, DEFAULT_TARGET_SHARE, PROFILE_ARMS, type ArmName } from "../eval/arms.js";
import { FAMILIES, familyNamed, loadItems, type EvalItem } from "../eval/families.js";
import { evalDocument, markdownTable, summarize } from "../eval/report.js";
import type { ItemOutcome } from "../eval/runner.js";
import { bestThreshold, THRESHOLD_GRID, thresholdSweep } from "../autopasta/threshold.js";
import { DEFAULT_THRESHOLD } from "../autopasta/sentences.js";
import { addEvalRun, readEvalRecord } from "../profiles/evalRecord.js";
import { loadHeadProfileWithModel } from "../profiles/headProfile.js";
import { formatProfile } from "../profiles/profileFile.js";
import { findShippedProfile } from "../profiles/shipped.js";
import { sha256File } from "../util/fileHash.js";
import { ConfigError } from "./config.js";
import { modelCacheDir, resolveModel } from "./modelSource.js";
import { progressLine } from "./progress.js";

export const EVAL_USAGE = `pasta-server eval [--model <name|file.gguf|hf:...>] [--profile <file>] [--tasks all|<task|file.jsonl>,...] [--limit n]
                  [--arms ${ARM_NAMES.join(",")}] [--alpha a] [--target-share 0.5] [--seed 0] [--json out.json] [--record]
                  [--parallel 1] [--ctx-size n] [--threads n] [--gpu none|cuda]   (docs/quality.md)`;

/** The short and long families fit well under 1024 tokens with their answers; the hard ones need more. */
const MIN_CONTEXT = 1024;

/**
 * --ctx-size's default: room for the longest item and its answer, counting a token per 3 characters
 * (English text runs about 4), rounded up to a power of two: 1024 for every family but the hard ones.
 */
function contextFor(items: readonly EvalItem[]): number {
  // a reduce, not a spread: an items file may hold more items than a call takes arguments
  const longest = items.reduce((most, item) => Math.max(most, Math.ceil(item.message.length / 3) + item.maxTokens + 64), 0);
  return Math.max(MIN_CONTEXT, 2 ** Math.ceil(Math.log2(longest)));
}

function positive(value: string | undefined, name: string, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

/** `--tasks`: family names (their public items) or JSONL files named after a family. */
function loadEvalItems(spec: string, limit: number | undefined): EvalItem[] {
  const entries =
    spec === "all"
      ? FAMILIES.map((f) => f.name)
      : spec
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean);
  return entries.flatMap((entry) => {
    const items = entry.endsWith(".jsonl") ? loadItems(familyNamed(basename(entry, ".jsonl")), entry) : loadItems(familyNamed(entry));
    return items.slice(0, limit ?? items.length);
  });
}

function armNames(spec: string | undefined): ArmName[] {
  if (spec === undefined) return [...DEFAULT_ARMS];
  const names = spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.find((n) => !(ARM_NAMES as readonly string[]).includes(n));
  if (unknown !== undefined || names.length === 0)
    throw new ConfigError(`--arms must name some of ${ARM_NAMES.join(", ")}, got ${JSON.stringify(spec)}`);
  return names as ArmName[];
}

export async function evalCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      model: { type: "string" },
      profile: { type: "string" },
      tasks: { type: "string", default: "all" },
      limit: { type: "string" },
      arms: { type: "string" },
      alpha: { type: "string" },
      "target-share": { type: "string" },
      seed: { type: "string" },
      json: { type: "string" },
      record: { type: "boolean" },
      parallel: { type: "string" },
      "ctx-size": { type: "string" },
      threads: { type: "string" },
      gpu: { type: "string", default: "none" },
    },
  });
  if (values.gpu !== "none" && values.gpu !== "cuda")
    throw new ConfigError(`--gpu must be none or cuda, got ${JSON.stringify(values.gpu)}`);
  const items = loadEvalItems(values.tasks, values.limit === undefined ? undefined : positive(values.limit, "limit", 0));
  const arms = armNames(values.arms);
  const seed = positive(values.seed, "seed", 0, 0);
  const parallel = positive(values.parallel, "parallel", 1);
  const contextSize = positive(values["ctx-size"], "ctx-size", contextFor(items), 64);
  const threads = values.threads === undefined ? undefined : positive(values.threads, "threads", 1);

  const started = performance.now();
  const modelPath = await resolveModel(values.model, { cacheDir: modelCacheDir(), progress: true });
  const modelSha256 = await sha256File(modelPath);
  const profileFile = values.profile ?? findShippedProfile(modelSha256);
  const needProfile = arms.filter((arm) => PROFILE_ARMS.includes(arm));
  if (!profileFile && needProfile.length > 0)
    throw new ConfigError(
      `no head profile ships for ${modelPath} (sha256 ${modelSha256}), and the arms ${needProfile.join(", ")} steer a profile's heads: ` +
        `pass --profile <file> (made by "pasta-server profile"), or --arms without them (${ARM_NAMES.filter((a) => !PROFILE_ARMS.includes(a)).join(", ")})`,
    );
  if (values.record && !profileFile)
    throw new ConfigError("--record writes into the head profile, and there is none: pass --profile <file>");
  const profile = profileFile ? loadHeadProfileWithModel(profileFile) : null;
  // a record that cannot be added to fails now, not after the run
  if (values.record && profileFile) readEvalRecord((JSON.parse(readFileSync(profileFile, "utf8")) as { eval?: unknown }).eval);
  const alpha = values.alpha === undefined ? (profile?.alpha ?? DEFAULT_ALPHA) : Number(values.alpha);
  if (!(alpha > 0 && alpha <= 1)) throw new ConfigError(`--alpha must be in (0, 1], got ${JSON.stringify(values.alpha)}`);
  const targetShare = values["target-share"] === undefined ? DEFAULT_TARGET_SHARE : Number(values["target-share"]);
  if (!(targetShare > 0 && targetShare < 1))
    throw new ConfigError(`--target-share must be in (0, 1), got ${JSON.stringify(values["target-share"])}`);
  if (arms.includes("target_share") && !(alpha < 1))
    throw new ConfigError("the target_share arm uses --alpha as the strongest bias it may apply, so --alpha must be below 1");

  // loaded after the flags are checked: node-llama-cpp takes a second or two to import
  const { SteeringEngine } = await import("../engine/engine.js");
  const { modelChatTemplate } = await import("../prompt/modelTemplate.js");
  const { runEval } = await import("../eval/runner.js");
  const engine = await SteeringEngine.load({
    modelPath,
    contextSize,
    parallel,
    // each run from a cold cache: a cell then does not depend on which items and arms ran before it
    prefixReuse: false,
    gpu: values.gpu === "cuda" ? "cuda" : false,
    ...(threads ? { threads } : {}),
  });
  const built = buildArms(arms, profile?.heads ?? null, engine.headsPerLayer, seed, targetShare);
  const template = modelChatTemplate(engine);
  const line = progressLine(`eval ${basename(modelPath)}`);
  let outcomes: Awaited<ReturnType<typeof runEval>>;
  try {
    outcomes = await runEval(engine, template, items, built, {
      alpha,
      parallel,
      onProgress: (done, total) =>
        line.update(total > 0 ? done / total : 0, `${done}/${total} item-arm runs ${((performance.now() - started) / 1000).toFixed(0)}s`),
    });
  } finally {
    line.end();
    await engine.dispose();
  }
  const rows = summarize(outcomes, built);
  const threshold = autoThresholdReport(outcomes);
  const command = ["pasta-server eval", ...argv].join(" ");
  const seconds = (performance.now() - started) / 1000;
  const meta = {
    command,
    date: new Date().toISOString(),
    seconds: Math.round(seconds),
    machine: `${cpus().length} x ${cpus()[0]?.model ?? "unknown CPU"}, ${platform()}-${arch()}`,
    model: { file: basename(modelPath), sha256: modelSha256 },
    chat_template: template !== null,
    profile: profile && { file: profileFile, heads: profile.heads },
    alpha,
    ...(arms.includes("target_share") ? { target_share: targetShare } : {}),
    seed,
    arms: built.map((a) => ({ name: a.name, heads: a.heads })),
    ...(threshold ? { auto_threshold: threshold } : {}),
  };
  if (values.json) writeFileSync(values.json, `${JSON.stringify(evalDocument(meta, rows, outcomes), null, 2)}\n`);
  if (values.record && profileFile) recordInProfile(profileFile, meta, rows);

  const random = built.find((a) => a.name === "random_heads");
  console.log(
    [
      `# ${basename(modelPath)}: steering with ${profileFile ?? "no head profile"}`,
      "",
      `command: ${command}`,
      `heads: ${profile ? JSON.stringify(profile.heads) : "none (no profile)"}, alpha ${alpha}${random ? `; random heads (seed ${seed}): ${JSON.stringify(random.heads)}` : ""}`,
      `prompts: ${template ? "the model's chat template, one user message" : "raw text (the model has no chat template)"}; greedy answers`,
      "",
      markdownTable(rows, built),
      "",
      ...(threshold ? [thresholdLine(threshold), ""] : []),
      `${outcomes.length} item-arm runs in ${seconds.toFixed(0)} s on ${meta.machine}`,
    ].join("\n"),
  );
}

/**
 * Adds the run to the profile file's eval record (src/profiles/evalRecord.ts): a profile carries
 * its own eval numbers, the cells earlier runs measured and this one did not included.
 */
function recordInProfile(file: string, meta: { command: string; date: string; machine: string }, rows: ReturnType<typeof summarize>): void {
  const document = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  document.eval = addEvalRun(document.eval, {
    command: meta.command,
    date: meta.date,
    machine: meta.machine,
    summary: rows.map((r) => ({ task: r.family, metric: r.metric, items: r.items, by_arm: r.byArm as Record<string, number | null> })),
  });
  writeFileSync(file, formatProfile(document));
}

/** AutoPASTA's pass-1 answers re-matched at every threshold of the grid (src/autopasta/threshold.ts). */
function autoThresholdReport(outcomes: readonly ItemOutcome[]) {
  // an unfinished pass 1 is mapped onto nothing at any threshold, as the server does
  const labelled = outcomes.flatMap((o) =>
    o.auto && o.item.passage
      ? [{ context: o.item.passage, selection: o.auto.finished ? o.auto.selection : "", gold: o.item.emphasis }]
      : [],
  );
  if (labelled.length === 0) return null;
  const points = thresholdSweep(
    labelled,
    [...new Set([...THRESHOLD_GRID, DEFAULT_THRESHOLD])].sort((x, y) => x - y),
  );
  return { current: DEFAULT_THRESHOLD, best: bestThreshold(points).threshold, points };
}

function thresholdLine(report: NonNullable<ReturnType<typeof autoThresholdReport>>): string {
  const at = (t: number) => report.points.find((p) => p.threshold === t)!;
  const show = (t: number) => `${t}: recall ${(100 * at(t).recall).toFixed(1)}%, precision ${(100 * at(t).precision).toFixed(1)}%`;
  return `AutoPASTA match threshold, pass-1 answers re-matched: best ${show(report.best)}; in use ${show(report.current)}`;
}
