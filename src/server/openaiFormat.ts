// The framing OpenAI's chat and completions APIs share: the head every body and chunk repeats (id,
// created, model, system_fingerprint), the choices by index, `usage` in the body or in a chunk of its own
// (stream_options.include_usage), and this server's `steering` field. The endpoints say only what
// a choice holds (routes/chat.ts, routes/completions.ts).
import type { GeneratedTokenLogprobs, GenerateResult } from "../engine/engine.js";
import type { CompletionFormat } from "./completionReply.js";
import type { ResponseSteering } from "./completionService.js";
import { responseId, SYSTEM_FINGERPRINT, unixSeconds, usageOf, withDiagnostics, withSteering } from "./routes/common.js";

/** OpenAI's names for one API's objects. */
export interface OpenAIKind {
  idPrefix: "chatcmpl" | "cmpl";
  /** the non-streamed body's `object` */
  object: "chat.completion" | "text_completion";
  /** a chunk's `object` */
  chunkObject: "chat.completion.chunk" | "text_completion";
}

export const CHAT_KIND: OpenAIKind = { idPrefix: "chatcmpl", object: "chat.completion", chunkObject: "chat.completion.chunk" };
export const COMPLETION_KIND: OpenAIKind = { idPrefix: "cmpl", object: "text_completion", chunkObject: "text_completion" };

/** What one choice holds, besides its index: the endpoint's own fields, in a body and in a chunk. */
export interface ChoiceFormat<BodyChoice extends object, ChunkChoice extends object> {
  /** the non-streamed body's choice */
  body(result: GenerateResult): BodyChoice;
  /** streaming: the first chunk's choice, before any text */
  first(): ChunkChoice;
  /** streaming: a piece of choice `index`'s text (null: nothing to send) */
  piece(text: string, logprobs: GeneratedTokenLogprobs[], index: number): ChunkChoice | null;
  /** streaming: the choice that carries the finish reason */
  last(result: GenerateResult, index: number): ChunkChoice;
}

interface Head {
  id: string;
  created: number;
  model: string;
  system_fingerprint: string;
}

export interface OpenAIBody<Choice> extends Head {
  object: OpenAIKind["object"];
  choices: Array<{ index: number } & Choice>;
  usage: ReturnType<typeof usageOf>;
  steering?: object;
}

export interface OpenAIChunk<Choice> extends Head {
  object: OpenAIKind["chunkObject"];
  /** empty in the usage chunk */
  choices: Array<{ index: number } & Choice>;
  usage?: ReturnType<typeof usageOf>;
  steering?: object;
}

export function openAIFormat<BodyChoice extends object, ChunkChoice extends object>(
  kind: OpenAIKind,
  modelId: string,
  includeUsage: boolean,
  choice: ChoiceFormat<BodyChoice, ChunkChoice>,
): CompletionFormat {
  const head: Head = { id: responseId(kind.idPrefix), created: unixSeconds(), model: modelId, system_fingerprint: SYSTEM_FINGERPRINT };
  const chunk = (c: ChunkChoice, index: number): OpenAIChunk<ChunkChoice> => ({
    ...head,
    object: kind.chunkObject,
    choices: [{ index, ...c }],
  });
  return {
    body: (g): OpenAIBody<BodyChoice> => ({
      ...head,
      object: kind.object,
      choices: g.choices.map((result, index) => ({ index, ...choice.body(result) })),
      usage: usageOf(g),
      ...withSteering(g.steering),
    }),
    // the steering spans (the same for every choice) ride on the first chunk
    first: (steering: ResponseSteering | undefined, choices: number): Array<OpenAIChunk<ChunkChoice>> =>
      Array.from({ length: choices }, (_, index) => ({ ...chunk(choice.first(), index), ...(index === 0 ? withSteering(steering) : {}) })),
    piece: (text, logprobs, index) => {
      const piece = choice.piece(text, logprobs, index);
      return piece && chunk(piece, index);
    },
    last: (g): Array<OpenAIChunk<ChunkChoice>> => [
      ...g.choices.map((result, index) => ({
        ...chunk(choice.last(result, index), index),
        ...(index === 0 ? withDiagnostics(g.steering) : {}),
      })),
      ...(includeUsage ? [{ ...head, object: kind.chunkObject, choices: [], usage: usageOf(g) }] : []),
    ],
  };
}
