// The OpenAI schema helper must be able to fail as well as pass, or every endpoint check built on
// it proves nothing.
import t from "tap";
import { assertOpenAI, validateOpenAI } from "../../support/openaiSchema.js";

const chatCompletion = () => ({
  id: "chatcmpl-1",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "stories260K",
  choices: [
    {
      index: 0,
      message: { role: "assistant", content: "hi", refusal: null },
      finish_reason: "stop",
      logprobs: null,
    },
  ],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});

t.test("chat.completion", async (t) => {
  assertOpenAI(t, "CreateChatCompletionResponse", chatCompletion());

  const badCreated = validateOpenAI("CreateChatCompletionResponse", { ...chatCompletion(), created: "x" });
  t.ok(
    badCreated.some((e) => e.startsWith("/created ")),
    `created: "x" is rejected: ${badCreated.join("; ")}`,
  );

  const bogus = chatCompletion();
  bogus.choices[0]!.finish_reason = "bogus";
  const badReason = validateOpenAI("CreateChatCompletionResponse", bogus);
  t.ok(
    badReason.some((e) => e.startsWith("/choices/0/finish_reason ")),
    `finish_reason "bogus" is rejected: ${badReason.join("; ")}`,
  );

  const { choices: _, ...noChoices } = chatCompletion();
  const missing = validateOpenAI("CreateChatCompletionResponse", noChoices);
  t.ok(
    missing.some((e) => e.includes("choices")),
    `missing choices is rejected: ${missing.join("; ")}`,
  );

  // The spec requires `refusal` and `logprobs` to be present (possibly null), not just allowed.
  const noRefusal = chatCompletion();
  delete (noRefusal.choices[0]!.message as { refusal?: null }).refusal;
  t.not(validateOpenAI("CreateChatCompletionResponse", noRefusal).length, 0, "message.refusal is required");
  const noLogprobs = chatCompletion();
  delete (noLogprobs.choices[0] as { logprobs?: null }).logprobs;
  t.not(validateOpenAI("CreateChatCompletionResponse", noLogprobs).length, 0, "choice.logprobs is required");

  t.not(
    validateOpenAI("CreateChatCompletionResponse", { ...chatCompletion(), created: 1.5 }).length,
    0,
    "created must be an integer (unixtime)",
  );
});

t.test("chat.completion.chunk", async (t) => {
  const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1_700_000_000, model: "m" };
  assertOpenAI(t, "CreateChatCompletionStreamResponse", {
    ...base,
    choices: [],
    usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
  });
  // `usage` and `finish_reason` use OpenAPI `nullable`, which the helper must turn into null alternatives.
  assertOpenAI(t, "CreateChatCompletionStreamResponse", {
    ...base,
    choices: [{ index: 0, delta: { role: "assistant", content: "h" }, finish_reason: null, logprobs: null }],
    usage: null,
  });
  const badReason = validateOpenAI("CreateChatCompletionStreamResponse", {
    ...base,
    choices: [{ index: 0, delta: {}, finish_reason: "bogus" }],
  });
  t.ok(
    badReason.some((e) => e.startsWith("/choices/0/finish_reason ")),
    `nullable enum still rejects "bogus": ${badReason.join("; ")}`,
  );
  t.not(
    validateOpenAI("CreateChatCompletionStreamResponse", { ...base, object: "chat.completion", choices: [] }).length,
    0,
    "object must be chat.completion.chunk",
  );
});

t.test("ErrorResponse", async (t) => {
  assertOpenAI(t, "ErrorResponse", {
    error: { message: "model not found", type: "invalid_request_error", param: null, code: null },
  });
  t.not(validateOpenAI("ErrorResponse", { error: { message: "x", type: "y" } }).length, 0, "param and code are required");
});

t.test("text_completion", async (t) => {
  const completion = (logprobs: unknown) => ({
    id: "cmpl-1",
    object: "text_completion",
    created: 1_700_000_000,
    model: "m",
    choices: [{ index: 0, text: "Once upon", finish_reason: "length", logprobs }],
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  });
  assertOpenAI(t, "CreateCompletionResponse", completion(null));
  assertOpenAI(
    t,
    "CreateCompletionResponse",
    completion({
      tokens: ["Once", " upon"],
      token_logprobs: [-0.5, -1.2],
      top_logprobs: [{ Once: -0.5 }, { " upon": -1.2, " a": -2 }],
      text_offset: [0, 4],
    }),
  );
  // With echo, OpenAI returns null for the first (prompt) token, but the published schema types
  // `token_logprobs` items as number and `top_logprobs` items as object, with no null: the spec
  // rejects exactly those two nulls and nothing else.
  const withNulls = validateOpenAI(
    "CreateCompletionResponse",
    completion({
      tokens: ["Once", " upon"],
      token_logprobs: [null, -1.2],
      top_logprobs: [null, { " upon": -1.2, " a": -2 }],
      text_offset: [0, 4],
    }),
  );
  t.same(
    withNulls.filter((e) => e.startsWith("/choices/0/logprobs/")),
    ["/choices/0/logprobs/token_logprobs/0 must be number", "/choices/0/logprobs/top_logprobs/0 must be object"],
    "the spec does not allow a null first-token logprob",
  );
});

t.test("ListModelsResponse", async (t) => {
  assertOpenAI(t, "ListModelsResponse", {
    object: "list",
    data: [{ id: "stories260K", object: "model", created: 1_700_000_000, owned_by: "pasta-server" }],
  });
  t.not(
    validateOpenAI("ListModelsResponse", { object: "list", data: [{ id: "m", object: "model", created: 0 }] }).length,
    0,
    "owned_by is required",
  );
});

t.test("unknown schema names are a test bug", async (t) => {
  t.throws(() => validateOpenAI("NoSuchSchema", {}), /NoSuchSchema/);
});
