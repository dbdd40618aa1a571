// The answers' shapes, declared on the routes so /openapi.json documents responses as well as
// requests. They document only: replies are serialized as they are built (app.ts), and
// test/unit/server/responseSchemas.test.ts parses real answers with them so they cannot drift.
import { z } from "zod";

const usage = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
  /** prompt tokens taken from the prefix cache instead of evaluated */
  prompt_tokens_details: z.object({ cached_tokens: z.number().int() }),
});

const span = z.object({
  start: z.number().int(),
  end: z.number().int(),
  text: z.string(),
  token_start: z.number().int(),
  token_end: z.number().int(),
});

const diagnostics = z.object({
  tokens: z.array(
    z.object({
      heads: z.array(
        z.object({
          layer: z.number().int(),
          head: z.number().int(),
          steered_head: z.boolean(),
          share_steered: z.number(),
          share_unsteered: z.number(),
        }),
      ),
    }),
  ),
});

const finishReason = z.enum(["stop", "length"]);

const auto = z.object({
  matched: z.boolean(),
  reason: z.enum(["length", "no_match", "most_of_context"]).optional(),
  sentences: z.array(z.object({ text: z.string(), start: z.number().int(), end: z.number().int(), score: z.number() })),
  named_sentences: z.number().int(),
  context_sentences: z.number().int(),
  selection: z.object({
    text: z.string(),
    prompt_tokens: z.number().int(),
    completion_tokens: z.number().int(),
    finish_reason: finishReason,
  }),
});

/** A steered answer's `steering` (docs/api.md): the emphasized spans, AutoPASTA's report, attention diagnostics. */
export const steeringResponse = z.object({ spans: z.array(span), auto: auto.optional(), diagnostics: diagnostics.optional() });

const tokenLogprob = z.object({ id: z.number().int(), text: z.string(), logprob: z.number() });

export const generateResponse = z.object({
  model: z.string(),
  text: z.string(),
  finish_reason: finishReason,
  usage,
  steering: steeringResponse.optional(),
  logprobs: z.object({ tokens: z.array(tokenLogprob.extend({ top: z.array(tokenLogprob) })) }).optional(),
});

const openAIHead = {
  id: z.string(),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string(),
  usage,
  steering: steeringResponse.optional(),
};

const chatTokenLogprob = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int()) });

export const chatCompletionResponse = z.object({
  ...openAIHead,
  object: z.literal("chat.completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      /** with tool calls, `content` is the text around them (null: none) */
      message: z.object({
        role: z.literal("assistant"),
        content: z.string().nullable(),
        refusal: z.null(),
        tool_calls: z
          .array(z.object({ id: z.string(), type: z.literal("function"), function: z.object({ name: z.string(), arguments: z.string() }) }))
          .optional(),
      }),
      logprobs: z
        .object({ content: z.array(chatTokenLogprob.extend({ top_logprobs: z.array(chatTokenLogprob) })), refusal: z.null() })
        .nullable(),
      finish_reason: z.enum(["stop", "length", "tool_calls"]),
    }),
  ),
});

export const completionResponse = z.object({
  ...openAIHead,
  object: z.literal("text_completion"),
  choices: z.array(
    z.object({
      index: z.number().int(),
      text: z.string(),
      /** OpenAI's legacy shape; the first prompt token (echo) has no log-prob: null */
      logprobs: z
        .object({
          tokens: z.array(z.string()),
          token_logprobs: z.array(z.number().nullable()),
          top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
          text_offset: z.array(z.number().int()),
        })
        .nullable(),
      finish_reason: finishReason,
    }),
  ),
});
