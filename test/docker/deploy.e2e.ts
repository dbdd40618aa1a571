// The Docker deployment for real (npm run test:docker; test/docker/run.sh has a Docker engine
// running and the base images ready): the README's docker commands, run as they are, except for
// what must differ on a test machine (a free port, still on 127.0.0.1; the model folder
// ../shared/models, read-only; the SmolLM2 file; container and project names of this run; base images
// and the CA bundle given as the build options docs/deployment.md documents):
//   1. docker build: the image, its size;
//   2. docker run: the HEALTHCHECK turns healthy (time to healthy), /v1/models, a steered chat through
//      the openai client with steering.spans, the unprivileged user, docker stop draining a stream in
//      flight to its `data: [DONE]`, exit code 0;
//   3. docker-compose: two replicas behind the gateway, requests reaching both, SSE unbuffered, a
//      replica killed (docker kill) under concurrent load: what the gateway had not sent to it is
//      retried on the other, what it had fails with the documented error, nothing hangs;
//   4. the CUDA image's build, where its base images can be had (skipped with the reason otherwise).
// Not part of `npm test` (its name does not end in .test.ts): it needs root and a Docker engine.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import OpenAI from "openai";
import t, { type Test } from "tap";
import { sleep } from "../../harness/index.js";
import { DOCKERFILE, DOCKERFILE_CUDA, freePort, globalArgs, parseDockerfile, ROOT, stageBase } from "../support/deployment.js";

function env(name: string): string {
  const value = process.env[`PASTA_TEST_DOCKER_${name}`];
  if (value === undefined)
    throw new Error(`PASTA_TEST_DOCKER_${name} is not set: run this through npm run test:docker (test/docker/run.sh)`);
  return value;
}
const RUN_ID = env("RUN_ID");
const LOG_DIR = env("LOG_DIR");
const MODELS = env("MODELS");
const MODEL_FILE = env("MODEL_FILE");
const MODEL_ID = MODEL_FILE.replace(/\.gguf$/, "");
const [OFFICIAL_BUILDER, OFFICIAL_RUNTIME, OFFICIAL_GATEWAY, OFFICIAL_CUDA_BUILDER, OFFICIAL_CUDA_RUNTIME] = env("OFFICIAL").split(" ");
const BUILDER_IMAGE = env("BUILDER_IMAGE");
const RUNTIME_IMAGE = env("RUNTIME_IMAGE");
const GATEWAY_IMAGE = env("GATEWAY_IMAGE");
const CUDA_SKIP = env("CUDA_SKIP");
const EXTRA_CA = process.env.PASTA_TEST_DOCKER_EXTRA_CA;
const CONTAINER = `pasta-server-test-${RUN_ID}`;
const PROJECT = `pasta-test-${RUN_ID}`;

const seconds = (ms: number) => (ms / 1000).toFixed(1);
/** A line of the summary run.sh prints at the end, and a comment in the TAP output. */
function report(t: Tap, line: string) {
  appendFileSync(env("REPORT"), `${line}\n`);
  t.comment(line);
}
type Tap = { comment: (...args: unknown[]) => void };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}
/** Runs a command line with bash in the repository root, as a user pastes it; `log`: where its output goes instead. */
function sh(command: string, options: { env?: Record<string, string>; timeoutMs?: number; log?: string } = {}): Promise<Result> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", command], { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "",
      stderr = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => {
      stdout += c;
      if (options.log) appendFileSync(options.log, c);
    });
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      stderr += c;
      if (options.log) appendFileSync(options.log, c);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}
async function ok(command: string, options: Parameters<typeof sh>[1] = {}): Promise<Result> {
  const res = await sh(command, options);
  if (res.code !== 0) {
    const output = options.log ? readFileSync(options.log, "utf8") : res.stdout + res.stderr;
    throw new Error(`\`${command}\` exited with ${res.code}:\n${output.split("\n").slice(-60).join("\n")}`);
  }
  return res;
}
const inspect = async (format: string, target: string) => (await ok(`docker inspect -f '${format}' ${target}`)).stdout.trim();

