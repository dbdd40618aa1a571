// GenerationService: a CompletionInput (completionService.ts) -> the engine's request (heads from
// the server's profile, AutoPASTA's plan), validated before queueing, and the generation as a
// pull-based stream of events. It knows nothing of HTTP: the caller gives a signal and a logger.
import { answerWithAutoPasta, prepareAnswer, type AutoPastaPlan, type AutoPastaReport } from "../autopasta/autopasta.js";
import type {
  AttentionDiagnostics,
  GenerateRequest,
  GenerateResult,
  PreparedPrompt,
  ScoreResult,
  SteeredSpan,
  SteeringEngine,
  SteeringRequest,
} from "../engine/engine.js";
import type { HeadSelection } from "../engine/steering.js";
import { InvalidRequestError, RequestError } from "../errors.js";
import type { Token } from "node-llama-cpp";
import type { ChatTemplate } from "../prompt/chatTemplate.js";
import type { JobStopped } from "../scheduler/scheduler.js";
import { EventChannel } from "../util/eventChannel.js";
import {
  autoUnavailable,
  type CompletionEvent,
  type CompletionInput,
  type CompletionService,
  DEFAULT_PROFILE_NAME,
  type Generation,
  type ModelInfo,
  type RequestContext,
  type ResponseSteering,
  type SteeringInput,
} from "./completionService.js";
import { apiFields, withApiField } from "./engineFields.js";
import type { ServerMetrics } from "./metrics.js";

export interface GenerationServiceOptions {
  engine: SteeringEngine;
  metrics: ServerMetrics;
  chatTemplate: ChatTemplate;
  /** the model's id in the API (`model` fields, /v1/models) */
  modelId: string;
  /**
   * the head profile: its heads are steered when a request names none (null: requests must name
   * them), with its alpha when such a request gives none (null: DEFAULT_ALPHA)
   */
  profile: { heads: HeadSelection; alpha: number | null } | null;
  /** per-request limit, queueing included */
  timeoutMs: number;
  /** log prompt text (off by default: prompts may be private) */
  logPrompts: boolean;
}

export class GenerationService implements CompletionService {
  constructor(readonly options: GenerationServiceOptions) {}

  get modelInfo(): ModelInfo {
    const { engine } = this.options;
    return {
      contextSize: engine.contextSize,
      headsPerLayer: engine.headsPerLayer,
      steerable: engine.unsupportedReason === null,
      vocabularySize: engine.vocabularySize,
      profile: this.options.profile,
    };
  }

  tokenize(text: string, options: { addSpecial: boolean; parseSpecial: boolean }) {
    return this.engine.tokenize(text, options);
  }

  detokenize(tokens: readonly number[]): string {
    return this.engine.detokenize(tokens as Token[]);
  }

  get engine(): SteeringEngine {
    return this.options.engine;
  }

  get modelId(): string {
    return this.options.modelId;
  }

  get chatTemplate(): ChatTemplate {
    return this.options.chatTemplate;
  }

  /** The request's `model`, when given, must be this server's. */
  checkModel(model: string | undefined | null): void {
    if (model != null && model !== this.options.modelId) {
      throw new RequestError(`The model \`${model}\` does not exist: this server serves \`${this.options.modelId}\``, {
        status: 404,
        param: "model",
        code: "model_not_found",
      });
    }
  }

