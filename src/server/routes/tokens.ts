// POST /tokenize, /detokenize (llama-server's shapes) and /apply-template: what a client needs to
// compute spans itself. /tokenize's pieces carry each token's character range in the content
// (from the token's own bytes, src/engine/tokenSpans.ts); /apply-template says where each message's
// content lies in the rendered prompt.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { ContextLengthError } from "../../engine/errors.js";
import { InvalidRequestError } from "../../errors.js";
import { chatPrompt } from "../../prompt/prompts.js";
import { applyTemplateSchema, detokenizeSchema, tokenizeSchema } from "../schemas.js";
import { contentText } from "./chat.js";
import { templateMessage } from "./chatTools.js";
import { checkPromptChars, type ServiceGetter } from "./common.js";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A piece as llama-server gives it: its text when it is valid UTF-8, else its bytes. */
function pieceJson(bytes: Uint8Array): string | number[] {
  try {
    return utf8.decode(bytes);
  } catch {
    return [...bytes];
  }
}

export const tokenRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post(
    "/tokenize",
    { schema: { body: tokenizeSchema, tags: ["native"], summary: "Tokenize, with each token's piece and character range" } },
    async (request) => {
      const body = request.body;
      checkPromptChars(getService(), body.content.length, "content");
      const tokens = await getService().tokenize(body.content, { addSpecial: body.add_special, parseSpecial: body.parse_special });
      if (!body.with_pieces) return { tokens: tokens.map((t) => t.id) };
      return { tokens: tokens.map((t) => ({ id: t.id, piece: pieceJson(t.bytes), start: t.start, end: t.end })) };
    },
  );

  app.post("/detokenize", { schema: { body: detokenizeSchema, tags: ["native"], summary: "Token ids to text" } }, async (request) => {
    const service = getService();
    const { vocabularySize, contextSize } = service.modelInfo;
    // ids no context of this server could hold are no text a client needs from it: the cap keeps the
    // answer's size (and the work on the event loop) proportional to the context, as /tokenize's is
    if (request.body.tokens.length > contextSize)
      throw new ContextLengthError(
        `tokens has ${request.body.tokens.length} ids, more than a context of ${contextSize} tokens can hold`,
        "tokens",
      );
    request.body.tokens.forEach((id, i) => {
      if (id >= vocabularySize) {
        throw new InvalidRequestError(
          `tokens.${i}: ${id} is not a token id: the vocabulary has ids 0-${vocabularySize - 1}`,
          `tokens.${i}`,
          "invalid_value",
        );
      }
    });
    return { content: service.detokenize(request.body.tokens) };
  });

  app.post(
    "/apply-template",
    { schema: { body: applyTemplateSchema, tags: ["native"], summary: "Render chat messages with the model's template" } },
    async (request) => {
      checkPromptChars(
        getService(),
        request.body.messages.reduce((n, m) => n + contentText(m.content).length, 0),
        "messages",
      );
      const messages = request.body.messages.map((m, i) => templateMessage(m, i, contentText(m.content)));
      const rendered = chatPrompt(getService().chatTemplate, messages, undefined);
      // null: the template rewrites that message's content, so no exact range exists
      return { prompt: rendered.prompt, content_spans: rendered.contentSpans };
    },
  );
};