// ---------------------------------------------------------------------------------------------
// The README's commands (its Deployment section's sh block), and what a test machine changes in them

const README = readFileSync(join(ROOT, "README.md"), "utf8");
const DEPLOY_BLOCK = /^## Deployment\n[\s\S]*?```sh\n([\s\S]*?)```/m.exec(README)?.[1] ?? "";
/** The one line of the block that starts with `prefix`, its trailing comment left out. */
function readmeCommand(prefix: string): string {
  const lines = DEPLOY_BLOCK.split("\n").filter((l) => l.startsWith(prefix));
  if (lines.length !== 1)
    throw new Error(`README.md's Deployment block should have one command starting with \`${prefix}\`, has ${lines.length}`);
  return lines[0]!.replace(/\s+#.*$/, "").trim();
}
/** `command` with `from` replaced by `to`; `from` must be there, so that README drift fails the test. */
function substitute(command: string, pairs: Array<[string | RegExp, string]>): string {
  let out = command;
  for (const [from, to] of pairs) {
    const found = typeof from === "string" ? out.includes(from) : from.test(out);
    if (!found) throw new Error(`README command \`${command}\` has no ${from}: update test/docker/deploy.e2e.ts with it`);
    out =
      typeof from === "string"
        ? out.split(from).join(to)
        : out.replace(new RegExp(from.source, from.flags.includes("g") ? from.flags : `${from.flags}g`), to);
  }
  return out;
}
/** the container's name in the README's commands (not the image's, pasta-server:latest) */
const CONTAINER_NAME = /\bpasta-server(?=\s|$)/;
const IMAGE = "pasta-server:latest";

let imageBuilt = false;

t.test("the README's docker commands: published on 127.0.0.1, the defaults these images build from", async (t) => {
  const run = readmeCommand("docker run ");
  t.match(run, /-p 127\.0\.0\.1:8080:8080\b/, "docker run publishes on 127.0.0.1 only");
  t.match(readmeCommand("docker-compose -p pasta -f docker/compose.yaml up"), /up -d$/);
  const compose = readFileSync(join(ROOT, "docker", "compose.yaml"), "utf8");
  t.match(
    compose,
    /"\$\{PASTA_GATEWAY_ADDRESS:-127\.0\.0\.1\}:\$\{PASTA_GATEWAY_PORT:-8080\}:8080"/,
    "compose publishes the gateway on 127.0.0.1 unless told otherwise",
  );
  t.ok(compose.includes(`image: \${PASTA_GATEWAY_IMAGE:-${OFFICIAL_GATEWAY}}`), `compose's gateway image defaults to ${OFFICIAL_GATEWAY}`);
  const cpu = parseDockerfile(DOCKERFILE),
    cuda = parseDockerfile(DOCKERFILE_CUDA);
  t.same(
    [stageBase(cpu, 0), stageBase(cpu, 1)],
    [OFFICIAL_BUILDER, OFFICIAL_RUNTIME],
    "docker/Dockerfile's default base images are run.sh's",
  );
  t.same(
    [globalArgs(cuda).CUDA_BUILDER_IMAGE, globalArgs(cuda).CUDA_RUNTIME_IMAGE],
    [OFFICIAL_CUDA_BUILDER, OFFICIAL_CUDA_RUNTIME],
    "and docker/Dockerfile.cuda's",
  );
  const docs = readFileSync(join(ROOT, "docs", "deployment.md"), "utf8");
  for (const option of ["--build-arg BUILDER_IMAGE=", "--build-arg RUNTIME_IMAGE=", "--secret id=extra_ca,src="]) {
    t.ok(docs.includes(option), `docs/deployment.md documents ${option}`);
  }
});

/** The README's build command with this machine's base images (and CA bundle): the documented build options. */
function buildCommand(readme: string, extra: string[]): string {
  const options = [...extra];
  if (EXTRA_CA) options.push(`--secret id=extra_ca,src=${EXTRA_CA}`);
  return substitute(readme, [[/ \.$/, ` ${options.join(" ")} .`]]);
}

/** The slowest build steps, from BuildKit's plain progress output. */
function slowestSteps(log: string, count = 4): string {
  const names = new Map<string, string>(),
    times: Array<[string, number]> = [];
  for (const line of log.split("\n")) {
    const named = /^#(\d+) (\[.*)$/.exec(line);
    if (named && !names.has(named[1]!) && !named[2]!.startsWith("[internal]"))
      names.set(named[1]!, named[2]!.replace(/\s+/g, " ").slice(0, 60));
    const done = /^#(\d+) DONE (\d+(?:\.\d+)?)s$/.exec(line);
    if (done && names.has(done[1]!) && Number(done[2]) >= 1) times.push([names.get(done[1]!)!, Number(done[2])]);
  }
  return (
    times
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([n, s]) => `${s.toFixed(0)} s ${n}`)
      .join("; ") || "every step cached"
  );
}

