// Every failure -> OpenAI's error body {"error": {message, type, param, code}} with the status
// OpenAI (or, where it has none, vLLM / llama-server) uses. 5xx details stay in the log.
import type { FastifyError } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { EmphasisError } from "../emphasis/markup.js";
import { ContextLengthError, SteeringError, UnsupportedModelError } from "../engine/errors.js";
import { ChatTemplateError } from "../prompt/chatTemplate.js";
import { JobStopped, QueueFullError, QueueTimeoutError, ShuttingDownError } from "../scheduler/scheduler.js";

export type ErrorType = "invalid_request_error" | "authentication_error" | "not_found_error" | "rate_limit_error" | "server_error" | "timeout_error";

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: ErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** seconds, for 429 / 503 */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function errorBody(err: HttpError): OpenAIErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

/** dotted path of a validation issue, e.g. "messages.0.content" */
function issuePath(instancePath: string): string | null {
  const path = instancePath.replace(/^\//, "").replaceAll("/", ".");
  return path === "" ? null : path;
}

/** The HTTP error a failure becomes, or null for an unexpected one (500, logged). */
export function toHttpError(err: unknown): HttpError | null {
  if (err instanceof HttpError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation;
    const message = issues.slice(0, 5).map((i) => `${issuePath(i.instancePath) ?? "body"}: ${i.message}`).join("; ");
    return new HttpError(400, message, "invalid_request_error", issuePath(issues[0]!.instancePath), "invalid_value");
  }
  if (err instanceof SteeringError || err instanceof EmphasisError) return new HttpError(400, err.message, "invalid_request_error", err.param, "invalid_steering");
  if (err instanceof UnsupportedModelError) return new HttpError(400, err.message, "invalid_request_error", "steering", "unsupported_model");
  if (err instanceof ContextLengthError) return new HttpError(400, err.message, "invalid_request_error", err.param, "context_length_exceeded");
  if (err instanceof ChatTemplateError) return new HttpError(400, err.message, "invalid_request_error", "messages", "invalid_messages");
  if (err instanceof QueueFullError) return new HttpError(429, err.message, "rate_limit_error", null, "queue_full", err.retryAfterSeconds);
  if (err instanceof QueueTimeoutError) return new HttpError(503, err.message, "server_error", null, "queue_timeout", err.retryAfterSeconds);
  if (err instanceof ShuttingDownError) return new HttpError(503, err.message, "server_error", null, "shutting_down", 5);
  if (err instanceof JobStopped) {
    return err.reason === "time_limit" ? new HttpError(504, "the request's time limit passed", "timeout_error", null, "timeout")
      : new HttpError(503, err.message, "server_error", null, err.reason);
  }
  const fastifyError = err as Partial<FastifyError>;
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // fastify's own: malformed JSON, body too large, unsupported content type
    return new HttpError(fastifyError.statusCode, fastifyError.message ?? "bad request", "invalid_request_error", null, fastifyError.code?.toLowerCase() ?? null);
  }
  return null;
}

export const INTERNAL_ERROR = new HttpError(500, "internal server error", "server_error");
