// A real `pasta-server serve` child process on loopback, for tests that need the whole program:
// flags, environment, signals, exit codes and logs.
//
//   const server = await startServer(["--parallel", "2"]);
//   t.teardown(() => server.stop());
//   await fetch(`${server.base}/v1/generate`, ...);
//
// The child runs `node --import tsx src/cli/main.ts serve --model <STORIES_MODEL> --port 0
// --ctx-size 256 ...args`. `args` come after the defaults, and node:util parseArgs keeps the LAST
// value of a repeated single-valued flag, so e.g. `["--ctx-size", "8192"]` or `["--port", "9000"]`
// overrides the default. Repeatable flags (--api-key, --cors-origin) accumulate instead; none of them
// is among the defaults. A flag also beats its environment variable (PASTA_*), so `env` can only set
// options that are not among the defaults (or not passed in `args`). PASTA_* variables of the
// environment running the tests are not inherited: only `env` sets them.
//
// Readiness is read from the log: the child must log at info level or lower (LOG_LEVEL=info is set;
// do not pass --log-level warn and friends) so that Fastify's "Server listening at" line shows.
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { STORIES_MODEL } from "./helpers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CLI = join("src", "cli", "main.ts");
const DEFAULT_STARTUP_TIMEOUT_MS = 20_000;
/** after this, stop() escalates to SIGKILL so a hung child never hangs the test run */
const STOP_TIMEOUT_MS = 15_000;

export const DEFAULT_SERVE_ARGS: readonly string[] = ["--model", STORIES_MODEL, "--port", "0", "--ctx-size", "256"];

export interface ServerProcess {
  /** e.g. http://127.0.0.1:40123 */
  base: string;
  proc: ChildProcess;
  /** everything the child wrote so far, stdout and stderr interleaved as they arrived */
  log: () => string;
  /** sends `signal` (SIGTERM by default) unless the child has exited, and resolves with its exit code (null: killed by a signal) */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

// children still running when the test process exits (a failed assertion, a crash) are killed
const live = new Set<ChildProcess>();
process.once("exit", () => { for (const child of live) child.kill("SIGKILL"); });

function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  // PASTA_* settings of the shell running the tests (an API key, a port) must not change what a test starts
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("PASTA_")));
  // NODE_OPTIONS empty: the test runner's own loader hooks must not leak into the child
  return { ...inherited, NODE_OPTIONS: "", LOG_LEVEL: "info", ...env };
}

function spawnCli(args: string[], env: Record<string, string>): { proc: ChildProcess; log: () => string; stdout: () => string; stderr: () => string } {
  const proc = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: childEnv(env) });
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  let all = "", out = "", err = "";
  proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => { all += chunk; out += chunk; });
  proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => { all += chunk; err += chunk; });
  return { proc, log: () => all, stdout: () => out, stderr: () => err };
}

/** Resolves with the child's exit code once it has exited (at once if it already has); null when a signal killed it. */
export function waitForExit(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `noModel`: no --model among the defaults, so the server resolves its default model (see PASTA_MODELS_DIR). */
export async function startServer(args: string[] = [], env: Record<string, string> = {}, options: { readyTimeoutMs?: number; noModel?: boolean } = {}): Promise<ServerProcess> {
  const STARTUP_TIMEOUT_MS = options.readyTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS;
  const defaults = options.noModel ? DEFAULT_SERVE_ARGS.slice(2) : DEFAULT_SERVE_ARGS;
  const { proc, log } = spawnCli(["serve", ...defaults, ...args], env);
  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
    proc.kill(signal);
    const killer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
    try {
      return await waitForExit(proc);
    } finally {
      clearTimeout(killer);
    }
  };
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  const failure = (why: string) => new Error(`pasta-server ${why}; args ${JSON.stringify(args)}; log:\n${log()}`);
  const exited = waitForExit(proc).then((code) => { throw failure(`exited early with code ${code} (signal ${proc.signalCode})`); });
  exited.catch(() => {}); // raced below; unobserved once startup succeeds

  try {
    // 1. the port is open: Fastify logs "Server listening at http://host:port" (pino JSON on stdout)
    const listening = new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = /Server listening at (http:\/\/[^"\s]+)/.exec(log());
        if (m) {
          proc.stdout!.off("data", check);
          clearInterval(timer);
          resolve(m[1]!);
        } else if (Date.now() > deadline) {
          proc.stdout!.off("data", check);
          clearInterval(timer);
          reject(failure(`did not listen within ${STARTUP_TIMEOUT_MS} ms`));
        }
      };
      const timer = setInterval(check, 200);
      proc.stdout!.on("data", check);
      check();
    });
    const base = await Promise.race([listening, exited]);

    // 2. the model is loaded: /ready turns 200
    const ready = (async () => {
      for (;;) {
        try {
          const res = await fetch(`${base}/ready`, { signal: AbortSignal.timeout(2000) });
          await res.arrayBuffer();
          if (res.status === 200) return;
        } catch {
          // not answering yet (or exiting: `exited` says so)
        }
        if (Date.now() > deadline) throw failure(`was not ready within ${STARTUP_TIMEOUT_MS} ms`);
        await sleep(50);
      }
    })();
    await Promise.race([ready, exited]);
    return { base, proc, log, stop };
  } catch (err) {
    await stop("SIGKILL");
    throw err;
  }
}

export interface CliResult {
  /** exit code; null when the child was killed (by a signal, or by `timeoutMs`) */
  code: number | null;
  stdout: string;
  stderr: string;
  /** wall-clock milliseconds until exit */
  ms: number;
  timedOut: boolean;
}

/**
 * Runs `pasta-server <args>` to completion (for startup errors and other one-shot commands) with
 * the same environment as startServer, but none of its default flags. A child still running after
 * `timeoutMs` is killed (SIGKILL) and reported with timedOut.
 */
export async function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<CliResult> {
  const started = performance.now();
  const { proc, stdout, stderr } = spawnCli(args, env);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; proc.kill("SIGKILL"); }, timeoutMs);
  // "close": the pipes are drained too, so stdout/stderr are complete
  const code = await new Promise<number | null>((resolve) => proc.once("close", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout: stdout(), stderr: stderr(), ms: performance.now() - started, timedOut };
}
