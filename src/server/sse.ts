// Server-sent events as OpenAI streams them: `data: <json>` per chunk, `data: [DONE]` last. An
// error after the stream has begun cannot change the status code any more: it goes out as an
// `error` event carrying OpenAI's error body (the openai client raises it as an APIError).
import type { FastifyReply } from "fastify";
import type { OpenAIErrorBody } from "./errors.js";

export class EventStream {
  private ended = false;

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
    if (this.open) this.reply.raw.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  error(body: OpenAIErrorBody): void {
    if (this.open) this.reply.raw.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
    this.end();
  }

  /** `data: [DONE]` and the end of the response */
  done(): void {
    if (this.open) this.reply.raw.write("data: [DONE]\n\n");
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.reply.raw.end();
  }
}
