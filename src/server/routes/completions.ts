// POST /v1/completions: OpenAI's legacy completions on a plain prompt. With echo + logprobs it
// returns the prompt's own token log-probabilities (max_tokens 0 scores a text, as
// lm-evaluation-harness does for log-likelihood tasks); steering applies to the scoring too.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { ScoredToken, TokenLogprob } from "../../engine/engine.js";
import { plainPrompt } from "../../prompt/prompts.js";
import { HttpError } from "../errors.js";
import type { Generation } from "../generation.js";
import { respond } from "../respond.js";
import { completionSchema } from "../schemas.js";
import { responseId, samplingOptions, SYSTEM_FINGERPRINT, unixSeconds, type ServiceGetter, usageOf } from "./common.js";

/** OpenAI's legacy default when max_tokens is not given. */
const DEFAULT_MAX_TOKENS = 16;

interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

function topRecord(top: TokenLogprob[] | null): Record<string, number> | null {
  if (top === null) return null;
  const record: Record<string, number> = {};
  for (const alt of top) record[alt.text] = Math.max(record[alt.text] ?? -Infinity, alt.logprob);
  return record;
}

function appendLogprobs(into: LegacyLogprobs, tokens: ReadonlyArray<Pick<ScoredToken, "text" | "logprob" | "top">>, offset: number, withTop: boolean) {
  for (const t of tokens) {
    into.tokens.push(t.text);
    into.token_logprobs.push(t.logprob);
    into.top_logprobs.push(withTop ? topRecord(t.top) : null);
    into.text_offset.push(offset);
    offset += t.text.length;
  }
}

export const completionRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post("/v1/completions", { schema: { body: completionSchema, tags: ["openai"], summary: "OpenAI completions, with steering; echo + logprobs scores a text" } }, async (request, reply) => {
    const service = getService();
    const body = request.body;
    service.checkModel(body.model);
    const source = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
    const rendered = plainPrompt(source, body.steering);
    const steering = service.steering(body.steering, rendered);
    const echo = body.echo ?? false;
    const topLogprobs = body.logprobs ?? undefined;
    const stream = body.stream ?? false;
    if (stream && echo && topLogprobs !== undefined) {
      throw new HttpError(400, "echo with logprobs is not supported when streaming; ask without stream to score a text", "invalid_request_error", "echo");
    }

    // the prompt's own log-probs first (echo), then the continuation
    const promptLogprobs = echo && topLogprobs !== undefined
      ? (await service.score("completions", request, reply, { prompt: rendered.prompt, steering, topLogprobs })).tokens
      : null;
    const input = {
      prompt: rendered.prompt, steering, maxTokens: body.max_tokens ?? DEFAULT_MAX_TOKENS, ...samplingOptions(body),
      ...(topLogprobs !== undefined ? { logprobs: topLogprobs } : {}),
    };
    const id = responseId("cmpl");
    const created = unixSeconds();
    const head = { id, created, model: service.modelId, system_fingerprint: SYSTEM_FINGERPRINT };
    const prefix = echo ? rendered.prompt : "";
    const usage = (g: Generation) => usageOf(g.result);
    const logprobsOf = (g: Generation): LegacyLogprobs | null => {
      if (topLogprobs === undefined) return null;
      const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
      if (promptLogprobs) appendLogprobs(out, promptLogprobs, 0, topLogprobs > 0);
      appendLogprobs(out, g.result.logprobs ?? [], rendered.prompt.length, topLogprobs > 0);
      return out;
    };
    const chunk = (text: string, finishReason: string | null) => ({
      ...head, object: "text_completion", choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    });

    if (body.steering?.auto) throw new HttpError(400, "steering.auto is available on /v1/generate and /v1/chat/completions", "invalid_request_error", "steering.auto");
    return respond(service, "completions", request, reply, input, undefined, stream, {
      body: (g) => ({
        ...head, object: "text_completion",
        choices: [{ index: 0, text: prefix + g.result.text, logprobs: logprobsOf(g), finish_reason: g.result.finishReason }],
        usage: usage(g),
        ...(g.steering ? { steering: g.steering } : {}),
      }),
      first: (spans) => ({ ...chunk(prefix, null), ...(spans ? { steering: spans } : {}) }),
      piece: (text) => chunk(text, null),
      last: (g) => [
        chunk("", g.result.finishReason),
        ...(body.stream_options?.include_usage ? [{ ...head, object: "text_completion", choices: [], usage: usage(g) }] : []),
      ],
    });
  });
};
