// Helpers for the deployment tests (test/unit/deploy/dockerfile.test.ts, test/unit/deploy/manifests.test.ts,
// test/process/deploy/entrypoint.test.ts, test/process/deploy/gateway.test.ts, test/docker/deploy.e2e.ts):
// the Dockerfile read as Docker reads it, the replicas' env file, the image's ENTRYPOINT run as a real
// process, and the project's nginx gateway config (docker/nginx.conf.template) run with Debian's nginx
// on loopback.
import { spawn, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, killOnExit, PROJECT_ROOT, sleep, startServer, waitForExit, type ServerProcess } from "../../harness/index.js";

export { freePort };
export const ROOT = PROJECT_ROOT;
export const DOCKER_DIR = join(ROOT, "docker");
export const DOCKERFILE = join(DOCKER_DIR, "Dockerfile");
export const DOCKERFILE_CUDA = join(DOCKER_DIR, "Dockerfile.cuda");
export const GATEWAY_TEMPLATE = join(DOCKER_DIR, "nginx.conf.template");
export const GATEWAY_KEYS_MAP = join(DOCKER_DIR, "gateway-keys.map");
export const REPLICA_ENV_FILE = join(DOCKER_DIR, "pasta.env");
export const NGINX = "/usr/sbin/nginx";

// ---------------------------------------------------------------------------------------------
// Dockerfiles

export interface Instruction {
  /** upper case: RUN, ENV, ... */
  keyword: string;
  /** the arguments, continuation lines joined as Docker joins them */
  args: string;
  /** 1-based line of the instruction's first line */
  line: number;
  /** index of the build stage (0 = the first FROM); -1 before it (global ARGs) */
  stage: number;
}

/** The instructions of a Dockerfile: comments dropped (also inside continuations), `\` continuations joined. */
export function parseDockerfile(path: string): Instruction[] {
  const lines = readFileSync(path, "utf8").split("\n");
  const out: Instruction[] = [];
  let stage = -1;
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!;
    if (/^\s*(#|$)/.test(first)) continue;
    const start = i;
    let text = first;
    while (/\\\s*$/.test(text) && i + 1 < lines.length) {
      text = text.replace(/\\\s*$/, "");
      i++;
      if (/^\s*#/.test(lines[i]!)) {
        text += "\\";
        continue;
      } // a comment inside a continuation is dropped
      text += lines[i]!;
    }
    const m = /^\s*(\w+)\s*(.*)$/s.exec(text);
    if (!m) throw new Error(`${path}:${start + 1}: cannot parse ${JSON.stringify(text)}`);
    const keyword = m[1]!.toUpperCase();
    if (keyword === "FROM") stage++;
    out.push({ keyword, args: m[2]!.replace(/\s+/g, " ").trim(), line: start + 1, stage });
  }
  return out;
}

/** The index of the last build stage: the image that runs. */
export const lastStage = (instructions: Instruction[]): number => Math.max(...instructions.map((i) => i.stage));

/** The exec (JSON array) form of CMD/ENTRYPOINT/HEALTHCHECK CMD arguments; null for the shell form. */
export function execForm(args: string): string[] | null {
  if (!args.startsWith("[")) return null;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) throw new Error(`not an array of strings: ${args}`);
  return parsed;
}

/** A RUN's flags (`--mount=type=secret,id=extra_ca`, ...), before its shell command. */
export function runFlags(args: string): string[] {
  return /^((?:--[a-z]+=\S+\s+)*)/
    .exec(args)![1]!
    .split(/\s+/)
    .filter((f) => f.length > 0);
}

/** The shell commands of a RUN (its flags left out), split at `&&`, `||` and `;` (our RUNs quote none of these). */
export function runCommands(args: string): string[] {
  const shell = args.replace(/^(?:--[a-z]+=\S+\s+)*/, "");
  return shell
    .split(/&&|\|\||;/)
    .map((c) => c.replace(/\s+/g, " ").trim())
    .filter((c) => c.length > 0);
}

/** A command the project provides (npm scripts, our node programs) rather than the OS image (apt-get, rm, useradd). */
export function isProjectCommand(command: string): boolean {
  return /^(npm|npx|node)\b/.test(command);
}

/** ENV/ARG `KEY=value` pairs (quotes removed). */
export function keyValues(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)(?:=("[^"]*"|'[^']*'|\S*))?/g)) {
    const raw = m[2];
    if (raw === undefined) continue;
    out[m[1]!] = raw.replace(/^(["'])(.*)\1$/, "$2");
  }
  return out;
}

/** The global ARGs (before the first FROM) with their defaults, `${ARG}` resolved: what FROM lines see. */
export function globalArgs(instructions: Instruction[]): Record<string, string> {
  const args: Record<string, string> = {};
  const expand = (v: string) => v.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[a ?? b!] ?? "");
  for (const ins of instructions.filter((i) => i.stage === -1 && i.keyword === "ARG")) {
    for (const [k, v] of Object.entries(keyValues(ins.args))) args[k] = expand(v);
  }
  return args;
}

/** The image a stage is built FROM, with the global ARGs' defaults (no --build-arg). */
export function stageBase(instructions: Instruction[], stage: number): string {
  const from = instructions.find((i) => i.stage === stage && i.keyword === "FROM")!;
  const args = globalArgs(instructions);
  return from.args.split(" ")[0]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[a ?? b!] ?? "");
}

