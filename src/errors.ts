// The two kinds of failure a person can act on. Each module declares its own errors by extending
// one of these, so the HTTP error handler and the CLI each need a single branch:
// - UserError: a command, flag or file the user can fix; the CLI prints the message alone, no stack.
// - RequestError: a request the server refuses or cannot serve now; it carries OpenAI's error fields
//   and the HTTP status (OpenAI's own, or vLLM's / llama-server's where OpenAI has none).

export class UserError extends Error {
  override name = "UserError";
}

export type ErrorType =
  | "invalid_request_error"
  | "authentication_error"
  | "not_found_error"
  | "rate_limit_error"
  | "server_error"
  | "timeout_error";

export interface RequestErrorFields {
  status: number;
  /** default: invalid_request_error */
  type?: ErrorType;
  /** the request field at fault, dotted ("steering.emphasis") */
  param?: string | null;
  code?: string | null;
  /** seconds, sent as Retry-After (429, 503) */
  retryAfter?: number;
}

export class RequestError extends UserError {
  override name = "RequestError";
  readonly status: number;
  readonly type: ErrorType;
  readonly param: string | null;
  readonly code: string | null;
  readonly retryAfter: number | undefined;

  constructor(message: string, fields: RequestErrorFields) {
    super(message);
    this.status = fields.status;
    this.type = fields.type ?? "invalid_request_error";
    this.param = fields.param ?? null;
    this.code = fields.code ?? null;
    this.retryAfter = fields.retryAfter;
  }
}

/** A 400 for a request field that cannot be honoured. */
export class InvalidRequestError extends RequestError {
  override name = "InvalidRequestError";
  constructor(message: string, param: string | null, code: string | null = null) {
    super(message, { status: 400, param, code });
  }
}
