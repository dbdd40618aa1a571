// The HTTP layer in process (fastify's app.inject) over a fake generation service: what each route
// hands the service, the JSON and SSE shapes it answers with, declarative errors (status, type,
// code, param, Retry-After), auth, body limits. No model is loaded.
import type { InjectOptions } from "fastify";
import t from "tap";
import { sseEvents } from "../../../harness/index.js";
import { QueueFullError, JobStopped } from "../../../src/scheduler/scheduler.js";
import { SteeringError } from "../../../src/engine/errors.js";
import { withApiField } from "../../../src/server/engineFields.js";
import { answer, fakeApp, FakeService, generationOf } from "../../support/fakeService.js";
import type { CompletionEvent } from "../../../src/server/completionService.js";

const spans = [{ start: 20, end: 24, text: "blue", tokenStart: 6, tokenEnd: 7 }];

t.test("chat: the rendered prompt with emphasis moved onto it, and OpenAI's body with snake_case steering", async (t) => {
  const service = new FakeService(() => answer(["Hi", "!"], { steering: { spans } }));
  const app = await fakeApp({ service });
  t.teardown(() => app.close());
  const res = await app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    payload: {
      messages: [{ role: "user", content: "Tom had a **blue** kite." }],
      steering: { markup: "markdown", heads: [0] },
      max_tokens: 9,
      temperature: 0,
    },
  });
  t.equal(res.statusCode, 200, res.body);
  const input = service.inputs[0]!;
  t.equal(input.endpoint, "chat");
  t.equal(
    input.prompt.prompt,
    "<|im_start|>user\nTom had a blue kite.<|im_end|>\n<|im_start|>assistant\n",
    "ChatML rendering, markup removed",
  );
  t.same(
    input.prompt.emphasis.map((s) => input.prompt.prompt.slice(s.start, s.end)),
    ["blue"],
    "the emphasis is a resolved span of the rendered prompt",
  );
  t.equal(input.maxTokens, 9);
  t.same(input.sampling, { temperature: 0, topP: 1, topK: 0 });
  const body = res.json();
  t.equal(body.object, "chat.completion");
  t.equal(body.choices[0].message.content, "Hi!");
  t.equal(body.choices[0].finish_reason, "stop");
  t.same(body.usage, { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7, prompt_tokens_details: { cached_tokens: 0 } });
  t.same(body.steering, { spans: [{ start: 20, end: 24, text: "blue", token_start: 6, token_end: 7 }] });
});

t.test("defaults: chat 256 tokens at OpenAI's temperature 1; completions 16", async (t) => {
  const service = new FakeService();
  const app = await fakeApp({ service });
  t.teardown(() => app.close());
  await app.inject({ method: "POST", url: "/v1/chat/completions", payload: { messages: [{ role: "user", content: "x" }] } });
  await app.inject({ method: "POST", url: "/v1/completions", payload: { prompt: "x" } });
  await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "x" } });
  t.same(
    service.inputs.map((i) => [i.endpoint, i.maxTokens, i.sampling.temperature]),
    [
      ["chat", 256, 1],
      ["completions", 16, 1],
      ["generate", 256, 1],
    ],
  );
});

t.test("streams: the first chunk carries steering, text chunks follow, finish and usage last, then [DONE]", async (t) => {
  const service = new FakeService(() => answer(["Once", " upon"], { steering: { spans } }));
  const app = await fakeApp({ service });
  t.teardown(() => app.close());
  const chat = await app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    payload: { messages: [{ role: "user", content: "go" }], stream: true, stream_options: { include_usage: true } },
  });
  t.equal(chat.headers["content-type"], "text/event-stream; charset=utf-8");
  const events = sseEvents(chat.body);
  t.ok(
    events.every((e) => e.wellFormed && e.event === undefined),
    "data events only, each one data line",
  );
  const chunks = events
    .map((e) => e.data)
    .slice(0, -1)
    .map((d) => JSON.parse(d));
  t.equal(events.at(-1)!.data, "[DONE]");
  t.same(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  t.same(chunks[0].steering.spans[0], { start: 20, end: 24, text: "blue", token_start: 6, token_end: 7 });
  t.same(
    chunks.slice(1, 3).map((c) => c.choices[0].delta.content),
    ["Once", " upon"],
  );
  t.equal(chunks[3].choices[0].finish_reason, "stop");
  t.same(chunks[4].choices, []);
  t.equal(chunks[4].usage.completion_tokens, 9);

  const native = await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "go", stream: true } });
  const data = sseEvents(native.body).map((e) => e.data);
  t.same(
    data.slice(0, -1).map((d) => JSON.parse(d).text),
    ["", "Once", " upon", ""],
  );
  t.equal(JSON.parse(data.at(-2)!).finish_reason, "stop");
});

