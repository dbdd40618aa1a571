// The context's sequences and what each one's KV cache holds, for prefix reuse. There is no wait
// queue here: the engine admits at most one job per sequence through its Scheduler, so a free
// sequence always exists for an admitted job.
import type { Token } from "node-llama-cpp";
import type { LoopJob, LoopResult, SteerableSequence } from "./binding.js";
import { steeringFreePrefix, toNativeSteering, type SteeringSpec } from "./steering.js";

export class PooledSequence {
  busy = false;
  /** leading KV positions that were computed exactly as without steering */
  private cleanPrefix = 0;
  /** the tokens whose KV entries the sequence holds, from position 0 */
  private cachedTokens: readonly Token[] = [];

  constructor(
    private readonly seq: SteerableSequence,
    readonly headsPerLayer: readonly number[],
    /** see steeringFreePrefix */
    private readonly shiftInvariant: boolean,
    /** false: nothing cached is reused (EngineOptions.prefixReuse) */
    private readonly prefixReuse: boolean,
  ) {}

  /** the context's sequence id */
  get id(): number {
    return this.seq.id;
  }

  get cachedLength(): number {
    return this.cachedTokens.length;
  }

  /** Leading prompt tokens whose KV entries can serve a request with this steering as they are. */
  reusablePrefix(promptTokens: readonly Token[], spec: SteeringSpec | undefined): number {
    if (!this.prefixReuse) return 0;
    let same = 0;
    const cached = this.cachedTokens;
    while (same < cached.length && same < promptTokens.length && cached[same] === promptTokens[same]) same++;
    return Math.min(same, this.cleanPrefix, steeringFreePrefix(spec, promptTokens.length, this.shiftInvariant));
  }

  /**
   * Steers the next job on this sequence (or clears steering) and records how much of what it
   * writes into the KV cache is steering-free: the positions before the first biased one.
   */
  steer(spec: SteeringSpec | undefined, promptLength: number, diagnostics = false): void {
    if (spec) this.seq.setSteering(toNativeSteering(spec, promptLength, this.headsPerLayer, diagnostics));
    else this.seq.clearSteering();
    this.cleanPrefix = steeringFreePrefix(spec, promptLength, this.shiftInvariant);
  }

  /**
   * Runs one job of the native generation loop, cancelling it on abort, and records what the KV
   * cache holds afterwards: the first `kvTokens` of `evaluated()`.
   */
  async run(job: LoopJob, evaluated: () => readonly Token[], signal: AbortSignal | undefined): Promise<LoopResult> {
    const running = this.seq.run(job);
    const cancel = () => running.cancel();
    signal?.addEventListener("abort", cancel);
    if (signal?.aborted) cancel();
    const result = await running.done; // never rejects
    signal?.removeEventListener("abort", cancel);
    this.cachedTokens = result.kvTokens < 0 ? [] : evaluated().slice(0, result.kvTokens);
    if (result.error) throw result.error;
    return result;
  }

  /** Back to unsteered, for the next job. */
  clearSteering(): void {
    this.seq.clearSteering();
  }
}

export class SequencePool {
  constructor(private readonly sequences: readonly PooledSequence[]) {}

  /**
   * A free sequence, preferring the one whose cache shares the longest reusable prefix with the
   * prompt; among equals, the one with the least cached (a warm cache another prompt may reuse is kept).
   */
  take(promptTokens: readonly Token[], spec: SteeringSpec | undefined): PooledSequence {
    const free = this.sequences.filter((s) => !s.busy);
    if (free.length === 0) throw new Error("no free sequence: jobs must be admitted through the engine's scheduler");
    const score = (s: PooledSequence) => s.reusablePrefix(promptTokens, spec);
    const best = free.reduce((a, b) => {
      const [sa, sb] = [score(a), score(b)];
      return sb > sa || (sb === sa && b.cachedLength < a.cachedLength) ? b : a;
    });
    best.busy = true;
    return best;
  }

  /** The free sequence whose cache holds the fewest tokens: for jobs that reuse nothing (scoring). */
  takeColdest(): PooledSequence {
    const free = this.sequences.filter((s) => !s.busy);
    if (free.length === 0) throw new Error("no free sequence: jobs must be admitted through the engine's scheduler");
    const coldest = free.reduce((a, b) => (b.cachedLength < a.cachedLength ? b : a));
    coldest.busy = true;
    return coldest;
  }

  release(sequence: PooledSequence): void {
    try {
      sequence.clearSteering();
    } finally {
      sequence.busy = false;
    }
  }
}
