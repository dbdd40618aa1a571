// Real `pasta-server` child processes on loopback, for the tests that need the whole program (flags,
// environment, signals, exit codes and logs) and for the benchmarks and the load driver.
//
//   const server = await startServer(["--parallel", "2"]);
//   t.teardown(() => server.stop());
//   await fetch(`${server.base}/v1/generate`, ...);
//
// The child runs `node --import tsx src/cli/main.ts serve --model <STORIES_MODEL> --port 0
// --ctx-size 256 ...args` from the project root. `args` come after the defaults, and node:util
// parseArgs keeps the LAST value of a repeated single-valued flag, so e.g. `["--ctx-size", "8192"]`
// or `["--model", other]` overrides the default. Repeatable flags (--api-key, --cors-origin)
// accumulate instead; none of them is among the defaults. A flag also beats its environment variable
// (PASTA_*), so `env` can only set options that are not among the defaults (or not passed in `args`).
// PASTA_* variables of the environment running the tests are not inherited: only `env` sets them.
// `options.command` runs another command line instead (the image's ENTRYPOINT, `node dist/cli/main.js
// serve`), with `args` after it and no defaults.
//
// The port is a free one (--port 0), read from the log: the child must log at info level or lower
// (LOG_LEVEL=info is set; do not pass --log-level warn and friends) so that Fastify's "Server
// listening at" line shows. Then startServer waits for /ready to answer 200 (the model is loaded).
// Everything the child writes is kept (log()); children still running when this process exits are
// killed.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname } from "node:path";
import { CLI, PROJECT_ROOT, STORIES_MODEL } from "./paths.js";
import { sleep } from "./time.js";

const DEFAULT_STARTUP_TIMEOUT_MS = 20_000;
/** after this, stop() escalates to SIGKILL so a hung child never hangs the test run */
const STOP_TIMEOUT_MS = 15_000;

export const DEFAULT_SERVE_ARGS: readonly string[] = ["--model", STORIES_MODEL, "--port", "0", "--ctx-size", "256"];

export interface ServerProcess {
  /** e.g. http://127.0.0.1:40123 */
  base: string;
  /** the port listened on (base's) */
  port: number;
  proc: ChildProcess;
  /** everything the child wrote so far, stdout and stderr interleaved as they arrived */
  log: () => string;
  /** sends `signal` (SIGTERM by default) unless the child has exited, and resolves with its exit code (null: killed by a signal) */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServerOptions {
  /** how long to wait for the port and then /ready (default 20 s) */
  readyTimeoutMs?: number;
  /** no --model among the defaults, so the server resolves its default model (see PASTA_MODELS_DIR) */
  noModel?: boolean;
  /** the command line instead of `node --import tsx src/cli/main.ts serve <defaults>`; "node" is this Node */
  command?: string[];
  /** LOG_LEVEL of the child: "info" by default (readiness needs it); null sets none (and inherits none) */
  logLevel?: string | null;
  /** every line the child writes goes to this file too (created, or emptied, at the start) */
  logFile?: string;
  /** called with every line the child writes, and which stream it came on */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
}

// children still running when this process exits (a failed assertion, a crash) are killed
const live = new Map<ChildProcess, NodeJS.Signals>();
process.once("exit", () => {
  for (const [child, signal] of live) child.kill(signal);
});

/** Kills `proc` with `signal` (SIGKILL by default) if it is still running when this process exits. */
export function killOnExit(proc: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void {
  live.set(proc, signal);
  proc.once("exit", () => live.delete(proc));
}

/** Resolves with the child's exit code once it has exited (at once if it already has); null when a signal killed it. */
export function waitForExit(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
}

/** Sends `signal` unless `proc` has exited; SIGKILL after `timeoutMs`; resolves with the exit code (null: a signal). */
export async function stopProcess(
  proc: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  timeoutMs = STOP_TIMEOUT_MS,
): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
  proc.kill(signal);
  const killer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    return await waitForExit(proc);
  } finally {
    clearTimeout(killer);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function childEnv(env: Record<string, string>, logLevel: string | null): NodeJS.ProcessEnv {
  // PASTA_* settings of the shell running the tests (an API key, a port) must not change what a test starts
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("PASTA_") && (logLevel !== null || name !== "LOG_LEVEL")),
  );
  // NODE_OPTIONS empty: the test runner's own loader hooks must not leak into the child
  return { ...inherited, NODE_OPTIONS: "", ...(logLevel === null ? {} : { LOG_LEVEL: logLevel }), ...env };
}

