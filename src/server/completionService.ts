// The contract between the routes and the generation service: what an endpoint asks for (in the
// engine's terms: camelCase, no API field names), the events a generation yields, and the service
// the HTTP layer calls. The routes build a CompletionInput from a body; GenerationService
// (generationService.ts) serves it; tests give the routes a fake (test/support/fakeService.ts).
import type { AutoPastaPlan, AutoPastaReport } from "../autopasta/autopasta.js";
import type { CharSpan } from "../emphasis/markup.js";
import type {
  GenerateRequest,
  AttentionDiagnostics,
  DiagnosticsOptions,
  GeneratedTokenLogprobs,
  GenerateResult,
  SamplingOptions,
  ScoreResult,
  SteeredSpan,
} from "../engine/engine.js";
import type { OutputConstraint } from "../engine/grammar.js";
import type { HeadSelection, SteeringMode } from "../engine/steering.js";
import { InvalidRequestError } from "../errors.js";
import type { ChatTemplate } from "../prompt/chatTemplate.js";
import type { RenderedPrompt } from "../prompt/prompts.js";
import type { StopReason } from "../scheduler/scheduler.js";

/** Name under which `steering.heads` can ask for the server's head profile explicitly. */
export const DEFAULT_PROFILE_NAME = "default";

export type Endpoint = "generate" | "chat" | "completions";

/** A request's steering options; its emphasis is already resolved into the prompt's spans. */
export interface SteeringInput {
  /** the heads to steer; absent or a profile's name (DEFAULT_PROFILE_NAME): the server's profile */
  heads?: HeadSelection | string;
  /** absent: the profile's alpha when its heads are steered, else the engine's default */
  alpha?: number;
  mode?: SteeringMode;
  targetShare?: number;
  diagnostics?: DiagnosticsOptions;
  /** AutoPASTA: the model picks the sentences to emphasize (needs CompletionInput.autoSelection) */
  auto: boolean;
  /**
   * the emphasis is markup alone: a request it marks nothing in is served unsteered (an agent sends
   * the same steering with every step, before the tool result it marks exists)
   */
  markupOnly?: boolean;
}

/** `steering.auto` where the endpoint cannot say what the context is (a plain completion): a 400. */
export function autoUnavailable(): InvalidRequestError {
  return new InvalidRequestError("steering.auto is available on /v1/generate and /v1/chat/completions", "steering.auto");
}

/** The body field a structured-output constraint came from: errors name it. */
export type ConstraintParam = "response_format" | "json_schema" | "grammar" | "tool_choice";

/** How the answer is sampled: the engine's sampling options, stop strings, when it may end. */
export type CompletionSampling = SamplingOptions & Pick<GenerateRequest, "stop" | "minTokens" | "ignoreEos" | "specialTokensInAnswer">;

/** What an endpoint asks for: its prompt rendered with emphasis resolved, and the body's options. */
export interface CompletionInput {
  endpoint: Endpoint;
  prompt: RenderedPrompt;
  steering?: SteeringInput;
  /** for `steering.auto`: pass 1's prompt and where the context to pick sentences from lies */
  autoSelection?: { selectionPrompt: AutoPastaPlan["selectionPrompt"]; context: CharSpan };
  maxTokens: number;
  sampling: CompletionSampling;
  /** structured output, and the body field it came from (errors name it) */
  output?: { constraint: OutputConstraint; param: ConstraintParam };
  /** log-probs per generated token: the chosen token's plus this many alternatives */
  logprobs?: number;
  /** answers to sample (OpenAI's `n`; default 1): choice i uses seed + i */
  choices?: number;
}

export interface RequestContext {
  /** aborts when the client goes away */
  signal: AbortSignal;
  log: Logger;
}

export interface Logger {
  info(obj: object, msg?: string): void;
}

/** `steering` of a response: the emphasized spans, AutoPASTA's report when it chose them, and attention diagnostics when asked. */
export interface ResponseSteering {
  spans: SteeredSpan[];
  auto?: AutoPastaReport;
  diagnostics?: AttentionDiagnostics;
}

export interface Generation {
  /** one per choice, in order */
  choices: GenerateResult[];
  steering?: ResponseSteering;
  /** why generation ended early (time limit, shutdown, client gone), if it did */
  stopped?: StopReason;
}

export type CompletionEvent =
  /** the request holds a sequence and its steering is resolved: a stream opens here */
  | { type: "admitted"; steering?: ResponseSteering }
  /** text of a choice that is final, with the log-probs of its tokens */
  | { type: "text"; choice: number; text: string; logprobs: GeneratedTokenLogprobs[] }
  | { type: "done"; generation: Generation };

/** What a client needs to build steering requests (/v1/models). */
export interface ModelInfo {
  contextSize: number;
  headsPerLayer: readonly number[];
  steerable: boolean;
  vocabularySize: number;
  /** the heads (and alpha) a request that names none steers; null: requests must name them */
  profile: { heads: HeadSelection; alpha: number | null } | null;
}

/** What the HTTP layer needs of a generation service. */
export interface CompletionService {
  readonly modelId: string;
  readonly chatTemplate: ChatTemplate;
  readonly modelInfo: ModelInfo;
  checkModel(model: string | undefined | null): void;
  /** POST /tokenize: each token with its raw bytes and its character range in `text` */
  tokenize(
    text: string,
    options: { addSpecial: boolean; parseSpecial: boolean },
  ): Promise<Array<{ id: number; bytes: Uint8Array; start: number; end: number }>>;
  /** POST /detokenize: the text of valid token ids */
  detokenize(tokens: readonly number[]): string;
  /** rejects with every error the request can be refused for before it waits for a sequence */
  stream(input: CompletionInput, context: RequestContext): Promise<AsyncIterable<CompletionEvent>>;
  score(input: CompletionInput, topLogprobs: number, context: RequestContext): Promise<ScoreResult>;
}
