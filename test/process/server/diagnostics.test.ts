// `steering.diagnostics` through a real server on SmolLM2 with its shipped profile: through the
// official `openai` client on chat (plain and streamed) and completions, and on /v1/generate; the
// responses still validate against OpenAI's schemas, a streamed answer reports what the plain one
// does, and a malformed field is a 400 naming it. The numbers themselves are checked against a
// direct computation in test/model/engine/diagnostics.test.ts.
import t, { type Test } from "tap";
import OpenAI from "openai";
import { request, startServer } from "../../../harness/index.js";
import { assertOpenAI } from "../../support/openaiSchema.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

const BIO = "Maria Lopez grew up in Seville. She works as a **marine biologist** and studies dolphins near the coast.";
const ASK = "What is Maria Lopez's occupation?";

interface HeadJson {
  layer: number;
  head: number;
  steered_head: boolean;
  share_steered: number;
  share_unsteered: number;
}
interface DiagnosticsJson {
  tokens: Array<{ heads: HeadJson[] }>;
}

type Server = Awaited<ReturnType<typeof startServer>>;
let server: Server;
let client: OpenAI;
let model: string;
let profileHeads: Array<[number, number]>;
t.before(async () => {
  server = await startServer(["--model", SMOLLM2_MODEL, "--ctx-size", "1024"]);
  client = new OpenAI({ apiKey: "none", baseURL: `${server.base}/v1`, maxRetries: 0 });
  const served = (await client.models.list()).data[0] as unknown as { id: string; meta: { profile: { heads: Record<string, number[]> } } };
  model = served.id;
  profileHeads = Object.entries(served.meta.profile.heads)
    .flatMap(([layer, heads]) => heads.map((h) => [Number(layer), h] as [number, number]))
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
});
t.teardown(() => server?.stop());

const chatBody = (diagnostics: unknown) => ({
  model,
  messages: [{ role: "user" as const, content: `${BIO}\n${ASK}` }],
  max_tokens: 12,
  temperature: 0,
  steering: { markup: "markdown", diagnostics },
});

function checkShares(t: Test, diagnostics: DiagnosticsJson) {
  const heads = diagnostics.tokens.flatMap((tok) => tok.heads);
  t.ok(
    heads.every((h) => h.share_steered >= 0 && h.share_steered <= 1 && h.share_unsteered >= 0 && h.share_unsteered <= 1),
    "every share is in [0, 1]",
  );
  const first = diagnostics.tokens[0]!.heads.filter((h) => h.steered_head);
  t.ok(
    first.every((h) => h.share_steered > h.share_unsteered),
    `steering raises each steered head's share on the emphasis (${first.map((h) => `${h.share_unsteered.toFixed(3)}->${h.share_steered.toFixed(3)}`).join(", ")})`,
  );
}

t.test("chat: diagnostics true gives the first token's share for each profile head", async (t) => {
  const res = await client.chat.completions.create(chatBody(true) as OpenAI.ChatCompletionCreateParamsNonStreaming);
  const raw = res as unknown as Record<string, any>;
  assertOpenAI(t, "CreateChatCompletionResponse", raw);
  const diagnostics = raw.steering.diagnostics as DiagnosticsJson;
  t.equal(diagnostics.tokens.length, 1, "one entry: the first generated token");
  t.same(
    diagnostics.tokens[0]!.heads.map((h) => [h.layer, h.head]),
    profileHeads,
    "the profile's heads, in order",
  );
  t.ok(
    diagnostics.tokens[0]!.heads.every((h) => h.steered_head),
    "all of them steered",
  );
  checkShares(t, diagnostics);
  t.match(raw.steering.spans[0].text, "marine biologist", "the spans are still there");
});

t.test("chat, streamed: the finishing chunk carries what the plain answer reports, for every token", async (t) => {
  const options = { every_token: true, all_heads: true };
  const plain = (await client.chat.completions.create(
    chatBody(options) as OpenAI.ChatCompletionCreateParamsNonStreaming,
  )) as unknown as Record<string, any>;
  const stream = await client.chat.completions.create({ ...chatBody(options), stream: true } as OpenAI.ChatCompletionCreateParamsStreaming);
  const chunks: Array<Record<string, any>> = [];
  for await (const chunk of stream) chunks.push(chunk as unknown as Record<string, any>);
  for (const chunk of chunks) assertOpenAI(t, "CreateChatCompletionStreamResponse", chunk);
  const finishing = chunks.find((c) => c.choices[0]?.finish_reason);
  const streamed = finishing?.steering?.diagnostics as DiagnosticsJson;
  t.ok(streamed, "the chunk with finish_reason has steering.diagnostics");
  const expected = plain.steering.diagnostics as DiagnosticsJson;
  t.equal(expected.tokens.length, plain.usage.completion_tokens, "one entry per generated token");
  t.same(streamed, expected, "streamed and plain answers report the same");
  const layers = new Set(profileHeads.map(([l]) => l));
  t.equal(expected.tokens[0]!.heads.length, layers.size * 9, "all heads of the steered layers (9 per layer)");
  t.equal(expected.tokens[0]!.heads.filter((h) => h.steered_head).length, profileHeads.length, "of which the profile's are marked steered");
  const others = expected.tokens.flatMap((tok) => tok.heads.filter((h) => !h.steered_head));
  t.ok(
    others.every((h) => h.share_steered === h.share_unsteered),
    "an unsteered head's share is the same both ways",
  );
  checkShares(t, expected);
});

t.test("completions and /v1/generate report diagnostics too", async (t) => {
  const completion = (await client.completions.create({
    model,
    prompt: `${BIO}\nOccupation:`,
    max_tokens: 4,
    temperature: 0,
    // @ts-expect-error steering is this server's extra body field
    steering: { markup: "markdown", diagnostics: true },
  })) as unknown as Record<string, any>;
  assertOpenAI(t, "CreateCompletionResponse", completion);
  checkShares(t, completion.steering.diagnostics);

  const generated = await request(server.base, "/v1/generate", {
    body: {
      prompt: `${BIO}\nOccupation:`,
      max_tokens: 4,
      temperature: 0,
      steering: { markup: "markdown", diagnostics: { every_token: true } },
    },
  });
  t.equal(generated.status, 200);
  t.equal(generated.body.steering.diagnostics.tokens.length, generated.body.usage.completion_tokens, "one entry per generated token");
  checkShares(t, generated.body.steering.diagnostics);

  const none = await request(server.base, "/v1/generate", { body: { prompt: BIO, max_tokens: 2, steering: { markup: "markdown" } } });
  t.notOk("diagnostics" in none.body.steering, "no diagnostics unless asked");
});

t.test("a malformed diagnostics field is a 400 that names it", async (t) => {
  for (const diagnostics of ["yes", { every: true }, { all_heads: 1 }]) {
    const res = await request(server.base, "/v1/generate", { body: { prompt: BIO, steering: { markup: "markdown", diagnostics } } });
    t.equal(res.status, 400, JSON.stringify(diagnostics));
    t.match(res.body.error.param, /^steering\.diagnostics/, `param: ${res.body.error.param}`);
  }
});
