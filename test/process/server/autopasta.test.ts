// AutoPASTA end to end through HTTP on stories260K: both passes run, the chosen sentences are the
// context's own, pass 2 reuses pass 1's KV cache up to the first emphasized token, and the answer
// equals a plain steered request on the same sentences; with no match the answer is unsteered.
import t from "tap";
import { splitSentences } from "../../../src/autopasta/sentences.js";
import { postJson, postOk, sseData, startServer } from "../../../harness/index.js";

const HEADS = { "2": [0, 3, 5], "3": [1, 6] };
let server: Awaited<ReturnType<typeof startServer>>;
t.before(async () => {
  server = await startServer(["--ctx-size", "512"]);
});
t.teardown(async () => {
  await server?.stop();
});

const post = (path: string, body: object) => postOk(server.base, path, body);

t.test("/v1/generate: the chosen sentences are emphasized, pass 2 reuses the prefix", async (t) => {
  const prompt = "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the";
  const auto = await post("/v1/generate", { prompt, max_tokens: 8, temperature: 0, steering: { auto: true, heads: HEADS } });
  const report = auto.steering.auto;
  t.equal(report.matched, true, `pass 1 said: ${JSON.stringify(report.selection.text.slice(0, 120))}`);
  t.ok(report.selection.completion_tokens > 0, "pass 1 generated");
  const contextSentences = splitSentences(prompt).map((s) => s.text);
  for (const s of report.sentences) {
    t.equal(prompt.slice(s.start, s.end), s.text, "offsets point at the sentence");
    t.ok(contextSentences.includes(s.text), `"${s.text}" is one of the context's own sentences`);
    t.ok(s.score > 0 && s.score <= 1);
  }
  t.same(
    auto.steering.spans.map((s: any) => [s.start, s.end]),
    report.sentences.map((s: any) => [s.start, s.end]),
    "the spans are the chosen sentences",
  );
  const firstEmphasized = auto.steering.spans[0].token_start;
  t.equal(auto.usage.prompt_tokens_details.cached_tokens, firstEmphasized, "pass 2 reused pass 1's cache up to the first emphasized token");
  t.ok(
    auto.usage.prompt_tokens_details.cached_tokens > 0,
    `pass 2 evaluated ${auto.usage.prompt_tokens - firstEmphasized} of ${auto.usage.prompt_tokens} prompt tokens`,
  );

  const direct = await post("/v1/generate", {
    prompt,
    max_tokens: 8,
    temperature: 0,
    steering: { emphasis: report.sentences.map((s: any) => ({ start: s.start, end: s.end })), heads: HEADS },
  });
  t.equal(auto.text, direct.text, "the answer equals a steered request on the same sentences");
});

t.test("chat: nothing matched -> unsteered answer, and the report says so", async (t) => {
  const messages = [{ role: "user", content: "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the" }];
  const auto = await post("/v1/chat/completions", { messages, max_tokens: 8, temperature: 0, steering: { auto: true, heads: HEADS } });
  t.equal(auto.steering.auto.matched, false, `pass 1 said: ${JSON.stringify(auto.steering.auto.selection.text.slice(0, 120))}`);
  t.same(auto.steering.spans, []);
  const plain = await post("/v1/chat/completions", { messages, max_tokens: 8, temperature: 0 });
  t.equal(auto.choices[0].message.content, plain.choices[0].message.content, "the answer is the unsteered one");
});

t.test("streamed: the first chunk carries the AutoPASTA report", async (t) => {
  const res = await postJson(`${server.base}/v1/generate`, {
    prompt: "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the",
    max_tokens: 8,
    temperature: 0,
    stream: true,
    steering: { auto: true, heads: HEADS },
  });
  const events = sseData(await res.text());
  t.equal(events.at(-1), "[DONE]");
  const first = JSON.parse(events[0]!);
  t.equal(first.steering.auto.matched, true);
  t.same(
    first.steering.spans.map((s: any) => s.text),
    first.steering.auto.sentences.map((s: any) => s.text),
  );
});