  /**
   * One generation as events: `admitted` (once it holds a sequence), `text`..., `done`. Every error
   * a request can be refused for rejects here, before it waits for a sequence; later ones come out
   * of the iteration.
   */
  async stream(input: CompletionInput, context: RequestContext): Promise<AsyncIterable<CompletionEvent>> {
    const startedAt = performance.now();
    const { request, prepared, plan } = await this.translate(input);
    const choices = input.choices ?? 1;
    this.checkChoices(input, choices);
    this.logStart(input, context, prepared);
    const events = new EventChannel<CompletionEvent>();
    let firstTokenAt: number | undefined;
    const answers = choiceRequests(request, choices).map(
      (answer, choice): GenerateRequest => ({
        ...answer,
        onText: (text, logprobs) => {
          firstTokenAt ??= performance.now();
          events.push({ type: "text", choice, text, logprobs });
        },
      }),
    );
    const job = this.engine.withSequence(
      async (session, signal): Promise<Generation> => {
        let results: GenerateResult[];
        let report: AutoPastaReport | undefined;
        if (plan) {
          let result: GenerateResult;
          ({ result, report } = await answerWithAutoPasta(this.engine, session, plan, prepared, answers[0]!, (selected, answering) => {
            events.push({ type: "admitted", steering: responseSteering(answering.steering?.spans, selected) });
          }));
          results = [result];
        } else {
          events.push({ type: "admitted", ...(prepared.steering ? { steering: { spans: prepared.steering.spans } } : {}) });
          results = choices > 1 ? await session.generateChoices(answers, prepared) : [await session.generate(answers[0]!, prepared)];
        }
        const first = results[0]!;
        const steering = responseSteering(first.steering?.spans, report, first.steering?.diagnostics);
        const stopped = signal.aborted ? { stopped: (signal.reason as JobStopped).reason } : {};
        return { choices: results, ...(steering ? { steering } : {}), ...stopped };
      },
      { signal: context.signal, timeoutMs: this.options.timeoutMs, slots: choices },
    );

    job.then(
      (generation) => {
        this.logDone(input, context, generation, startedAt, firstTokenAt);
        events.push({ type: "done", generation });
        events.close();
      },
      (err: unknown) => events.fail(withApiField(err, input.output?.param)),
    );
    return events;
  }

  /** The prompt's own token log-probs under the request's steering (completions' echo). */
  async score(input: CompletionInput, topLogprobs: number, context: RequestContext): Promise<ScoreResult> {
    const { request } = await this.translate(input);
    const prepared = await apiFields(input.output?.param, () => this.engine.prepare(request, 0));
    this.logStart(input, context, prepared);
    const result = await this.engine.withSequence(
      async (session, signal) => {
        const scored = await session.score({ ...request, topLogprobs }, prepared);
        if (signal.aborted) throw signal.reason;
        return scored;
      },
      { signal: context.signal, timeoutMs: this.options.timeoutMs },
    );
    this.options.metrics.observeGeneration({
      endpoint: input.endpoint,
      steered: request.steering !== undefined,
      promptTokens: result.tokens.length,
      completionTokens: 0,
      generationSeconds: 0,
    });
    return result;
  }

  /** n > 1: each choice holds a sequence; AutoPASTA and attention diagnostics answer for one choice. */
  private checkChoices(input: CompletionInput, choices: number) {
    if (choices === 1) return;
    const parallel = this.engine.scheduler.parallel;
    if (choices > parallel)
      throw new InvalidRequestError(
        `n: ${choices} choices need as many sequences at once, and this server decodes ${parallel} (--parallel)`,
        "n",
        "invalid_value",
      );
    if (input.steering?.auto) throw new InvalidRequestError("n: steering.auto answers with one choice: n must be 1", "n", "invalid_value");
    if (input.steering?.diagnostics)
      throw new InvalidRequestError("n: steering.diagnostics reports one choice: n must be 1", "n", "invalid_value");
  }

  /** The endpoint's input -> the engine's request, validated and tokenized; AutoPASTA's plan with `steering.auto`. */
  private translate(input: CompletionInput): Promise<{ request: GenerateRequest; prepared: PreparedPrompt; plan?: AutoPastaPlan }> {
    return apiFields(input.output?.param, () => this.engineRequest(input));
  }

  private async engineRequest(
    input: CompletionInput,
  ): Promise<{ request: GenerateRequest; prepared: PreparedPrompt; plan?: AutoPastaPlan }> {
    const { prompt, steering } = input;
    const request: GenerateRequest = {
      prompt: prompt.prompt,
      specialTokens: prompt.specialTokens,
      maxTokens: input.maxTokens,
      ...input.sampling,
      ...(input.logprobs !== undefined ? { logprobs: input.logprobs } : {}),
      ...(input.output ? { grammar: this.engine.compileGrammar(input.output.constraint) } : {}),
    };
    const options = steering && this.steeringOptions(steering);
    if (steering?.auto) {
      if (!input.autoSelection) throw autoUnavailable();
      const { selectionPrompt, context } = input.autoSelection;
      if (context.end <= context.start)
        throw new InvalidRequestError("steering.auto: the context to pick sentences from is empty", "steering.auto", "invalid_steering");
      const plan: AutoPastaPlan = { selectionPrompt, context, steering: options! };
      return { request, plan, prepared: await prepareAnswer(this.engine, plan, request) };
    }
    const nothingMarked = steering?.markupOnly && prompt.emphasis.length === 0 && steering.mode !== "generation" && !steering.diagnostics;
    if (options && !nothingMarked) request.steering = { ...options, emphasis: prompt.emphasis } satisfies SteeringRequest;
    return { request, prepared: await this.engine.prepare(request, input.maxTokens) };
  }

