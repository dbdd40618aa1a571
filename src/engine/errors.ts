// Typed engine errors: each carries a message a user can act on. The server maps them to HTTP
// statuses (SteeringError, EmphasisError -> 400; UnsupportedModelError -> 400 on steered requests).
export { EmphasisError } from "../emphasis/markup.js";

/** A steering configuration that cannot be honoured (head out of range, bad alpha, ...). */
export class SteeringError extends Error {
  override name = "SteeringError";
  constructor(message: string, readonly param: string = "steering") {
    super(message);
  }
}

/** The model's attention path cannot be steered; steering is never dropped silently. */
export class UnsupportedModelError extends Error {
  override name = "UnsupportedModelError";
}

/** The patched native engine is missing or stale. */
export class EngineNotBuiltError extends Error {
  override name = "EngineNotBuiltError";
}

/** A request's prompt (plus the tokens it asks for) does not fit the context window. */
export class ContextLengthError extends Error {
  override name = "ContextLengthError";
  constructor(message: string, readonly param: string = "prompt") {
    super(message);
  }
}
