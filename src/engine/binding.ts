// The one file that reaches into node-llama-cpp internals (`_ctx`, `_sequenceId`, `_decodeTokens`,
// `_bindings`) and calls the methods our native patch adds to its addon. Everything else in the
// project goes through the small surface exported here.
import { getLlama, LlamaLogLevel, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaModel, type Token } from "node-llama-cpp";
import { EngineNotBuiltError } from "./errors.js";

/** Methods native/addon/AddonSteering.cpp adds to node-llama-cpp's AddonContext. */
interface SteeringAddonContext {
  steeringInfo(): { unsupportedReason: string | null; headsPerLayer: number[] };
  steeringSet(sequenceId: number, bias: number, ranges: Int32Array, headMask: Uint8Array): number;
  steeringClear(sequenceId: number): void;
  logprobsAt(batchLogitIndex: number, topK: number, token: number): { top: Float64Array; tokenLogprob: number | null };
  sampleToken(batchLogitIndex: number, sampler: AddonSampler): Promise<Token | -1>;
}

interface AddonSampler {
  applyConfig(config: Record<string, unknown>): void;
  dispose(): void;
}

type LogitMapper<T> = (batchLogitIndex: number, tokenIndex: number) => T | Promise<T>;

interface SequenceInternals {
  _sequenceId: number;
  _decodeTokens<T>(
    tokens: Token[], logits: (true | undefined)[], evaluationPriority: number, tokenMeter: unknown,
    contextShiftOptions: unknown, logitDataMapper: LogitMapper<T>,
  ): Promise<T[]>;
  _tokenMeter: unknown;
}

const REBUILD_HINT = 'Run "npm run build" (add "-- --cuda" for a CUDA build) to build the patched llama.cpp engine.';

/** Loads llama.cpp from our local patched build only: never a prebuilt (unpatched) binary. */
export async function loadPatchedLlama(options: { gpu: false | "cuda"; logLevel?: LlamaLogLevel }): Promise<Llama> {
  let llama: Llama;
  try {
    llama = await getLlama({
      gpu: options.gpu,
      build: "never",
      usePrebuiltBinaries: false,
      progressLogs: false,
      logLevel: options.logLevel ?? LlamaLogLevel.error,
    });
  } catch (err) {
    throw new EngineNotBuiltError(`The patched llama.cpp engine (${options.gpu || "cpu"}) is not built: ${(err as Error).message}. ${REBUILD_HINT}`);
  }
  if (llama.buildType !== "localBuild") {
    throw new EngineNotBuiltError(`node-llama-cpp loaded a ${llama.buildType} binary, not our patched local build. ${REBUILD_HINT}`);
  }
  return llama;
}

function addonOf(context: LlamaContext): SteeringAddonContext {
  const ctx = (context as unknown as { _ctx: Partial<SteeringAddonContext> })._ctx;
  if (typeof ctx?.steeringSet !== "function" || typeof ctx.logprobsAt !== "function") {
    throw new EngineNotBuiltError(`The loaded llama.cpp binary has no attention-steering support (unpatched build). ${REBUILD_HINT}`);
  }
  return ctx as SteeringAddonContext;
}

/** Steering facts about a loaded context. */
export function steeringInfo(context: LlamaContext) {
  return addonOf(context).steeringInfo();
}

/** A native sampler (node-llama-cpp's llama_sampler chain): greedy at temperature 0. */
export class NativeSampler {
  private readonly sampler: AddonSampler;
  constructor(model: LlamaModel, config: { temperature: number; topK: number; topP: number; seed: number }) {
    const bindings = (model as unknown as { _llama: { _bindings: { AddonSampler: new (m: unknown) => AddonSampler } } })._llama._bindings;
    this.sampler = new bindings.AddonSampler((model as unknown as { _model: unknown })._model);
    this.sampler.applyConfig({ temperature: config.temperature, topK: config.topK, topP: config.topP, minP: 0, seed: config.seed });
  }
  /** @internal */ get native() { return this.sampler; }
  dispose() { this.sampler.dispose(); }
}

/** Native steering payload for one sequence (see llama_steering_set). */
export interface NativeSteering {
  bias: number;
  ranges: Int32Array;
  headMask: Uint8Array;
}

/** One context sequence with steering, decoding with per-output callbacks, and native log-probs. */
export class SteerableSequence {
  private readonly addon: SteeringAddonContext;
  constructor(readonly context: LlamaContext, readonly sequence: LlamaContextSequence) {
    this.addon = addonOf(context);
  }

  private get internals(): SequenceInternals {
    return this.sequence as unknown as SequenceInternals;
  }

  get id(): number {
    return this.internals._sequenceId;
  }

  /** Applies from the next decode on; llama.cpp snapshots it on its decoding thread. */
  setSteering(steering: NativeSteering): void {
    const rc = this.addon.steeringSet(this.id, steering.bias, steering.ranges, steering.headMask);
    if (rc !== 0) throw new Error(`llama_steering_set failed (${rc}) for sequence ${this.id}`);
  }

  clearSteering(): void {
    this.addon.steeringClear(this.id);
  }

  /**
   * Evaluates tokens on this sequence; for each index where `wantOutput` is true, `onOutput` runs
   * right after the decode, while that output's logits are valid.
   */
  async decode<T>(tokens: Token[], wantOutput: (index: number) => boolean, onOutput: LogitMapper<T>): Promise<T[]> {
    const logits = tokens.map((_, i) => (wantOutput(i) ? true : undefined));
    const noShift = { size: 1, strategy: () => { throw new Error("context is full"); } };
    return this.internals._decodeTokens(tokens, logits, 5, this.internals._tokenMeter, noShift, onOutput);
  }

  logprobsAt(batchLogitIndex: number, topK: number, token = -1) {
    return this.addon.logprobsAt(batchLogitIndex, topK, token);
  }

  sample(batchLogitIndex: number, sampler: NativeSampler): Promise<Token | -1> {
    return this.addon.sampleToken(batchLogitIndex, sampler.native);
  }
}
