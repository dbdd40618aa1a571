// Model resolution for `serve`: local paths, GGUF validation, the offline fast-fail, and cache hits.
// No test here touches the real network: downloads point at a closed loopback port.
import t from "tap";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_URI, ModelSourceError, modelCacheDir, resolveModel } from "../src/cli/modelSource.js";
import { STORIES_MODEL } from "./helpers.js";

// Port 9 (discard) is closed on loopback: connections are refused at once, as when offline.
const OFFLINE_ENV = { ...process.env, HF_ENDPOINT: "http://127.0.0.1:9", MODEL_ENDPOINT: "" };
// The name node-llama-cpp's downloader gives DEFAULT_MODEL_URI: "hf_" + owner + "_" + file (the repo
// name is left out because the file name starts with it).
const DEFAULT_CACHED_NAME = "hf_Qwen_qwen2.5-0.5b-instruct-q4_k_m.gguf";

const tempDir = () => mkdtempSync(join(tmpdir(), "pasta-model-source-"));

t.test("modelCacheDir honours PASTA_MODELS_DIR", async (t) => {
  t.equal(modelCacheDir({ PASTA_MODELS_DIR: "/x/models" }), "/x/models");
  t.match(modelCacheDir({}), /\.cache[/\\]pasta-server[/\\]models$/);
  t.match(DEFAULT_MODEL_URI, /^hf:Qwen\/Qwen2\.5-0\.5B-Instruct-GGUF\//);
});

t.test("an existing local GGUF is returned as is", async (t) => {
  t.equal(await resolveModel(STORIES_MODEL, { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), STORIES_MODEL);
});

t.test("a missing local path is an error", async (t) => {
  const missing = join(tempDir(), "nope.gguf");
  await t.rejects(resolveModel(missing, { cacheDir: tempDir(), progress: false }), {
    name: "ModelSourceError",
    message: `model file not found: ${missing}`,
  });
});

t.test("a local file that is not GGUF is rejected", async (t) => {
  const file = join(tempDir(), "page.gguf");
  writeFileSync(file, "<!doctype html>not a model");
  await t.rejects(resolveModel(file, { cacheDir: tempDir(), progress: false }), {
    name: "ModelSourceError",
    message: /is not a GGUF file/,
  });
});

t.test("offline, the default model fails at once and names --model", async (t) => {
  const start = Date.now();
  const err = await resolveModel(undefined, { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }).then(
    () => undefined,
    (e: unknown) => e,
  );
  const elapsed = Date.now() - start;
  t.ok(err instanceof ModelSourceError, `a ModelSourceError (got ${String(err)})`);
  t.match((err as Error).message, /cannot download the default model.*offline\?.*--model/);
  t.ok(elapsed < 10_000, `failed in ${elapsed} ms`);
});

t.test("offline, a URI also fails at once", async (t) => {
  const start = Date.now();
  await t.rejects(resolveModel("http://127.0.0.1:9/some/model.gguf", { cacheDir: tempDir(), progress: false, env: OFFLINE_ENV }), {
    name: "ModelSourceError",
    message: /--model/,
  });
  t.ok(Date.now() - start < 10_000, "within 10 s");
});

t.test("a cached default model is returned without network", async (t) => {
  const cacheDir = tempDir();
  const cached = join(cacheDir, DEFAULT_CACHED_NAME);
  writeFileSync(cached, Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(60)]));
  t.equal(await resolveModel(undefined, { cacheDir, progress: false, env: OFFLINE_ENV }), cached);
});

t.test("a cached plain-URL model is returned without network", async (t) => {
  const cacheDir = tempDir();
  const cached = join(cacheDir, "tiny.gguf");
  writeFileSync(cached, Buffer.concat([Buffer.from("GGUF"), Buffer.alloc(60)]));
  // "localhost", not the HF endpoint's host: a plain URL, cached under its own file name.
  t.equal(await resolveModel("http://localhost:9/models/tiny.gguf?download=true", { cacheDir, progress: false, env: OFFLINE_ENV }), cached);
});

t.test("a corrupt cached file is reported, not served", async (t) => {
  const cacheDir = tempDir();
  writeFileSync(join(cacheDir, DEFAULT_CACHED_NAME), "Entry not found");
  await t.rejects(resolveModel(undefined, { cacheDir, progress: false, env: OFFLINE_ENV }), { message: /is not a GGUF file/ });
});
