// POST /v1/completions: OpenAI's legacy completions on a plain prompt. With echo + logprobs it
// returns the prompt's own token log-probabilities (max_tokens 0 scores a text, as
// lm-evaluation-harness does for log-likelihood tasks); steering applies to the scoring too.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { DEFAULT_COMPLETION_MAX_TOKENS } from "../../defaults.js";
import type { ScoredToken, TokenLogprob } from "../../engine/engine.js";
import { InvalidRequestError } from "../../errors.js";
import { plainPrompt } from "../../prompt/prompts.js";
import { handleCompletion, requestContext, type CompletionFormat } from "../completion.js";
import type { CompletionInput, Generation } from "../generation.js";
import { completionSchema, type CompletionBody } from "../schemas.js";
import {
  checkPromptChars,
  responseFormatInput,
  responseId,
  samplingOptions,
  SYSTEM_FINGERPRINT,
  unixSeconds,
  type ServiceGetter,
  usageOf,
  withDiagnostics,
  withSteering,
} from "./common.js";

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

function appendLogprobs(
  into: LegacyLogprobs,
  tokens: ReadonlyArray<Pick<ScoredToken, "text" | "logprob" | "top">>,
  offset: number,
  withTop: boolean,
) {
  for (const t of tokens) {
    into.tokens.push(t.text);
    into.token_logprobs.push(t.logprob);
    into.top_logprobs.push(withTop ? topRecord(t.top) : null);
    into.text_offset.push(offset);
    offset += t.text.length;
  }
}

function completionInput(body: CompletionBody): CompletionInput {
  if (body.steering?.auto)
    throw new InvalidRequestError("steering.auto is available on /v1/generate and /v1/chat/completions", "steering.auto");
  const source = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
  return {
    endpoint: "completions",
    prompt: plainPrompt(source, body.steering),
    maxTokens: body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS,
    sampling: samplingOptions(body),
    ...responseFormatInput(body.response_format),
    ...(body.steering ? { steering: body.steering } : {}),
    ...(body.logprobs != null ? { logprobs: body.logprobs } : {}),
  };
}

/** `promptLogprobs`: with echo + logprobs, the prompt's own tokens scored, which come first. */
function completionFormat(
  modelId: string,
  body: CompletionBody,
  input: CompletionInput,
  promptLogprobs: ScoredToken[] | null,
): CompletionFormat {
  const head = { id: responseId("cmpl"), created: unixSeconds(), model: modelId, system_fingerprint: SYSTEM_FINGERPRINT };
  const prompt = input.prompt.prompt;
  const prefix = body.echo ? prompt : "";
  const topLogprobs = input.logprobs;
  const logprobsOf = (g: Generation): LegacyLogprobs | null => {
    if (topLogprobs === undefined) return null;
    const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    if (promptLogprobs) appendLogprobs(out, promptLogprobs, 0, topLogprobs > 0);
    appendLogprobs(out, g.result.logprobs ?? [], prompt.length, topLogprobs > 0);
    return out;
  };
  const chunk = (text: string, finishReason: string | null) => ({
    ...head,
    object: "text_completion",
    choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
  });
  return {
    body: (g) => ({
      ...head,
      object: "text_completion",
      choices: [{ index: 0, text: prefix + g.result.text, logprobs: logprobsOf(g), finish_reason: g.result.finishReason }],
      usage: usageOf(g),
      ...withSteering(g.steering),
    }),
    first: (steering) => ({ ...chunk(prefix, null), ...withSteering(steering) }),
    piece: (text) => chunk(text, null),
    last: (g) => [
      { ...chunk("", g.result.finishReason), ...withDiagnostics(g.steering) },
      ...(body.stream_options?.include_usage ? [{ ...head, object: "text_completion", choices: [], usage: usageOf(g) }] : []),
    ],
  };
}

export const completionRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post(
    "/v1/completions",
    { schema: { body: completionSchema, tags: ["openai"], summary: "OpenAI completions, with steering; echo + logprobs scores a text" } },
    async (request, reply) => {
      const service = getService();
      const body = request.body;
      service.checkModel(body.model);
      checkPromptChars(service, (typeof body.prompt === "string" ? body.prompt : body.prompt[0]!).length, "prompt");
      const input = completionInput(body);
      const stream = body.stream ?? false;
      const echoLogprobs = body.echo === true && input.logprobs !== undefined;
      if (stream && echoLogprobs) {
        throw new InvalidRequestError("echo with logprobs is not supported when streaming; ask without stream to score a text", "echo");
      }
      // one context for both: the scoring and the generation stop with the same client
      const context = requestContext(request, reply);
      const promptLogprobs = echoLogprobs ? (await service.score(input, input.logprobs!, context)).tokens : null;
      return handleCompletion(
        service,
        input,
        stream,
        completionFormat(service.modelId, body, input, promptLogprobs),
        request,
        reply,
        context,
      );
    },
  );
};
