// Test fixtures: the shared models and the PASTA reference (../shared), and generated tiny models.
import { appendFileSync, copyFileSync, chmodSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SHARED, SMOLLM2_MODEL, STORIES_MODEL } from "../../harness/index.js";
import { generateTestModel, TINY_SHAPES, type TestArchitecture } from "../../src/testModels/generate.js";
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
