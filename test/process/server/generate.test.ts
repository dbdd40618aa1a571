// The native endpoint of a real server process: the PASTA reference's steered greedy continuation
// through HTTP, plain and streamed.
import { readFileSync } from "node:fs";
import t from "tap";
import { PASTA_FIXTURE } from "../../support/models.js";
import { request, sseData, startServer } from "../../../harness/index.js";

const fixture = JSON.parse(readFileSync(PASTA_FIXTURE, "utf8"));
let server: Awaited<ReturnType<typeof startServer>>;
t.before(async () => {
  server = await startServer([]);
});
t.teardown(async () => {
  await server?.stop();
});

const generate = (body: object) => request(server.base, "/v1/generate", { body });

t.test("steered generation over HTTP equals the PASTA reference", async (t) => {
  for (const c of fixture.cases) {
    const marked = c.text.replace(c.emphasis, `<em>${c.emphasis}</em>`);
    const { status, text } = await generate({
      prompt: marked,
      max_tokens: 24,
      temperature: 0,
      logprobs: 1,
      steering: { markup: "html", heads: c.heads, alpha: c.alpha },
    });
    t.equal(status, 200);
    const body = JSON.parse(text);
    t.equal(body.usage.completion_tokens, c.steered_greedy.tokens.length);
    t.same(
      body.logprobs.tokens.map((tok: any) => tok.id),
      c.steered_greedy.tokens,
      `case "${c.emphasis}": reference greedy tokens`,
    );
    // the reference decodes the answer alone, which drops a leading space; ours reads in context, as llama-server's
    t.equal(body.text.replace(/^ /, ""), c.steered_greedy.text, `case "${c.emphasis}": reference greedy text`);
    t.equal(body.text, body.logprobs.tokens.map((tok: any) => tok.text).join(""), "the text is its tokens' texts in context");
    t.same(
      body.steering.spans.map((s: any) => [s.token_start, s.token_end]),
      [c.steered_token_range],
    );
  }
});

t.test("the native stream carries the same text, steering first, usage last", async (t) => {
  const c = fixture.cases[0];
  const body = { prompt: c.text, max_tokens: 24, temperature: 0, steering: { emphasis: [c.emphasis], heads: c.heads, alpha: c.alpha } };
  const { status, text } = await generate({ ...body, stream: true });
  t.equal(status, 200);
  const events = sseData(text);
  t.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  t.same(
    chunks[0].steering.spans.map((s: any) => [s.token_start, s.token_end]),
    [c.steered_token_range],
    "spans in the first chunk",
  );
  t.equal(
    chunks
      .map((ch) => ch.text)
      .join("")
      .replace(/^ /, ""),
    c.steered_greedy.text,
  );
  t.equal(chunks.at(-1).finish_reason, "length");
  t.equal(chunks.at(-1).usage.completion_tokens, 24);
});
