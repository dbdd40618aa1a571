// The engine's errors. Each declares the HTTP answer it becomes (src/errors.ts).
import { InvalidRequestError, UserError } from "../errors.js";

export { EmphasisError } from "../emphasis/markup.js";

/**
 * A field of an engine request that cannot be honoured. The message starts with the field, named
 * relative to the engine's request ("emphasis[2]", "heads", "schema.items"); `param` is its root
 * ("emphasis"). The engine serves eval, profiling and bench as well as the server: a server names
 * the field by its own API's path with `renamed`.
 */
export class EngineFieldError extends InvalidRequestError {
  override name = "EngineFieldError";
  constructor(
    readonly field: string,
    /** the message after the field's name */
    readonly detail: string,
    param: string,
    code: string,
  ) {
    super(field + detail, param, code);
  }

  /** The same error with its field's root (`param`) renamed: `prefix` replaces it in the message, `param` in the param. */
  renamed(names: { prefix: string; param: string }): this {
    const field = names.prefix + this.field.slice(this.param!.length);
    const copy = Object.create(Object.getPrototypeOf(this)) as this;
    return Object.assign(copy, this, { field, message: field + this.detail, param: names.param, stack: this.stack });
  }
}

/** A steering configuration that cannot be honoured (head out of range, bad alpha, ...). */
export class SteeringError extends EngineFieldError {
  override name = "SteeringError";
  /** `field`: "heads", "emphasis[3]", ...; its root is the param */
  constructor(field: string, detail: string) {
    super(field, detail, field.split(/[.[]/)[0]!, "invalid_steering");
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

/**
 * Sampling one token took longer than the generation loop allows (EngineOptions.samplingBudgetMs):
 * the request ended there. With a grammar, the engine names the grammar as the cause (a 400).
 */
export class SamplingBudgetError extends Error {
  override name = "SamplingBudgetError";
  constructor(
    /** how long it took, as the loop reports it ("1234 ms") */
    readonly took: string,
    readonly budgetMs: number,
  ) {
    super(`sampling one token took ${took}, more than the ${budgetMs} ms the server allows (--sampling-budget-ms)`);
  }
}

/** A request's prompt (plus the tokens it asks for) does not fit the context window. */
export class ContextLengthError extends InvalidRequestError {
  override name = "ContextLengthError";
  constructor(message: string, param = "prompt") {
    super(message, param, "context_length_exceeded");
  }
}
