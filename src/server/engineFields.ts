// The engine names a field at fault relative to its own request ("emphasis[2]", "heads",
// "schema.items"); a client needs the path in the body it sent ("steering.emphasis[2]",
// "response_format.json_schema.schema.items"). This is the one place that knows both.
import { EngineFieldError } from "../engine/errors.js";
import type { ConstraintParam } from "./completionService.js";

const STEERING_FIELDS: Record<string, string> = {
  emphasis: "steering.emphasis",
  heads: "steering.heads",
  alpha: "steering.alpha",
  targetShare: "steering.target_share",
  mode: "steering.mode",
  diagnostics: "steering.diagnostics",
};

const SAMPLING_FIELDS: Record<string, string> = {
  logitBias: "logit_bias",
  minTokens: "min_tokens",
  ignoreEos: "ignore_eos",
};

/** Where a JSON schema's errors point, by the body field it came from (param: the field's root, as before). */
const SCHEMA_FIELDS: Record<ConstraintParam, { prefix: string; param: string }> = {
  response_format: { prefix: "response_format.json_schema.schema", param: "response_format" },
  json_schema: { prefix: "json_schema", param: "json_schema" },
  grammar: { prefix: "grammar", param: "grammar" },
  // tool_choice "required" or a named function: the tools' parameters, as one call's schema
  tool_choice: { prefix: "tools (the call schema made of them)", param: "tools" },
};

/** An engine field error renamed to the API's path; any other error as it is. */
export function withApiField(err: unknown, constraint: ConstraintParam | undefined): unknown {
  if (!(err instanceof EngineFieldError)) return err;
  const root = err.param!;
  const steering = STEERING_FIELDS[root];
  if (steering) return err.renamed({ prefix: steering, param: steering });
  const sampling = SAMPLING_FIELDS[root];
  if (sampling) return err.renamed({ prefix: sampling, param: sampling });
  if (root === "schema" && constraint) return err.renamed(SCHEMA_FIELDS[constraint]);
  return err;
}

/** `run()`, its engine field errors renamed to the API's paths. */
export async function apiFields<T>(constraint: ConstraintParam | undefined, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw withApiField(err, constraint);
  }
}
