// POST /v1/generate: the native endpoint. A plain prompt (no chat template) with emphasis markup.
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { autoContext, plainSelectionPrompt } from "../../autopasta/autopasta.js";
import { plainPrompt } from "../../prompt/prompts.js";
import { handleCompletion, type CompletionFormat } from "../completion.js";
import type { CompletionInput } from "../generation.js";
import { generateSchema, type GenerateBody } from "../schemas.js";
import { checkPromptChars, samplingOptions, type ServiceGetter, usageOf, withDiagnostics, withSteering } from "./common.js";

/** llama-server's `grammar` and `json_schema` fields (at most one: the schema refuses both). */
function structuredOutput(body: GenerateBody): Pick<CompletionInput, "output"> {
  if (body.grammar !== undefined) return { output: { constraint: { type: "grammar", grammar: body.grammar }, param: "grammar" } };
  if (body.json_schema !== undefined)
    return { output: { constraint: { type: "json_schema", schema: body.json_schema }, param: "json_schema" } };
  return {};
}

function generateInput(body: GenerateBody): CompletionInput {
  const prompt = plainPrompt(body.prompt, body.steering);
  return {
    endpoint: "generate",
    prompt,
    maxTokens: body.max_tokens,
    sampling: samplingOptions(body),
    ...structuredOutput(body),
    ...(body.steering ? { steering: body.steering } : {}),
    ...(body.logprobs > 0 ? { logprobs: body.logprobs } : {}),
    ...(body.steering?.auto
      ? {
          autoSelection: {
            selectionPrompt: plainSelectionPrompt(prompt.prompt),
            context: autoContext(prompt.emphasis, { start: 0, end: prompt.prompt.length }),
          },
        }
      : {}),
  };
}

function generateFormat(modelId: string, body: GenerateBody): CompletionFormat {
  return {
    body: (g) => ({
      model: modelId,
      text: g.result.text,
      finish_reason: g.result.finishReason,
      usage: usageOf(g),
      ...withSteering(g.steering),
      ...(g.result.logprobs ? { logprobs: { tokens: g.result.logprobs } } : {}),
    }),
    first: (steering) => ({ text: "", ...withSteering(steering) }),
    piece: (text, logprobs) => ({ text, ...(logprobs.length > 0 && body.logprobs > 0 ? { logprobs: { tokens: logprobs } } : {}) }),
    last: (g) => [{ text: "", finish_reason: g.result.finishReason, usage: usageOf(g), ...withDiagnostics(g.steering) }],
  };
}

export const generateRoutes: FastifyPluginAsyncZod<{ service: ServiceGetter }> = async (app, { service: getService }) => {
  app.post(
    "/v1/generate",
    { schema: { body: generateSchema, tags: ["native"], summary: "Generate from a plain prompt with emphasis" } },
    async (request, reply) => {
      const service = getService();
      checkPromptChars(service, request.body.prompt.length, "prompt");
      return handleCompletion(
        service,
        generateInput(request.body),
        request.body.stream ?? false,
        generateFormat(service.modelId, request.body),
        request,
        reply,
      );
    },
  );
};
