// Hostile input against a real server (issue #26): with --parallel 2, one client streams steadily on
// one sequence while hostile requests hit the server one after another. Each hostile request must get
// its documented 4xx (or a bounded answer), the stream must keep flowing, /health must keep answering,
// memory must stay bounded, and no request's text may reach the log.
import { readFileSync } from "node:fs";
import t from "tap";
import { HOSTILE_REQUESTS, HOSTILE_SECRET as SECRET, request, sleep, startServer } from "../../../harness/index.js";

const CONTEXT = 2048;
/**
 * The stream's largest gap between chunks. Before #26 these requests stalled it 1.3-14 s; on 2 cores
 * that other test files share, a plain gap reaches about a second.
 */
const MAX_GAP_MS = 2000;
const MAX_HEALTH_MS = 1000;
const MAX_RSS_GROWTH_MB = 200;
const server = await startServer(["--parallel", "2", "--ctx-size", String(CONTEXT)]);
t.teardown(() => server.stop());

const rssMb = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.proc.pid}/status`, "utf8"))![1]) / 1024;
t.test("hostile requests next to a steady stream", async (t) => {
  const rssBefore = rssMb();
  // the steady stream: a grammar that never completes keeps it generating for the whole test
  const arrivals: number[] = [];
  const streamDone = fetch(`${server.base}/v1/generate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: "Once upon a time", max_tokens: CONTEXT - 16, grammar: "root ::= [a-z .] root", stream: true }),
  })
    .then(async (res) => {
      for await (const _ of res.body!) arrivals.push(performance.now());
    })
    .catch(() => {}); // cut when the server stops at the end
  while (arrivals.length < 5) await sleep(20);

  let probing = true;
  const healthMs: number[] = [];
  const probes = (async () => {
    while (probing) {
      healthMs.push((await request(server.base, "/health")).ms);
      await sleep(100);
    }
  })();

  const from = arrivals.length;
  const spans: Array<[string, number, number]> = [];
  for (const { what, path, body, status } of HOSTILE_REQUESTS) {
    const started = performance.now();
    const answer = await request(server.base, path, { body });
    spans.push([what, started, performance.now()]);
    t.equal(
      answer.status,
      status,
      `${what}: ${status} (${answer.ms.toFixed(0)} ms)`,
      answer.status === status ? {} : { body: answer.text.slice(0, 300) },
    );
    if (status === 400) t.equal(answer.body?.error?.type, "invalid_request_error", `${what}: OpenAI's error shape`);
    if (status === 200 && path === "/v1/generate")
      t.ok(Buffer.from(answer.text).toString() === answer.text && !/\\ud83d"/.test(answer.text), `${what}: no half character`);
  }
  const to = arrivals.length;
  probing = false;
  await probes;

  const window = arrivals.slice(from, to);
  const gaps = window.map((at, i) => (i === 0 ? 0 : at - window[i - 1]!));
  const maxGap = Math.max(...gaps);
  const worstAt = window[gaps.indexOf(maxGap)]!;
  const during = spans.filter(([, a, b]) => a < worstAt && b > worstAt - maxGap).map(([what]) => what);
  t.ok(to - from >= 3, `the stream kept flowing: ${to - from} chunks while the hostile requests ran`);
  t.ok(maxGap < MAX_GAP_MS, `its largest gap between chunks: ${maxGap.toFixed(0)} ms (bound ${MAX_GAP_MS}), during: ${during.join("; ")}`);
  const slowest = Math.max(...healthMs);
  t.ok(
    slowest < MAX_HEALTH_MS,
    `/health answered ${healthMs.length} probes, the slowest in ${slowest.toFixed(0)} ms (bound ${MAX_HEALTH_MS})`,
  );
  const growth = rssMb() - rssBefore;
  t.ok(growth < MAX_RSS_GROWTH_MB, `RSS grew ${growth.toFixed(0)} MB (bound ${MAX_RSS_GROWTH_MB})`);
  t.notMatch(server.log(), new RegExp(SECRET), "no request's text in the log");
  await server.stop();
  await streamDone;
});
