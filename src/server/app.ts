// The Fastify app: plugins (request ids, API keys, CORS, OpenAPI, metrics), the error handler, and
// the routes. Model loading and shutdown are src/cli/serve.ts's job.
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import cors from "@fastify/cors";
import swagger from "@fastify/swagger";
import Fastify, { type FastifyInstance } from "fastify";
import { jsonSchemaTransform, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import { ShuttingDownError, type Scheduler } from "../scheduler/scheduler.js";
import { registerApiKeys } from "./auth.js";
import { DEFAULT_BODY_LIMIT_BYTES, DEFAULT_READ_TIMEOUT_SECONDS, VERSION } from "../defaults.js";
import { RequestError } from "../errors.js";
import { errorBody, INTERNAL_ERROR, toRequestError } from "./errors.js";
import type { CompletionService } from "./completionService.js";
import type { ServerMetrics } from "./metrics.js";
import { chatRoutes } from "./routes/chat.js";
import { checkBodyBounds } from "./bodyBounds.js";
import { completionRoutes } from "./routes/completions.js";
import { generateRoutes } from "./routes/generate.js";
import { registerPlayground } from "./playground.js";
import { modelRoutes } from "./routes/models.js";
import { tokenRoutes } from "./routes/tokens.js";

/** An incoming x-request-id is kept when it looks like an id (bounded, no control characters). */
const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

/** How much of an oversized body is read and dropped so that the client sees the 413. */
const OVERSIZED_BODY_DRAIN_BYTES = 64 * 1024 * 1024;

/**
 * Reads the rest of a refused body: answering while the client is still sending makes Node close
 * the connection, and the client then sees a failed write instead of the 413. Past the cap, the
 * connection is closed after all.
 */
function discardBody(raw: IncomingMessage): Promise<void> {
  if (raw.complete) return Promise.resolve();
  return new Promise((resolve) => {
    let seen = 0;
    raw.on("data", (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > OVERSIZED_BODY_DRAIN_BYTES) {
        raw.destroy();
        resolve();
      }
    });
    raw.once("end", resolve);
    raw.once("close", resolve);
    raw.resume();
  });
}

export interface AppOptions {
  /** resolves once the model is loaded; /ready is 503 until then */
  service: Promise<CompletionService>;
  scheduler: Scheduler;
  metrics: ServerMetrics;
  /** empty: no authentication */
  apiKeys?: readonly string[];
  /** origins allowed by CORS; undefined: CORS off */
  corsOrigins?: readonly string[];
  bodyLimit?: number;
  /** ms a client gets to send its whole request, and a stream's reader to take what was sent (DEFAULT_READ_TIMEOUT_SECONDS) */
  readTimeoutMs?: number;
  logger?: boolean | object;
  /** serve GET /playground (default true) */
  playground?: boolean;
}

declare module "fastify" {
  interface FastifyReply {
    /** ms a streaming client may leave what it was sent unread before it is dropped (sse.ts) */
    slowReaderTimeoutMs: number;
  }
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_SECONDS * 1000;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES,
    // slowloris: the whole request (headers and body) within the read timeout, checked every second
    requestTimeout: readTimeoutMs,
    http: { headersTimeout: readTimeoutMs, connectionsCheckingInterval: 1000 },
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers["x-request-id"];
      return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.decorateReply("slowReaderTimeoutMs", readTimeoutMs);
  app.setValidatorCompiler(validatorCompiler);
  // response schemas document the answers in /openapi.json; replies are serialized as they are built
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  let service: CompletionService | null = null;
  options.service.then(
    (s) => {
      service = s;
    },
    () => {},
  );
  const getService = (): CompletionService => {
    if (options.scheduler.isDraining) throw new ShuttingDownError();
    if (!service)
      throw new RequestError("the model is still loading", { status: 503, type: "server_error", code: "model_loading", retryAfter: 5 });
    return service;
  };

  // before the route's schema: a body of 100k messages is refused by counting, not by validating each
  app.addHook("preValidation", async (request) => checkBodyBounds(request.body));
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    const started = performance.now();
    // on the raw response, so streamed (hijacked) replies are counted when they end
    reply.raw.once("close", () => {
      options.metrics.observeRequest(
        request.method,
        request.routeOptions.url ?? "unmatched",
        reply.raw.statusCode,
        (performance.now() - started) / 1000,
      );
    });
  });
  if (options.corsOrigins) {
    await app.register(cors, {
      origin: options.corsOrigins.includes("*") ? true : [...options.corsOrigins],
      exposedHeaders: ["x-request-id", "retry-after"],
    });
  }
  // after CORS, whose hook must run first: a 401 without CORS headers is an opaque network error to a page
  registerApiKeys(app, options.apiKeys ?? []);
  await app.register(swagger, {
    openapi: { info: { title: "pasta-server", description: "Attention steering (PASTA) for self-hosted LLMs", version: VERSION } },
    transform: jsonSchemaTransform,
  });

  app.setErrorHandler(async (err, request, reply) => {
    if ((err as { code?: string }).code === "FST_ERR_CTP_BODY_TOO_LARGE") await discardBody(request.raw);
    let mapped = toRequestError(err);
    if (!mapped) {
      request.log.error({ err }, "request failed");
      mapped = INTERNAL_ERROR;
    }
    if (mapped.retryAfter !== undefined) reply.header("retry-after", String(mapped.retryAfter));
    return reply.code(mapped.status).send(errorBody(mapped));
  });
  app.setNotFoundHandler((request, reply) => {
    reply
      .code(404)
      .send(
        errorBody(new RequestError(`no route ${request.method} ${request.url.split("?")[0]}`, { status: 404, type: "not_found_error" })),
      );
  });

  app.get("/health", { schema: { hide: true } }, async () => ({ status: "ok" }));
  app.get("/ready", { schema: { hide: true } }, async (_request, reply) => {
    if (options.scheduler.isDraining) return reply.code(503).send({ status: "draining" });
    return service ? { status: "ready" } : reply.code(503).send({ status: "loading" });
  });
  app.get("/metrics", { schema: { hide: true } }, async (_request, reply) => {
    const { contentType, body } = await options.metrics.render();
    return reply.type(contentType).send(body);
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

  await app.register(generateRoutes, { service: getService });
  await app.register(chatRoutes, { service: getService });
  await app.register(completionRoutes, { service: getService });
  await app.register(tokenRoutes, { service: getService });
  await app.register(modelRoutes, { service: getService, startedAt: Math.floor(Date.now() / 1000) });
  if (options.playground ?? true) await registerPlayground(app);
  return app;
}