  /** The request's steering with the profile's heads, and its alpha when the request gives none. */
  private steeringOptions(steering: SteeringInput): Omit<SteeringRequest, "emphasis"> {
    const fromProfile = steering.heads === undefined || steering.heads === DEFAULT_PROFILE_NAME;
    // the profile's heads were chosen with its alpha: a request that steers them and gives no alpha gets it
    const alpha = steering.alpha ?? (fromProfile ? (this.options.profile?.alpha ?? undefined) : undefined);
    return {
      heads: this.heads(steering.heads),
      alpha,
      mode: steering.mode,
      ...(steering.targetShare !== undefined ? { targetShare: steering.targetShare } : {}),
      ...(steering.diagnostics ? { diagnostics: steering.diagnostics } : {}),
    };
  }

  private heads(requested: SteeringInput["heads"]): HeadSelection {
    if (requested !== undefined && typeof requested !== "string") return requested;
    if (requested !== undefined && requested !== DEFAULT_PROFILE_NAME) {
      throw new InvalidRequestError(
        `steering.heads: unknown head profile ${JSON.stringify(requested)}; this server has "${DEFAULT_PROFILE_NAME}"`,
        "steering.heads",
        "invalid_steering",
      );
    }
    if (!this.options.profile) {
      throw new InvalidRequestError(
        'steering.heads: this server has no head profile: pass the heads to steer, e.g. {"2": [0, 3]}, or restart it with --profile auto (profiles the model at start) or --profile <file> (made by "pasta-server profile")',
        "steering.heads",
        "invalid_steering",
      );
    }
    return this.options.profile.heads;
  }

  private logStart(input: CompletionInput, context: RequestContext, prepared: PreparedPrompt) {
    const steered = input.steering !== undefined;
    if (steered) this.options.metrics.observeSteeredRequest(input.endpoint);
    context.log.info(
      {
        endpoint: input.endpoint,
        promptTokens: prepared.tokens.length,
        steered,
        ...(this.options.logPrompts ? { prompt: input.prompt.prompt } : {}),
      },
      "generation requested",
    );
  }

  private logDone(
    input: CompletionInput,
    context: RequestContext,
    { choices, stopped }: Generation,
    startedAt: number,
    firstTokenAt: number | undefined,
  ) {
    const first = choices[0]!;
    const completionTokens = choices.reduce((n, c) => n + c.tokens.length, 0);
    const generationMs = Math.max(...choices.map((c) => c.timings.generationMs));
    this.options.metrics.observeGeneration({
      endpoint: input.endpoint,
      steered: first.steering !== undefined,
      promptTokens: first.promptTokens,
      completionTokens,
      timeToFirstToken: firstTokenAt === undefined ? undefined : (firstTokenAt - startedAt) / 1000,
      generationSeconds: generationMs / 1000,
    });
    context.log.info(
      {
        endpoint: input.endpoint,
        promptTokens: first.promptTokens,
        cachedPromptTokens: first.promptTokens - first.evaluatedPromptTokens,
        completionTokens,
        ...(choices.length > 1 ? { choices: choices.length } : {}),
        finishReason: first.finishReason,
        stopped,
        promptMs: Math.round(first.timings.promptMs),
        generationMs: Math.round(generationMs),
      },
      "generation finished",
    );
  }
}

/** The request once per choice: choice i samples with seed + i (a random base seed when none is given). */
function choiceRequests(request: GenerateRequest, choices: number): GenerateRequest[] {
  if (choices === 1) return [request];
  const base = request.seed ?? Math.floor(Math.random() * 2 ** 31);
  return Array.from({ length: choices }, (_, i) => ({ ...request, seed: base + i }));
}

function responseSteering(
  spans: SteeredSpan[] | undefined,
  auto: AutoPastaReport | undefined,
  diagnostics?: AttentionDiagnostics,
): ResponseSteering | undefined {
  if (!spans && !auto) return undefined;
  return { spans: spans ?? [], ...(auto ? { auto } : {}), ...(diagnostics ? { diagnostics } : {}) };
}
