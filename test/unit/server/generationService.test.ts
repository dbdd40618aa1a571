// GenerationService over a stand-in engine (no model): what engine request a CompletionInput
// becomes (the profile's heads and alpha, "default", AutoPASTA's checks), and engine field errors
// renamed to the API's paths before a client sees them.
import t from "tap";
import type { EngineSession, GenerateRequest, GenerateResult, PreparedPrompt, SteeringEngine } from "../../../src/engine/engine.js";
import { SteeringError } from "../../../src/engine/errors.js";
import { GrammarError } from "../../../src/engine/grammar.js";
import { CHATML_TEMPLATE, ChatTemplate } from "../../../src/prompt/chatTemplate.js";
import { Scheduler } from "../../../src/scheduler/scheduler.js";
import type { CompletionInput, SteeringInput } from "../../../src/server/completionService.js";
import { GenerationService } from "../../../src/server/generationService.js";
import { ServerMetrics } from "../../../src/server/metrics.js";

/** An engine that records the requests it is asked to prepare, and refuses with `refuse` when set. */
function fakeEngine(refuse?: { prepare?: Error; grammar?: Error }) {
  const prepared: GenerateRequest[] = [];
  const engine = {
    contextSize: 256,
    headsPerLayer: [4, 4],
    unsupportedReason: null,
    vocabularySize: 100,
    compileGrammar() {
      if (refuse?.grammar) throw refuse.grammar;
      return { grammar: {}, stop: [] };
    },
    async prepare(request: GenerateRequest): Promise<PreparedPrompt> {
      if (refuse?.prepare) throw refuse.prepare;
      prepared.push(request);
      return { prompt: request.prompt, tokens: [] };
    },
    /** one job at once; its generation says "ok" */
    withSequence<T>(job: (session: EngineSession, signal: AbortSignal) => Promise<T>): Promise<T> {
      const session = {
        async generate(request: GenerateRequest): Promise<GenerateResult> {
          request.onText?.("ok", []);
          return {
            text: "ok",
            tokens: [1 as never],
            finishReason: "stop",
            promptTokens: 5,
            evaluatedPromptTokens: 5,
            timings: { promptMs: 1, generationMs: 1 },
          };
        },
      };
      return job(session as unknown as EngineSession, new AbortController().signal);
    },
  };
  return { engine: engine as unknown as SteeringEngine, prepared };
}

function service(engine: SteeringEngine, profile: Profile | null) {
  const scheduler = new Scheduler({ parallel: 1, maxQueue: 1 });
  return new GenerationService({
    engine,
    metrics: new ServerMetrics(scheduler),
    chatTemplate: new ChatTemplate(CHATML_TEMPLATE, { bos_token: "", eos_token: "" }),
    modelId: "m",
    profile,
    timeoutMs: 1000,
    logPrompts: false,
  });
}

const context = { signal: new AbortController().signal, log: { info() {} } };
const input = (steering?: Partial<SteeringInput>, extra: Partial<CompletionInput> = {}): CompletionInput => ({
  endpoint: "generate",
  prompt: { prompt: "Tom had a kite.", specialTokens: false, emphasis: [{ start: 0, end: 3 }] },
  maxTokens: 4,
  sampling: { temperature: 0 },
  ...(steering ? { steering: { auto: false, ...steering } } : {}),
  ...extra,
});
type Profile = { heads: Record<string, number[]>; alpha: number | null };
const profile: Profile = { heads: { "1": [2] }, alpha: 0.05 };

/** The engine request a steered input becomes, once its generation has run. */
async function engineRequest(profileOf: Profile | null, steering: Partial<SteeringInput>) {
  const { engine, prepared } = fakeEngine();
  const events = [];
  for await (const event of await service(engine, profileOf).stream(input(steering), context)) events.push(event.type);
  if (events.join() !== "admitted,text,done") throw new Error(`events: ${events.join()}`);
  return prepared[0]!;
}

