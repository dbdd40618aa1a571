// Every failure -> OpenAI's error body {"error": {message, type, param, code}}. Errors declare their
// own status (src/errors.ts); what is left here is what other layers throw: fastify's schema
// validation and its own 4xx. Anything else is a 500 whose details stay in the log.
import type { FastifyError } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { RequestError } from "../errors.js";

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function errorBody(err: RequestError): OpenAIErrorBody {
  return { error: { message: err.message, type: err.type, param: err.param, code: err.code } };
}

/** dotted path of a validation issue, e.g. "messages.0.content" */
function issuePath(instancePath: string): string | null {
  const path = instancePath.replace(/^\//, "").replaceAll("/", ".");
  return path === "" ? null : path;
}

/** The request error a failure is answered with, or null for an unexpected one (500, logged). */
export function toRequestError(err: unknown): RequestError | null {
  if (err instanceof RequestError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation;
    const message = issues
      .slice(0, 5)
      .map((i) => `${issuePath(i.instancePath) ?? "body"}: ${i.message}`)
      .join("; ");
    return new RequestError(message, { status: 400, param: issuePath(issues[0]!.instancePath), code: "invalid_value" });
  }
  const fastifyError = err as Partial<FastifyError>;
  if (fastifyError.statusCode && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // fastify's own: malformed JSON, body too large, unsupported content type
    return new RequestError(fastifyError.message ?? "bad request", {
      status: fastifyError.statusCode,
      code: fastifyError.code?.toLowerCase() ?? null,
    });
  }
  return null;
}

export const INTERNAL_ERROR = new RequestError("internal server error", { status: 500, type: "server_error" });
