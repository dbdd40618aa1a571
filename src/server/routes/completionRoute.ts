// The one shape of the three completion endpoints (/v1/generate, /v1/chat/completions,
// /v1/completions): the model check, the prompt's size bound, the body -> CompletionInput, and the
// answer as a body or a stream (completionReply.ts). An endpoint module says only what differs.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import type { z } from "zod";
import { type CompletionFormat, handleCompletion, requestContext } from "../completionReply.js";
import type { CompletionInput, CompletionService, RequestContext } from "../completionService.js";
import { checkPromptChars, type ServiceGetter } from "./common.js";

interface CompletionBody {
  model?: string | null;
  stream?: boolean | null;
}

export interface CompletionEndpoint<Schema extends z.ZodType<CompletionBody>> {
  url: string;
  body: Schema;
  /** the answer's JSON body, for /openapi.json (streams are documented in docs/api.md) */
  response: z.ZodType;
  tags: string[];
  summary: string;
  /** the prompt text's length and its field, bounded before any work per character */
  promptChars(body: z.infer<Schema>): { chars: number; param: string };
  input(body: z.infer<Schema>, service: CompletionService): CompletionInput;
  /** how the answer looks; it may need work first (completions' echo scores the prompt) */
  format(
    body: z.infer<Schema>,
    service: CompletionService,
    input: CompletionInput,
    context: RequestContext,
  ): CompletionFormat | Promise<CompletionFormat>;
}

export function completionRoute<Schema extends z.ZodType<CompletionBody>>(
  endpoint: CompletionEndpoint<Schema>,
): FastifyPluginAsyncZod<{ service: ServiceGetter }> {
  return async (app, { service: getService }) => {
    app.post(
      endpoint.url,
      { schema: { body: endpoint.body, response: { 200: endpoint.response }, tags: endpoint.tags, summary: endpoint.summary } },
      async (request, reply) => {
        const service = getService();
        const body = request.body as z.infer<Schema>;
        service.checkModel(body.model);
        const { chars, param } = endpoint.promptChars(body);
        checkPromptChars(service, chars, param);
        const input = endpoint.input(body, service);
        // one context for everything the request does: it all stops with the same client
        const context = requestContext(request, reply);
        const format = await endpoint.format(body, service, input, context);
        return handleCompletion(service, input, body.stream ?? false, format, request, reply, context);
      },
    );
  };
}