/**
 * The environment a stage's processes get from its ENV instructions, with `${ARG}` resolved from the
 * stage's ARG defaults (`--build-arg`s not given).
 */
export function stageEnv(instructions: Instruction[], stage: number): Record<string, string> {
  const args: Record<string, string> = {};
  const env: Record<string, string> = {};
  const expand = (v: string) =>
    v.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => env[a ?? b!] ?? args[a ?? b!] ?? "");
  for (const ins of instructions.filter((i) => i.stage === stage)) {
    if (ins.keyword === "ARG") Object.assign(args, keyValues(ins.args));
    if (ins.keyword === "ENV") for (const [k, v] of Object.entries(keyValues(ins.args))) env[k] = expand(v);
  }
  return env;
}

/** The ENTRYPOINT's command without the init process (`/usr/bin/tini --`), e.g. ["node", "dist/cli/main.js", "serve"]. */
export function entrypointCommand(instructions: Instruction[]): string[] {
  const entry = instructions.filter((i) => i.keyword === "ENTRYPOINT").at(-1);
  if (!entry) throw new Error("no ENTRYPOINT");
  const argv = execForm(entry.args);
  if (!argv) throw new Error("the ENTRYPOINT is not in exec form");
  const dashes = argv.indexOf("--");
  return dashes >= 0 ? argv.slice(dashes + 1) : argv;
}

/** HEALTHCHECK's CMD in exec form. */
export function healthcheckCommand(instructions: Instruction[]): string[] {
  const hc = instructions.filter((i) => i.keyword === "HEALTHCHECK").at(-1);
  if (!hc) throw new Error("no HEALTHCHECK");
  const m = /^(.*?)\bCMD\s+(.*)$/.exec(hc.args);
  if (!m) throw new Error(`HEALTHCHECK without CMD: ${hc.args}`);
  const argv = execForm(m[2]!);
  if (!argv) throw new Error("the HEALTHCHECK command is not in exec form");
  return argv;
}

