// One generation answered either as a single JSON body or as an SSE stream. Endpoints only say how
// their chunks and bodies look; opening the stream, errors after it has begun, and its end are here.
import type { FastifyReply, FastifyRequest } from "fastify";
import type { GeneratedTokenLogprobs, GenerateRequest } from "../engine/engine.js";
import { errorBody, INTERNAL_ERROR, toHttpError } from "./errors.js";
import type { Generation, GenerationService, ResponseSteering } from "./generation.js";
import type { AutoPastaPlan } from "../autopasta/autopasta.js";
import { EventStream } from "./sse.js";

export interface ResponseFormat {
  /** the whole answer, non-streaming */
  body(generation: Generation): unknown;
  /** streaming: the first chunk, once the prompt is admitted (steering spans are known then) */
  first(steering: ResponseSteering | undefined): unknown;
  /** streaming: a piece of text */
  piece(text: string, logprobs: GeneratedTokenLogprobs[]): unknown;
  /** streaming: the last chunks (finish reason, usage) */
  last(generation: Generation): unknown[];
}

export async function respond(
  service: GenerationService, endpoint: string, request: FastifyRequest, reply: FastifyReply,
  input: GenerateRequest, auto: AutoPastaPlan | undefined, stream: boolean, format: ResponseFormat,
): Promise<unknown> {
  if (!stream) return format.body(await service.generate(endpoint, request, reply, input, auto));

  let events: EventStream | null = null;
  try {
    const generation = await service.generate(endpoint, request, reply, {
      ...input,
      onPrompt: (prompt) => {
        events = new EventStream(reply);
        events.send(format.first(prompt.steering));
      },
      onText: (text, logprobs) => events?.send(format.piece(text, logprobs)),
    }, auto);
    if (events === null) throw new Error("the stream never opened");
    const open: EventStream = events;
    if (generation.stopped !== "client_disconnected") for (const chunk of format.last(generation)) open.send(chunk);
    open.done();
  } catch (err) {
    // before the stream opened, the error handler answers with a status code
    if (events === null) throw err;
    const mapped = toHttpError(err);
    if (!mapped) request.log.error({ err }, "generation failed mid-stream");
    (events as EventStream).error(errorBody(mapped ?? INTERNAL_ERROR));
  }
  return reply;
}
