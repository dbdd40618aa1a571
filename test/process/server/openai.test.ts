// The OpenAI-compatible API through the official `openai` client, against a real server process on
// loopback: chat and completions (plain and streamed, with usage), /v1/models, steering as an extra
// body field echoed in steering.spans, scoring with echo + logprobs, typed errors, every response
// validated against OpenAI's published schemas, and a table of bad requests.
import t from "tap";
import OpenAI from "openai";
import { assertOpenAI as validate, validateOpenAI } from "../../support/openaiSchema.js";
import { postRaw, startServer } from "../../../harness/index.js";

const API_KEY = "test-key-123";
const CONTEXT = 256;
const HEADS = { "2": [0, 3, 5], "3": [1, 6] };

type Server = Awaited<ReturnType<typeof startServer>>;
let server: Server;
let client: OpenAI;

t.before(async () => {
  // --profile none: requests must name their heads (one bad request below names none)
  server = await startServer([
    "--api-key",
    API_KEY,
    "--ctx-size",
    String(CONTEXT),
    "--parallel",
    "2",
    "--model-alias",
    "stories",
    "--profile",
    "none",
  ]);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${server.base}/v1`, maxRetries: 0 });
});
t.teardown(async () => {
  await server?.stop();
});

/** Plain-prompt scoring: the prompt's tokens, as the server tokenizes them. */
async function promptTokens(prompt: string): Promise<string[]> {
  const res = await client.completions.create({ model: "stories", prompt, max_tokens: 0, echo: true, logprobs: 0 });
  return res.choices[0]!.logprobs!.tokens!;
}

t.test("/v1/models lists the served model", async (t) => {
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  t.same(ids, ["stories"]);
  const raw = await (await fetch(`${server.base}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } })).json();
  validate(t, "ListModelsResponse", raw);
});

t.test("chat completion, steered, echoes spans with the right token ranges", async (t) => {
  const messages = [{ role: "user" as const, content: "Lily had a red ball. <em>Tom had a blue kite.</em> Lily wanted to play" }];
  const res = await client.chat.completions.create({
    model: "stories",
    messages,
    max_tokens: 8,
    temperature: 0,
    // @ts-expect-error steering is this server's extra body field
    steering: { markup: "html", heads: HEADS, alpha: 0.01 },
  });
  validate(t, "CreateChatCompletionResponse", res);
  t.equal(res.object, "chat.completion");
  t.equal(res.usage!.completion_tokens, 8);
  const spans = (res as unknown as { steering: { spans: Array<{ text: string; token_start: number; token_end: number }> } }).steering.spans;
  t.equal(spans.length, 1);
  t.equal(spans[0]!.text, "Tom had a blue kite.");
  // the same rendered prompt scored as plain text: the span's tokens spell the emphasized text
  const rendered = "<|im_start|>user\nLily had a red ball. Tom had a blue kite. Lily wanted to play<|im_end|>\n<|im_start|>assistant\n";
  const tokens = await promptTokens(rendered);
  t.equal(tokens.length, res.usage!.prompt_tokens, "the chat prompt is the ChatML rendering (stories260K has no template)");
  t.equal(tokens.slice(spans[0]!.token_start, spans[0]!.token_end).join("").trim(), "Tom had a blue kite.");

  const unsteered = await client.chat.completions.create({
    model: "stories",
    messages: [{ role: "user", content: "Lily had a red ball. Tom had a blue kite. Lily wanted to play" }],
    max_tokens: 8,
    temperature: 0,
  });
  t.notOk("steering" in unsteered, "an unsteered response carries no steering object");
});