t.test("docker build", async (t) => {
  const command = buildCommand(readmeCommand("docker build -f docker/Dockerfile "), [
    `--build-arg BUILDER_IMAGE=${BUILDER_IMAGE}`,
    `--build-arg RUNTIME_IMAGE=${RUNTIME_IMAGE}`,
  ]);
  t.comment(`$ ${command}`);
  const log = join(LOG_DIR, "build.log");
  writeFileSync(log, "");
  const before = await sh(`docker image inspect -f '{{.Id}}' ${IMAGE}`);
  const res = await ok(`${command} --progress=plain`, { log, timeoutMs: 45 * 60_000 });
  imageBuilt = true;
  const previous = before.stdout.trim();
  if (before.code === 0 && previous !== (await inspect("{{.Id}}", IMAGE))) await sh(`docker rmi ${previous}`); // left untagged by this build
  report(t, `docker build: ${seconds(res.ms)} s (slowest steps: ${slowestSteps(readFileSync(log, "utf8"))})`);
  const size = Number(await inspect("{{.Size}}", IMAGE));
  const nodeModules = (await ok(`docker run --rm --entrypoint du ${IMAGE} -sm /app/node_modules`)).stdout.split("\t")[0];
  report(
    t,
    `image ${IMAGE}: ${(size / 1e6).toFixed(0)} MB (${(size / 2 ** 20).toFixed(0)} MiB), of which /app/node_modules ${nodeModules} MiB; base ${RUNTIME_IMAGE}: ${(Number(await inspect("{{.Size}}", RUNTIME_IMAGE)) / 1e6).toFixed(0)} MB`,
  );
  t.equal(await inspect("{{.Config.User}}", IMAGE), "10001:10001", "runs as 10001");
  t.match(await inspect("{{json .Config.Healthcheck.Test}}", IMAGE), /\/ready/, "HEALTHCHECK on /ready");
  t.ok(size < 600e6, "a slim image");
});