interface Spawned {
  proc: ChildProcess;
  log: () => string;
  stdout: () => string;
  stderr: () => string;
}

function spawnChild(
  command: string[],
  env: Record<string, string>,
  options: Pick<ServerOptions, "logLevel" | "logFile" | "onLine"> = {},
): Spawned {
  const [program, ...args] = command;
  const proc = spawn(program === "node" ? process.execPath : program!, args, {
    cwd: PROJECT_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: childEnv(env, options.logLevel === undefined ? "info" : options.logLevel),
  });
  killOnExit(proc);
  if (options.logFile) {
    mkdirSync(dirname(options.logFile), { recursive: true });
    writeFileSync(options.logFile, ""); // this child's lines only
  }
  let all = "",
    out = "",
    err = "";
  // whole lines for logFile and onLine, per stream
  const liner = (stream: "stdout" | "stderr") => {
    let partial = "";
    return (chunk: string) => {
      if (!options.logFile && !options.onLine) return;
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      for (const line of lines) {
        if (options.logFile) appendFileSync(options.logFile, `${line}\n`);
        options.onLine?.(line, stream);
      }
    };
  };
  const outLines = liner("stdout"),
    errLines = liner("stderr");
  proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    all += chunk;
    out += chunk;
    outLines(chunk);
  });
  proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    all += chunk;
    err += chunk;
    errLines(chunk);
  });
  return { proc, log: () => all, stdout: () => out, stderr: () => err };
}

const cliCommand = (args: string[]) => ["node", "--import", "tsx", CLI, ...args];

/** Starts `pasta-server serve` (see the top of this file) and resolves once it listens and /ready is 200. */
export async function startServer(
  args: string[] = [],
  env: Record<string, string> = {},
  options: ServerOptions = {},
): Promise<ServerProcess> {
  const STARTUP_TIMEOUT_MS = options.readyTimeoutMs ?? DEFAULT_STARTUP_TIMEOUT_MS;
  const defaults = options.noModel ? DEFAULT_SERVE_ARGS.slice(2) : DEFAULT_SERVE_ARGS;
  const command = options.command ? [...options.command, ...args] : cliCommand(["serve", ...defaults, ...args]);
  const { proc, log } = spawnChild(command, env, options);
  const stop = (signal: NodeJS.Signals = "SIGTERM") => stopProcess(proc, signal);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  const failure = (why: string) =>
    new Error(`${options.command ? options.command.join(" ") : "pasta-server"} ${why}; args ${JSON.stringify(args)}; log:\n${log()}`);
  const exited = waitForExit(proc).then((code) => {
    throw failure(`exited early with code ${code} (signal ${proc.signalCode})`);
  });
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
    // 3. the log has caught up: /ready's answer can overtake log lines still in the stdout pipe, and
    // the server logs "model loaded; ready" once the lines before it are written
    if (!options.command) {
      while (!log().includes('"msg":"model loaded; ready"')) {
        if (Date.now() > deadline) throw failure(`never logged "model loaded; ready" within ${STARTUP_TIMEOUT_MS} ms`);
        await sleep(20);
      }
    }
    return { base, port: Number(new URL(base).port), proc, log, stop };
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
  const { proc, stdout, stderr } = spawnChild(cliCommand(args), env);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  // "close": the pipes are drained too, so stdout/stderr are complete
  const code = await new Promise<number | null>((resolve) => proc.once("close", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout: stdout(), stderr: stderr(), ms: performance.now() - started, timedOut };
}

/** The child's pino lines, parsed (lines that are not a JSON object skipped). */
export function logLines(log: string): Array<Record<string, any>> {
  return log.split("\n").flatMap((line) => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === "object" && value !== null && !Array.isArray(value) ? [value as Record<string, any>] : [];
    } catch {
      return [];
    }
  });
}

/** The child's pino lines at error level or above (50: error, 60: fatal), as written. */
export const errorLogLines = (log: string): string[] => log.split("\n").filter((l) => /"level":(50|60)/.test(l));
