// The scale-out deployment without Docker: the project's own gateway config
// (docker/nginx.conf.template, as docker/compose.yaml renders it) run by Debian's nginx on loopback,
// in front of two real replicas: one started like the other tests' servers, one started exactly as
// the image's ENTRYPOINT starts it (`node dist/cli/main.js serve` from docker/Dockerfile, with the
// image's ENV and compose's docker/pasta.env). Driven with the official `openai` client:
// completions and chat through the gateway, load spread over both replicas, SSE passed through
// unbuffered, x-request-id end to end, cancellation reaching the replica, the body limit, gateway API
// keys, and a killed replica routed around.
//
// nginx is required (CI installs it in .ci/run): without it this test fails and says how to install it.
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import t from "tap";
import { postJson, sleep, startServer, type ServerProcess } from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";
import {
  distState,
  DOCKERFILE,
  entrypointCommand,
  lastStage,
  nginxMissing,
  parseDockerfile,
  readEnvFile,
  REPLICA_ENV_FILE,
  stageEnv,
  startEntrypoint,
  startGateway,
  type EntrypointProcess,
  type Gateway,
} from "../../support/deployment.js";

const MODEL = "stories260K";
const PROMPT = "Once upon a time";

let replicaA: ServerProcess;
let replicaB: EntrypointProcess;
let gateway: Gateway;
let client: OpenAI;
const hostOf = (base: string) => new URL(base).host;

/** The image's environment for its ENTRYPOINT: the runtime stage's ENV, then compose's env_file. */
function imageEnvironment(): Record<string, string> {
  const instructions = parseDockerfile(DOCKERFILE);
  const runtime = lastStage(instructions);
  // NODE_LLAMA_CPP_CMAKE_OPTION_* names the image's own engine build (GGML_NATIVE=OFF); the engine
  // built here by `npm run build` is node-llama-cpp's default local build, found without them
  const image = Object.fromEntries(
    Object.entries(stageEnv(instructions, runtime)).filter(([k]) => !k.startsWith("NODE_LLAMA_CPP_CMAKE_OPTION_")),
  );
  return {
    ...image,
    ...readEnvFile(REPLICA_ENV_FILE),
    // what differs from docker/compose.yaml: the model file, loopback only, a free port, no /models volume,
    // and every decoding step streamed, so that the streaming test sees one chunk per token
    PASTA_MODEL: STORIES_MODEL,
    PASTA_HOST: "127.0.0.1",
    PASTA_PORT: "0",
    PASTA_MODELS_DIR: mkdtempSync(join(tmpdir(), "pasta-models-")),
    PASTA_STREAM_INTERVAL_MS: "0",
  };
}

/** Polls until `check` holds (logs are written a little after responses). */
async function eventually(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

const loggedBy = (id: string) => {
  const needle = `"reqId":"${id}"`;
  return { a: replicaA.log().includes(needle), b: replicaB.log().includes(needle) };
};

t.before(async () => {
  const missing = nginxMissing();
  if (missing) throw new Error(missing);
  const dist = distState();
  if (dist.missing) throw new Error(dist.missing);
  if (dist.stale) t.comment(dist.stale);
  [replicaA, replicaB] = await Promise.all([
    startServer(["--ctx-size", "1024", "--parallel", "2", "--stream-interval-ms", "0"]),
    startEntrypoint(entrypointCommand(parseDockerfile(DOCKERFILE)), imageEnvironment()),
  ]);
  gateway = await startGateway([hostOf(replicaA.base), hostOf(replicaB.base)]);
  client = new OpenAI({ baseURL: `${gateway.base}/v1`, apiKey: "unused", maxRetries: 0 });
});
t.teardown(async () => {
  await gateway?.stop();
  await Promise.all([replicaA?.stop(), replicaB?.stop()]);
});

t.test("completions and chat through the gateway, spread over both replicas", async (t) => {
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: "Lily had a red ball." }],
    max_tokens: 8,
    temperature: 0,
  });
  t.equal(chat.object, "chat.completion");
  t.equal(chat.usage!.completion_tokens, 8);
  t.ok(chat.choices[0]!.message.content!.length > 0, "chat content");

  const completion = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0 });
  t.equal(completion.object, "text_completion");
  t.match(completion.choices[0]!.text, /little girl/, "the tiny model's greedy story");
  for (let i = 0; i < 4; i++) await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 2, temperature: 0 });

  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  t.same(models, [MODEL]);

  await eventually(() => gateway.accessLog().filter((e) => e.request.startsWith("POST /v1/")).length >= 6);
  const upstreams = new Set(
    gateway
      .accessLog()
      .filter((e) => e.request.startsWith("POST /v1/"))
      .map((e) => e.upstream_addr),
  );
  t.same(
    [...upstreams].sort(),
    [hostOf(replicaA.base), hostOf(replicaB.base)].sort(),
    "both replicas answered (least_conn: in turn when idle)",
  );

  const metrics = await fetch(`${gateway.base}/metrics`);
  t.equal(metrics.status, 404, "/metrics is scraped on each replica, not through the gateway");
  t.equal((await metrics.json()).error.type, "not_found_error");
});