/** Commands .ci/run runs (its lines that are not comments, control flow or variable settings). */
export function ciCommands(): string[] {
  return readFileSync(join(ROOT, ".ci", "run"), "utf8")
    .split("\n")
    .map((l) => l.replace(/\s+#.*$/, "").trim())
    .filter((l) => l && !l.startsWith("#") && !/^(set|cd|export)\b/.test(l));
}

/** KEY=value lines of an env file (compose's env_file syntax, without interpolation). */
export function readEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The image's entrypoint as a process

/** Why the built dist/ cannot be run (missing), or a warning when src/ changed after it was built. */
export function distState(): { missing?: string; stale?: string } {
  const built = join(ROOT, "dist", "cli", "serve.js");
  if (!existsSync(built)) return { missing: "dist/ is not built: run `npm run build` (or `npm run build:ts`)" };
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce(
      (m, e) => Math.max(m, e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs),
      0,
    );
  const changed = newest(join(ROOT, "src")) > statSync(built).mtimeMs;
  return changed ? { stale: "src/ changed after dist/ was built: the ENTRYPOINT runs the older build (npm run build:ts)" } : {};
}

export type EntrypointProcess = ServerProcess;

/**
 * Runs the Dockerfile's ENTRYPOINT command (`node dist/cli/main.js serve`, as the image runs it,
 * from the repository root, which holds what the image's /app holds) with `env` only: no PASTA_*
 * or LOG_LEVEL of the test's environment, no NODE_OPTIONS (the test runner's loader). Resolves once
 * /ready is 200 (harness/process.ts's startServer).
 */
export function startEntrypoint(command: string[], env: Record<string, string>, readyTimeoutMs = 20_000): Promise<EntrypointProcess> {
  return startServer([], env, { command, logLevel: null, readyTimeoutMs });
}

// ---------------------------------------------------------------------------------------------
// The gateway: docker/nginx.conf.template with Debian's nginx

/** Says how to get nginx when it is missing (the gateway test fails then: CI installs it). */
export function nginxMissing(): string | null {
  if (existsSync(NGINX)) return null;
  return (
    `nginx is not installed (${NGINX}): the gateway test runs the project's nginx config with Debian's nginx. ` +
    "Install it: apt-get update && apt-get install -y --no-install-recommends nginx (.ci/run does)"
  );
}

/** The template's ${NAME} placeholders. */
export function templatePlaceholders(template: string): string[] {
  return [...new Set([...template.matchAll(/\$\{(\w+)\}/g)].map((m) => m[1]!))];
}

/** What the nginx image's envsubst does with NGINX_ENVSUBST_FILTER=^PASTA_GATEWAY_: ${NAME} of those variables replaced. */
export function renderTemplate(template: string, vars: Record<string, string>): string {
  return template.replace(/\$\{(PASTA_GATEWAY_\w+)\}/g, (whole, name: string) => {
    if (!(name in vars)) throw new Error(`no value for ${whole}`);
    return vars[name]!;
  });
}

/** One line of the gateway's access log (log_format pasta_gateway in the template). */
export interface AccessLogEntry {
  time: string;
  request_id: string;
  remote_addr: string;
  request: string;
  status: string;
  bytes_sent: string;
  request_time: string;
  upstream_addr: string;
  upstream_status: string;
  upstream_response_time: string;
}

export interface Gateway {
  base: string;
  port: number;
  dir: string;
  proc: ChildProcess;
  /** the access log (the template sends it to stdout) */
  accessLog: () => AccessLogEntry[];
  /** nginx's error log (stderr) */
  errorLog: () => string;
  stop(): Promise<void>;
}

/**
 * Starts nginx on a loopback port with the project's gateway config: docker/nginx.conf.template
 * rendered with the replicas' addresses, included in a main config that plays the part of the nginx
 * image's /etc/nginx/nginx.conf (events, temp paths under a temporary prefix). `keysMap`: the
 * content of gateway-keys.map; by default the shipped docker/gateway-keys.map itself (a link).
 * Resolves once /health answers 200 through it.
 */
export async function startGateway(replicas: [string, string], options: { keysMap?: string } = {}): Promise<Gateway> {
  const missing = nginxMissing();
  if (missing) throw new Error(missing);
  const dir = mkdtempSync(join(tmpdir(), "pasta-gateway-"));
  chmodSync(dir, 0o755); // nginx's workers run as nobody when the tests run as root
  if (options.keysMap === undefined) symlinkSync(GATEWAY_KEYS_MAP, join(dir, "gateway-keys.map"));
  else writeFileSync(join(dir, "gateway-keys.map"), options.keysMap);
  const temp = (name: string) => `${name}_temp_path ${join(dir, name)};`;
  const template = readFileSync(GATEWAY_TEMPLATE, "utf8");
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    writeFileSync(
      join(dir, "pasta.conf"),
      renderTemplate(template, {
        PASTA_GATEWAY_REPLICA_1: replicas[0],
        PASTA_GATEWAY_REPLICA_2: replicas[1],
        PASTA_GATEWAY_LISTEN: `127.0.0.1:${port}`,
      }),
    );
    writeFileSync(
      join(dir, "nginx.conf"),
      [
        "worker_processes 1;",
        "events { worker_connections 256; }",
        "http {",
        "    default_type application/octet-stream;",
        `    ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}`,
        `    access_log ${join(dir, "access.log")};`,
        "    include pasta.conf;",
        "}",
        "",
      ].join("\n"),
    );
    // stdout (the template's access_log /dev/stdout) is a file: Node's stdio pipes are sockets, which
    // cannot be opened by path (ENXIO); in the nginx image it is the container's log
    const stdoutPath = join(dir, "stdout.log");
    const stdoutFd = openSync(stdoutPath, "a");
    const proc = spawn(
      NGINX,
      ["-p", dir, "-c", join(dir, "nginx.conf"), "-g", `daemon off; pid ${join(dir, "nginx.pid")}; error_log stderr notice;`],
      {
        stdio: ["ignore", stdoutFd, "pipe"],
      },
    );
    closeSync(stdoutFd);
    killOnExit(proc, "SIGTERM"); // nginx: SIGTERM, so that its workers go too
    let err = "";
    const out = () => readFileSync(stdoutPath, "utf8");
    proc.stderr!.setEncoding("utf8").on("data", (c: string) => {
      err += c;
    });
    const base = `http://127.0.0.1:${port}`;
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGTERM"); // fast shutdown: the master stops its workers
        const killer = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await waitForExit(proc);
        clearTimeout(killer);
      }
      rmSync(dir, { recursive: true, force: true });
    };
    const accessLog = () =>
      out()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as AccessLogEntry);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && proc.exitCode === null && proc.signalCode === null) {
      try {
        const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return { base, port, dir, proc, accessLog, errorLog: () => err, stop };
      } catch {
        /* not listening yet */
      }
      await sleep(30);
    }
    lastError = err;
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGKILL");
      await waitForExit(proc);
    }
    if (!/Address already in use/.test(err)) break; // another process took the port: try another
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`nginx did not start with docker/nginx.conf.template:\n${lastError}`);
}
