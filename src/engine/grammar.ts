// Structured output: JSON of a given schema, any JSON object, or a GBNF grammar, enforced while
// sampling. The request's grammar state joins its native sampler (generate.ts), so the native loop
// only samples tokens the grammar allows, steered or not.
//
// JSON schemas are compiled by node-llama-cpp, which handles a subset of JSON Schema and quietly
// turns what it does not know into something else (an unknown type into `null`, a bad `$ref` into
// any value). checkJsonSchema admits only what it compiles faithfully and names anything else.
import { type Llama, LlamaGrammar, LlamaJsonSchemaGrammar } from "node-llama-cpp";
import { EngineFieldError } from "./errors.js";

export type OutputConstraint =
  | { type: "json_object" }
  | { type: "json_schema"; schema: Record<string, unknown> }
  | { type: "grammar"; grammar: string }
  /**
   * JSON of `schema` between `open` and `close` (text), once, or one or more times joined by
   * `separator`: a tool call in a model's own syntax (`<tool_call>\n{...}\n</tool_call>`)
   */
  | { type: "framed_json"; schema: Record<string, unknown>; open: string; close: string; separator?: string };

/** A compiled constraint. `stop`: text that ends the output (not part of it). */
export interface OutputGrammar {
  readonly grammar: LlamaGrammar;
  readonly stop: readonly string[];
  /** the request's field it enforces, for errors: a GBNF "grammar" or a JSON "schema" */
  readonly field: "grammar" | "schema";
}