/** Streams a 200-token completion; when each chunk arrived, and the text. */
async function streamArrivals(openai: OpenAI) {
  const started = performance.now();
  const stream = await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 200, temperature: 0, stream: true });
  const arrivals: number[] = [];
  let text = "";
  for await (const chunk of stream) {
    arrivals.push(performance.now() - started);
    text += chunk.choices[0]?.text ?? "";
  }
  // chunks read from one network read are parsed back to back (microseconds apart); chunks that came
  // in separate reads are decoding steps apart
  let instants = 1;
  for (let i = 1; i < arrivals.length; i++) if (arrivals[i]! - arrivals[i - 1]! > 0.3) instants++;
  return { arrivals, instants, text };
}

t.test("streaming passes through as the replica sends it, not buffered", async (t) => {
  // The replicas stream every decoding step (--stream-interval-ms 0), but how many steps one chunk
  // carries depends on how far the server's JavaScript falls behind this tiny model, i.e. on the
  // machine's load: compare with the same stream taken from a replica directly, back to back. nginx
  // buffering would hand the stream over in a few large pieces (4-8 KB buffers: some 5-10 here).
  const direct = await streamArrivals(new OpenAI({ baseURL: `${replicaA.base}/v1`, apiKey: "unused", maxRetries: 0 }));
  const viaGateway = await streamArrivals(client);
  t.equal(viaGateway.text, direct.text, "the same story");
  t.ok(viaGateway.text.length > 200, "a long story");
  const { arrivals, instants } = viaGateway;
  t.comment(
    `gateway: ${arrivals.length} chunks at ${instants} distinct instants, first after ${arrivals[0]!.toFixed(1)} ms, last after ${arrivals.at(-1)!.toFixed(1)} ms; directly: ${direct.arrivals.length} chunks at ${direct.instants} instants`,
  );
  t.ok(
    instants >= Math.max(12, direct.instants / 3),
    `chunks arrive spread over time (${instants} distinct arrival instants; ${direct.instants} directly)`,
  );
  t.ok(arrivals[0]! < arrivals.at(-1)! / 4, "the first chunk arrives long before the last");
});

