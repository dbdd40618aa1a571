// POST /v1/generate: the native endpoint. A plain prompt (no chat template) with emphasis markup.
import { autoContext, plainSelectionPrompt } from "../../autopasta/autopasta.js";
import type { GeneratedTokenLogprobs, TokenLogprob } from "../../engine/engine.js";
import { plainPrompt } from "../../prompt/prompts.js";
import type { CompletionFormat } from "../completionReply.js";
import type { CompletionInput } from "../completionService.js";
import { generateSchema, type GenerateBody } from "../schemas.js";
import { generateResponse } from "../responseSchemas.js";
import { samplingOptions, usageOf, withDiagnostics, withSteering, withSteeringInput } from "./common.js";
import { completionRoute } from "./completionRoute.js";

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
    ...withSteeringInput(body.steering),
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

/** `logprobs.tokens` (docs/api.md): per generated token its id, text, log-prob and the `top` alternatives. */
function tokenLogprobs(tokens: readonly GeneratedTokenLogprobs[]) {
  const entry = (t: TokenLogprob) => ({ id: t.id, text: t.text, logprob: t.logprob });
  return { tokens: tokens.map((t) => ({ ...entry(t), top: t.top.map(entry) })) };
}

/** One answer (the endpoint has no `n`). */
function generateFormat(modelId: string, body: GenerateBody): CompletionFormat {
  return {
    body: (g) => ({
      model: modelId,
      text: g.choices[0]!.text,
      finish_reason: g.choices[0]!.finishReason,
      usage: usageOf(g),
      ...withSteering(g.steering),
      ...(g.choices[0]!.logprobs ? { logprobs: tokenLogprobs(g.choices[0]!.logprobs) } : {}),
    }),
    first: (steering) => [{ text: "", ...withSteering(steering) }],
    piece: (text, logprobs) => ({ text, ...(logprobs.length > 0 && body.logprobs > 0 ? { logprobs: tokenLogprobs(logprobs) } : {}) }),
    last: (g) => [{ text: "", finish_reason: g.choices[0]!.finishReason, usage: usageOf(g), ...withDiagnostics(g.steering) }],
  };
}

export const generateRoutes = completionRoute({
  url: "/v1/generate",
  body: generateSchema,
  response: generateResponse,
  tags: ["native"],
  summary: "Generate from a plain prompt with emphasis",
  promptChars: (body) => ({ chars: body.prompt.length, param: "prompt" }),
  input: (body) => generateInput(body),
  format: (body, service) => generateFormat(service.modelId, body),
});
