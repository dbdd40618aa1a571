// Request bodies (docs: ../shared/design/api-contract.md). The native endpoint rejects unknown
// fields; the OpenAI-compatible ones ignore them, as OpenAI-compatible servers do for other
// clients' extra fields, and refuse known fields they cannot honour.
import { z } from "zod";
import {
  DEFAULT_MAX_TOKENS,
  MAX_DETOKENIZE_TOKENS,
  MAX_EMPHASIS_ITEMS,
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
const sampling = {
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
  stop,
  stream: z.boolean().nullish(),
  steering: steeringSchema.optional(),
};

/** A JSON schema for structured output; what it may contain is checked where it is compiled (src/engine/grammar.ts). */
const jsonSchemaObject = z.record(z.string(), z.unknown());

export const generateSchema = z
  .object({
    prompt: z.string(),
    max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).default(DEFAULT_MAX_TOKENS),
    logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).default(0),
    /** structured output: a GBNF grammar (llama-server's field) */
    grammar: z.string().min(1).optional(),
    /** structured output: JSON that validates against this schema (llama-server's field) */
    json_schema: jsonSchemaObject.optional(),
    ...sampling,
  })
  .strict()
  .refine((b) => b.grammar === undefined || b.json_schema === undefined, {
    message: "give grammar or json_schema, not both",
    path: ["grammar"],
  });
export type GenerateBody = z.infer<typeof generateSchema>;

/** Fields of OpenAI's API that this server cannot honour: accepted only at their neutral value. */
const neutral = {
  n: z
    .number()
    .int()
    .refine((n) => n === 1, "only n = 1 is supported")
    .nullish(),
  best_of: z
    .number()
    .int()
    .refine((n) => n === 1, "only best_of = 1 is supported")
    .nullish(),
  frequency_penalty: z
    .number()
    .refine((v) => v === 0, "penalties are not supported")
    .nullish(),
  presence_penalty: z
    .number()
    .refine((v) => v === 0, "penalties are not supported")
    .nullish(),
  logit_bias: z
    .record(z.string(), z.number())
    .refine((b) => Object.keys(b).length === 0, "logit_bias is not supported")
    .nullish(),
  // llama-server's and vLLM's sampling extras: a client that sends one means it, so it is refused
  // by name rather than dropped with the unknown fields
  repetition_penalty: z
    .number()
    .refine((v) => v === 1, "repetition_penalty is not supported")
    .nullish(),
  min_p: z
    .number()
    .refine((v) => v === 0, "min_p is not supported")
    .nullish(),
  ignore_eos: z
    .boolean()
    .refine((v) => !v, "ignore_eos is not supported")
    .nullish(),
  min_tokens: z
    .number()
    .int()
    .refine((v) => v === 0, "min_tokens is not supported")
    .nullish(),
};

/** OpenAI's tool-calling fields, accepted only where they ask for no tool call (tool calling is not supported yet). */
const NO_TOOLS = "tool calling is not supported";
const noTools = {
  tools: z.array(z.unknown()).max(0, NO_TOOLS).nullish(),
  tool_choice: z
    .unknown()
    .refine((v) => v === "none" || v === "auto", `${NO_TOOLS}: tool_choice may only be "none" or "auto"`)
    .nullish(),
  parallel_tool_calls: z
    .unknown()
    .refine(() => false, `${NO_TOOLS}: parallel_tool_calls needs tools`)
    .nullish(),
  functions: z.array(z.unknown()).max(0, NO_TOOLS).nullish(),
  function_call: z
    .unknown()
    .refine((v) => v === "none" || v === "auto", `${NO_TOOLS}: function_call may only be "none" or "auto"`)
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
const chatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.array(textPart)]).nullish(),
  name: z.string().optional(),
  // a history with tool calls cannot be rendered as the client meant it: refused, never dropped
  tool_calls: z.array(z.unknown()).max(0, NO_TOOLS).nullish(),
  tool_call_id: z.undefined({ message: NO_TOOLS }).optional(),
  function_call: z.undefined({ message: NO_TOOLS }).optional(),
});

export const chatCompletionSchema = z
  .object({
    messages: z.array(chatMessage).min(1),
    max_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    max_completion_tokens: z.number().int().min(1).max(MAX_TOKENS_LIMIT).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
    response_format: responseFormat,
    ...noTools,
    ...openAICommon,
  })
  // as OpenAI: top_logprobs asks for the alternatives of log-probs that must be asked for
  .refine((b) => b.top_logprobs == null || b.logprobs === true, {
    message: "top_logprobs needs logprobs: true",
    path: ["top_logprobs"],
  });
export type ChatCompletionBody = z.infer<typeof chatCompletionSchema>;

export const completionSchema = z.object({
  prompt: z.union([z.string(), z.array(z.string()).length(1, "only one prompt per request is supported")]),
  max_tokens: z.number().int().min(0).max(MAX_TOKENS_LIMIT).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  suffix: z.null().optional(),
  response_format: responseFormat,
  ...openAICommon,
});
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

export const applyTemplateSchema = z.object({ messages: z.array(chatMessage).min(1) }).strict();