t.test("x-request-id: the client's goes upstream and comes back; without one, the gateway's is used throughout", async (t) => {
  const id = `gw-${randomUUID()}`;
  const { data, response } = await client.chat.completions
    .create({ model: MODEL, messages: [{ role: "user", content: "Tom had a kite." }], max_tokens: 4 }, { headers: { "x-request-id": id } })
    .withResponse();
  t.equal(data.object, "chat.completion");
  t.equal(response.headers.get("x-request-id"), id, "the client's id comes back");
  t.ok(
    await eventually(() => {
      const l = loggedBy(id);
      return l.a || l.b;
    }),
    "the replica logged the request under the client's id",
  );
  t.ok(await eventually(() => gateway.accessLog().some((e) => e.request_id === id)), "the gateway's access log has it too");
  const entry = gateway.accessLog().find((e) => e.request_id === id);
  t.equal(entry?.upstream_status, "200");

  const streamed = await client.completions
    .create({ model: MODEL, prompt: PROMPT, max_tokens: 4, stream: true }, { headers: { "x-request-id": `${id}-s` } })
    .withResponse();
  for await (const _ of streamed.data) {
    /* drain */
  }
  t.equal(streamed.response.headers.get("x-request-id"), `${id}-s`, "a stream's response carries it too");

  // none sent, or one the server would not accept (a space): nginx's $request_id, the same everywhere
  for (const sent of [undefined, "not an id"]) {
    const res = await client.completions
      .create({ model: MODEL, prompt: PROMPT, max_tokens: 2 }, sent ? { headers: { "x-request-id": sent } } : {})
      .withResponse();
    const got = res.response.headers.get("x-request-id")!;
    t.match(got, /^[0-9a-f]{32}$/, `sent ${JSON.stringify(sent)}: the gateway's id`);
    t.ok(
      await eventually(() => {
        const l = loggedBy(got);
        return l.a || l.b;
      }),
      "the replica logged the gateway's id",
    );
    t.ok(await eventually(() => gateway.accessLog().some((e) => e.request_id === got)), "the access log has the same id");
  }
});

t.test("a client that goes away stops its generation on the replica", async (t) => {
  const id = `gw-cancel-${randomUUID()}`;
  const stream = await client.completions.create(
    { model: MODEL, prompt: PROMPT, max_tokens: 400, stream: true },
    { headers: { "x-request-id": id } },
  );
  let chunks = 0;
  for await (const _ of stream) if (++chunks === 5) break;
  stream.controller.abort();
  const finished = (log: string) => log.split("\n").find((l) => l.includes(`"reqId":"${id}"`) && l.includes("generation finished"));
  t.ok(
    await eventually(() => finished(replicaA.log()) !== undefined || finished(replicaB.log()) !== undefined),
    "the replica finished the generation",
  );
  const line = JSON.parse(finished(replicaA.log()) ?? finished(replicaB.log())!);
  t.equal(line.stopped, "client_disconnected", "nginx closed the upstream connection when the client left");
  t.ok(line.completionTokens < 400, `stopped early (${line.completionTokens} of 400 tokens)`);
});

t.test("request bodies: up to the replicas' 4 MiB limit through, larger refused by the gateway", async (t) => {
  const LIMIT = 4 * 1024 * 1024; // docker/pasta.env PASTA_BODY_LIMIT
  const json = JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: 2 });
  const body = (size: number) => json + " ".repeat(size - json.length); // JSON allows trailing whitespace
  const atLimit = await postJson(`${gateway.base}/v1/completions`, body(LIMIT));
  t.equal(atLimit.status, 200, "a body of exactly the limit reaches a replica");
  t.equal((await atLimit.json()).object, "text_completion");

  const over = await postJson(`${gateway.base}/v1/completions`, body(LIMIT + 1));
  t.equal(over.status, 413);
  const error = (await over.json()).error;
  t.equal(error.type, "invalid_request_error", "OpenAI's error body from nginx");
  const id = over.headers.get("x-request-id")!;
  t.match(id, /^[0-9a-f]{32}$/);
  await sleep(100);
  t.same(loggedBy(id), { a: false, b: false }, "no replica saw it");
});

