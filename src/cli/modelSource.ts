// Where `serve` gets its GGUF file: a local path, or a URI downloaded once into a cache through
// node-llama-cpp's own downloader (so names and split-file handling match `node-llama-cpp pull`).
import { existsSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join } from "node:path";
import { progressLine } from "./progress.js";

/**
 * Served when no --model is given. Qwen2.5-0.5B-Instruct is a real chat model with a chat template,
 * yet at Q4_K_M it is ~400 MB and runs on a laptop CPU, so a first `pasta-server serve` just works.
 * The file form (`hf:owner/repo/file.gguf`) names the exact file, so the cached name is known without
 * asking Hugging Face for a manifest: a cached copy is found with no network access at all.
 */
export const DEFAULT_MODEL_URI = "hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf";

/** Errors the CLI should print as-is (no stack): bad paths, non-GGUF files, failed downloads. */
export class ModelSourceError extends Error {
  override name = "ModelSourceError";
}

export function modelCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.PASTA_MODELS_DIR || join(homedir(), ".cache", "pasta-server", "models");
}

// The schemes node-llama-cpp's resolveModelDestination treats as remote; anything else is a path.
const URI = /^(hf:|hf\.co\/|huggingface\.co\/|https?:\/\/)/i;
const HTTP_URL = /^https?:\/\//i;
// A reachable host answers within milliseconds; offline, DNS or connect fails fast, and this bounds the rest.
const PROBE_TIMEOUT_MS = 5000;

export async function resolveModel(
  arg: string | undefined,
  options: { cacheDir: string; progress: boolean; env?: NodeJS.ProcessEnv },
): Promise<string> {
  const uri = arg ?? DEFAULT_MODEL_URI;
  if (!URI.test(uri)) {
    if (!existsSync(uri) || !statSync(uri).isFile()) throw new ModelSourceError(`model file not found: ${uri}`);
    return checkGguf(uri);
  }

  const env = options.env ?? process.env;
  // Passed explicitly (same precedence as node-llama-cpp) so options.env, not only process.env, applies.
  const hfEndpoint = env.MODEL_ENDPOINT || env.HF_ENDPOINT || "https://huggingface.co/";
  const { resolveModelFile } = await import("node-llama-cpp"); // lazy: local paths never load it
  const common = {
    directory: options.cacheDir,
    endpoints: { huggingFace: hfEndpoint },
    // node-llama-cpp can only name a plain (non-Hugging Face) URL's file after asking the server;
    // naming it after the URL ourselves keeps the cache lookup offline.
    fileName: HTTP_URL.test(uri) && !isHuggingFaceUrl(uri, hfEndpoint) ? urlFileName(uri) : undefined,
    cli: false,
  };

  // Cache first, with downloads disabled: this only looks in the directory, never at the network.
  try {
    return await checkGguf(await resolveModelFile(uri, { ...common, download: false }));
  } catch (err) {
    if (err instanceof ModelSourceError) throw err;
  }

  const what = arg === undefined ? `the default model (${uri})` : uri;
  const hint = "Pass --model <file.gguf> to serve a local model.";
  // ipull (under node-llama-cpp) retries a failed connection 150 times, up to 5 s apart (~12 min), and
  // node-llama-cpp exposes no retry option: one short probe makes "offline" fail in seconds instead.
  const host = HTTP_URL.test(uri) ? new URL(uri).origin : new URL(hfEndpoint).origin;
  try {
    await fetch(host, { method: "HEAD", redirect: "manual", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
  } catch (err) {
    throw new ModelSourceError(`cannot download ${what}: ${host} is unreachable (offline?). ${hint}`, { cause: err });
  }

  // Progress goes to stderr: node-llama-cpp's own bar (ipull) draws on stdout, where the server logs JSON.
  if (options.progress) process.stderr.write(`pasta-server: downloading ${uri} into ${options.cacheDir}\n`);
  let path: string;
  const bar = progressLine("download");
  const mb = (n: number) => (n / 1e6).toFixed(1);
  try {
    path = await resolveModelFile(uri, {
      ...common,
      onProgress: options.progress
        // a size of 0: not known yet (or the request failed)
        ? ({ totalSize, downloadedSize }) => { if (totalSize > 0) bar.update(downloadedSize / totalSize, `${mb(downloadedSize)}/${mb(totalSize)} MB`); }
        : undefined,
    });
  } catch (err) {
    throw new ModelSourceError(`cannot download ${what}: ${(err as Error).message}. ${hint}`, { cause: err });
  } finally {
    bar.end();
  }
  return checkGguf(path);
}

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