t.test("docker run: healthy, serves steered requests as user 10001, docker stop drains and exits 0", async (t) => {
  if (!imageBuilt) throw new Error("the image was not built");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const run = substitute(readmeCommand("docker run "), [
    [CONTAINER_NAME, CONTAINER],
    ["127.0.0.1:8080:8080", `127.0.0.1:${port}:8080`],
    ["$PWD/models:", `${MODELS}:`],
    ["/models/model.gguf", `/models/${MODEL_FILE}`],
  ]);
  t.comment(`$ ${run}`);
  const started = performance.now();
  await ok(run);
  t.teardown(async () => {
    await sh(`docker rm -f ${CONTAINER}`);
  });

  // time to healthy: the HEALTHCHECK's status, polled; and when /ready itself turned 200
  let readyMs: number | undefined,
    status = "";
  for (;;) {
    if (readyMs === undefined) {
      try {
        if ((await fetch(`${base}/ready`, { signal: AbortSignal.timeout(1000) })).status === 200) readyMs = performance.now() - started;
      } catch {
        /* not yet */
      }
    }
    status = await inspect("{{.State.Status}} {{.State.Health.Status}}", CONTAINER);
    if (status === "running healthy" || !status.startsWith("running") || performance.now() - started > 200_000) break;
    await sleep(250);
  }
  const healthyMs = performance.now() - started;
  if (status !== "running healthy")
    throw new Error(`container ${status} after ${seconds(healthyMs)} s; logs:\n${(await sh(`docker logs ${CONTAINER}`)).stdout}`);
  report(
    t,
    `docker run: healthy after ${seconds(healthyMs)} s (the model ready, /ready 200, after ${readyMs === undefined ? "?" : seconds(readyMs)} s; the HEALTHCHECK probes every 10 s)`,
  );
  const health = readmeCommand("docker inspect ");
  t.equal((await ok(substitute(health, [[CONTAINER_NAME, CONTAINER]]))).stdout.trim(), "healthy", `$ ${health}`);

  const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> };
  t.same(
    models.data.map((m) => m.id),
    [MODEL_ID],
    "/v1/models: the mounted model",
  );

  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
  const chat = await client.chat.completions.create({
    model: MODEL_ID,
    max_tokens: 12,
    temperature: 0,
    messages: [{ role: "user", content: "The meeting moved. **The meeting is on Friday at noon.** When is the meeting?" }],
    // no heads: the image's profiles/ has the one made for this model file
    // @ts-expect-error steering is this server's extra body field
    steering: { markup: "markdown" },
  });
  const spans =
    (chat as unknown as { steering?: { spans: Array<{ text: string; token_start: number; token_end: number }> } }).steering?.spans ?? [];
  t.equal(chat.object, "chat.completion");
  t.ok(chat.choices[0]!.message.content!.length > 0, `answered: ${JSON.stringify(chat.choices[0]!.message.content)}`);
  t.equal(spans.length, 1, "steering.spans: the emphasized span");
  t.equal(spans[0]?.text, "The meeting is on Friday at noon.");
  t.ok(spans[0]!.token_end > spans[0]!.token_start, `its tokens ${spans[0]?.token_start}..${spans[0]?.token_end}`);

  const top = (await ok(`docker top ${CONTAINER} -o pid,uid,args`)).stdout.trim().split("\n").slice(1);
  t.ok(
    top.length >= 2 && top.every((l) => l.trim().split(/\s+/)[1] === "10001"),
    `every process runs as uid 10001 (tini and node):\n${top.join("\n")}`,
  );
  t.equal((await ok(`docker exec ${CONTAINER} id -u`)).stdout.trim(), "10001", "docker exec too");
  t.equal((await inspect("{{.State.Pid}}", CONTAINER)) !== "0", true);

  // a stream in flight when docker stop sends SIGTERM: it finishes, with its [DONE]
  const stream = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: MODEL_ID,
      stream: true,
      max_tokens: 200,
      temperature: 0,
      messages: [{ role: "user", content: "Write a short story about a cat." }],
    }),
  });
  t.equal(stream.status, 200);
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = (await reader.read()).value ?? "";
  t.match(text, /^data: /, "the stream has started");
  const stop = readmeCommand("docker stop ");
  const stopping = sh(substitute(stop, [[CONTAINER_NAME, CONTAINER]]), { timeoutMs: 60_000 });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const stopped = await stopping;
  t.equal(stopped.code, 0, `$ ${stop}`);
  const events = text.split("\n\n").filter((e) => e.startsWith("data: "));
  t.equal(events.at(-1), "data: [DONE]", `the stream in flight finished with data: [DONE] (${events.length - 1} chunks)`);
  const last = JSON.parse(events.at(-2)!.slice("data: ".length)) as { choices: Array<{ finish_reason: string | null }> };
  t.equal(
    await inspect("{{.State.ExitCode}}", CONTAINER),
    "0",
    "the container exited 0: by itself, not by Docker's SIGKILL (137) 10 s after SIGTERM",
  );
  const logs = (await ok(`docker logs ${CONTAINER}`)).stdout;
  const logged = (msg: RegExp) =>
    logs
      .split("\n")
      .filter((l) => msg.test(l))
      .map((l) => JSON.parse(l) as { time: number; active?: number })[0];
  const draining = logged(/"msg":"draining \(up to 7 s\)"/),
    stoppedLine = logged(/"msg":"stopped"/);
  t.equal(draining?.active, 1, "SIGTERM, forwarded by tini, found the stream in flight and drained it");
  t.ok(stoppedLine, "the server logged its stop");
  const serverMs = stoppedLine && draining ? stoppedLine.time - draining.time : NaN;
  t.ok(serverMs < 10_000, `from SIGTERM to the server's last line: ${seconds(serverMs)} s, within Docker's 10 s`);
  report(
    t,
    `docker stop with a stream in flight: the stream ended with [DONE] (finish_reason ${last.choices[0]?.finish_reason}), the server stopped ${seconds(serverMs)} s after SIGTERM and exited 0; docker stop returned after ${seconds(stopped.ms)} s`,
  );
  await ok(substitute(readmeCommand("docker rm "), [[CONTAINER_NAME, CONTAINER]]));
});

