// Proof under load (bench/load.ts's runLoad): 16 closed-loop clients for ~11 s against a real server
// (--parallel 4 --max-queue 16 --ctx-size 512), mixing endpoints, streaming and steering. Every
// answer is a success or a documented 429/503, every stream is well-formed, RSS is stable, the server
// is idle afterwards and exits 0.
import t from "tap";
import { bodyProblem, formatSummary, memoryCheck, MEMORY_TOLERANCE, refusalProblem, runLoad, streamProblem } from "../bench/load.js";

const SECONDS = 11;
const CLIENTS = 16;

t.test(`${CLIENTS} clients for ${SECONDS} s: no violations, every kind served, memory stable`, async (t) => {
  const summary = await runLoad({ seconds: SECONDS, clients: CLIENTS });
  t.comment(formatSummary(summary));

  t.same(summary.violations, [], "no violations");
  t.ok(summary.ok > 0 && summary.ok === (summary.statuses["200"] ?? 0), `every 200 was well-formed (${summary.ok} ok)`);
  const refused = Object.entries(summary.statuses).filter(([status]) => status !== "200");
  t.ok(refused.every(([status]) => status === "429" || status === "503"), `anything else is a 429 or 503: ${JSON.stringify(summary.statuses)}`);
  for (const kind of ["steered/plain", "steered/stream", "unsteered/plain", "unsteered/stream"]) {
    t.ok((summary.kinds[kind]?.ok ?? 0) > 0, `${kind}: ${summary.kinds[kind]?.ok ?? 0} successful requests`);
  }
  for (const endpoint of ["generate", "chat", "completions"]) {
    for (const mode of ["plain", "stream"]) t.ok((summary.endpoints[`${endpoint}/${mode}`]?.ok ?? 0) > 0, `${endpoint}/${mode} served`);
  }
  t.ok(summary.ttftMs.count > 0, `time to first token measured on ${summary.ttftMs.count} streams`);
  t.ok(summary.completionTokens > 0, `${summary.completionTokens} completion tokens generated`);

  const m = summary.memory;
  t.ok(m.ok, `RSS stable: middle third ${(m.middleMeanBytes / 2 ** 20).toFixed(1)} MiB, last third ${(m.lastMeanBytes / 2 ** 20).toFixed(1)} MiB (${(m.growth * 100).toFixed(1)}%, allowed +${MEMORY_TOLERANCE * 100}%)`);
  t.ok(m.samples >= SECONDS - 2, `RSS sampled every second (${m.samples} samples)`);
});

t.test("the checks catch what they are meant to", async (t) => {
  const sse = (...chunks: unknown[]) => chunks.map((c) => `data: ${typeof c === "string" ? c : JSON.stringify(c)}\n\n`).join("");
  const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 };
  const gen = { includeUsage: true, maxTokens: 8, steered: false };
  const good = sse({ text: "" }, { text: "Tom" }, { text: " ran" }, { text: "", finish_reason: "stop", usage }, "[DONE]");
  t.equal(streamProblem(good, "generate", gen), undefined, "a well-formed /v1/generate stream passes");
  t.match(streamProblem(good.replace("data: [DONE]\n\n", ""), "generate", gen), /\[DONE\]/, "no [DONE]");
  t.match(streamProblem(sse({ text: "" }, { text: "Tom" }, "[DONE]"), "generate", gen), /finish_reason/, "no finish chunk");
  t.match(streamProblem(sse({ text: "" }, { text: "" }, { text: "", finish_reason: "stop", usage }, "[DONE]"), "generate", gen), /empty text/, "tokens but no text");
  t.match(streamProblem(sse({ text: "" }, { text: "a" }) + 'event: error\ndata: {"error":{}}\n\n', "generate", gen), /error/, "an error event");
  t.match(streamProblem(sse({ text: "" }, "{oops", { text: "", finish_reason: "stop", usage }, "[DONE]"), "generate", gen), /not JSON/, "a chunk that is not JSON");
  t.match(streamProblem(sse({ text: "" }, { text: "a" }, { text: "", finish_reason: "length", usage }, "[DONE]"), "generate", gen), /length after 2 of 8/, "length before max_tokens");
  t.equal(streamProblem(sse({ text: "" }, { text: "a" }, { text: "", finish_reason: "length", usage }, "[DONE]"), "generate", { ...gen, cutShort: true }), undefined, "unless it may be cut short");
  t.match(streamProblem(good, "generate", { ...gen, steered: true }), /steering\.spans/, "steered without spans");

  const head = { id: "chatcmpl-1", object: "chat.completion.chunk" };
  const chat = (finish: object, ...tail: unknown[]) => sse({ ...head, choices: [{ delta: { role: "assistant", content: "" }, finish_reason: null }] },
    { ...head, choices: [{ delta: { content: "Hi" }, finish_reason: null }] }, { ...head, choices: [{ delta: {}, ...finish }] }, ...tail, "[DONE]");
  const withUsage = chat({ finish_reason: "stop" }, { ...head, choices: [], usage });
  t.equal(streamProblem(withUsage, "chat", gen), undefined, "a well-formed chat stream with usage passes");
  t.match(streamProblem(chat({ finish_reason: "stop" }), "chat", gen), /include_usage|finish chunk/, "usage asked, none sent");
  t.match(streamProblem(withUsage, "chat", { ...gen, includeUsage: false }), /usage|finish chunk/, "usage sent, not asked");
  t.equal(streamProblem(chat({ finish_reason: "stop" }), "chat", { ...gen, includeUsage: false }), undefined, "no usage, not asked");

  t.equal(bodyProblem({ text: "Tom", finish_reason: "stop", usage }, "generate", gen), undefined, "a good body");
  t.match(bodyProblem({ choices: [{ message: { content: "x" }, finish_reason: null }], usage }, "chat", gen), /finish_reason/, "a body without finish_reason");
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
