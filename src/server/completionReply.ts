// The HTTP side of every generation endpoint: the service's events -> one JSON body, or an SSE
// stream that opens once the request is admitted. Endpoints only say how their bodies and chunks
// look (a CompletionFormat); errors before the stream opens get a status code, later ones an
// `error` event.
import type { FastifyReply, FastifyRequest } from "fastify";
import type { GeneratedTokenLogprobs } from "../engine/engine.js";
import { errorBody, INTERNAL_ERROR, toRequestError } from "./errors.js";
import type { CompletionInput, Generation, CompletionService, RequestContext, ResponseSteering } from "./completionService.js";
import { EventStream } from "./sse.js";

export interface CompletionFormat {
  /** the whole answer, non-streaming */
  body(generation: Generation): unknown;
  /** streaming: the first chunks (one per choice), once the prompt is admitted (steering spans are known then) */
  first(steering: ResponseSteering | undefined, choices: number): unknown[];
  /** streaming: a piece of a choice's text (null: nothing to send yet, as when a tool call is being held) */
  piece(text: string, logprobs: GeneratedTokenLogprobs[], choice: number): unknown | null;
  /** streaming: the last chunks (finish reason, usage) */
  last(generation: Generation): unknown[];
}

/** The request's context for the service: its logger, and a signal that aborts when the client closes the connection early. */
export function requestContext(request: FastifyRequest, reply: FastifyReply): RequestContext {
  const controller = new AbortController();
  reply.raw.once("close", () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return { signal: controller.signal, log: request.log };
}

export async function handleCompletion(
  service: CompletionService,
  input: CompletionInput,
  stream: boolean,
  format: CompletionFormat,
  request: FastifyRequest,
  reply: FastifyReply,
  context: RequestContext = requestContext(request, reply),
): Promise<unknown> {
  const events = await service.stream(input, context);
  if (!stream) {
    for await (const event of events) if (event.type === "done") return format.body(event.generation);
    throw new Error("the generation ended without a result");
  }

  let sse: EventStream | null = null;
  try {
    for await (const event of events) {
      if (event.type === "admitted") {
        sse = new EventStream(reply);
        for (const chunk of format.first(event.steering, input.choices ?? 1)) sse.send(chunk);
      } else if (!sse) {
        throw new Error(`a ${event.type} event came before admission`);
      } else if (event.type === "text") {
        const chunk = format.piece(event.text, event.logprobs, event.choice);
        if (chunk !== null) sse.send(chunk);
      } else {
        if (event.generation.stopped !== "client_disconnected") for (const chunk of format.last(event.generation)) sse.send(chunk);
        sse.done();
      }
    }
  } catch (err) {
    // before the stream opened, the error handler answers with a status code
    if (sse === null) throw err;
    const mapped = toRequestError(err);
    if (!mapped) request.log.error({ err }, "generation failed mid-stream");
    (sse as EventStream).error(errorBody(mapped ?? INTERNAL_ERROR));
  }
  return reply;
}