// ---------------------------------------------------------------------------------------------
// docker-compose: two replicas behind the gateway

interface AccessLogEntry {
  request_id: string;
  request: string;
  status: string;
  upstream_addr: string;
  upstream_status: string;
  request_time: string;
}

t.test("docker-compose: two replicas behind the gateway", async (t) => {
  if (!imageBuilt) throw new Error("the image was not built");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const composeEnv = {
    PASTA_GATEWAY_PORT: String(port),
    PASTA_MODELS_HOST_DIR: MODELS,
    PASTA_MODEL: `/models/${MODEL_FILE}`,
    ...(GATEWAY_IMAGE === OFFICIAL_GATEWAY ? {} : { PASTA_GATEWAY_IMAGE: GATEWAY_IMAGE }),
  };
  const compose = (command: string) => substitute(command, [["-p pasta ", `-p ${PROJECT} `]]);
  const up = compose(readmeCommand("docker-compose -p pasta -f docker/compose.yaml up"));
  const down = compose(readmeCommand("docker-compose -p pasta -f docker/compose.yaml down"));
  t.comment(
    `$ ${Object.entries(composeEnv)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")} ${up}`,
  );
  t.teardown(async () => {
    await sh(down, { env: composeEnv, timeoutMs: 120_000 });
  });
  const upped = await ok(up, { env: composeEnv, timeoutMs: 300_000 });
  report(t, `docker-compose up -d: ${seconds(upped.ms)} s (returns once both replicas are healthy and the gateway started)`);

  const id = async (service: string) =>
    (await ok(`docker-compose -p ${PROJECT} -f docker/compose.yaml ps -q ${service}`, { env: composeEnv })).stdout.trim();
  const [replica1, replica2, gatewayId] = [await id("pasta-1"), await id("pasta-2"), await id("gateway")];
  const address = async (container: string) =>
    `${await inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)}:8080`;
  const [addr1, addr2] = [await address(replica1), await address(replica2)];
  const accessLog = async (): Promise<AccessLogEntry[]> =>
    (await ok(`docker logs ${gatewayId}`)).stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as AccessLogEntry);
  for (
    let i = 0;
    i < 50 &&
    (await fetch(`${base}/ready`).then(
      (r) => r.status,
      () => 0,
    )) !== 200;
    i++
  )
    await sleep(200);
  t.equal((await fetch(`${base}/ready`)).status, 200, "the gateway is ready");
  t.match(await inspect("{{.Config.Image}}", gatewayId), GATEWAY_IMAGE);

  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const requestId = `compose-${i}-${randomUUID()}`;
    ids.push(requestId);
    const res = await client.chat.completions.create(
      { model: MODEL_ID, messages: [{ role: "user", content: "Say hi." }], max_tokens: 4, temperature: 0 },
      { headers: { "x-request-id": requestId } },
    );
    t.equal(res.usage?.completion_tokens, 4);
  }
  let seen: AccessLogEntry[] = [];
  for (let i = 0; i < 25 && seen.length < ids.length; i++) {
    seen = (await accessLog()).filter((e) => ids.includes(e.request_id));
    await sleep(200);
  }
  t.same(
    [...new Set(seen.map((e) => e.upstream_addr))].sort(),
    [addr1, addr2].sort(),
    `requests reached both replicas (${addr1}, ${addr2})`,
  );
  const replicaLogs = await Promise.all([replica1, replica2].map(async (c) => (await ok(`docker logs ${c}`)).stdout));
  t.ok(
    ids.every((requestId) => replicaLogs.some((l) => l.includes(`"reqId":"${requestId}"`))),
    "x-request-id reaches the replica's log",
  );

  // SSE through the gateway: chunks arrive as they are generated, not in one buffered piece
  const streamStarted = performance.now();
  const stream = await client.chat.completions.create({
    model: MODEL_ID,
    messages: [{ role: "user", content: "Count from one to twenty." }],
    max_tokens: 48,
    temperature: 0,
    stream: true,
  });
  const arrivals: number[] = [];
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) arrivals.push(performance.now() - streamStarted);
  }
  const spread = arrivals.at(-1)! - arrivals[0]!;
  let instants = 1;
  for (let i = 1; i < arrivals.length; i++) if (arrivals[i]! - arrivals[i - 1]! > 1) instants++;
  t.ok(
    arrivals.length >= 10 && instants >= arrivals.length / 2,
    `SSE unbuffered: ${arrivals.length} content chunks arrived at ${instants} separate moments over ${seconds(spread)} s`,
  );
  report(t, `compose SSE through the gateway: ${arrivals.length} content chunks at ${instants} separate moments over ${seconds(spread)} s`);

  await killUnderLoad(t, { base, client, dead: { container: replica1, address: addr1 }, alive: addr2, accessLog });

  const downed = await ok(down, { env: composeEnv, timeoutMs: 120_000 });
  t.equal(
    (await ok(`docker ps -aq --filter label=com.docker.compose.project=${PROJECT}`)).stdout.trim(),
    "",
    `$ ${down}: no container left`,
  );
  t.equal((await ok(`docker network ls -q --filter label=com.docker.compose.project=${PROJECT}`)).stdout.trim(), "", "no network left");
  report(t, `docker-compose down: ${seconds(downed.ms)} s`);
});

