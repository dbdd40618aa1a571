// The response schemas the routes declare document the answers in /openapi.json (#27); real
// answers of each completion endpoint, with every optional part present, must parse with them to
// the same object (zod drops what a schema does not name, so an undocumented field fails here).
import type { Token } from "node-llama-cpp";
import t from "tap";
import type { z } from "zod";
import type { GeneratedTokenLogprobs } from "../../../src/engine/engine.js";
import { chatCompletionResponse, completionResponse, generateResponse } from "../../../src/server/responseSchemas.js";
import { FakeService, fakeApp, generationOf } from "../../support/fakeService.js";

const [hi, yo] = [7, 9] as unknown as [Token, Token];
const logprobs: GeneratedTokenLogprobs[] = [
  {
    id: hi,
    text: "Hi",
    logprob: -0.5,
    top: [
      { id: hi, text: "Hi", logprob: -0.5 },
      { id: yo, text: "Yo", logprob: -1.5 },
    ],
  },
];
const steering = {
  spans: [{ start: 0, end: 3, text: "Tom", tokenStart: 0, tokenEnd: 1 }],
  diagnostics: { tokens: [[{ layer: 1, head: 2, steeredHead: true, steered: 0.75, unsteered: 0.25 }]] },
  auto: {
    matched: true,
    sentences: [{ text: "Tom had a kite.", start: 0, end: 15, score: 0.9 }],
    named: { sentences: 1, of: 3 },
    selection: { text: "Tom had", promptTokens: 9, completionTokens: 2, finishReason: "stop" as const },
  },
};
const service = new FakeService(() => [
  { type: "admitted", steering },
  { type: "text", choice: 0, text: "Hi", logprobs },
  { type: "done", generation: generationOf("Hi", { steering, choices: [{ ...generationOf("Hi").choices[0]!, logprobs }] }) },
]);
const app = await fakeApp({ service });
t.teardown(() => app.close());

const cases: Array<[string, object, z.ZodType]> = [
  ["/v1/generate", { prompt: "Tom had a kite.", logprobs: 2, steering: { emphasis: ["Tom"], heads: [1] } }, generateResponse],
  [
    "/v1/chat/completions",
    { messages: [{ role: "user", content: "Tom had a kite." }], logprobs: true, top_logprobs: 2, steering: { emphasis: ["Tom"] } },
    chatCompletionResponse,
  ],
  ["/v1/completions", { prompt: "Tom had a kite.", logprobs: 2, steering: { emphasis: ["Tom"] } }, completionResponse],
];

for (const [url, payload, schema] of cases) {
  t.test(url, async (t) => {
    const res = await app.inject({ method: "POST", url, payload });
    t.equal(res.statusCode, 200, res.body);
    const body = res.json();
    const parsed = schema.safeParse(body);
    t.ok(parsed.success, parsed.error?.message ?? "parses");
    t.same(parsed.data, body, "nothing the schema does not name");
  });
}

t.test("/openapi.json documents the answers of the three completion endpoints", async (t) => {
  const spec = (await app.inject({ method: "GET", url: "/openapi.json" })).json();
  for (const url of ["/v1/generate", "/v1/chat/completions", "/v1/completions"]) {
    const answer = spec.paths[url].post.responses["200"];
    t.ok(answer?.content?.["application/json"]?.schema?.properties?.usage, `${url}: a 200 body with usage`);
  }
});