t.test("errors declare their own answer: before the stream a status code, after it an error event", async (t) => {
  const cases: Array<[string, () => Iterable<CompletionEvent>, number, Record<string, unknown>, string | undefined]> = [
    [
      "queue full",
      () => {
        throw new QueueFullError(2);
      },
      429,
      { type: "rate_limit_error", code: "queue_full", param: null },
      "2",
    ],
    [
      "steering refused",
      () => {
        // as the service throws it: the engine's field renamed to the API's path
        throw withApiField(new SteeringError("heads", ": layer 9 is out of range"), undefined);
      },
      400,
      { type: "invalid_request_error", code: "invalid_steering", param: "steering.heads" },
      undefined,
    ],
    [
      "time limit",
      () => {
        throw new JobStopped("time_limit");
      },
      504,
      { type: "timeout_error", code: "timeout" },
      undefined,
    ],
    [
      "unexpected",
      () => {
        throw new Error("secret detail");
      },
      500,
      { type: "server_error", message: "internal server error" },
      undefined,
    ],
  ];
  for (const [name, script, status, fields, retryAfter] of cases) {
    const app = await fakeApp({ service: new FakeService(script) });
    for (const stream of [false, true]) {
      const res = await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "x", stream } });
      t.equal(res.statusCode, status, `${name} (stream ${stream}): status`);
      t.match(res.json().error, fields, `${name}: OpenAI's error body`);
      t.equal(res.headers["retry-after"], retryAfter, `${name}: Retry-After`);
    }
    await app.close();
  }

  const failing = new FakeService(function* () {
    yield { type: "admitted" };
    yield { type: "text", choice: 0, text: "partial", logprobs: [] };
    throw new Error("the decode failed");
  });
  const app = await fakeApp({ service: failing });
  t.teardown(() => app.close());
  const res = await app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    payload: { messages: [{ role: "user", content: "x" }], stream: true },
  });
  t.equal(res.statusCode, 200, "the stream had begun");
  const events = sseEvents(res.body);
  t.equal(events.at(-1)!.event, "error", "it ends on an error event");
  t.match(JSON.parse(events.at(-1)!.data), { error: { type: "server_error", message: "internal server error" } });
  t.notOk(res.body.includes("[DONE]"), "no [DONE] after an error");
});

t.test("validation, routing, model and auth errors in OpenAI's shape", async (t) => {
  const app = await fakeApp({ apiKeys: ["k1"], bodyLimit: 2048 });
  t.teardown(() => app.close());
  const auth = { authorization: "Bearer k1" };
  const cases: Array<[string, InjectOptions, number, Record<string, unknown>]> = [
    [
      "no key",
      { method: "POST", url: "/v1/generate", payload: { prompt: "x" } },
      401,
      { type: "authentication_error", code: "missing_api_key" },
    ],
    [
      "wrong key",
      { method: "POST", url: "/v1/generate", payload: { prompt: "x" }, headers: { authorization: "Bearer k2" } },
      401,
      { code: "invalid_api_key" },
    ],
    [
      "bad field",
      { method: "POST", url: "/v1/generate", payload: { prompt: "x", max_tokens: 0 }, headers: auth },
      400,
      { type: "invalid_request_error", param: "max_tokens", code: "invalid_value" },
    ],
    [
      "unknown native field",
      { method: "POST", url: "/v1/generate", payload: { prompt: "x", nope: 1 }, headers: auth },
      400,
      { type: "invalid_request_error" },
    ],
    ["unknown route", { method: "GET", url: "/v2/nothing", headers: auth }, 404, { type: "not_found_error" }],
    [
      "other model",
      {
        method: "POST",
        url: "/v1/chat/completions",
        payload: { model: "gpt-4", messages: [{ role: "user", content: "x" }] },
        headers: auth,
      },
      404,
      { param: "model", code: "model_not_found" },
    ],
    [
      "auto on completions",
      { method: "POST", url: "/v1/completions", payload: { prompt: "x", steering: { auto: true } }, headers: auth },
      400,
      { param: "steering.auto" },
    ],
    [
      "markup unbalanced",
      { method: "POST", url: "/v1/generate", payload: { prompt: "a **b", steering: { markup: "markdown", heads: [0] } }, headers: auth },
      400,
      { param: "steering.markup", code: "invalid_steering" },
    ],
    [
      "body too large",
      { method: "POST", url: "/v1/generate", payload: { prompt: "x".repeat(4096) }, headers: auth },
      413,
      { type: "invalid_request_error" },
    ],
  ];
  for (const [name, request, status, fields] of cases) {
    const res = await app.inject(request);
    t.equal(res.statusCode, status, `${name}: ${res.body.slice(0, 200)}`);
    t.match(res.json().error, fields, name);
  }
  t.equal((await app.inject({ method: "GET", url: "/health" })).statusCode, 200, "probes need no key");
  t.equal(
    (await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "x" }, headers: auth })).statusCode,
    200,
    "the right key passes",
  );
});

