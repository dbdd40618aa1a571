// Validates JSON values against the schemas of OpenAI's published OpenAPI 3.1 document
// (../shared/specs/openai-openapi.json), so the OpenAI-compatible endpoints are checked against
// the real contract rather than against our own idea of it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv2020, type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
// ajv-formats is CommonJS; under NodeNext the default import is typed as the module object,
// whose `.default` is the plugin both in the types and at runtime.
import addFormatsModule from "ajv-formats";
import { SHARED } from "../../harness/index.js";

const SPEC_PATH = join(SHARED, "specs", "openai-openapi.json");
// The document has no $id of its own; this one only serves to address its components in ajv.
const SPEC_ID = "https://openai.local/openapi.json";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

// Keywords whose values are data (or vendor metadata), not subschemas: never rewrite inside them,
// or an example that happens to contain `nullable: true` would be "converted".
const DATA_KEYWORDS = new Set(["enum", "const", "default", "example", "examples", "discriminator", "required"]);
// Keywords whose value maps arbitrary names (which may be "nullable", "type"...) to subschemas.
const SCHEMA_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]);

const isObject = (v: Json | undefined): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Rewrites the OpenAPI-3.0 leftovers the document still carries into plain JSON Schema 2020-12:
 * `nullable`, boolean `exclusiveMinimum`/`exclusiveMaximum`, and 2019-09 `$recursiveRef`
 * (which the 2020-12 ajv does not implement). `component` is the enclosing component schema,
 * the target of `$recursiveRef: "#"` (its `$recursiveAnchor`).
 */
function convert(node: Json, component: string): Json {
  if (Array.isArray(node)) return node.map((n) => convert(n, component));
  if (!isObject(node)) return node;
  let out: JsonObject = {};
  for (const [key, value] of Object.entries(node)) {
    if (DATA_KEYWORDS.has(key) || key.startsWith("x-")) out[key] = value;
    else if (SCHEMA_MAPS.has(key) && isObject(value))
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, convert(v, component)]));
    else out[key] = convert(value, component);
  }
  for (const [flag, bound] of [
    ["exclusiveMinimum", "minimum"],
    ["exclusiveMaximum", "maximum"],
  ] as const) {
    if (typeof out[flag] !== "boolean") continue;
    // OpenAPI 3.0: a boolean flag on `minimum`; JSON Schema: the bound itself.
    if (out[flag] === true && typeof out[bound] === "number") {
      out[flag] = out[bound];
      delete out[bound];
    } else delete out[flag];
  }
  if (out.$recursiveRef === "#") {
    delete out.$recursiveRef;
    out.$ref = `#/components/schemas/${component}`;
  }
  delete out.$recursiveAnchor;
  if ("nullable" in out) {
    const nullable = out.nullable === true;
    delete out.nullable;
    if (nullable) {
      const composite = ["$ref", "allOf", "anyOf", "oneOf", "const", "not"].some((k) => k in out);
      if (typeof out.type === "string" && !composite) {
        // Keep the schema flat so errors stay readable; an enum must admit null explicitly too.
        out.type = [out.type, "null"];
        if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...out.enum, null];
      } else if (out.type !== undefined || composite) {
        out = { anyOf: [out, { type: "null" }] };
      } // else: no type constraint at all, so null is already allowed.
    }
  }
  return out;
}

let ajv: Ajv2020 | undefined;
const validators = new Map<string, ValidateFunction>();

function getAjv(): Ajv2020 {
  if (ajv) return ajv;
  const spec = JSON.parse(readFileSync(SPEC_PATH, "utf8")) as { components: { schemas: Record<string, Json> } };
  const schemas = Object.fromEntries(Object.entries(spec.components.schemas).map(([name, schema]) => [name, convert(schema, name)]));
  // strict: false tolerates the vendor/OpenAPI keywords (x-oaiMeta, discriminator, example, ...)
  // as annotations instead of rejecting the document.
  const instance = new Ajv2020({ strict: false, allErrors: true, logger: false });
  addFormatsModule.default(instance);
  // OpenAI's own format: seconds since the epoch, as a JSON integer.
  instance.addFormat("unixtime", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= 0 });
  instance.addSchema({ $id: SPEC_ID, components: { schemas } });
  ajv = instance;
  return instance;
}

function describe(e: ErrorObject): string {
  const where = e.instancePath || "(root)";
  const params = e.params as Record<string, unknown>;
  let detail = "";
  if (e.keyword === "enum") detail = ` (${JSON.stringify(params.allowedValues)})`;
  else if (e.keyword === "additionalProperties") detail = ` (${String(params.additionalProperty)})`;
  return `${where} ${e.message ?? e.keyword}${detail}`;
}

/**
 * Validates `value` against `#/components/schemas/<schemaName>` of OpenAI's OpenAPI document.
 * Returns human-readable errors (empty when valid). Throws on an unknown schema name, which is
 * a bug in the test rather than in the value.
 */
export function validateOpenAI(schemaName: string, value: unknown): string[] {
  let validate = validators.get(schemaName);
  if (!validate) {
    const instance = getAjv();
    const ref = `${SPEC_ID}#/components/schemas/${schemaName}`;
    validate = instance.getSchema(ref);
    if (!validate) throw new Error(`no OpenAI schema named ${schemaName}`);
    validators.set(schemaName, validate);
  }
  return validate(value) ? [] : [...new Set((validate.errors ?? []).map(describe))];
}

/** Asserts (as one tap assertion) that `value` matches the named OpenAI schema, listing the errors if not. */
export function assertOpenAI(
  t: { same(found: unknown, wanted: unknown, message: string): unknown },
  schemaName: string,
  value: unknown,
): void {
  t.same(validateOpenAI(schemaName, value), [], `${schemaName} validates`);
}
