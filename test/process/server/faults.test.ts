// Faults on a real server process (harness/process.ts): clients vanishing mid-stream and while
// queued, in bulk; SIGTERM while a dozen requests run and wait; model files that look like GGUF but
// are not loadable. (A missing model file, a non-GGUF file and a single disconnect are in
// test/process/server/ops.test.ts.)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t, { type Test } from "tap";
import {
  bodyProblem,
  errorLogLines,
  freePort,
  metricValue,
  postJson,
  runCli,
  scrapeMetrics,
  sleep,
  sseEvents,
  startServer,
  streamProblem,
  waitForExit,
  type Endpoint,
  type ServerProcess,
} from "../../../harness/index.js";
import { STORIES_MODEL } from "../../support/models.js";

/** `promise`'s value, or `fallback` once `ms` pass (the timer does not outlive the race). */
async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<F>((resolve) => {
        timer = setTimeout(() => resolve(fallback), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
const ENDPOINTS: readonly Endpoint[] = ["generate", "chat", "completions"];
const PATHS: Record<Endpoint, string> = { generate: "/v1/generate", chat: "/v1/chat/completions", completions: "/v1/completions" };
const PROMPT = "Once upon a time";

async function serverFor(t: Test, args: string[]): Promise<ServerProcess> {
  const server = await startServer(args);
  t.teardown(() => server.stop());
  return server;
}

/** A request body for `endpoint`; OpenAI's endpoints take the prompt as a message or a prompt. */
function bodyFor(endpoint: Endpoint, maxTokens: number, stream: boolean, prompt = PROMPT): Record<string, unknown> {
  const common = {
    max_tokens: maxTokens,
    temperature: 0,
    stream,
    ...(stream && endpoint !== "generate" ? { stream_options: { include_usage: true } } : {}),
  };
  return endpoint === "chat" ? { messages: [{ role: "user", content: prompt }], ...common } : { prompt, ...common };
}

const post = (base: string, endpoint: Endpoint, body: object, signal?: AbortSignal) =>
  postJson(`${base}${PATHS[endpoint]}`, body, signal ? { signal } : {});

async function gauges(base: string) {
  const text = await scrapeMetrics(base);
  return { active: metricValue(text, "pasta_active_sequences"), queued: metricValue(text, "pasta_queue_depth") };
}

/** Polls /metrics until `want` holds or `ms` pass; the last reading either way, and when it held. */
async function gaugesUntil(base: string, want: (g: { active?: number; queued?: number }) => boolean, ms: number) {
  const started = performance.now();
  for (;;) {
    const g = await gauges(base);
    const waited = performance.now() - started;
    if (want(g) || waited > ms) return { ...g, ok: want(g), waited };
    await sleep(20);
  }
}

t.test("24 streams abandoned at once, while queued and after their first chunk: the server recovers at once", async (t) => {
  const server = await serverFor(t, ["--parallel", "4", "--max-queue", "32", "--ctx-size", "2048"]);
  const { base } = server;
  const greedy = { prompt: PROMPT, max_tokens: 32, temperature: 0 };
  const before = (await (await post(base, "generate", greedy)).json()) as { text: string };
  t.ok(before.text.length > 0, "the greedy reference text");

  const N = 24;
  const QUEUED_ABORTS = 10;
  const MAX = 1500; // far more than the storm lasts: nothing ends by itself
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  interface Storm {
    endpoint: Endpoint;
    controller: AbortController;
    state: "queued" | "streaming" | "aborted";
    abortedWhile?: "queued" | "streaming";
    firstChunk?: string;
    status?: number;
    unexpected?: string;
  }
  const streams: Storm[] = Array.from({ length: N }, (_, i) => ({
    endpoint: ENDPOINTS[i % 3]!,
    controller: new AbortController(),
    state: "queued",
  }));
  const tasks = streams.map(async (s) => {
    let res: Response;
    try {
      res = await post(base, s.endpoint, bodyFor(s.endpoint, MAX, true), s.controller.signal);
    } catch (err) {
      if (s.abortedWhile !== "queued") s.unexpected = `fetch failed without our abort: ${(err as Error).message}`;
      return;
    }
    s.status = res.status;
    if (res.status !== 200) {
      s.unexpected = `status ${res.status}: ${await res.text()}`;
      return;
    }
    const reader = res.body!.getReader();
    try {
      const first = await reader.read();
      s.firstChunk = new TextDecoder().decode(first.value);
      s.state = "streaming";
      await released; // the first four hold their sequences until the queued aborts are done
      s.abortedWhile = "streaming";
      s.controller.abort();
      for (;;) if ((await reader.read()).done) break;
      s.unexpected = "the stream ended by itself after the abort";
    } catch {
      // aborted: expected
    }
    s.state = "aborted";
  });
  const settled = within(Promise.all(tasks), 30_000, "timeout" as const);

  // all 24 are in the server: 4 generating, 20 waiting
  const full = await gaugesUntil(base, (g) => g.active === 4 && g.queued === N - 4, 10_000);
  t.ok(full.ok, `4 active and ${N - 4} queued (active ${full.active}, queued ${full.queued})`);
  const streaming = () => streams.filter((s) => s.state === "streaming").length;
  for (const until = performance.now() + 10_000; streaming() < 4 && performance.now() < until; ) await sleep(10); // their first chunks
  if (!full.ok || streaming() !== 4) {
    // the storm is not as planned: end it and say why
    for (const s of streams) s.controller.abort();
    release();
    await settled;
    t.fail(
      `the storm did not start as planned: ${streaming()} streaming; ${JSON.stringify(streams.map((s) => s.unexpected).filter(Boolean))}`,
    );
    return;
  }
  const queued = streams.filter((s) => s.state === "queued");
  t.equal(queued.length, N - 4, `${N - 4} streams have no response yet`);
  for (const s of queued.slice(0, QUEUED_ABORTS)) {
    s.abortedWhile = "queued";
    s.controller.abort();
  }
  const dropped = await gaugesUntil(base, (g) => g.queued === N - 4 - QUEUED_ABORTS, 2000);
  t.ok(
    dropped.ok && dropped.active === 4,
    `the ${QUEUED_ABORTS} queued clients that left are out of the queue within ${dropped.waited.toFixed(0)} ms (active ${dropped.active}, queued ${dropped.queued})`,
  );

  // the running four leave after their first chunk; each queued one that gets a sequence leaves after its first
  const releasedAt = performance.now();
  release();
  t.not(await settled, "timeout", "the storm's clients all settled");
  t.comment(`all streams gone ${(performance.now() - releasedAt).toFixed(0)} ms after the running ones left`);
  t.same(
    streams.filter((s) => s.unexpected).map((s) => s.unexpected),
    [],
    "every stream ended by its client's abort only",
  );
  t.equal(streams.filter((s) => s.abortedWhile === "queued").length, QUEUED_ABORTS, `${QUEUED_ABORTS} left while queued`);
  const afterFirst = streams.filter((s) => s.abortedWhile === "streaming");
  t.equal(afterFirst.length, N - QUEUED_ABORTS, `${N - QUEUED_ABORTS} left after their first chunk`);
  t.ok(
    afterFirst.every((s) => /^data: \{/.test(s.firstChunk ?? "")),
    "each of those got a first data: chunk",
  );

  const idle = await gaugesUntil(base, (g) => g.active === 0 && g.queued === 0, 2000);
  t.ok(
    idle.ok,
    `pasta_active_sequences 0 and pasta_queue_depth 0 within ${idle.waited.toFixed(0)} ms (active ${idle.active}, queued ${idle.queued})`,
  );

  const started = performance.now();
  const afterRes = await post(base, "generate", greedy);
  const after = (await afterRes.json()) as { text: string };
  const ms = performance.now() - started;
  t.equal(afterRes.status, 200);
  t.equal(after.text, before.text, "the same greedy text as before the storm");
  t.ok(ms < 2000, `served promptly (${ms.toFixed(0)} ms)`);

  await sleep(100); // the last log lines
  const stopped = server
    .log()
    .split("\n")
    .filter((l) => l.includes('"stopped":"client_disconnected"')).length;
  t.ok(stopped >= N - QUEUED_ABORTS, `the log records ${stopped} generations stopped for a disconnect (>= ${N - QUEUED_ABORTS})`);
  t.same(errorLogLines(server.log()), [], "no error in the server log");

  // Nothing is running or queued, so SIGTERM exits at once, even though fetch still holds a
  // connection on which it sent no request after the aborts (Node's server.close() alone never
  // closes such a connection: serve.ts closes it after a short grace)
  const signalledAt = performance.now();
  server.proc.kill("SIGTERM");
  const code = await within(waitForExit(server.proc), 5000, "still running" as const);
  t.equal(
    code,
    0,
    `an idle server exits 0 on SIGTERM within 5 s (${code === "still running" ? "still running" : `${(performance.now() - signalledAt).toFixed(0)} ms`})`,
  );
});

t.test("SIGTERM under load: every request completes or ends cleanly, nothing hangs, exit 0", async (t) => {
  const SHUTDOWN = 2;
  const server = await serverFor(t, ["--parallel", "4", "--max-queue", "16", "--ctx-size", "4096", "--shutdown-timeout", String(SHUTDOWN)]);
  const { base } = server;
  const N = 12;
  const MAX = 3000;
  const CLIENT_TIMEOUT_MS = 20_000;
  interface Result {
    endpoint: Endpoint;
    stream: boolean;
    outcome: "completed" | "refused" | "error-event" | "broken";
    detail: string;
    doneAt: number;
  }
  const requests = Array.from({ length: N }, (_, i) => ({ endpoint: ENDPOINTS[i % 3]!, stream: i % 2 === 1 }));
  const results = requests.map(async ({ endpoint, stream }): Promise<Result> => {
    const result = (outcome: Result["outcome"], detail: string): Result => ({
      endpoint,
      stream,
      outcome,
      detail,
      doneAt: performance.now(),
    });
    try {
      const res = await post(base, endpoint, bodyFor(endpoint, MAX, stream), AbortSignal.timeout(CLIENT_TIMEOUT_MS));
      const text = await res.text();
      if (res.status === 503) {
        const error = JSON.parse(text).error;
        const clean =
          error?.type === "server_error" && typeof error.message === "string" && /^\d+$/.test(res.headers.get("retry-after") ?? "");
        return result(clean ? "refused" : "broken", `503 ${error?.code} retry-after ${res.headers.get("retry-after")}`);
      }
      if (res.status !== 200) return result("broken", `status ${res.status}: ${text.slice(0, 300)}`);
      if (!stream) {
        const body = JSON.parse(text);
        const problem = bodyProblem(body, endpoint, { maxTokens: MAX, steered: false, cutShort: true });
        return result(
          problem ? "broken" : "completed",
          problem ?? `200, ${body.usage.completion_tokens} tokens, finish_reason ${body.finish_reason ?? body.choices[0].finish_reason}`,
        );
      }
      const events = sseEvents(text);
      if (events.at(-1)?.event === "error") {
        const error = JSON.parse(events.at(-1)!.data).error;
        const clean =
          typeof error?.message === "string" && typeof error?.type === "string" && events.slice(0, -1).every((e) => e.event === undefined);
        return result(clean ? "error-event" : "broken", `event: error ${events.at(-1)!.data.slice(0, 200)}`);
      }
      const problem = streamProblem(text, endpoint, { includeUsage: true, maxTokens: MAX, steered: false, cutShort: true });
      return result(problem ? "broken" : "completed", problem ?? `stream of ${events.length} events ending in [DONE]`);
    } catch (err) {
      return result("broken", `${(err as Error).name}: ${(err as Error).message}`);
    }
  });

  // all twelve are in: 4 generating, 8 waiting; then SIGTERM
  const full = await gaugesUntil(base, (g) => g.active === 4 && g.queued === N - 4, 10_000);
  t.ok(full.ok, `4 active and ${N - 4} queued before SIGTERM (active ${full.active}, queued ${full.queued})`);
  await sleep(300); // the running ones are well into their generation
  const signalledAt = performance.now();
  server.proc.kill("SIGTERM");
  const code = await within(waitForExit(server.proc), (SHUTDOWN + 8) * 1000, "still running" as const);
  const exitMs = performance.now() - signalledAt;
  t.equal(code, 0, "the process exits with code 0");
  t.ok(
    exitMs >= SHUTDOWN * 1000 - 100 && exitMs < (SHUTDOWN + 5) * 1000,
    `it gave the running requests the ${SHUTDOWN} s shutdown timeout, then exited (${exitMs.toFixed(0)} ms after SIGTERM)`,
  );

  const settled = await Promise.all(results);
  for (const r of settled) {
    t.not(r.outcome, "broken", `${r.endpoint} ${r.stream ? "stream" : "plain"}: ${r.outcome}: ${r.detail}`);
    t.ok(
      r.doneAt - signalledAt < (SHUTDOWN + 5) * 1000,
      `${r.endpoint} ${r.stream ? "stream" : "plain"} ended ${(r.doneAt - signalledAt).toFixed(0)} ms after SIGTERM`,
    );
  }
  const count = (o: Result["outcome"]) => settled.filter((r) => r.outcome === o).length;
  t.comment(
    `completed ${count("completed")}, refused ${count("refused")}, error events ${count("error-event")}, broken ${count("broken")}`,
  );
  t.ok(count("completed") >= 4, `the running requests answered with what they had (${count("completed")})`);
  t.ok(count("refused") >= 1, `queued requests that never got a sequence were refused with 503 (${count("refused")})`);
  const cutShort = settled.filter((r) => r.outcome === "completed" && r.stream).length;
  t.ok(cutShort >= 1, `streams among them ended with a finish chunk and [DONE] (${cutShort})`);
  t.same(errorLogLines(server.log()), [], "no error in the server log");
});

t.test("a model file with GGUF's magic that cannot be loaded: a clear message naming it, non-zero exit, never ready", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "pasta-faults-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // "GGUF" then deterministic garbage: past the magic check, refused while reading the header
  const garbage = join(dir, "garbage.gguf");
  const bytes = Buffer.alloc(64 * 1024);
  let x = 12345;
  for (let i = 0; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  bytes.write("GGUF", 0, "latin1");
  writeFileSync(garbage, bytes);
  // a real model cut in half (an interrupted copy): a valid header, tensor data past the end of the file
  const truncated = join(dir, "truncated.gguf");
  const model = readFileSync(STORIES_MODEL);
  writeFileSync(truncated, model.subarray(0, model.length >> 1));

  for (const [name, file] of [
    ["GGUF magic, then garbage", garbage],
    ["a truncated model", truncated],
  ] as const) {
    t.test(name, async (t) => {
      const port = await freePort();
      const run = runCli(["serve", "--model", file, "--port", String(port)], {}, 20_000);
      let running = true;
      void run.finally(() => {
        running = false;
      });
      const seen = new Map<number | string, number>();
      while (running) {
        // /ready, as an orchestrator would poll it, until the process is gone
        try {
          const res = await fetch(`http://127.0.0.1:${port}/ready`, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        } catch {
          seen.set("no answer", (seen.get("no answer") ?? 0) + 1);
        }
        await sleep(25);
      }
      const r = await run;
      const output = r.stdout + r.stderr;
      t.notOk(r.timedOut, "it exits by itself");
      t.ok(r.code !== null && r.code !== 0, `a non-zero exit code (${r.code}; null would be a signal such as a native abort)`);
      t.ok(r.ms < 15_000, `within 15 s, mostly process start-up (${r.ms.toFixed(0)} ms)`);
      t.ok(output.includes(file), "the message names the file");
      t.match(output, /cannot load the model/, "and says it cannot load it");
      t.notMatch(r.stderr, /\n\s+at /, "a message, no stack trace");
      t.notOk(seen.has(200), `/ready never answered 200 (${JSON.stringify(Object.fromEntries(seen))})`);
      if (r.code === 0 || r.timedOut || !output.includes(file)) t.comment(output);
    });
  }
});
