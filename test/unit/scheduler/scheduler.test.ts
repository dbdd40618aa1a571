// The scheduler's admission rules with plain jobs: concurrency, the bounded queue, cancellation in
// the queue, time limits, and draining.
import t from "tap";
import { sleep } from "../../../harness/index.js";
import { JobStopped, QueueFullError, QueueTimeoutError, Scheduler, ShuttingDownError } from "../../../src/scheduler/scheduler.js";

/** a job that runs until released or stopped */
function controllable() {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const job = async (signal: AbortSignal) => {
    await Promise.race([released, new Promise((r) => signal.addEventListener("abort", r, { once: true }))]);
    return signal.aborted ? (signal.reason as JobStopped).reason : "done";
  };
  return { job, release };
}

t.test("at most `parallel` run; the queue is bounded; freed slots pass in order", async (t) => {
  const s = new Scheduler({ parallel: 1, maxQueue: 1, retryAfterSeconds: 3 });
  const a = controllable();
  const b = controllable();
  const ra = s.run(a.job);
  const rb = s.run(b.job);
  await sleep(5);
  t.equal(s.active, 1);
  t.equal(s.queued, 1);
  const full = await s.run(async () => "x").catch((e: unknown) => e);
  t.type(full, QueueFullError);
  t.equal((full as QueueFullError).retryAfter, 3);
  a.release();
  t.equal(await ra, "done");
  await sleep(5);
  t.equal(s.active, 1, "b took a's slot");
  t.equal(s.queued, 0);
  b.release();
  t.equal(await rb, "done");
  t.equal(s.active, 0);
});

t.test("a client that leaves the queue is removed; one that leaves while running stops its job", async (t) => {
  const s = new Scheduler({ parallel: 1, maxQueue: 4 });
  const a = controllable();
  const running = new AbortController();
  const ra = s.run(a.job, { signal: running.signal });
  const waiting = new AbortController();
  const rb = s.run(async () => "never", { signal: waiting.signal }).catch((e: unknown) => e);
  await sleep(5);
  waiting.abort();
  t.type(await rb, JobStopped);
  t.equal(s.queued, 0);
  running.abort();
  t.equal(await ra, "client_disconnected");
  t.equal(s.active, 0);
});

t.test("time limits: while queued -> QueueTimeoutError, while running -> the job is stopped", async (t) => {
  const s = new Scheduler({ parallel: 1, maxQueue: 4 });
  const a = controllable();
  const ra = s.run(a.job, { timeoutMs: 50 });
  const rb = s.run(async () => "never", { timeoutMs: 20 }).catch((e: unknown) => e);
  t.type(await rb, QueueTimeoutError);
  t.equal(await ra, "time_limit");
});

t.test("drain: new work refused, running work finishes, stragglers stopped at the deadline", async (t) => {
  const s = new Scheduler({ parallel: 2, maxQueue: 4 });
  const quick = controllable();
  const slow = controllable();
  const rq = s.run(quick.job);
  const rs = s.run(slow.job);
  const drained = s.drain(60);
  t.type(await s.run(async () => 1).catch((e: unknown) => e), ShuttingDownError);
  quick.release();
  t.equal(await rq, "done", "finished before the deadline");
  t.equal(await rs, "shutdown", "stopped at the deadline");
  await drained;
  t.equal(s.active, 0);
});

t.test("a job of several slots waits until that many are free, in arrival order; later one-slot jobs wait behind it", async (t) => {
  const s = new Scheduler({ parallel: 3, maxQueue: 8 });
  const a = controllable();
  const wide = controllable();
  const late = controllable();
  const ra = s.run(a.job);
  await sleep(5);
  const order: string[] = [];
  const rWide = s.run(
    async (signal) => {
      order.push("wide");
      return wide.job(signal);
    },
    { slots: 3 },
  );
  const rLate = s.run(async (signal) => {
    order.push("late");
    return late.job(signal);
  });
  await sleep(5);
  t.equal(s.active, 1, "two slots are free, but the 3-slot job is first in line");
  t.equal(s.queued, 2);
  a.release();
  await ra;
  await sleep(5);
  t.same(order, ["wide"]);
  t.equal(s.active, 3);
  wide.release();
  await rWide;
  await sleep(5);
  t.same(order, ["wide", "late"]);
  late.release();
  await rLate;
  t.equal(s.active, 0);
  await t.rejects(
    s.run(async () => 1, { slots: 4 }),
    /1 to 3 sequences, not 4/,
  );
});

t.test("when the head of the queue leaves, the jobs behind it that fit start", async (t) => {
  const s = new Scheduler({ parallel: 2, maxQueue: 8 });
  const a = controllable();
  const ra = s.run(a.job);
  await sleep(5);
  const leaving = new AbortController();
  const rWide = s.run(async () => "never", { slots: 2, signal: leaving.signal }).catch((e: unknown) => e);
  const rSmall = s.run(async () => "small");
  await sleep(5);
  t.equal(s.queued, 2);
  leaving.abort();
  t.type(await rWide, JobStopped);
  t.equal(await rSmall, "small");
  a.release();
  await ra;
});
