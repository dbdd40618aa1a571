// The HTTP server: health, readiness and the native generation endpoint.
import Fastify, { type FastifyInstance } from "fastify";
import { z } from "zod";
import { EmphasisError, parseMarkup } from "../emphasis/markup.js";
import type { SteeringEngine } from "../engine/engine.js";
import { ContextLengthError, SteeringError, UnsupportedModelError } from "../engine/errors.js";
import { generateSchema } from "./schemas.js";

/** Request bodies larger than this are refused with 413 (prompts are text). */
export const BODY_LIMIT_BYTES = 4 * 1024 * 1024;

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string, readonly param: string | null = null, readonly type = "invalid_request_error") {
    super(message);
  }
}

export interface AppOptions {
  /** resolves once the model is loaded; /ready is 503 until then */
  engine: Promise<SteeringEngine>;
  logger?: boolean | object;
}

export function buildApp(options: AppOptions): FastifyInstance {
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: BODY_LIMIT_BYTES });
  let engine: SteeringEngine | null = null;
  options.engine.then((e) => { engine = e; }, () => {});

  app.setErrorHandler((err: Error & { statusCode?: number }, request, reply) => {
    const mapped = err instanceof HttpError ? err
      : err instanceof z.ZodError ? new HttpError(400, err.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "), err.issues[0]?.path.join(".") ?? null)
      : err instanceof SteeringError || err instanceof EmphasisError || err instanceof ContextLengthError ? new HttpError(400, err.message, err.param)
      : err instanceof UnsupportedModelError ? new HttpError(400, err.message, "steering")
      : err.statusCode && err.statusCode < 500 ? new HttpError(err.statusCode, err.message)
      : null;
    if (!mapped) {
      request.log.error({ err }, "request failed");
      return reply.code(500).send({ error: { message: "internal server error", type: "server_error", param: null, code: null } });
    }
    return reply.code(mapped.statusCode).send({ error: { message: mapped.message, type: mapped.type, param: mapped.param, code: null } });
  });

  app.get("/health", async () => ({ status: "ok" }));
  app.get("/ready", async (_req, reply) => (engine ? { status: "ready" } : reply.code(503).send({ status: "loading" })));

  app.post("/v1/generate", async (request) => {
    if (!engine) throw new HttpError(503, "the model is still loading", null, "server_error");
    const body = generateSchema.parse(request.body);
    if (body.stream) throw new HttpError(400, "stream: streaming is not supported by this endpoint yet", "stream");
    let prompt = body.prompt;
    let steering;
    if (body.steering) {
      const parsed = parseMarkup(body.prompt, body.steering.markup);
      prompt = parsed.text;
      if (!body.steering.heads) throw new HttpError(400, "steering.heads: this server has no head profile yet; pass the heads to steer, e.g. {\"2\": [0, 3]}", "steering.heads");
      steering = { emphasis: [...parsed.spans, ...body.steering.emphasis], heads: body.steering.heads, alpha: body.steering.alpha, mode: body.steering.mode };
    }
    const result = await engine.generate({
      prompt, steering, maxTokens: body.max_tokens, temperature: body.temperature, topP: body.top_p, topK: body.top_k,
      seed: body.seed, stop: typeof body.stop === "string" ? [body.stop] : body.stop, logprobs: body.logprobs,
    });
    return {
      text: result.text,
      finish_reason: result.finishReason,
      usage: { prompt_tokens: result.promptTokens, completion_tokens: result.tokens.length, total_tokens: result.promptTokens + result.tokens.length },
      ...(result.steering ? { steering: result.steering } : {}),
      ...(result.logprobs ? { logprobs: { tokens: result.logprobs } } : {}),
    };
  });

  return app;
}
