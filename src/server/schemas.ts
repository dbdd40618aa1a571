// Request bodies (docs: ../shared/design/api-contract.md). The native endpoint rejects unknown
// fields; the OpenAI-compatible ones ignore them, as OpenAI-compatible servers do for other
// clients' extra fields, and refuse known fields they cannot honour.
import { z } from "zod";
import {
  DEFAULT_MAX_TOKENS,
  MAX_DETOKENIZE_TOKENS,
  MAX_GRAMMAR_CHARS,
  MAX_CHOICES,
  MAX_EMPHASIS_ITEMS,
  MAX_LOGIT_BIAS,
  MAX_MESSAGE_ITEMS,
  MAX_MESSAGES,
  MAX_REPETITION_PENALTY,
  MAX_TOOL_TEXT,
  MAX_TOOLS,
  MAX_STOP_LENGTH,
  MAX_STOP_STRINGS,
  MAX_TOKENS_LIMIT,
  MAX_TOP_LOGPROBS,
} from "../defaults.js";

const emphasisSpan = z
  .object({
    start: z.number().int().nonnegative(),
    end: z.number().int().nonnegative(),
    /** chat requests: index into `messages` */
    message: z.number().int().nonnegative().optional(),
  })
  .strict();

const headsSchema = z.union([z.record(z.string(), z.array(z.number().int())), z.array(z.number().int()), z.string().min(1)]);

export const steeringSchema = z
  .object({
    emphasis: z
      .array(z.union([emphasisSpan, z.string().min(1)]))
      .max(MAX_EMPHASIS_ITEMS)
      .default([]),
    markup: z.enum(["none", "html", "markdown"]).default("none"),
    alpha: z.number().optional(),
    /** per head and row, the bias that gives the emphasis this share of attention (docs/api.md) */
    target_share: z.number().gt(0).lt(1).optional(),
    mode: z.enum(["exclude", "include", "generation"]).optional(),
    heads: headsSchema.optional(),
    auto: z.boolean().default(false),
    /** where the steered heads look: true, or which heads and tokens (docs/api.md) */
    diagnostics: z
      .union([z.boolean(), z.object({ all_heads: z.boolean().optional(), every_token: z.boolean().optional() }).strict()])
      .optional(),
  })
  .strict();
export type SteeringBody = z.infer<typeof steeringSchema>;

const stopString = z.string().min(1).max(MAX_STOP_LENGTH);
const stop = z.union([stopString, z.array(stopString).max(MAX_STOP_STRINGS)]).nullish();
const penalty = z.number().min(-2).max(2).nullish();
const repetitionPenalty = z.number().gt(0).max(MAX_REPETITION_PENALTY).nullish();
/** OpenAI's logit_bias: token id -> bias in [-100, 100] (the ids are checked against the model's vocabulary) */
const logitBias = z
  .record(z.string().regex(/^\d{1,9}$/, "keys are token ids"), z.number().min(-100).max(100))
  .refine((bias) => Object.keys(bias).length <= MAX_LOGIT_BIAS, `at most ${MAX_LOGIT_BIAS} tokens`)
  .nullish();
const sampling = {
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  presence_penalty: penalty,
  frequency_penalty: penalty,
  /** vLLM's name; llama-server's is repeat_penalty: both are accepted */
  repetition_penalty: repetitionPenalty,
  repeat_penalty: repetitionPenalty,
  /** llama-server's window of the penalties: the last n tokens, prompt included (-1: the whole context, 0: none) */
  repeat_last_n: z.number().int().min(-1).max(MAX_TOKENS_LIMIT).nullish(),
  logit_bias: logitBias,
  ignore_eos: z.boolean().nullish(),
  min_tokens: z.number().int().min(0).max(MAX_TOKENS_LIMIT).nullish(),
  stop,
  stream: z.boolean().nullish(),
  steering: steeringSchema.optional(),
};

/** Checks across the sampling fields, shared by every generation endpoint. */
const onePenaltyName = {
  check: (b: { repetition_penalty?: number | null; repeat_penalty?: number | null }) =>
    b.repetition_penalty == null || b.repeat_penalty == null,
  message: {
    message: "give repetition_penalty or repeat_penalty (the same penalty, by vLLM's and llama-server's names), not both",
    path: ["repeat_penalty"],
  },
};

/** A JSON schema for structured output; what it may contain is checked where it is compiled (src/engine/grammar.ts). */
const jsonSchemaObject = z.record(z.string(), z.unknown());

export const generateSchema = z
  .object({
    prompt: z.string(),
    max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).default(DEFAULT_MAX_TOKENS),
    logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).default(0),
    /** structured output: a GBNF grammar (llama-server's field) */
    grammar: z.string().min(1).max(MAX_GRAMMAR_CHARS).optional(),
    /** structured output: JSON that validates against this schema (llama-server's field) */
    json_schema: jsonSchemaObject.optional(),
    ...sampling,
  })
  .strict()
  .refine((b) => b.grammar === undefined || b.json_schema === undefined, {
    message: "give grammar or json_schema, not both",
    path: ["grammar"],
  })
  .refine(onePenaltyName.check, onePenaltyName.message);
