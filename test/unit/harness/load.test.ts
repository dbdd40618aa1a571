// The load driver's checks (harness/load.ts) catch what they are meant to: malformed streams and
// bodies, undocumented refusals, growing memory. (The load run itself: test/process/server/load.test.ts.)
import t from "tap";
import { bodyProblem, memoryCheck, refusalProblem, streamProblem } from "../../../harness/index.js";

t.test("the checks catch what they are meant to", async (t) => {
  const sse = (...chunks: unknown[]) => chunks.map((c) => `data: ${typeof c === "string" ? c : JSON.stringify(c)}\n\n`).join("");
  const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 };
  const gen = { includeUsage: true, maxTokens: 8, steered: false };
  const good = sse({ text: "" }, { text: "Tom" }, { text: " ran" }, { text: "", finish_reason: "stop", usage }, "[DONE]");
  t.equal(streamProblem(good, "generate", gen), undefined, "a well-formed /v1/generate stream passes");
  t.match(streamProblem(good.replace("data: [DONE]\n\n", ""), "generate", gen), /\[DONE\]/, "no [DONE]");
  t.match(streamProblem(sse({ text: "" }, { text: "Tom" }, "[DONE]"), "generate", gen), /finish_reason/, "no finish chunk");
  t.match(
    streamProblem(sse({ text: "" }, { text: "" }, { text: "", finish_reason: "stop", usage }, "[DONE]"), "generate", gen),
    /empty text/,
    "tokens but no text",
  );
  t.match(
    streamProblem(`${sse({ text: "" }, { text: "a" })}event: error\ndata: {"error":{}}\n\n`, "generate", gen),
    /error/,
    "an error event",
  );
  t.match(
    streamProblem(sse({ text: "" }, "{oops", { text: "", finish_reason: "stop", usage }, "[DONE]"), "generate", gen),
    /not JSON/,
    "a chunk that is not JSON",
  );
  t.match(
    streamProblem(sse({ text: "" }, { text: "a" }, { text: "", finish_reason: "length", usage }, "[DONE]"), "generate", gen),
    /length after 2 of 8/,
    "length before max_tokens",
  );
  t.equal(
    streamProblem(sse({ text: "" }, { text: "a" }, { text: "", finish_reason: "length", usage }, "[DONE]"), "generate", {
      ...gen,
      cutShort: true,
    }),
    undefined,
    "unless it may be cut short",
  );
  t.match(streamProblem(good, "generate", { ...gen, steered: true }), /steering\.spans/, "steered without spans");

  const head = { id: "chatcmpl-1", object: "chat.completion.chunk" };
  const chat = (finish: object, ...tail: unknown[]) =>
    sse(
      { ...head, choices: [{ delta: { role: "assistant", content: "" }, finish_reason: null }] },
      { ...head, choices: [{ delta: { content: "Hi" }, finish_reason: null }] },
      { ...head, choices: [{ delta: {}, ...finish }] },
      ...tail,
      "[DONE]",
    );
  const withUsage = chat({ finish_reason: "stop" }, { ...head, choices: [], usage });
  t.equal(streamProblem(withUsage, "chat", gen), undefined, "a well-formed chat stream with usage passes");
  t.match(streamProblem(chat({ finish_reason: "stop" }), "chat", gen), /include_usage|finish chunk/, "usage asked, none sent");
  t.match(streamProblem(withUsage, "chat", { ...gen, includeUsage: false }), /usage|finish chunk/, "usage sent, not asked");
  t.equal(streamProblem(chat({ finish_reason: "stop" }), "chat", { ...gen, includeUsage: false }), undefined, "no usage, not asked");

  t.equal(bodyProblem({ text: "Tom", finish_reason: "stop", usage }, "generate", gen), undefined, "a good body");
  t.match(
    bodyProblem({ choices: [{ message: { content: "x" }, finish_reason: null }], usage }, "chat", gen),
    /finish_reason/,
    "a body without finish_reason",
  );
  t.equal(refusalProblem(429, "2", { type: "rate_limit_error", message: "busy" }), undefined, "a documented 429");
  t.match(refusalProblem(429, null, { type: "rate_limit_error", message: "busy" }), /Retry-After/, "a 429 without Retry-After");
  t.match(refusalProblem(503, "5", { type: "rate_limit_error", message: "x" }), /server_error/, "a 503 of the wrong type");
  t.match(refusalProblem(500, "1", { type: "server_error", message: "x" }), /neither/, "a 500");

  const rss = (values: number[]) => values.map((v, i) => ({ t: i + 0.5, rss: v }));
  t.ok(memoryCheck(rss([100, 100, 100, 101, 102, 103, 104, 105, 106]), 9).ok, "slight growth passes");
  const leak = memoryCheck(rss([100, 100, 100, 110, 120, 130, 160, 180, 200]), 9);
  t.notOk(leak.ok, `a leak fails (${(leak.growth * 100).toFixed(0)}%)`);
  t.notOk(memoryCheck(rss([100, 100]), 2).ok, "too few samples fail");
});
