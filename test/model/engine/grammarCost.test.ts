// Grammars that would be slow to enforce (#26 item 1): sampling runs between decodes on the one
// thread every sequence shares, so the engine refuses a grammar with more optional items in a row or
// more alternatives open at once than its limits (src/defaults.ts), before any token is sampled; and a
// request whose sampling of one token takes longer than the loop's budget ends with a 400 naming it.
import t from "tap";
import { MAX_GRAMMAR_CHARS, MAX_GRAMMAR_FAN_OUT, MAX_GRAMMAR_OPTIONAL_RUN } from "../../../src/defaults.js";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { SamplingBudgetError } from "../../../src/engine/errors.js";
import { STORIES_MODEL } from "../../support/models.js";

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512 });
t.teardown(() => engine.dispose());

const optionals = (n: number) => '"a"? '.repeat(n);
const gbnf = (grammar: string) => engine.compileGrammar({ type: "grammar", grammar });
const refusal = (message: RegExp, code = "invalid_grammar") => ({ name: "GrammarError", code, param: "grammar", message });

t.test("optional items in a row: up to the limit accepted, one more refused naming the rule", async (t) => {
  t.ok(gbnf(`root ::= ${optionals(MAX_GRAMMAR_OPTIONAL_RUN)}"b"`));
  t.throws(
    () => gbnf(`root ::= ${optionals(MAX_GRAMMAR_OPTIONAL_RUN + 1)}"b"`),
    refusal(new RegExp(`^grammar: more than ${MAX_GRAMMAR_OPTIONAL_RUN} optional items in a row \\(rule "root"\\)`)),
  );
  // the run found wherever it is: behind a first character, in another rule, as x* items too
  t.throws(() => gbnf(`root ::= "x" items\nitems ::= ${optionals(400)}`), refusal(/optional items in a row/));
  t.throws(() => gbnf(`root ::= "x" items\nitems ::= ${'"a"* '.repeat(40)}`), refusal(/optional items in a row \(rule "(root|items)"\)/));
  // the grammar the issue measured (2.9 KB, 400 items: 11-28 s for 2 tokens) is refused up front
  t.throws(() => gbnf(`root ::= ${optionals(400)}`), refusal(/optional items in a row/));
});

t.test("alternatives open at one point: an enum of a thousand values fits, more is refused", async (t) => {
  const alternatives = (n: number) => `root ::= ${Array.from({ length: n }, (_, i) => `"v${i}"`).join(" | ")}`;
  t.ok(gbnf(alternatives(MAX_GRAMMAR_FAN_OUT)));
  t.throws(
    () => gbnf(alternatives(MAX_GRAMMAR_FAN_OUT + 1)),
    refusal(new RegExp(`more than ${MAX_GRAMMAR_FAN_OUT} alternatives open at one point`)),
  );
  const schema = { type: "string", enum: Array.from({ length: 1000 }, (_, i) => `value ${i}`) };
  const grammar = engine.compileGrammar({ type: "json_schema", schema });
  const r = await engine.generate({ prompt: "Once upon a time", maxTokens: 12, temperature: 0, grammar });
  t.match(JSON.parse(r.text), /^value \d+$/, "a JSON enum of 1000 values is enforced");
  // a schema's grammar is node-llama-cpp's: its error names the schema, not a rule
  const wide = { type: "string", enum: Array.from({ length: MAX_GRAMMAR_FAN_OUT + 1 }, (_, i) => `v${i}`) };
  t.throws(() => engine.compileGrammar({ type: "json_schema", schema: wide }), {
    name: "GrammarError",
    code: "unsupported_schema",
    param: "schema",
    message: /^schema: more than 1024 alternatives open at one point, which would make/,
  });
});

t.test("the grammars node-llama-cpp compiles from JSON schemas are within the limits", async (t) => {
  const schemas = [
    { type: "object", properties: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, { type: "number" }])) },
    { type: "array", items: { type: "object", properties: { a: { type: "string" }, b: { type: ["string", "null"] } } }, maxItems: 50 },
    { anyOf: [{ type: "string", format: "date-time" }, { type: "integer" }, { type: "boolean" }] },
    { type: "object", additionalProperties: true },
  ];
  for (const schema of schemas) t.ok(engine.compileGrammar({ type: "json_schema", schema }), JSON.stringify(schema).slice(0, 80));
  t.ok(engine.compileGrammar({ type: "json_object" }));
});

t.test("a grammar too large to check quickly is refused", async (t) => {
  // many small rules, each harmless: the check's work budget runs out before the grammar does
  const rules = Array.from({ length: 370 }, (_, i) => `r${i} ::= ${'"x"? '.repeat(30)}"y"`);
  const grammar = `root ::= ${Array.from({ length: 370 }, (_, i) => `r${i}`).join(" ")}\n${rules.join("\n")}`;
  t.ok(grammar.length <= MAX_GRAMMAR_CHARS, "within the size a request may send");
  t.throws(() => gbnf(grammar), refusal(/too large to check/));
});

t.test("sampling over the loop's budget ends the request: a 400 naming its grammar, else a SamplingBudgetError", async (t) => {
  // a budget no sampling step meets: every request with a sampler ends at its first token
  const strict = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 256, samplingBudgetMs: 0.001 });
  t.teardown(() => strict.dispose());
  const grammar = strict.compileGrammar({ type: "grammar", grammar: 'root ::= [a-z ]+ "."' });
  await t.rejects(strict.generate({ prompt: "Once upon a time", maxTokens: 8, grammar }), {
    name: "GrammarError",
    code: "invalid_grammar",
    param: "grammar",
    message: /^grammar: too costly to enforce: sampling one token took \d+ ms, more than the 0.001 ms the server allows/,
  });
  await t.rejects(strict.generate({ prompt: "Once upon a time", maxTokens: 8 }), SamplingBudgetError);
  // the default budget leaves the same request alone
  const r = await engine.generate({ prompt: "Once upon a time", maxTokens: 8, temperature: 0, grammar: gbnf('root ::= [a-z ]+ "."') });
  t.match(r.text, /^[a-z ]+\.?$/);
});
