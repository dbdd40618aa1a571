// AutoPASTA end to end through HTTP. On SmolLM2 (a chat model whose pass 1 ends its list): both
// passes run, the chosen sentences are the context's own, pass 2 reuses pass 1's KV cache up to the
// first emphasized token, the answer equals a plain steered request on the same sentences, and a
// stream announces the sentences first; naming the only sentence of a context is no choice. On
// stories260K (a story model: its pass 1 never ends, it writes on to the token limit): nothing is
// emphasized. Where nothing is, the report says why and the answer is the unsteered one.
import t from "tap";
import { splitSentences } from "../../../src/autopasta/sentences.js";
import { SELECTION_MAX_TOKENS } from "../../../src/autopasta/autopasta.js";
import { postJson, postOk, sseData, startServer } from "../../../harness/index.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

type Server = Awaited<ReturnType<typeof startServer>>;
let smol: Server, stories: Server;
t.before(async () => {
  [smol, stories] = await Promise.all([startServer(["--model", SMOLLM2_MODEL, "--ctx-size", "1024"]), startServer(["--ctx-size", "512"])]);
});
t.teardown(async () => {
  await Promise.all([smol?.stop(), stories?.stop()]);
});

const CONTEXT =
  "The Zorvan Bridge crosses the Elm River in the town of Kessel. It was built in 1932 by the engineer Ada Brenner. The bridge is painted green every spring.\nWho built the Zorvan Bridge?";
const messages = [{ role: "user", content: CONTEXT }];

t.test("chat: the chosen sentences are emphasized, pass 2 reuses the prefix", async (t) => {
  const auto = await postOk(smol.base, "/v1/chat/completions", { messages, max_tokens: 12, temperature: 0, steering: { auto: true } });
  const report = auto.steering.auto;
  t.equal(report.matched, true, `pass 1 said: ${JSON.stringify(report.selection.text.slice(0, 120))}`);
  t.equal(report.selection.finish_reason, "stop", "pass 1 ended its list");
  t.equal(report.reason, undefined);
  t.equal(report.context_sentences, 3, "the question is not a candidate");
  t.equal(report.named_sentences, report.sentences.length);
  t.equal(report.named_sentences, 1, "one sentence of three named");
  t.ok(report.selection.completion_tokens > 0 && report.selection.completion_tokens < SELECTION_MAX_TOKENS);
  const contextSentences = splitSentences(CONTEXT).map((s) => s.text);
  for (const s of report.sentences) {
    t.ok(contextSentences.includes(s.text), `"${s.text}" is one of the context's own sentences`);
    t.ok(s.score > 0 && s.score <= 1);
  }
  t.same(
    auto.steering.spans.map((s: any) => [s.start, s.end, s.text]),
    report.sentences.map((s: any) => [s.start, s.end, s.text]),
    "the spans are the chosen sentences",
  );
  const firstEmphasized = auto.steering.spans[0].token_start;
  t.equal(auto.usage.prompt_tokens_details.cached_tokens, firstEmphasized, "pass 2 reused pass 1's cache up to the first emphasized token");
  t.ok(firstEmphasized > 0);

  const direct = await postOk(smol.base, "/v1/chat/completions", {
    messages,
    max_tokens: 12,
    temperature: 0,
    steering: { emphasis: report.sentences.map((s: any) => s.text) },
  });
  t.same(
    direct.steering.spans.map((s: any) => [s.start, s.end]),
    auto.steering.spans.map((s: any) => [s.start, s.end]),
  );
  t.equal(auto.choices[0].message.content, direct.choices[0].message.content, "the answer equals a steered request on the same sentences");
});

t.test("chat, streamed: the first chunk carries the AutoPASTA report", async (t) => {
  const res = await postJson(`${smol.base}/v1/chat/completions`, {
    messages,
    max_tokens: 12,
    temperature: 0,
    stream: true,
    steering: { auto: true },
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

t.test("/v1/generate: a pass 1 still writing at its token limit emphasizes nothing", async (t) => {
  const prompt = "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the";
  const heads = { "2": [0, 3, 5], "3": [1, 6] };
  const auto = await postOk(stories.base, "/v1/generate", { prompt, max_tokens: 8, temperature: 0, steering: { auto: true, heads } });
  const report = auto.steering.auto;
  t.equal(report.selection.finish_reason, "length", `pass 1 said: ${JSON.stringify(report.selection.text.slice(0, 120))}`);
  t.equal(report.selection.completion_tokens, SELECTION_MAX_TOKENS);
  t.equal(report.matched, false);
  t.equal(report.reason, "length");
  t.same(report.sentences, []);
  t.same(auto.steering.spans, []);
  const plain = await postOk(stories.base, "/v1/generate", { prompt, max_tokens: 8, temperature: 0 });
  t.equal(auto.text, plain.text, "the answer is the unsteered one");
});

t.test("chat: a pass 1 naming most of the context (here its only sentence) emphasizes nothing", async (t) => {
  const messages = [{ role: "user", content: "The cafe opens at ten. When does the cafe open?" }];
  const auto = await postOk(smol.base, "/v1/chat/completions", { messages, max_tokens: 12, temperature: 0, steering: { auto: true } });
  const report = auto.steering.auto;
  t.equal(report.selection.finish_reason, "stop", `pass 1 said: ${JSON.stringify(report.selection.text.slice(0, 120))}`);
  t.same([report.matched, report.reason, report.named_sentences, report.context_sentences], [false, "most_of_context", 1, 1]);
  t.same(report.sentences, []);
  t.same(auto.steering.spans, []);
  const plain = await postOk(smol.base, "/v1/chat/completions", { messages, max_tokens: 12, temperature: 0 });
  t.equal(auto.choices[0].message.content, plain.choices[0].message.content, "the answer is the unsteered one");
});
