// llama.cpp's own `llama-server`, built for the benchmarks from the very llama.cpp source that the
// node-llama-cpp package bundles (its git bundle, without our steering patch) and with the options of
// node-llama-cpp's own build (Release, llama.cpp's default CPU options: GGML_NATIVE, OpenMP; shared
// libraries, so the same -fPIC code). Built once into the OS temp folder (a few minutes on 2 cores,
// offline) and reused.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import { dirname, join } from "node:path";
import { freePort, killOnExit, sleep } from "../harness/index.js";

const packageDir = join(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "..");

export function llamaServerBinary(): string {
  const { tag } = JSON.parse(readFileSync(join(packageDir, "llama", "llama.cpp.info.json"), "utf8")) as { tag: string };
  const dir = join(os.tmpdir(), "pasta-server-bench", `llama-server-${tag}-shared`);
  const binary = join(dir, "build", "bin", "llama-server");
  if (existsSync(binary)) return binary;

  console.error(`building llama-server ${tag} from node-llama-cpp's bundled source into ${dir} (a few minutes) ...`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ["ignore", "ignore", "inherit"] });
  run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", join(packageDir, "llama", "gitRelease.bundle"), dir]);
  run("cmake", [
    "-S",
    dir,
    "-B",
    join(dir, "build"),
    "-G",
    "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=ON",
  ]);
  run("ninja", ["-C", join(dir, "build"), "llama-server"]);
  return binary;
}

/** Starts llama-server on a free port; resolves once /health answers 200. (pasta-server's own: harness/process.ts) */
export async function startLlamaServer(options: {
  model: string;
  threads: number;
  slots: number;
  contextPerSlot: number;
}): Promise<{ proc: ChildProcess; url: string }> {
  const port = await freePort();
  const proc = spawn(
    llamaServerBinary(),
    [
      "-m",
      options.model,
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "-t",
      String(options.threads),
      "-tb",
      String(options.threads),
      "-np",
      String(options.slots),
      "-c",
      String(options.slots * options.contextPerSlot),
      "-fa",
      "on",
      "--no-webui",
      "--log-disable",
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  killOnExit(proc);
  const url = `http://127.0.0.1:${port}`;
  for (const deadline = Date.now() + 120_000; Date.now() < deadline; await sleep(200)) {
    if (proc.exitCode !== null) throw new Error(`llama-server exited (${proc.exitCode}) before it was ready`);
    const health = await fetch(`${url}/health`).catch(() => undefined);
    if (health?.status === 200) return { proc, url };
  }
  throw new Error("llama-server was not ready within 120 s");
}