/** `field`: "grammar" (GBNF) or a path into the JSON schema, "schema.properties.age" (its root is the param). */
export class GrammarError extends EngineFieldError {
  override name = "GrammarError";
  constructor(field: string, detail: string, code: "unsupported_schema" | "invalid_grammar") {
    super(field, detail, field.split(/[.[]/)[0]!, code);
  }
}

/**
 * node-llama-cpp's JSON grammars end with four newlines (then only newlines): a model that would
 * go on padding whitespace after the value stops there (its own LlamaChat uses the same trigger).
 */
const JSON_END = "\n\n\n\n";

export function compileGrammar(llama: Llama, constraint: OutputConstraint): OutputGrammar {
  // `as never`: node-llama-cpp types a schema as a literal type (for typed results); a request's
  // schema is only known at run time, where checkJsonSchema vouches for it
  switch (constraint.type) {
    case "json_object":
      return {
        grammar: new LlamaJsonSchemaGrammar(llama, { type: "object", additionalProperties: true } as never),
        stop: [JSON_END],
        field: "schema",
      };
    case "json_schema": {
      checkJsonSchema(constraint.schema, "schema");
      return { grammar: new LlamaJsonSchemaGrammar(llama, normalize(constraint.schema) as never), stop: [JSON_END], field: "schema" };
    }
    case "grammar":
      try {
        return { grammar: new LlamaGrammar(llama, { grammar: constraint.grammar }), stop: [], field: "grammar" };
      } catch (err) {
        throw new GrammarError("grammar", `: ${(err as Error).message} (GBNF, as llama.cpp parses it)`, "invalid_grammar");
      }
    case "framed_json":
      checkJsonSchema(constraint.schema, "schema");
      return { grammar: new LlamaGrammar(llama, { grammar: framedJsonGrammar(llama, constraint) }), stop: [], field: "schema" };
  }
}

/**
 * node-llama-cpp's grammar for the schema, its root renamed and without the trailing newlines that
 * end a JSON answer, inside the frame. The answer ends where the grammar does (nothing but an
 * end-of-generation token can follow).
 */
function framedJsonGrammar(llama: Llama, frame: Extract<OutputConstraint, { type: "framed_json" }>): string {
  const json = new LlamaJsonSchemaGrammar(llama, normalize(frame.schema) as never).grammar;
  const value = json.replace(/^root ::= (.*) "\\n\\n\\n\\n" \[\\n\]\*$/m, "framed-json-value ::= $1");
  if (value === json)
    throw new Error("node-llama-cpp's JSON grammar no longer ends its root with four newlines: framedJsonGrammar needs updating");
  const literal = (text: string) => (text === "" ? "" : `${JSON.stringify(text)} `);
  const one = `${literal(frame.open)}framed-json-value ${literal(frame.close)}`.trim();
  const root = frame.separator === undefined ? `root ::= ${one}` : `root ::= ${one} (${literal(frame.separator)}${one})*`;
  return `${root}\n${value}`;
}

const ANNOTATIONS = new Set([
  "title",
  "description",
  "$schema",
  "$id",
  "$comment",
  "default",
  "examples",
  "deprecated",
  "readOnly",
  "writeOnly",
]);
const BASIC_TYPES = new Set(["string", "number", "integer", "boolean", "null"]);
const FORMATS = new Set(["date-time", "date", "time"]);
/** keywords allowed next to `type`, per type */
const TYPE_KEYWORDS: Record<string, readonly string[]> = {
  object: ["properties", "required", "additionalProperties", "minProperties", "maxProperties"],
  array: ["items", "prefixItems", "minItems", "maxItems"],
  string: ["minLength", "maxLength", "format"],
  number: [],
  integer: [],
  boolean: [],
  null: [],
};

/** deeper is refused before it costs stack (here and in node-llama-cpp's compiler) */
const MAX_SCHEMA_DEPTH = 64;
/**
 * The largest count a length or size keyword may give: the grammar spells a bounded repetition out
 * one rule per step, so `minItems: 1e9` would build (and sample through) a billion rules.
 */
export const MAX_SCHEMA_COUNT = 1024;
const COUNT_KEYWORDS = [
  ["minLength", "maxLength"],
  ["minItems", "maxItems"],
  ["minProperties", "maxProperties"],
] as const;
const KNOWN_KEYWORDS = new Set(["$ref", "oneOf", "anyOf", "const", "enum", "type", ...Object.values(TYPE_KEYWORDS).flat()]);

function unsupported(path: string, what: string): never {
  throw new GrammarError(path, `: ${what} is not supported in structured output`, "unsupported_schema");
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isLiteral = (v: unknown) => v === null || ["string", "number", "boolean"].includes(typeof v);

/**
 * Throws a 400 naming the first construct (path and keyword) that node-llama-cpp would not compile
 * exactly. `defs`: the `$defs` names in scope (node-llama-cpp resolves `#/$defs/x` through every
 * enclosing schema's `$defs`).
 */
export function checkJsonSchema(schema: unknown, path: string, defs: ReadonlySet<string> = new Set(), depth = 0): void {
  if (depth > MAX_SCHEMA_DEPTH) unsupported(path, `a schema nested more than ${MAX_SCHEMA_DEPTH} deep`);
  if (!isObject(schema)) unsupported(path, "a schema that is not an object (true, false, ...)");
  let scope = defs;
  if ("$defs" in schema) {
    if (!isObject(schema.$defs)) unsupported(`${path}.$defs`, "$defs that is not an object");
    scope = new Set([...defs, ...Object.keys(schema.$defs)]);
    for (const [name, def] of Object.entries(schema.$defs)) checkJsonSchema(def, `${path}.$defs.${name}`, scope, depth + 1);
  }
  const keywords = Object.keys(schema).filter((k) => k !== "$defs" && !ANNOTATIONS.has(k));
  const unknown = keywords.find((k) => !KNOWN_KEYWORDS.has(k));
  if (unknown) unsupported(path, `"${unknown}"`);
  const only = (allowed: readonly string[]) => {
    for (const k of keywords) if (!allowed.includes(k)) unsupported(path, `"${k}" next to "${allowed[0]}"`);
  };

  if ("$ref" in schema) {
    only(["$ref"]);
    const ref = schema.$ref;
    if (typeof ref !== "string" || !ref.startsWith("#/$defs/"))
      unsupported(`${path}.$ref`, `$ref ${JSON.stringify(ref)} (only "#/$defs/<name>")`);
    if (!scope.has(ref.slice("#/$defs/".length)))
      unsupported(`${path}.$ref`, `$ref ${JSON.stringify(ref)} to a definition that does not exist`);
    return;
  }
  for (const union of ["oneOf", "anyOf"] as const) {
    if (!(union in schema)) continue;
    only([union]);
    const alternatives = schema[union];
    if (!Array.isArray(alternatives) || alternatives.length === 0)
      unsupported(`${path}.${union}`, `${union} that is not a non-empty array`);
    for (const [i, alt] of alternatives.entries()) checkJsonSchema(alt, `${path}.${union}[${i}]`, scope, depth + 1);
    return;
  }
  if ("const" in schema || "enum" in schema) {
    // node-llama-cpp takes the literal and ignores a `type` beside it: the type must agree
    const values = "const" in schema ? [schema.const] : schema.enum;
    const keyword = "const" in schema ? "const" : "enum";
    only([keyword, "type"]);
    if (!Array.isArray(values) || values.length === 0) unsupported(`${path}.enum`, "enum that is not a non-empty array");
    const types = "type" in schema ? (Array.isArray(schema.type) ? schema.type : [schema.type]) : null;
    values.forEach((v, i) => {
      const at = `${path}.${keyword}${keyword === "enum" ? `[${i}]` : ""}`;
      if (!isLiteral(v)) unsupported(at, "an object or array literal");
      const own = v === null ? "null" : Number.isInteger(v) ? "integer" : typeof v;
      if (types && !types.includes(own) && !(own === "integer" && types.includes("number")))
        unsupported(at, `a ${own} literal under type ${JSON.stringify(schema.type)}`);
    });
    return;
  }
  if (!("type" in schema)) unsupported(path, "a schema without a type (any value)");
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.length === 0 || !types.every((t) => typeof t === "string" && t in TYPE_KEYWORDS))
    unsupported(`${path}.type`, `type ${JSON.stringify(schema.type)}`);
  if (types.length > 1 && !types.every((t) => BASIC_TYPES.has(t as string)))
    unsupported(`${path}.type`, `a type list with "object" or "array" (${JSON.stringify(schema.type)})`);
  const type = types[0] as string;
  only(["type", ...(types.length === 1 ? TYPE_KEYWORDS[type]! : [])]);
  checkCounts(schema, path);

  if (type === "object") {
    const properties = schema.properties ?? {};
    if (!isObject(properties)) unsupported(`${path}.properties`, "properties that is not an object");
    for (const [name, sub] of Object.entries(properties)) checkJsonSchema(sub, `${path}.properties.${name}`, scope, depth + 1);
    if ("required" in schema) {
      const required = schema.required;
      if (!Array.isArray(required) || !required.every((r) => typeof r === "string" && r in properties))
        unsupported(`${path}.required`, "required that names a property not in properties");
    }
    const extra = schema.additionalProperties;
    if (extra !== undefined && typeof extra !== "boolean") checkJsonSchema(extra, `${path}.additionalProperties`, scope, depth + 1);
  } else if (type === "array") {
    if (schema.items !== undefined) checkJsonSchema(schema.items, `${path}.items`, scope, depth + 1);
    if (schema.prefixItems !== undefined) {
      if (!Array.isArray(schema.prefixItems)) unsupported(`${path}.prefixItems`, "prefixItems that is not an array");
      for (const [i, item] of schema.prefixItems.entries()) checkJsonSchema(item, `${path}.prefixItems[${i}]`, scope, depth + 1);
    }
  } else if (type === "string" && "format" in schema) {
    if (!FORMATS.has(schema.format as string))
      unsupported(`${path}.format`, `format ${JSON.stringify(schema.format)} (only date-time, date, time)`);
    if ("minLength" in schema || "maxLength" in schema) unsupported(path, "a length limit on a formatted string");
  }
}

/** Length and size keywords: whole numbers in [0, MAX_SCHEMA_COUNT], the minimum not above the maximum. */
function checkCounts(schema: Record<string, unknown>, path: string): void {
  for (const pair of COUNT_KEYWORDS) {
    for (const keyword of pair) {
      const n = schema[keyword];
      if (n === undefined) continue;
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > MAX_SCHEMA_COUNT)
        throw new GrammarError(
          `${path}.${keyword}`,
          ` must be a whole number from 0 to ${MAX_SCHEMA_COUNT}, got ${JSON.stringify(n)}`,
          "unsupported_schema",
        );
    }
    const [min, max] = [schema[pair[0]] as number | undefined, schema[pair[1]] as number | undefined];
    if (min !== undefined && max !== undefined && min > max)
      throw new GrammarError(path, `: ${pair[0]} ${min} is above ${pair[1]} ${max}`, "unsupported_schema");
  }
}

/**
 * The schema as node-llama-cpp reads it: `anyOf` becomes `oneOf` (its grammar makes a value of one
 * alternative, which satisfies both). Keys of `properties` and `$defs` are names, kept as they are.
 */
function normalize(schema: unknown): unknown {
  if (!isObject(schema)) return schema;
  const mapValues = (v: unknown) => (isObject(v) ? Object.fromEntries(Object.entries(v).map(([k, sub]) => [k, normalize(sub)])) : v);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "anyOf" || k === "oneOf") out.oneOf = (v as unknown[]).map(normalize);
    else if (k === "properties" || k === "$defs") out[k] = mapValues(v);
    else if (k === "items" || k === "additionalProperties") out[k] = normalize(v);
    else if (k === "prefixItems") out[k] = (v as unknown[]).map(normalize);
    else out[k] = v;
  }
  return out;
}