t.test("while the model loads: /ready and generation answer 503 with Retry-After", async (t) => {
  const app = await fakeApp({ service: new Promise<FakeService>(() => {}) });
  t.teardown(() => app.close());
  t.equal((await app.inject({ method: "GET", url: "/ready" })).statusCode, 503);
  const res = await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "x" } });
  t.equal(res.statusCode, 503);
  t.equal(res.headers["retry-after"], "5");
  t.match(res.json().error, { code: "model_loading", type: "server_error" });
});

t.test("completions with echo put the prompt before the answer", async (t) => {
  const app = await fakeApp({ service: new FakeService(() => [{ type: "admitted" }, { type: "done", generation: generationOf("") }]) });
  t.teardown(() => app.close());
  const res = await app.inject({ method: "POST", url: "/v1/completions", payload: { prompt: "x", echo: true } });
  t.equal(res.json().choices[0].text, "x", "echo puts the prompt first");
});

t.test("tokenize, detokenize and apply-template: llama-server's shapes, ranges, validation", async (t) => {
  const app = await fakeApp({ apiKeys: ["k1"] });
  t.teardown(() => app.close());
  const headers = { authorization: "Bearer k1" };
  const post = (url: string, payload: object) => app.inject({ method: "POST", url, payload, headers });

  t.same((await post("/tokenize", { content: "ab" })).json(), { tokens: [97, 98] }, "ids by default");
  t.same(
    (await post("/tokenize", { content: "a\u00FF", with_pieces: true })).json(),
    {
      tokens: [
        { id: 97, piece: "a", start: 0, end: 1 },
        { id: 255, piece: [255], start: 1, end: 2 },
      ],
    },
    "pieces with their character ranges; a piece that is not valid UTF-8 as its bytes",
  );
  t.equal((await post("/tokenize", { content: "x", with_pieces: "yes" })).statusCode, 400);
  t.equal((await app.inject({ method: "POST", url: "/tokenize", payload: { content: "x" } })).statusCode, 401, "API keys apply");

  t.same((await post("/detokenize", { tokens: [104, 105] })).json(), { content: "hi" });
  const bad = await post("/detokenize", { tokens: [1, 1000] });
  t.equal(bad.statusCode, 400);
  t.match(bad.json().error, { param: "tokens.1", message: /not a token id: the vocabulary has ids 0-999/ });

  const rendered = (
    await post("/apply-template", {
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
    })
  ).json();
  t.equal(rendered.prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  t.same(
    rendered.content_spans.map((s: { start: number; end: number }) => rendered.prompt.slice(s.start, s.end)),
    ["Be brief.", "Hi"],
    "where each content lies",
  );
});

t.test("structured output: response_format and grammar fields become the input's output constraint", async (t) => {
  const service = new FakeService();
  const app = await fakeApp({ service });
  t.teardown(() => app.close());
  const post = (url: string, payload: object) => app.inject({ method: "POST", url, payload });
  const messages = [{ role: "user", content: "Hi" }];
  const schema = { type: "object", properties: { a: { type: "string" } } };

  const cases: Array<[string, object, unknown]> = [
    ["/v1/chat/completions", { messages, response_format: { type: "text" } }, undefined],
    [
      "/v1/chat/completions",
      { messages, response_format: { type: "json_object" } },
      { constraint: { type: "json_object" }, param: "response_format" },
    ],
    [
      "/v1/chat/completions",
      { messages, response_format: { type: "json_schema", json_schema: { name: "a", schema, strict: true } } },
      { constraint: { type: "json_schema", schema }, param: "response_format" },
    ],
    // OpenAI's json_schema without a schema: any JSON object
    [
      "/v1/chat/completions",
      { messages, response_format: { type: "json_schema", json_schema: { name: "a" } } },
      { constraint: { type: "json_object" }, param: "response_format" },
    ],
    [
      "/v1/completions",
      { prompt: "x", response_format: { type: "json_object" } },
      { constraint: { type: "json_object" }, param: "response_format" },
    ],
    [
      "/v1/generate",
      { prompt: "x", grammar: 'root ::= "a"' },
      { constraint: { type: "grammar", grammar: 'root ::= "a"' }, param: "grammar" },
    ],
    ["/v1/generate", { prompt: "x", json_schema: schema }, { constraint: { type: "json_schema", schema }, param: "json_schema" }],
  ];
  for (const [url, payload, output] of cases) {
    const res = await post(url, payload);
    t.equal(res.statusCode, 200, res.body);
    t.same(service.inputs.at(-1)!.output, output, `${url} ${JSON.stringify(payload)}`);
  }

  const refused: Array<[string, object, RegExp]> = [
    ["/v1/chat/completions", { messages, response_format: { type: "xml" } }, /response_format/],
    ["/v1/chat/completions", { messages, response_format: { type: "json_schema", json_schema: { name: "has space" } } }, /name/],
    ["/v1/generate", { prompt: "x", grammar: 'root ::= "a"', json_schema: schema }, /not both/],
    ["/v1/generate", { prompt: "x", grammar: "" }, /grammar/],
  ];
  for (const [url, payload, message] of refused) {
    const res = await post(url, payload);
    t.equal(res.statusCode, 400, `${url} ${JSON.stringify(payload)}`);
    t.match(res.json().error.message, message);
  }
});

t.test(
  "steering.diagnostics: snake_case in, the engine's options through, the report in the body and a stream's finishing chunk",
  async (t) => {
    const diagnostics = { tokens: [[{ layer: 1, head: 2, steeredHead: true, steered: 0.75, unsteered: 0.25 }]] };
    // as the real service: the spans once admitted, the diagnostics once done
    const service = new FakeService(() => [
      { type: "admitted", steering: { spans } },
      { type: "text", choice: 0, text: "Hi", logprobs: [] },
      { type: "done", generation: generationOf("Hi", { steering: { spans, diagnostics } }) },
    ]);
    const app = await fakeApp({ service });
    t.teardown(() => app.close());
    const payload = (stream: boolean) => ({
      prompt: "Tom had a blue kite.",
      stream,
      steering: { emphasis: ["blue"], heads: [1], diagnostics: { every_token: true } },
    });
    const res = await app.inject({ method: "POST", url: "/v1/generate", payload: payload(false) });
    t.equal(res.statusCode, 200, res.body);
    t.same(service.inputs[0]!.steering?.diagnostics, { allHeads: false, everyToken: true }, "the body's field reaches the service");
    const expected = { tokens: [{ heads: [{ layer: 1, head: 2, steered_head: true, share_steered: 0.75, share_unsteered: 0.25 }] }] };
    t.same(res.json().steering.diagnostics, expected, "the documented shape");

    const streamed = await app.inject({ method: "POST", url: "/v1/generate", payload: payload(true) });
    const events = sseEvents(streamed.body).map((e) => e.data);
    const chunks = events.filter((d) => d !== "[DONE]").map((d) => JSON.parse(d));
    t.notOk(chunks[0].steering.diagnostics, "the first chunk has the spans only");
    t.same(chunks.at(-1).steering, { diagnostics: expected }, "the finishing chunk has the diagnostics");
    for (const diagnostics of [1, "all", { first: true }]) {
      const bad = await app.inject({ method: "POST", url: "/v1/generate", payload: { prompt: "x", steering: { diagnostics } } });
      t.equal(bad.statusCode, 400, JSON.stringify(diagnostics));
    }
  },
);

t.test("the playground: open without a key, with a content security policy; off with playground: false", async (t) => {
  const app = await fakeApp({ apiKeys: ["k1"] });
  t.teardown(() => app.close());
  const redirect = await app.inject({ method: "GET", url: "/playground" });
  t.equal(redirect.statusCode, 302);
  t.equal(redirect.headers.location, "/playground/");
  for (const [url, type] of [
    ["/playground/", "text/html"],
    ["/playground/playground.js", "javascript"],
    ["/playground/playground.css", "text/css"],
  ] as const) {
    const res = await app.inject({ method: "GET", url });
    t.equal(res.statusCode, 200, `${url} without an API key`);
    t.match(res.headers["content-type"], type);
    t.match(res.headers["content-security-policy"], "default-src 'self'");
  }
  const outside = await app.inject({ method: "GET", url: "/playground/..%2fpackage.json" });
  t.not(outside.statusCode, 200, `nothing outside playground/ (${outside.statusCode})`);
  t.notMatch(outside.body, '"name": "pasta-server"');
  t.equal((await app.inject({ method: "GET", url: "/v1/models" })).statusCode, 401, "the API still needs the key");

  const off = await fakeApp({ playground: false });
  t.teardown(() => off.close());
  t.equal((await off.inject({ method: "GET", url: "/playground/" })).statusCode, 404);
  t.equal((await off.inject({ method: "GET", url: "/playground" })).statusCode, 404);
});
