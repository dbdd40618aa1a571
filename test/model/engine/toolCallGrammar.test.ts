// tool_choice "required" and a named function, enforced: under the call grammar of each syntax
// (src/prompt/toolCalls.ts callConstraint), even stories260K, which knows nothing of tools, answers
// with calls that parse, of the allowed functions only, with arguments that follow their parameters.
import t from "tap";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { callConstraint, parseToolCalls, type ToolSyntax } from "../../../src/prompt/toolCalls.js";
import { STORIES_MODEL } from "../../support/models.js";

const engine = await SteeringEngine.load({ modelPath: STORIES_MODEL, contextSize: 512 });
t.teardown(() => engine.dispose());

const tools = [
  { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"] } },
  {
    name: "set_alarm",
    parameters: { type: "object", properties: { time: { enum: ["06:00", "07:30"] } }, required: ["time"] },
  },
];
const prompt = "Once upon a time there was a little dog named Max.";
const NAMES = new Set(tools.map((tool) => tool.name));

for (const syntax of ["hermes", "mistral", "llama3"] as ToolSyntax[]) {
  t.test(`${syntax}: required -> calls of the tools, arguments by their parameters; one call without parallel`, async (t) => {
    for (const seed of [1, 2, 3]) {
      const grammar = engine.compileGrammar(callConstraint(syntax, tools, false));
      const r = await engine.generate({ prompt, maxTokens: 120, temperature: 1, seed, grammar });
      t.equal(r.finishReason, "stop", `seed ${seed}: the grammar ends the answer`);
      const { calls } = parseToolCalls(syntax, r.text, NAMES);
      t.equal(calls.length, 1, `seed ${seed}: one call: ${r.text}`);
      const args = JSON.parse(calls[0]!.arguments) as Record<string, unknown>;
      if (calls[0]!.name === "get_weather") t.type(args.city, "string");
      else {
        t.equal(calls[0]!.name, "set_alarm");
        t.ok(["06:00", "07:30"].includes(args.time as string), `time ${args.time}`);
      }
    }
  });
}

t.test("a named function: only that one is called", async (t) => {
  const grammar = engine.compileGrammar(callConstraint("hermes", [tools[1]!], true));
  const r = await engine.generate({ prompt, maxTokens: 200, temperature: 1, seed: 5, grammar });
  const { calls } = parseToolCalls("hermes", r.text, NAMES);
  t.ok(calls.length >= 1);
  t.ok(
    calls.every((c) => c.name === "set_alarm"),
    r.text,
  );
});