t.test("API keys at the gateway: refused by nginx without a listed key", async (t) => {
  const keyed = await startGateway([hostOf(replicaA.base), hostOf(replicaB.base)], { keysMap: 'default 0;\n"Bearer gw-secret-1" 1;\n' });
  t.teardown(() => keyed.stop());
  const bad = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: "wrong-key", maxRetries: 0 });
  const err = await bad.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(err, OpenAI.AuthenticationError, "a key not listed: 401, an AuthenticationError for the client");
  const apiError = err as InstanceType<typeof OpenAI.AuthenticationError>;
  t.equal(apiError.code, "invalid_api_key");
  const id = apiError.headers?.get("x-request-id");
  t.match(id, /^[0-9a-f]{32}$/, "the refusal carries a request id");

  const missing = await postJson(`${keyed.base}/v1/chat/completions`, {
    model: MODEL,
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 2,
  });
  t.equal(missing.status, 401, "no Authorization header: 401");
  t.equal((await missing.json()).error.type, "authentication_error");
  await sleep(100);
  for (const refused of [id!, missing.headers.get("x-request-id")!])
    t.same(loggedBy(refused), { a: false, b: false }, "the refused request never reached a replica");
  const good = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: "gw-secret-1", maxRetries: 0 });
  const res = await good.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
  t.equal(res.object, "chat.completion", "a listed key passes");
  t.equal((await fetch(`${keyed.base}/ready`)).status, 200, "probes need no key");
  const page = await fetch(`${keyed.base}/playground/`);
  t.equal(page.status, 200, "nor does the playground's static page");
  t.match(await page.text(), "pasta-server playground");
  t.equal((await fetch(`${keyed.base}/v1/models`)).status, 401, "while the API it calls does");
});

t.test("a killed replica is routed around", async (t) => {
  t.equal(await replicaA.stop("SIGKILL"), null, "replica A killed");
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const id = `gw-after-kill-${i}-${randomUUID()}`;
    ids.push(id);
    const res = await client.chat.completions.create(
      { model: MODEL, messages: [{ role: "user", content: "Lily had a red ball." }], max_tokens: 4 },
      { headers: { "x-request-id": id } },
    );
    t.equal(res.usage!.completion_tokens, 4, `request ${i + 1} of 10 answered`);
  }
  t.ok(await eventually(() => ids.every((id) => loggedBy(id).b)), "all by the surviving replica");
  const stream = await client.completions.create({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: 16,
    stream: true,
    stream_options: { include_usage: true },
  });
  let chunks = 0,
    tokens = 0;
  for await (const chunk of stream) {
    chunks++;
    tokens = chunk.usage?.completion_tokens ?? tokens;
  }
  t.ok(chunks >= 3 && tokens === 16, `streams too (${chunks} chunks, ${tokens} tokens)`);
  await eventually(() => gateway.accessLog().filter((e) => ids.includes(e.request_id)).length === ids.length);
  const tried = gateway.accessLog().filter((e) => ids.includes(e.request_id));
  t.equal(tried.length, ids.length, "all in the access log");
  t.ok(
    tried.every((e) => e.status === "200"),
    "every request 200 at the gateway",
  );
  const [dead, alive] = [hostOf(replicaA.base), hostOf(replicaB.base)];
  t.ok(
    tried.some((e) => e.upstream_addr === `${dead}, ${alive}`),
    "a POST sent to the dead replica was retried on the live one (it never reached the dead one)",
  );
  t.ok(
    tried.every((e) => e.upstream_addr.endsWith(alive)),
    "and answered by the live one",
  );
  t.comment(`upstreams tried: ${tried.map((e) => e.upstream_addr).join(" | ")}`);
});

t.test("SIGTERM, which tini forwards on `docker stop`, stops the entrypoint replica cleanly; then the gateway answers 503", async (t) => {
  t.equal(await replicaB.stop("SIGTERM"), 0, "exit code 0 after draining");
  t.match(replicaB.log(), /"msg":"stopped"/);
  const err = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 2 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(err, OpenAI.InternalServerError, "no replica left");
  const apiError = err as InstanceType<typeof OpenAI.InternalServerError>;
  t.equal(apiError.status, 503, "503: the openai client retries it");
  t.equal(apiError.code, "no_replica_available");
  t.equal(apiError.headers?.get("retry-after"), "2");
});
