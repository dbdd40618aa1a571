// Structured output's JSON Schema check: what node-llama-cpp compiles exactly is admitted, anything
// else is a 400 that names the construct and where it is (it would otherwise be compiled into a
// different constraint without a word: an unknown type into `null`, a bad $ref into any value).
import t from "tap";
import { checkJsonSchema, GrammarError } from "../../../src/engine/grammar.js";

const ok = (schema: unknown) => checkJsonSchema(schema, "json_schema");

t.test("supported schemas pass", async (t) => {
  const person = {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title: "person",
    type: "object",
    properties: {
      name: { type: "string", description: "full name", minLength: 1, maxLength: 40 },
      age: { type: "integer" },
      height: { type: ["number", "null"] },
      role: { enum: ["chef", "pilot", null] },
      kind: { const: "person", type: "string" },
      born: { type: "string", format: "date" },
      tags: { type: "array", items: { type: "string" }, minItems: 1, maxItems: 3 },
      pair: { type: "array", prefixItems: [{ type: "boolean" }, { type: "number" }] },
      pet: { anyOf: [{ $ref: "#/$defs/pet" }, { type: "null" }] },
      extra: { type: "object", additionalProperties: { type: "number" } },
    },
    required: ["name", "age"],
    additionalProperties: false,
    $defs: { pet: { type: "object", properties: { species: { oneOf: [{ const: "cat" }, { const: "dog" }] } } } },
  };
  t.doesNotThrow(() => ok(person));
  t.doesNotThrow(() => ok({ type: "object", properties: { anyOf: { type: "string" } } }), "a property named like a keyword");
});

t.test("unsupported constructs are refused by name and place", async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ["pattern", { type: "string", pattern: "^a" }, /json_schema: "pattern" is not supported/],
    ["a keyword of another type", { type: "string", minItems: 1 }, /json_schema: "minItems" next to "type"/],
    ["minimum", { type: "object", properties: { n: { type: "number", minimum: 0 } } }, /json_schema\.properties\.n: "minimum"/],
    ["allOf", { allOf: [{ type: "string" }] }, /json_schema: "allOf" is not supported/],
    ["no type", { type: "object", properties: { x: {} } }, /json_schema\.properties\.x: a schema without a type/],
    ["unknown type", { type: "date" }, /json_schema\.type: type "date"/],
    ["object in a type list", { type: ["object", "null"] }, /a type list with "object" or "array"/],
    ["external $ref", { $ref: "https://example.com/s.json" }, /json_schema\.\$ref: \$ref "https:\/\/example.com\/s.json"/],
    ["missing $defs entry", { $ref: "#/$defs/nope" }, /a definition that does not exist/],
    ["format", { type: "string", format: "email" }, /json_schema\.format: format "email"/],
    ["enum of objects", { enum: [{ a: 1 }] }, /json_schema\.enum\[0\]: an object or array literal/],
    ["enum type mismatch", { type: "string", enum: ["a", 3] }, /json_schema\.enum\[1\]: a integer literal under type "string"/],
    ["required unknown", { type: "object", properties: { a: { type: "string" } }, required: ["b"] }, /json_schema\.required/],
    ["boolean schema", { type: "array", items: true }, /json_schema\.items: a schema that is not an object/],
    ["nested in $defs", { $defs: { x: { type: "string", pattern: "a" } }, type: "string" }, /json_schema\.\$defs\.x: "pattern"/],
    ["uniqueItems", { type: "array", items: { type: "string" }, uniqueItems: true }, /"uniqueItems"/],
    // #26: malformed counts were a 500 with a stack trace; a huge one a grammar of a billion rules
    [
      "maxLength not a number",
      { type: "string", maxLength: "abc" },
      /json_schema\.maxLength must be a whole number from 0 to 1024, got "abc"/,
    ],
    [
      "minItems 1e9",
      { type: "array", items: { type: "string" }, minItems: 1e9 },
      /json_schema\.minItems must be a whole number from 0 to 1024, got 1000000000/,
    ],
    ["a fractional count", { type: "object", maxProperties: 1.5 }, /maxProperties must be a whole number/],
    ["a negative count", { type: "string", minLength: -1 }, /minLength must be a whole number/],
    [
      "min above max",
      { type: "array", items: { type: "string" }, minItems: 3, maxItems: 2 },
      /json_schema: minItems 3 is above maxItems 2/,
    ],
  ];
  for (const [name, schema, message] of cases) {
    t.throws(() => ok(schema), { name: "GrammarError", message }, name);
  }
  try {
    checkJsonSchema({ type: "string", pattern: "x" }, "response_format.json_schema.schema");
  } catch (err) {
    t.ok(err instanceof GrammarError);
    t.equal((err as GrammarError).status, 400);
    t.equal((err as GrammarError).param, "response_format");
    t.equal((err as GrammarError).code, "unsupported_schema");
  }
});

t.test("a schema nested too deep is refused, not a stack overflow", async (t) => {
  let schema: Record<string, unknown> = { type: "string" };
  for (let i = 0; i < 10_000; i++) schema = { type: "array", items: schema };
  t.throws(() => ok(schema), { name: "GrammarError", message: /nested more than 64 deep/ });
});
