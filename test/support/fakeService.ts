// A generation service without a model, for in-process HTTP tests (app.inject): it records what the
// routes hand it and answers with scripted events, so route shapes, errors and auth are tested
// without loading anything. The real service's translation is tested through real processes.
import { buildApp } from "../../src/server/app.js";
import { CHATML_TEMPLATE, ChatTemplate } from "../../src/prompt/chatTemplate.js";
import { Scheduler } from "../../src/scheduler/scheduler.js";
import { ServerMetrics } from "../../src/server/metrics.js";
import type {
  CompletionEvent,
  CompletionInput,
  CompletionService,
  Generation,
  RequestContext,
} from "../../src/server/completionService.js";
import type { ScoreResult } from "../../src/engine/engine.js";
import { RequestError } from "../../src/errors.js";

/** A finished generation of `text` (4 prompt tokens, one per character generated). */
export function generationOf(text: string, extra: Partial<Generation> = {}): Generation {
  return {
    choices: [
      {
        text,
        tokens: [...text].map((_, i) => i) as never,
        finishReason: "stop",
        promptTokens: 4,
        evaluatedPromptTokens: 4,
        timings: { promptMs: 1, generationMs: 1 },
      },
    ],
    ...extra,
  };
}

export type Script = (input: CompletionInput) => AsyncIterable<CompletionEvent> | Iterable<CompletionEvent>;

/** The events of a plain answer: admitted, the pieces, done. */
export function* answer(pieces: string[], extra: Partial<Generation> = {}): Iterable<CompletionEvent> {
  yield { type: "admitted", ...(extra.steering ? { steering: extra.steering } : {}) };
  for (const text of pieces) yield { type: "text", choice: 0, text, logprobs: [] };
  yield { type: "done", generation: generationOf(pieces.join(""), extra) };
}

export class FakeService implements CompletionService {
  readonly modelId = "fake-model";
  readonly chatTemplate = new ChatTemplate(CHATML_TEMPLATE, { bos_token: "", eos_token: "" });
  readonly modelInfo = {
    contextSize: 256,
    headsPerLayer: [8, 8],
    steerable: true,
    vocabularySize: 1000,
    profile: { heads: { "1": [2] }, alpha: 0.05 },
  };
  /** every input the routes handed over, in order */
  readonly inputs: CompletionInput[] = [];

  constructor(private readonly script: Script = () => answer(["Hello", " world"])) {}

  checkModel(model: string | undefined | null): void {
    if (model != null && model !== this.modelId)
      throw new RequestError(`no model ${model}`, { status: 404, param: "model", code: "model_not_found" });
  }

  async stream(input: CompletionInput, _context: RequestContext): Promise<AsyncIterable<CompletionEvent>> {
    this.inputs.push(input);
    return this.events(input);
  }

  private async *events(input: CompletionInput): AsyncGenerator<CompletionEvent> {
    yield* this.script(input);
  }

  /** one token per UTF-16 unit, its id the code unit; unit 0xFF is a lone byte (not valid UTF-8) */
  async tokenize(text: string) {
    return [...text].map((c, i) => ({
      id: c.charCodeAt(0),
      bytes: c === "\u00FF" ? Uint8Array.of(0xff) : Uint8Array.from(Buffer.from(c)),
      start: i,
      end: i + 1,
    }));
  }

  detokenize(tokens: readonly number[]): string {
    return String.fromCharCode(...tokens);
  }

  async score(): Promise<ScoreResult> {
    throw new Error("the fake service does not score");
  }
}

/** The real app over a fake service (or a service still loading), ready for app.inject. */
export async function fakeApp(
  options: { service?: FakeService | Promise<FakeService>; apiKeys?: string[]; bodyLimit?: number; playground?: boolean } = {},
) {
  const scheduler = new Scheduler({ parallel: 1, maxQueue: 1 });
  const service = options.service ?? new FakeService();
  const app = await buildApp({
    service: Promise.resolve(service),
    scheduler,
    metrics: new ServerMetrics(scheduler),
    ...(options.apiKeys ? { apiKeys: options.apiKeys } : {}),
    ...(options.bodyLimit ? { bodyLimit: options.bodyLimit } : {}),
    ...(options.playground !== undefined ? { playground: options.playground } : {}),
  });
  await new Promise((resolve) => setImmediate(resolve)); // the service promise settles
  return app;
}