export type GenerateBody = z.infer<typeof generateSchema>;

/** Fields of OpenAI's API that this server cannot honour: accepted only at their neutral value. */
const neutral = {
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  best_of: z
    .number()
    .int()
    .refine((n) => n === 1, "only best_of = 1 is supported")
    .nullish(),
};

/** OpenAI's function names: what its API accepts, and what a template can print in a JSON string. */
const functionName = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a-z, A-Z, 0-9, _ and -, at most 64 characters");

/** OpenAI's tool calling (src/prompt/toolCalls.ts); the legacy `functions` / `function_call` are refused by name. */
const LEGACY = "the legacy function calling is not supported: send tools and tool_choice";
const tools = {
  tools: z
    .array(
      z.object({
        type: z.literal("function"),
        function: z.object({
          name: functionName,
          description: z.string().max(MAX_TOOL_TEXT).optional(),
          parameters: jsonSchemaObject.optional(),
          strict: z.boolean().nullish(),
        }),
      }),
    )
    .max(MAX_TOOLS)
    .nullish(),
  tool_choice: z
    .union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), function: z.object({ name: functionName }) })])
    .nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: z.array(z.unknown()).max(0, LEGACY).nullish(),
  function_call: z
    .unknown()
    .refine((v) => v === "none" || v === "auto", `${LEGACY}; function_call may only be "none" or "auto"`)
    .nullish(),
};

/** OpenAI's structured output (`response_format`), enforced while sampling. */
const responseFormat = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("text") }),
    z.object({ type: z.literal("json_object") }),
    z.object({
      type: z.literal("json_schema"),
      json_schema: z.object({
        name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "name: a-z, A-Z, 0-9, _ and -, at most 64 characters"),
        description: z.string().optional(),
        schema: jsonSchemaObject.optional(),
        /** always enforced exactly: `strict: false` is accepted and enforced all the same */
        strict: z.boolean().nullish(),
      }),
    }),
  ])
  .nullish();
export type ResponseFormatBody = z.infer<typeof responseFormat>;

const openAICommon = {
  model: z.string().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().optional(),
  ...sampling,
  ...neutral,
};

const textPart = z.object({ type: z.literal("text"), text: z.string() });
/** An assistant's earlier call; its arguments are the JSON text the model wrote (templates get them parsed). */
const messageToolCall = z.object({
  id: z.string().min(1).max(64),
  type: z.literal("function"),
  function: z.object({ name: functionName, arguments: z.string().max(MAX_TOOL_TEXT) }),
});
const chatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(textPart).max(MAX_MESSAGE_ITEMS)]).nullish(),
  name: z.string().optional(),
  tool_calls: z.array(messageToolCall).max(MAX_TOOLS).nullish(),
  tool_call_id: z.string().min(1).max(64).optional(),
  function_call: z.undefined({ message: LEGACY }).optional(),
});

export const chatCompletionSchema = z
  .object({
    messages: z.array(chatMessage).min(1).max(MAX_MESSAGES),
    max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    max_completion_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
    response_format: responseFormat,
    ...tools,
    ...openAICommon,
  })
  // as OpenAI: top_logprobs asks for the alternatives of log-probs that must be asked for
  .refine((b) => b.top_logprobs == null || b.logprobs === true, {
    message: "top_logprobs needs logprobs: true",
    path: ["top_logprobs"],
  })
  .refine(onePenaltyName.check, onePenaltyName.message);
export type ChatCompletionBody = z.infer<typeof chatCompletionSchema>;

export const completionSchema = z
  .object({
    prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request is supported")]),
    max_tokens: z.number().int().min(0).max(MAX_TOKENS_LIMIT).nullish(),
    echo: z.boolean().nullish(),
    logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
    suffix: z.null().optional(),
    response_format: responseFormat,
    ...openAICommon,
  })
  .refine(onePenaltyName.check, onePenaltyName.message);
export type CompletionBody = z.infer<typeof completionSchema>;

export const tokenizeSchema = z
  .object({
    content: z.string(),
    /** BOS first where the model adds one to prompts (llama-server's default: false) */
    add_special: z.boolean().default(false),
    /** special-token text (`<|im_start|>`) becomes the special token (llama-server's default: true) */
    parse_special: z.boolean().default(true),
    /** each token as {id, piece, start, end} instead of its id */
    with_pieces: z.boolean().default(false),
  })
  .strict();
export type TokenizeBody = z.infer<typeof tokenizeSchema>;

export const detokenizeSchema = z.object({ tokens: z.array(z.number().int().nonnegative()).max(MAX_DETOKENIZE_TOKENS) }).strict();

export const applyTemplateSchema = z.object({ messages: z.array(chatMessage).min(1).max(MAX_MESSAGES) }).strict();
