// Server-sent events as OpenAI streams them: `data: <json>` per chunk, `data: [DONE]` last. An
// error after the stream has begun cannot change the status code any more: it goes out as an
// `error` event carrying OpenAI's error body (the openai client raises it as an APIError).
import type { FastifyReply } from "fastify";
import type { OpenAIErrorBody } from "./errors.js";

export class EventStream {
  private ended = false;
  private slowReader: NodeJS.Timeout | undefined;

  constructor(private readonly reply: FastifyReply) {
    reply.hijack();
    // headers set earlier by hooks (x-request-id, CORS) are not sent by a hijacked reply on its own
    reply.raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string | string[]>),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no", // nginx: pass each event through at once
    });
  }

  /** false once the client has gone */
  get open(): boolean {
    return !this.ended && !this.reply.raw.destroyed;
  }

  send(data: unknown): void {
    this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  error(body: OpenAIErrorBody): void {
    this.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
    this.end();
  }

  /** `data: [DONE]` and the end of the response */
  done(): void {
    this.write("data: [DONE]\n\n");
    this.end();
  }

  /**
   * Backpressure: when the client does not take what it was sent (the socket's buffer is full), it
   * gets the read timeout to catch up; then it is disconnected, which stops its generation, so that a
   * reader that never reads holds neither a sequence nor a growing buffer.
   */
  private write(chunk: string): void {
    if (!this.open) return;
    if (this.reply.raw.write(chunk) || this.slowReader) return;
    // watched on the socket: the response's own 'finish' and 'close' come once its end is queued on
    // the socket, not when the client took it, and the response lets go of the socket then
    const socket = this.reply.raw.socket;
    if (!socket) return;
    const caughtUp = () => {
      clearTimeout(this.slowReader);
      this.slowReader = undefined;
      for (const event of ["drain", "close"]) socket.off(event, caughtUp);
    };
    this.slowReader = setTimeout(() => {
      if (socket.writableLength > 0) socket.destroy();
      caughtUp();
    }, this.reply.slowReaderTimeoutMs).unref();
    for (const event of ["drain", "close"]) socket.once(event, caughtUp);
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    // the end is written like any chunk: a reader that does not take it within the read timeout is dropped
    this.reply.raw.end();
  }
}