interface Outcome {
  id: string;
  stream: boolean;
  startedMs: number;
  ms: number;
  ok: boolean;
  status?: number;
  code?: string | null;
  error?: string;
  done?: boolean;
}

/**
 * Concurrent chat requests (a quarter of them streamed) through the gateway; `docker kill` of one
 * replica while they run; each client goes on until it has started a request more than 11 s after the
 * kill, past the gateway's fail_timeout (10 s), when nginx tries the dead replica again. Then each
 * request is judged by the gateway's access log.
 */
async function killUnderLoad(
  t: Test,
  o: {
    base: string;
    client: OpenAI;
    dead: { container: string; address: string };
    alive: string;
    accessLog: () => Promise<AccessLogEntry[]>;
  },
) {
  const CONCURRENCY = 8,
    AFTER_KILL_MS = 11_000,
    REQUEST_TIMEOUT_MS = 120_000;
  const outcomes: Outcome[] = [];
  const t0 = performance.now();
  let killedAt: number | undefined,
    n = 0;
  const one = async (stream: boolean): Promise<Outcome> => {
    const id = `kill-${n++}-${randomUUID()}`;
    const startedMs = performance.now() - t0;
    const out: Outcome = { id, stream, startedMs, ms: 0, ok: false };
    const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    try {
      const res = await fetch(`${o.base}/v1/chat/completions`, {
        method: "POST",
        signal,
        headers: { "content-type": "application/json", "x-request-id": id },
        body: JSON.stringify({
          model: MODEL_ID,
          stream,
          max_tokens: 8,
          temperature: 0.7,
          messages: [{ role: "user", content: "Name a fruit." }],
        }),
      });
      out.status = res.status;
      const body = await res.text();
      if (res.status === 200) {
        out.done = !stream || body.trimEnd().endsWith("data: [DONE]");
        out.ok = out.done;
        if (!out.done) out.error = "stream ended without [DONE]";
      } else {
        out.code = (JSON.parse(body) as { error?: { code?: string | null } }).error?.code ?? null;
      }
    } catch (err) {
      out.error = signal.aborted
        ? "HUNG (no answer within 120 s)"
        : `${(err as Error).message}${(err as Error & { cause?: Error }).cause ? `: ${(err as Error & { cause: Error }).cause.message}` : ""}`;
    }
    out.ms = performance.now() - t0 - startedMs;
    return out;
  };
  const worker = async (w: number) => {
    for (let i = 0; ; i++) {
      const last = killedAt !== undefined && performance.now() - t0 > killedAt + AFTER_KILL_MS;
      outcomes.push(await one((w + i) % 4 === 0));
      if (last) return;
    }
  };
  const workers = Array.from({ length: CONCURRENCY }, (_, w) => worker(w));
  // kill once the load is on both replicas: a few requests done, the next ones in flight
  while (outcomes.length < CONCURRENCY) await sleep(50);
  await sleep(300);
  const killSent = performance.now() - t0;
  await ok(`docker kill ${o.dead.container}`);
  // the replica is gone when `docker kill` returns, not when it starts: a request sent while the
  // command ran may still have reached it (CI saw one 0.1 s after the command started)
  killedAt = performance.now() - t0;
  await Promise.all(workers);
  const state = await inspect("{{.State.Status}} (exit {{.State.ExitCode}}, restarts {{.RestartCount}})", o.dead.container);

  let log: AccessLogEntry[] = [];
  for (let i = 0; i < 25; i++) {
    log = await o.accessLog();
    if (outcomes.every((r) => log.some((e) => e.request_id === r.id))) break;
    await sleep(200);
  }
  const entry = new Map(log.map((e) => [e.request_id, e]));
  const tried = (r: Outcome) => (entry.get(r.id)?.upstream_addr ?? "").split(/, | : /).filter((a) => a.length > 0);
  const hung = outcomes.filter((r) => r.error?.startsWith("HUNG"));
  t.same(
    hung.map((r) => r.id),
    [],
    `no request hung (the slowest took ${seconds(Math.max(...outcomes.map((r) => r.ms)))} s)`,
  );
  t.ok(
    outcomes.every((r) => entry.has(r.id)),
    "every request is in the gateway's access log",
  );
  // retried: the gateway tried the dead replica, could not reach it, and the live one answered
  const retried = outcomes.filter((r) => tried(r).length > 1 && tried(r)[0] === o.dead.address && tried(r).at(-1) === o.alive);
  const reachedDead = outcomes.filter((r) => tried(r).at(-1) === o.dead.address);
  const failed = outcomes.filter((r) => !r.ok);
  t.same(
    failed
      .filter((r) => !reachedDead.includes(r))
      .map((r) => `${r.id}: ${r.status} ${r.code ?? r.error ?? ""} via ${entry.get(r.id)?.upstream_addr}`),
    [],
    "every request the dead replica did not have was answered (none lost)",
  );
  t.ok(
    retried.every((r) => r.ok),
    `the ${retried.length} sent to the dead replica's address after the kill were retried on the live one and answered`,
  );
  t.ok(retried.length >= 1, "there were some: nginx tries the dead replica again after fail_timeout");
  const documented = (r: Outcome) => (r.status === 503 && r.code === "no_replica_available") || (r.stream && r.status === 200 && !r.done);
  t.same(
    failed.filter((r) => !documented(r)).map((r) => `${r.id}: ${r.status} ${r.code ?? r.error ?? ""}`),
    [],
    "those the dead replica had failed with the documented error: 503 no_replica_available, or a started stream cut without [DONE]",
  );
  const afterKill = outcomes.filter((r) => r.startedMs > killedAt!);
  t.ok(afterKill.length >= CONCURRENCY, `${afterKill.length} requests started after the kill`);
  t.same(
    afterKill.filter((r) => !r.ok).map((r) => r.id),
    [],
    "all of them answered",
  );

  const count = (rs: Outcome[], f: (r: Outcome) => boolean) => rs.filter(f).length;
  const end = Math.max(...outcomes.map((r) => r.startedMs + r.ms));
  report(
    t,
    `gateway, a replica killed under load (${CONCURRENCY} concurrent clients, ${outcomes.length} requests, ${count(outcomes, (r) => r.stream)} streamed, kill sent at ${seconds(killSent)} s and done at ${seconds(killedAt)} s, load until ${seconds(end)} s, ${afterKill.length} requests after the kill): ` +
      `${count(outcomes, (r) => r.ok)} answered, of which ${retried.length} retried on the live replica after the dead one's address failed; ` +
      `${failed.length} failed, all in flight on the killed replica (${count(failed, (r) => r.status === 503)} x 503 no_replica_available, ${count(failed, (r) => r.stream && r.status === 200)} streams cut without [DONE]); ` +
      `${hung.length} hung; the killed replica: ${state}`,
  );
  for (const r of [...failed, ...retried]) {
    const e = entry.get(r.id);
    t.comment(
      `  ${r.id.slice(0, 12)} ${r.stream ? "stream" : "chat  "} at ${seconds(r.startedMs)} s: ${r.ok ? "200" : `${r.status ?? "-"} ${r.code ?? r.error ?? ""}`} after ${seconds(r.ms)} s; gateway: ${e?.status} from ${e?.upstream_addr} (${e?.upstream_status})`,
    );
  }
}