t.test("chat streaming with usage", async (t) => {
  const stream = await client.chat.completions.create({
    model: "stories",
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage: OpenAI.CompletionUsage | undefined;
  let finish: string | null = null;
  let chunks = 0;
  for await (const chunk of stream) {
    validate(t, "CreateChatCompletionStreamResponse", chunk);
    chunks++;
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage;
  }
  t.ok(chunks > 3, "several chunks");
  t.equal(finish, "length");
  t.equal(usage?.completion_tokens, 12);
  const whole = await client.chat.completions.create({
    model: "stories",
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 12,
    temperature: 0,
  });
  t.equal(text, whole.choices[0]!.message.content, "streamed text equals the non-streamed greedy text");
  t.equal(usage?.prompt_tokens, whole.usage!.prompt_tokens);
});

t.test("chat log-probs", async (t) => {
  const res = await client.chat.completions.create({
    model: "stories",
    messages: [{ role: "user", content: "Once upon a time" }],
    max_tokens: 4,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  validate(t, "CreateChatCompletionResponse", res);
  const content = res.choices[0]!.logprobs!.content!;
  t.equal(content.length, 4);
  for (const entry of content) {
    t.equal(entry.top_logprobs.length, 3);
    t.equal(entry.logprob, entry.top_logprobs[0]!.logprob, "greedy: the chosen token is the most likely");
  }
  t.equal(content.map((c) => c.token).join(""), res.choices[0]!.message.content);
});

t.test("completions, plain and streamed", async (t) => {
  const res = await client.completions.create({ model: "stories", prompt: "Lily had a red ball.", max_tokens: 10, temperature: 0 });
  validate(t, "CreateCompletionResponse", res);
  t.equal(res.object, "text_completion");
  t.equal(res.usage!.completion_tokens, 10);
  const stream = await client.completions.create({
    model: "stories",
    prompt: "Lily had a red ball.",
    max_tokens: 10,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    // OpenAI's schema has no chunk type for completions and requires a finish_reason; like OpenAI,
    // chunks before the last carry null there, so only the finished and usage chunks are checked
    if (chunk.choices[0]?.finish_reason !== null) validate(t, "CreateCompletionResponse", chunk);
    text += chunk.choices[0]?.text ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  t.equal(text, res.choices[0]!.text);
  t.equal(usage?.total_tokens, res.usage!.total_tokens);
});

t.test("completions: echo + logprobs + max_tokens 0 scores the prompt, steering changes the score", async (t) => {
  const prompt = "Lily had a red ball. Tom had a blue kite. Lily wanted to play with the";
  const score = async (steering?: object) => {
    const res = await client.completions.create({
      model: "stories",
      prompt,
      max_tokens: 0,
      echo: true,
      logprobs: 3,
      // @ts-expect-error extra body field
      steering,
    });
    return res;
  };
  const plain = await score();
  const lp = plain.choices[0]!.logprobs!;
  t.equal(plain.choices[0]!.text, prompt, "echo returns the prompt");
  t.equal(lp.tokens!.join(""), prompt, "the tokens spell the prompt");
  t.equal(lp.token_logprobs![0], null, "the first token has no log-prob");
  t.ok(lp.token_logprobs!.slice(1).every((v) => typeof v === "number" && v <= 0));
  t.same(
    lp.text_offset,
    lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join("").length),
    "text_offset is each token's start",
  );
  // OpenAI's schema has no null in token_logprobs; the contract puts one first, as lm-evaluation-harness expects
  validate(t, "CreateCompletionResponse", {
    ...plain,
    choices: [
      { ...plain.choices[0], logprobs: { ...lp, token_logprobs: lp.token_logprobs!.slice(1), top_logprobs: lp.top_logprobs!.slice(1) } },
    ],
  });
  t.equal(plain.usage!.prompt_tokens, lp.tokens!.length);

  const steered = await score({ emphasis: ["Tom had a blue kite."], heads: HEADS });
  const a = lp.token_logprobs!.slice(1) as number[];
  const b = steered.choices[0]!.logprobs!.token_logprobs!.slice(1) as number[];
  const emphasisStart = prompt.indexOf("Tom");
  const firstEmphasized = lp.text_offset!.findIndex((o) => o >= emphasisStart - 1);
  // a[i] scores token i + 1 from query i: queries before the first emphasized token see a uniform
  // bias, which softmax ignores (flash attention's second pass rounds differently: ~1e-6)
  const before = a.slice(0, firstEmphasized).map((v, i) => Math.abs(v - b[i]!));
  t.ok(Math.max(...before) < 1e-4, `before the emphasis the scores are unchanged (max diff ${Math.max(...before).toExponential(1)})`);
  t.ok(Math.max(...a.map((v, i) => Math.abs(v - b[i]!))) > 1e-3, "steering changes the scores");
});

t.test("typed errors in the client", async (t) => {
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => e,
    );
  t.type(
    await failure(client.chat.completions.create({ model: "nope", messages: [{ role: "user", content: "x" }] })),
    OpenAI.NotFoundError,
  );
  t.type(
    await failure(client.chat.completions.create({ model: "stories", messages: [{ role: "user", content: "x" }], n: 3 })),
    OpenAI.BadRequestError,
  );
  t.type(
    await failure(new OpenAI({ apiKey: "wrong", baseURL: `${server.base}/v1`, maxRetries: 0 }).models.list()),
    OpenAI.AuthenticationError,
  );
  const err = await client.completions
    .create({
      model: "stories",
      prompt: "Tom",
      max_tokens: 2,
      // @ts-expect-error extra body field
      steering: { emphasis: ["Tom"], heads: { "0": [99] } },
    })
    .catch((e: unknown) => e);
  t.type(err, OpenAI.BadRequestError);
  t.equal((err as InstanceType<typeof OpenAI.BadRequestError>).param, "steering.heads");
  t.match((err as Error).message, /head 99 of layer 0 is out of range/);
});

const LONG_PROMPT = "Lily had a red ball. ".repeat(60);
const withSteering = (steering: object, prompt = "Tom had a kite.") => ({ prompt, max_tokens: 2, steering });
type Case = [name: string, path: string, body: unknown, status: number, type: string, param?: string];
const BAD_REQUESTS: Case[] = [
  ["bad JSON", "/v1/generate", '{"prompt": ', 400, "invalid_request_error"],
  ["prompt of the wrong type", "/v1/generate", { prompt: 5 }, 400, "invalid_request_error", "prompt"],
  ["missing prompt", "/v1/generate", { max_tokens: 3 }, 400, "invalid_request_error", "prompt"],
  ["unknown field", "/v1/generate", { prompt: "x", bogus: 1 }, 400, "invalid_request_error"],
  ["max_tokens 0", "/v1/generate", { prompt: "x", max_tokens: 0 }, 400, "invalid_request_error", "max_tokens"],
  ["max_tokens as a string", "/v1/generate", { prompt: "x", max_tokens: "5" }, 400, "invalid_request_error", "max_tokens"],
  ["temperature too high", "/v1/generate", { prompt: "x", temperature: 3 }, 400, "invalid_request_error", "temperature"],
  ["top_p 0", "/v1/generate", { prompt: "x", top_p: 0 }, 400, "invalid_request_error", "top_p"],
  ["logprobs above 20", "/v1/generate", { prompt: "x", logprobs: 21 }, 400, "invalid_request_error", "logprobs"],
  ["too many stop strings", "/v1/generate", { prompt: "x", stop: Array(9).fill("a") }, 400, "invalid_request_error", "stop"],
  // counted before the schema validates each entry (src/server/bodyBounds.ts)
  [
    "4097 chat messages",
    "/v1/chat/completions",
    { messages: Array(4097).fill({ role: "user", content: "hi" }) },
    400,
    "invalid_request_error",
    "messages",
  ],
  [
    "1025 logit_bias entries",
    "/v1/generate",
    { prompt: "x", logit_bias: Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [String(i), 1])) },
    400,
    "invalid_request_error",
    "logit_bias",
  ],
  [
    "1025 emphasized spans",
    "/v1/generate",
    withSteering({ emphasis: Array(1025).fill("Tom"), heads: [0] }),
    400,
    "invalid_request_error",
    "steering.emphasis",
  ],
  [
    "unbalanced html markup",
    "/v1/generate",
    withSteering({ markup: "html", heads: [0] }, "<em>Tom had"),
    400,
    "invalid_request_error",
    "steering.markup",
  ],
  [
    "nested html markup",
    "/v1/generate",
    withSteering({ markup: "html", heads: [0] }, "<em>Tom <b>had</b></em>"),
    400,
    "invalid_request_error",
    "steering.markup",
  ],
  [
    "unbalanced markdown",
    "/v1/generate",
    withSteering({ markup: "markdown", heads: [0] }, "**Tom had"),
    400,
    "invalid_request_error",
    "steering.markup",
  ],
  [
    "span out of range",
    "/v1/generate",
    withSteering({ emphasis: [{ start: 0, end: 999 }], heads: [0] }),
    400,
    "invalid_request_error",
    "steering.emphasis",
  ],
  [
    "empty span",
    "/v1/generate",
    withSteering({ emphasis: [{ start: 3, end: 3 }], heads: [0] }),
    400,
    "invalid_request_error",
    "steering.emphasis",
  ],
  [
    "emphasized string not in the prompt",
    "/v1/generate",
    withSteering({ emphasis: ["dragon"], heads: [0] }),
    400,
    "invalid_request_error",
    "steering.emphasis",
  ],
  [
    "layer out of range",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: { "99": [0] } }),
    400,
    "invalid_request_error",
    "steering.heads",
  ],
  [
    "head out of range",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: { "0": [8] } }),
    400,
    "invalid_request_error",
    "steering.heads",
  ],
  ["alpha 0", "/v1/generate", withSteering({ emphasis: ["Tom"], heads: [0], alpha: 0 }), 400, "invalid_request_error", "steering.alpha"],
  [
    "alpha above 1 in exclude mode",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: [0], alpha: 2 }),
    400,
    "invalid_request_error",
    "steering.alpha",
  ],
  [
    "unknown steering mode",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: [0], mode: "boost" }),
    400,
    "invalid_request_error",
    "steering.mode",
  ],
  ["no heads and no profile", "/v1/generate", withSteering({ emphasis: ["Tom"] }), 400, "invalid_request_error", "steering.heads"],
  [
    "unknown head profile",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: "nope" }),
    400,
    "invalid_request_error",
    "steering.heads",
  ],
  [
    "unknown steering field",
    "/v1/generate",
    withSteering({ emphasis: ["Tom"], heads: [0], strength: 3 }),
    400,
    "invalid_request_error",
    "steering",
  ],
  [
    "chat span for a plain prompt",
    "/v1/generate",
    withSteering({ emphasis: [{ start: 0, end: 3, message: 0 }], heads: [0] }),
    400,
    "invalid_request_error",
  ],
  ["prompt longer than the context", "/v1/generate", { prompt: LONG_PROMPT, max_tokens: 1 }, 400, "invalid_request_error", "prompt"],
  // #26: text that cannot fit (16 characters per context token) is refused before tokenization and
  // emphasis lookup, which took seconds of the event loop for megabytes with 1024 emphasis strings
  [
    "megabytes of prompt with 1024 emphasis strings",
    "/v1/generate",
    {
      prompt: "Lily had a red ball. ".repeat(150_000),
      steering: { emphasis: Array.from({ length: 1024 }, (_, i) => `ball ${i}`), heads: [0] },
    },
    400,
    "invalid_request_error",
    "prompt",
  ],
  [
    "chat messages that cannot fit",
    "/v1/chat/completions",
    { messages: [{ role: "user", content: "x".repeat(CONTEXT * 16 + 1) }] },
    400,
    "invalid_request_error",
    "messages",
  ],
  [
    "/apply-template of text that cannot fit",
    "/apply-template",
    { messages: [{ role: "user", content: "x".repeat(CONTEXT * 16 + 1) }] },
    400,
    "invalid_request_error",
    "messages",
  ],
  [
    "/tokenize of text that cannot fit",
    "/tokenize",
    { content: "x".repeat(CONTEXT * 16 + 1), with_pieces: true },
    400,
    "invalid_request_error",
    "content",
  ],
  [
    "prompt plus max_tokens beyond the context",
    "/v1/generate",
    { prompt: "Tom", max_tokens: CONTEXT },
    400,
    "invalid_request_error",
    "prompt",
  ],
  ["no messages", "/v1/chat/completions", { model: "stories", messages: [] }, 400, "invalid_request_error", "messages"],
  ["unknown role", "/v1/chat/completions", { model: "stories", messages: [{ role: "robot", content: "x" }] }, 400, "invalid_request_error"],
  [
    "n beyond --parallel",
    "/v1/chat/completions",
    { model: "stories", messages: [{ role: "user", content: "x" }], n: 3, max_tokens: 4 },
    400,
    "invalid_request_error",
    "n",
  ],
  [
    "a penalty out of OpenAI's range",
    "/v1/chat/completions",
    { model: "stories", messages: [{ role: "user", content: "x" }], frequency_penalty: 2.5 },
    400,
    "invalid_request_error",
    "frequency_penalty",
  ],
  ...(
    [
      ["tool_choice required", { tool_choice: "required" }, "tool_choice"],
      ["a named tool_choice", { tool_choice: { type: "function", function: { name: "f" } } }, "tool_choice"],
      ["legacy functions", { functions: [{ name: "f", parameters: {} }] }, "functions"],
      ["legacy function_call", { function_call: { name: "f" } }, "function_call"],
      ["parallel_tool_calls without tools", { parallel_tool_calls: true }, "parallel_tool_calls"],
      ["top_logprobs without logprobs", { top_logprobs: 2 }, "top_logprobs"],
      ["repetition_penalty 0", { repetition_penalty: 0 }, "repetition_penalty"],
      ["repetition_penalty and repeat_penalty", { repetition_penalty: 1.1, repeat_penalty: 1.2 }, "repeat_penalty"],
      ["repeat_last_n below -1", { repeat_last_n: -2 }, "repeat_last_n"],
      ["min_p above 1", { min_p: 1.5 }, "min_p"],
      ["min_tokens above max_tokens", { min_tokens: 9, max_tokens: 8 }, "min_tokens"],
      ["ignore_eos with a JSON answer", { ignore_eos: true, response_format: { type: "json_object" } }, "ignore_eos"],
      ["logit_bias with a key that is no token id", { logit_bias: { hello: 5 } }, "logit_bias.hello"],
      ["logit_bias with a token the model lacks", { logit_bias: { "999999": 5 } }, "logit_bias"],
      ["logit_bias beyond 100", { logit_bias: { "5": 101 } }, "logit_bias.5"],
      [
        "an assistant tool call without its function",
        {
          messages: [
            { role: "user", content: "x" },
            { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function" }] },
          ],
        },
        "messages.1.tool_calls.0.function",
      ],
      [
        "a tool call whose arguments are not a JSON object",
        {
          messages: [
            { role: "user", content: "x" },
            { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "[1]" } }] },
          ],
        },
        "messages.1.tool_calls.0.function.arguments",
      ],
      ["tools on a model whose template has no tools section", { tools: [{ type: "function", function: { name: "f" } }] }, "tools"],
    ] as const
  ).map(
    ([name, fields, param]): Case => [
      `${name}: refused by name, not ignored`,
      "/v1/chat/completions",
      { model: "stories", messages: [{ role: "user", content: "x" }], ...fields },
      400,
      "invalid_request_error",
      param,
    ],
  ),
  [
    "unknown model",
    "/v1/chat/completions",
    { model: "gpt-9", messages: [{ role: "user", content: "x" }] },
    404,
    "invalid_request_error",
    "model",
  ],
  [
    "emphasis in a message that does not exist",
    "/v1/chat/completions",
    {
      model: "stories",
      messages: [{ role: "user", content: "Tom" }],
      steering: { emphasis: [{ start: 0, end: 3, message: 4 }], heads: [0] },
    },
    400,
    "invalid_request_error",
    "steering.emphasis.0.message",
  ],
  [
    "AutoPASTA on legacy completions",
    "/v1/completions",
    { model: "stories", prompt: "Tom", steering: { auto: true, heads: [0] } },
    400,
    "invalid_request_error",
    "steering.auto",
  ],
  ["two prompts", "/v1/completions", { model: "stories", prompt: ["a", "b"] }, 400, "invalid_request_error", "prompt"],
  ["negative logprobs", "/v1/completions", { model: "stories", prompt: "a", logprobs: -1 }, 400, "invalid_request_error", "logprobs"],
  [
    "streamed echo with logprobs",
    "/v1/completions",
    { model: "stories", prompt: "a", echo: true, logprobs: 1, stream: true },
    400,
    "invalid_request_error",
    "echo",
  ],
  ["oversized body", "/v1/generate", { prompt: "x".repeat(5 * 1024 * 1024) }, 413, "invalid_request_error"],
  ["unknown route", "/v1/embeddings", { input: "x" }, 404, "not_found_error"],
  ["missing API key", "/v1/generate", { prompt: "x" }, 401, "authentication_error"],
];

t.test(`${BAD_REQUESTS.length} bad requests: documented status and error type, then the next good request is served`, async (t) => {
  t.ok(BAD_REQUESTS.length >= 25);
  for (const [name, path, body, status, type, param] of BAD_REQUESTS) {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (name !== "missing API key") headers.authorization = `Bearer ${API_KEY}`;
    const res = await postRaw(`${server.base}${path}`, headers, typeof body === "string" ? body : JSON.stringify(body));
    const json = res.json as { error: { type: string; param: string | null; message: string } };
    t.equal(res.status, status, `${name}: status ${status}`);
    t.equal(json.error?.type, type, `${name}: ${type}`);
    if (param !== undefined) t.equal(json.error.param, param, `${name}: param ${param}`);
    t.same(validateOpenAI("ErrorResponse", json), [], `${name}: OpenAI's error shape`);
    const good = await client.completions.create({ model: "stories", prompt: "Tom", max_tokens: 2, temperature: 0 });
    t.equal(good.usage!.completion_tokens, 2, `${name}: the next good request is served`);
  }
});
