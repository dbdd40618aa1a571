// The engine's errors. Each declares the HTTP answer it becomes (src/errors.ts).
import { InvalidRequestError, UserError } from "../errors.js";

export { EmphasisError } from "../emphasis/markup.js";

/** A steering configuration that cannot be honoured (head out of range, bad alpha, ...). */
export class SteeringError extends InvalidRequestError {
  override name = "SteeringError";
  constructor(message: string, param = "steering") {
    super(message, param, "invalid_steering");
  }
}

/** The model's attention path cannot be steered; steering is never dropped silently. */
export class UnsupportedModelError extends InvalidRequestError {
  override name = "UnsupportedModelError";
  constructor(message: string) {
    super(message, "steering", "unsupported_model");
  }
}

/** The patched native engine is missing or stale. */
export class EngineNotBuiltError extends UserError {
  override name = "EngineNotBuiltError";
}

/** A request's prompt (plus the tokens it asks for) does not fit the context window. */
export class ContextLengthError extends InvalidRequestError {
  override name = "ContextLengthError";
  constructor(message: string, param = "prompt") {
    super(message, param, "context_length_exceeded");
  }
}
