// A push-to-pull bridge: a producer that is called back (the native generation loop) pushes events,
// a consumer pulls them with `for await`. Unbounded: the producer is the engine, which never
// outruns a consumer by more than one request's tokens.
export class EventChannel<T> implements AsyncIterable<T> {
  private buffer: T[] = [];
  private ended = false;
  private failure: { error: unknown } | null = null;
  private wake: (() => void) | null = null;

  push(item: T): void {
    this.buffer.push(item);
    this.notify();
  }

  /** No more events: the consumer's loop ends after the buffered ones. */
  close(): void {
    this.ended = true;
    this.notify();
  }

  /** The consumer's loop throws `error` after the buffered events. */
  fail(error: unknown): void {
    this.failure = { error };
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.buffer.length > 0) {
        const items = this.buffer;
        this.buffer = [];
        yield* items;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
