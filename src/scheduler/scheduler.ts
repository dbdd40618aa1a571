// Admission control in front of the engine: at most `parallel` sequences are in use (a job holds
// one, or n for n choices; all decoded together by the native loop's continuous batching), at most `maxQueue` wait, each job has a
// deadline, and a job whose client went away stops at once, queued or running. It is the only wait
// queue: the engine expects a free sequence for every job it is given.
import { RequestError } from "../errors.js";

/** The wait queue is full; the client should retry later. */
export class QueueFullError extends RequestError {
  override name = "QueueFullError";
  constructor(retryAfter: number) {
    super(`the server is busy: every sequence is in use and the wait queue is full; retry in ${retryAfter} s`, {
      status: 429,
      type: "rate_limit_error",
      code: "queue_full",
      retryAfter,
    });
  }
}

/** The server is draining for shutdown and takes no new work. */
export class ShuttingDownError extends RequestError {
  override name = "ShuttingDownError";
  constructor() {
    super("the server is shutting down", { status: 503, type: "server_error", code: "shutting_down", retryAfter: 5 });
  }
}

/** The request's time limit passed while it was still waiting for a sequence. */
export class QueueTimeoutError extends RequestError {
  override name = "QueueTimeoutError";
  constructor(retryAfter: number) {
    super(`no sequence became free before the request's time limit; retry in ${retryAfter} s`, {
      status: 503,
      type: "server_error",
      code: "queue_timeout",
      retryAfter,
    });
  }
}

/** Why a running job was asked to stop (AbortSignal.reason). */
export type StopReason = "client_disconnected" | "time_limit" | "shutdown";

/** A running job's stop; a request that ends on it before answering gets 504 (time limit) or 503. */
export class JobStopped extends RequestError {
  override name = "JobStopped";
  constructor(readonly reason: StopReason) {
    super(
      reason === "time_limit" ? "the request's time limit passed" : `generation stopped: ${reason}`,
      reason === "time_limit"
        ? { status: 504, type: "timeout_error", code: "timeout" }
        : { status: 503, type: "server_error", code: reason },
    );
  }
}

export interface SchedulerOptions {
  parallel: number;
  maxQueue: number;
  /** seconds suggested in Retry-After when the queue is full */
  retryAfterSeconds?: number;
}

export interface JobOptions {
  /** aborted when the client goes away */
  signal?: AbortSignal;
  /** wall-clock limit for waiting plus running */
  timeoutMs?: number;
  /** sequences the job holds at once (default 1; at most `parallel`): a request for n choices takes n */
  slots?: number;
}

interface Waiter {
  slots: number;
  start: () => void;
}

export class Scheduler {
  private running = 0;
  private readonly queue: Waiter[] = [];
  private readonly controllers = new Set<AbortController>();
  private draining = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly options: SchedulerOptions) {}

  /** jobs that run at once */
  get parallel(): number {
    return this.options.parallel;
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.queue.length;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Runs `job` once a slot is free. The job's signal aborts with a JobStopped reason when the
   * client disconnects, the time limit passes or shutdown's deadline comes; the job decides what a
   * stop means for its output (a partial answer, an error event).
   */
  async run<T>(job: (signal: AbortSignal) => Promise<T>, options: JobOptions = {}): Promise<T> {
    if (this.draining) throw new ShuttingDownError();
    const slots = options.slots ?? 1;
    if (!(Number.isInteger(slots) && slots >= 1 && slots <= this.options.parallel))
      throw new Error(`a job may hold 1 to ${this.options.parallel} sequences, not ${slots}`);
    const retryAfter = this.options.retryAfterSeconds ?? 1;
    const controller = new AbortController();
    const stop = (reason: StopReason) => {
      if (!controller.signal.aborted) controller.abort(new JobStopped(reason));
    };
    const onClientAbort = () => stop("client_disconnected");
    options.signal?.addEventListener("abort", onClientAbort, { once: true });
    if (options.signal?.aborted) onClientAbort();
    const timer = options.timeoutMs ? setTimeout(() => stop("time_limit"), options.timeoutMs) : undefined;
    this.controllers.add(controller);
    try {
      // first come, first served: a job waits while any job queued before it waits, so one that
      // needs several sequences is not overtaken for ever by jobs that need one
      if (this.queue.length > 0 || this.running + slots > this.options.parallel) {
        if (this.queue.length >= this.options.maxQueue) throw new QueueFullError(retryAfter);
        await this.waitForSlots(slots, controller.signal, retryAfter);
      } else {
        this.running += slots;
      }
      try {
        return await job(controller.signal);
      } finally {
        this.release(slots);
      }
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onClientAbort);
      this.controllers.delete(controller);
      if (this.running === 0 && this.queue.length === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private waitForSlots(slots: number, signal: AbortSignal, retryAfter: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        slots,
        start: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        // the job at the head may have been what held the others back
        if (i === 0) this.admitWaiting();
        const reason = (signal.reason as JobStopped).reason;
        reject(
          reason === "time_limit" ? new QueueTimeoutError(retryAfter) : reason === "shutdown" ? new ShuttingDownError() : signal.reason,
        );
      };
      this.queue.push(waiter);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  private release(slots: number) {
    this.running -= slots;
    this.admitWaiting();
  }

  /** Starts queued jobs in order while the first one's sequences are free. */
  private admitWaiting() {
    while (this.queue.length > 0 && this.running + this.queue[0]!.slots <= this.options.parallel) {
      const next = this.queue.shift()!;
      this.running += next.slots;
      next.start();
    }
  }

  /**
   * Graceful shutdown: refuse new jobs, let running and queued ones finish until `deadlineMs`, then
   * stop them (they end their responses cleanly) and wait for them to return.
   */
  async drain(deadlineMs: number): Promise<void> {
    this.draining = true;
    const idle = () =>
      this.running === 0 && this.queue.length === 0 ? Promise.resolve() : new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), deadlineMs);
    });
    const outcome = await Promise.race([idle(), deadline]);
    clearTimeout(timer);
    if (outcome === "deadline") {
      for (const controller of this.controllers) controller.abort(new JobStopped("shutdown"));
      await idle();
    }
  }
}
