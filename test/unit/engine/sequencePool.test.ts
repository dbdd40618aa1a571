// SequencePool over stand-in sequences (no model): which free sequence a prompt gets (the longest
// reusable cached prefix, ties to the least cached), what steering lets a later prompt reuse, and
// what a finished, failed or aborted job leaves recorded in the cache.
import type { Token } from "node-llama-cpp";
import t from "tap";
import type { LoopJob, LoopResult, SteerableSequence } from "../../../src/engine/binding.js";
import { PooledSequence, SequencePool } from "../../../src/engine/sequencePool.js";
import type { SteeringSpec } from "../../../src/engine/steering.js";

const tokens = (...ids: number[]) => ids as unknown as Token[];

/** A sequence whose jobs end as `result` says; it records steering calls and cancellations. */
class FakeSequence {
  steering: "none" | "set" = "none";
  cancelled = 0;
  result: LoopResult = { finish: "length" as never, kvTokens: 0, reused: 0 };
  private finish: (() => void) | null = null;
  setSteering() {
    this.steering = "set";
  }
  clearSteering() {
    this.steering = "none";
  }
  run(_job: LoopJob) {
    const done = new Promise<LoopResult>((resolve) => {
      this.finish = () => resolve(this.result);
    });
    return { done, cancel: () => this.cancelled++ };
  }
  end() {
    this.finish?.();
  }
}

function pool(n: number, options: { shiftInvariant?: boolean; prefixReuse?: boolean } = {}) {
  const fakes = Array.from({ length: n }, () => new FakeSequence());
  const pooled = fakes.map(
    (f) => new PooledSequence(f as unknown as SteerableSequence, [4, 4], options.shiftInvariant ?? true, options.prefixReuse ?? true),
  );
  return { fakes, pooled, pool: new SequencePool(pooled) };
}

/** Runs a job as the engine does (steering set first) that leaves `kv` of `evaluated` in the sequence's cache. */
async function fill(sequence: PooledSequence, fake: FakeSequence, evaluated: Token[], kv = evaluated.length, spec?: SteeringSpec) {
  sequence.steer(spec, evaluated.length);
  fake.result = { finish: "length" as never, kvTokens: kv, reused: 0 };
  const running = sequence.run({} as LoopJob, () => evaluated, undefined);
  fake.end();
  await running;
}

const steering = (emphasisStart: number): SteeringSpec => ({
  emphasized: [{ start: emphasisStart, end: emphasisStart + 1 }],
  heads: new Map([[0, [1]]]),
  alpha: 0.01,
  mode: "exclude",
});

t.test("a prompt gets the free sequence with the longest reusable prefix; ties go to the least cached", async (t) => {
  const { fakes, pooled, pool: p } = pool(3);
  await fill(pooled[0]!, fakes[0]!, tokens(1, 2, 3, 4, 5, 6));
  await fill(pooled[1]!, fakes[1]!, tokens(1, 2, 9));
  t.equal(p.take(tokens(1, 2, 3, 4, 7), undefined), pooled[0], "4 shared tokens beat 2");
  t.equal(p.take(tokens(1, 2, 3), undefined), pooled[1], "the best of the free ones: 2 shared beat none");
  t.equal(p.take(tokens(1, 2, 3), undefined), pooled[2], "the last free one");
  t.throws(() => p.take(tokens(1), undefined), /no free sequence/);
  p.release(pooled[0]!);
  p.release(pooled[1]!);
  p.release(pooled[2]!);
  t.equal(p.take(tokens(8, 8), undefined), pooled[2], "nothing shared anywhere: the empty cache, keeping the warm ones");
  t.equal(p.takeColdest(), pooled[1], "the coldest of the rest (3 cached, against 6)");
});

t.test("steering: positions from the first emphasized token on were computed steered and are not reused", async (t) => {
  const { fakes, pooled } = pool(1);
  const [sequence, fake] = [pooled[0]!, fakes[0]!];
  const prompt = tokens(1, 2, 3, 4, 5, 6);
  await fill(sequence, fake, prompt, 6, steering(3));
  t.equal(fake.steering, "set");
  t.equal(sequence.reusablePrefix(prompt, undefined), 3, "an unsteered prompt reuses what was written before the first biased position");
  t.equal(sequence.reusablePrefix(prompt, steering(1)), 1, "a request's own steering limits it too");
  await fill(sequence, fake, prompt);
  t.equal(fake.steering, "none");
  t.equal(sequence.reusablePrefix(prompt, undefined), 6);
  const { fakes: f2, pooled: p2 } = pool(1, { shiftInvariant: false });
  await fill(p2[0]!, f2[0]!, prompt, 6, steering(3));
  t.equal(p2[0]!.reusablePrefix(prompt, undefined), 0, "without shift invariance, nothing steered is reused");
  const { fakes: f3, pooled: p3 } = pool(1, { prefixReuse: false });
  await fill(p3[0]!, f3[0]!, prompt);
  t.equal(p3[0]!.reusablePrefix(prompt, undefined), 0, "prefix reuse off");
});

t.test("a job's end records the cache: its KV length, nothing after a failed decode, and a failure is thrown after", async (t) => {
  const { fakes, pooled } = pool(1);
  const [sequence, fake] = [pooled[0]!, fakes[0]!];
  await fill(sequence, fake, tokens(1, 2, 3, 4), 3);
  t.equal(sequence.cachedLength, 3, "the first kvTokens of what was evaluated");
  sequence.steer(undefined, 2);
  fake.result = { finish: "error" as never, kvTokens: -1, reused: 0, error: new Error("decode failed") };
  const running = sequence.run({} as LoopJob, () => tokens(1, 2), undefined);
  fake.end();
  await t.rejects(running, /decode failed/);
  t.equal(sequence.cachedLength, 0, "unknown after a failed decode: nothing is reused");
});

t.test("an abort cancels the job, before or while it runs, and the release clears the steering", async (t) => {
  const { fakes, pooled, pool: p } = pool(1);
  const [sequence, fake] = [pooled[0]!, fakes[0]!];
  const controller = new AbortController();
  const running = sequence.run({} as LoopJob, () => tokens(1), controller.signal);
  controller.abort();
  t.equal(fake.cancelled, 1, "while it runs");
  fake.end();
  await running;
  const aborted = AbortSignal.abort();
  const again = sequence.run({} as LoopJob, () => tokens(1), aborted);
  t.equal(fake.cancelled, 2, "already aborted");
  fake.end();
  await again;
  const taken = p.take(tokens(1), undefined);
  taken.steer(steering(0), 1);
  p.release(taken);
  t.equal(fake.steering, "none");
  t.equal(p.take(tokens(1), undefined), sequence, "free again");
});