// ---------------------------------------------------------------------------------------------

t.test("the CUDA image builds without a GPU (CMAKE_CUDA_ARCHITECTURES set)", async (t) => {
  if (CUDA_SKIP) {
    // what can be checked without its base images: BuildKit reads the whole file (syntax, build
    // arguments, the secret mount) and builds the stage that needs none of them
    const command = buildCommand(
      "docker build -f docker/Dockerfile.cuda --build-arg CMAKE_CUDA_ARCHITECTURES=90 --target node -t pasta-server:cuda-node-stage-test .",
      [`--build-arg NODE_IMAGE=${RUNTIME_IMAGE}`],
    );
    t.comment(`$ ${command}`);
    await ok(command);
    await sh("docker rmi pasta-server:cuda-node-stage-test");
    t.pass("docker/Dockerfile.cuda: read by BuildKit's built-in frontend, its node stage built");
    report(t, `CUDA image: not built: ${CUDA_SKIP}; only docker/Dockerfile.cuda read by BuildKit and its node stage built`);
    t.skip(`the CUDA stages: ${CUDA_SKIP}`, () => {});
    return;
  }
  const command = buildCommand(
    "docker build -f docker/Dockerfile.cuda --build-arg CMAKE_CUDA_ARCHITECTURES=90 -t pasta-server:cuda-test .",
    [],
  );
  t.comment(`$ ${command}`);
  const log = join(LOG_DIR, "build-cuda.log");
  writeFileSync(log, "");
  const res = await ok(`${command} --progress=plain`, { log, timeoutMs: 120 * 60_000 });
  report(
    t,
    `CUDA image: built in ${seconds(res.ms)} s, ${(Number(await inspect("{{.Size}}", "pasta-server:cuda-test")) / 1e6).toFixed(0)} MB (slowest steps: ${slowestSteps(readFileSync(log, "utf8"))})`,
  );
  await ok("docker rmi pasta-server:cuda-test");
});