t.test("the profile's heads when a request names none, with the profile's alpha unless it gives one", async (t) => {
  t.same((await engineRequest(profile, {})).steering, {
    heads: profile.heads,
    alpha: 0.05,
    mode: undefined,
    emphasis: [{ start: 0, end: 3 }],
  });
  t.equal((await engineRequest(profile, { heads: "default" })).steering?.alpha, 0.05, '"default" names the profile');
  t.equal((await engineRequest(profile, { alpha: 0.2 })).steering?.alpha, 0.2, "the request's alpha wins");
  t.equal(
    (await engineRequest({ ...profile, alpha: null }, {})).steering?.alpha,
    undefined,
    "a profile without alpha: the engine's default",
  );
  const own = (await engineRequest(profile, { heads: { "0": [1] } })).steering!;
  t.same(own.heads, { "0": [1] });
  t.equal(own.alpha, undefined, "heads of the request's own: the engine's default alpha, not the profile's");
  const full = (await engineRequest(profile, { targetShare: 0.8, diagnostics: { allHeads: true, everyToken: false }, mode: "exclude" }))
    .steering!;
  t.same([full.targetShare, full.diagnostics, full.mode], [0.8, { allHeads: true, everyToken: false }, "exclude"], "passed through");
});

t.test("heads that cannot be resolved are a 400 on steering.heads that says what to do", async (t) => {
  const { engine } = fakeEngine();
  await t.rejects(service(engine, profile).stream(input({ heads: "other" }), context), {
    status: 400,
    param: "steering.heads",
    message: /unknown head profile "other"; this server has "default"/,
  });
  await t.rejects(service(engine, null).stream(input({}), context), {
    param: "steering.heads",
    message: /no head profile: pass the heads/,
  });
});

t.test("steering.auto: refused where the endpoint gives no context, or an empty one", async (t) => {
  const { engine } = fakeEngine();
  await t.rejects(service(engine, profile).stream(input({ auto: true }), context), { param: "steering.auto", message: /available on/ });
  const empty = { selectionPrompt: { prompt: "x", specialTokens: false }, context: { start: 3, end: 3 } };
  await t.rejects(service(engine, profile).stream(input({ auto: true }, { autoSelection: empty }), context), {
    param: "steering.auto",
    code: "invalid_steering",
    message: /context to pick sentences from is empty/,
  });
});

t.test("engine field errors reach the client under the API's paths", async (t) => {
  const cases: Array<[string, { prepare?: Error; grammar?: Error }, Partial<CompletionInput>, object]> = [
    [
      "a span",
      { prepare: new SteeringError("emphasis[1]", ": characters 3-4 cover no token") },
      {},
      { param: "steering.emphasis", message: "steering.emphasis[1]: characters 3-4 cover no token", code: "invalid_steering" },
    ],
    [
      "target share",
      { prepare: new SteeringError("targetShare", " must be a number in (0, 1), got 2") },
      {},
      { param: "steering.target_share", message: "steering.target_share must be a number in (0, 1), got 2" },
    ],
    [
      "a schema in response_format",
      { grammar: new GrammarError("schema.properties.a", ": pattern is not supported in structured output", "unsupported_schema") },
      { output: { constraint: { type: "json_object" }, param: "response_format" } },
      {
        param: "response_format",
        message: "response_format.json_schema.schema.properties.a: pattern is not supported in structured output",
        code: "unsupported_schema",
      },
    ],
    [
      "a schema in /v1/generate's json_schema",
      { grammar: new GrammarError("schema.items", ": x is not supported in structured output", "unsupported_schema") },
      { output: { constraint: { type: "json_object" }, param: "json_schema" } },
      { param: "json_schema", message: "json_schema.items: x is not supported in structured output" },
    ],
  ];
  for (const [name, refuse, extra, expected] of cases) {
    const { engine } = fakeEngine(refuse);
    await t.rejects(service(engine, profile).stream(input({}, extra), context), { name: /Error$/, status: 400, ...expected }, name);
  }
});
