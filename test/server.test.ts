// A real server process on loopback: readiness, and the native endpoint returning the PASTA
// reference's steered greedy continuation.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { once } from "node:events";
import t from "tap";
import { PASTA_FIXTURE, STORIES_MODEL } from "./helpers.js";

const fixture = JSON.parse(readFileSync(PASTA_FIXTURE, "utf8"));
const server = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "--model", STORIES_MODEL, "--port", "0", "--ctx-size", "256"], {
  // a plain child: without the test runner's own loader hooks
  stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_OPTIONS: "", LOG_LEVEL: "info" },
});
t.teardown(() => { server.kill("SIGTERM"); });

let log = "";
const base = await new Promise<string>((resolve, reject) => {
  server.stdout.on("data", (chunk: Buffer) => {
    log += chunk;
    const m = /Server listening at (http:\/\/[^"\s]+)/.exec(log);
    if (m) resolve(m[1]!);
  });
  server.stderr.on("data", (chunk: Buffer) => { log += chunk; });
  server.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
});

const post = async (body: unknown) => {
  const res = await fetch(`${base}/v1/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() as any };
};

const status = async (path: string) => {
  const res = await fetch(`${base}${path}`);
  await res.arrayBuffer();
  return res.status;
};

t.test("health and readiness", async (t) => {
  t.equal(await status("/health"), 200, "/health answers as soon as the process listens");
  for (let i = 0; i < 100 && (await status("/ready")) !== 200; i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(await status("/ready"), 200, "/ready once the model is loaded");
});

t.test("steered generation over HTTP equals the PASTA reference", async (t) => {
  for (const c of fixture.cases) {
    const marked = c.text.replace(c.emphasis, `<em>${c.emphasis}</em>`);
    const { status, body } = await post({ prompt: marked, max_tokens: 24, temperature: 0, steering: { markup: "html", heads: c.heads, alpha: c.alpha } });
    t.equal(status, 200);
    const ids = c.steered_greedy.tokens;
    t.equal(body.usage.completion_tokens, ids.length);
    t.equal(body.text, c.steered_greedy.text, `case "${c.emphasis}": reference greedy text`);
    t.same(body.steering.spans.map((s: any) => [s.token_start, s.token_end]), [c.steered_token_range]);
  }
});

t.test("bad requests are 400s in OpenAI's error shape", async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ prompt: 5 }, /prompt/],
    [{ prompt: "x", steering: { markup: "html", heads: [0] } }, /nothing is emphasized/],
    [{ prompt: "<em>x", steering: { markup: "html", heads: [0] } }, /never closed/],
    [{ prompt: "Tom", steering: { emphasis: ["Tom"], heads: { "0": [9] } } }, /out of range/],
    [{ prompt: "Tom", steering: { emphasis: ["Tom"], heads: [0], alpha: 2 } }, /alpha/],
    [{ prompt: "Tom", unknown_field: 1 }, /unknown_field|Unrecognized/],
  ];
  for (const [body, message] of cases) {
    const res = await post(body);
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.body.error.type, "invalid_request_error");
    t.match(res.body.error.message, message);
  }
  t.equal((await post({ prompt: "Tom", max_tokens: 2 })).status, 200, "the server still serves the next good request");
});

t.test("SIGTERM stops the server cleanly", async (t) => {
  server.kill("SIGTERM");
  const [code] = await once(server, "exit");
  t.equal(code, 0);
});
