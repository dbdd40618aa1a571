// POST /v1/completions: OpenAI's legacy completions on a plain prompt. With echo + logprobs it
// returns the prompt's own token log-probabilities (max_tokens 0 scores a text, as
// lm-evaluation-harness does for log-likelihood tasks); steering applies to the scoring too.
import { DEFAULT_COMPLETION_MAX_TOKENS } from "../../defaults.js";
import type { GenerateResult, ScoredToken, TokenLogprob } from "../../engine/engine.js";
import { InvalidRequestError } from "../../errors.js";
import { plainPrompt } from "../../prompt/prompts.js";
import type { CompletionFormat } from "../completionReply.js";
import { autoUnavailable, type CompletionInput } from "../completionService.js";
import { completionSchema, type CompletionBody } from "../schemas.js";
import { COMPLETION_KIND, openAIFormat } from "../openaiFormat.js";
import { completionResponse } from "../responseSchemas.js";
import { responseFormatInput, samplingOptions, withSteeringInput } from "./common.js";
import { completionRoute } from "./completionRoute.js";

interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

function topRecord(top: TokenLogprob[] | null): Record<string, number> | null {
  if (top === null) return null;
  const record: Record<string, number> = {};
  for (const alt of top) record[alt.text] = Math.max(record[alt.text] ?? -Infinity, alt.logprob);
  return record;
}

function appendLogprobs(
  into: LegacyLogprobs,
  tokens: ReadonlyArray<Pick<ScoredToken, "text" | "logprob" | "top">>,
  offset: number,
  withTop: boolean,
) {
  for (const t of tokens) {
    into.tokens.push(t.text);
    into.token_logprobs.push(t.logprob);
    into.top_logprobs.push(withTop ? topRecord(t.top) : null);
    into.text_offset.push(offset);
    offset += t.text.length;
  }
}

/** The prompt: a string, or a list of one (the schema refuses more). */
const promptText = (body: CompletionBody) => (typeof body.prompt === "string" ? body.prompt : body.prompt[0]!);

function completionInput(body: CompletionBody): CompletionInput {
  if (body.steering?.auto) throw autoUnavailable();
  return {
    endpoint: "completions",
    prompt: plainPrompt(promptText(body), body.steering),
    maxTokens: body.max_tokens ?? DEFAULT_COMPLETION_MAX_TOKENS,
    sampling: samplingOptions(body),
    ...responseFormatInput(body.response_format),
    ...withSteeringInput(body.steering),
    ...(body.logprobs != null ? { logprobs: body.logprobs } : {}),
    ...(body.n != null ? { choices: body.n } : {}),
  };
}

type FinishReason = GenerateResult["finishReason"];
interface TextChoice {
  text: string;
  logprobs: LegacyLogprobs | null;
  finish_reason: FinishReason | null;
}

/** `promptLogprobs`: with echo + logprobs, the prompt's own tokens scored, which come first. */
function completionFormat(
  modelId: string,
  body: CompletionBody,
  input: CompletionInput,
  promptLogprobs: ScoredToken[] | null,
): CompletionFormat {
  const prompt = input.prompt.prompt;
  const prefix = body.echo ? prompt : "";
  const topLogprobs = input.logprobs;
  const logprobsOf = (result: GenerateResult): LegacyLogprobs | null => {
    if (topLogprobs === undefined) return null;
    const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
    if (promptLogprobs) appendLogprobs(out, promptLogprobs, 0, topLogprobs > 0);
    appendLogprobs(out, result.logprobs ?? [], prompt.length, topLogprobs > 0);
    return out;
  };
  const streamed = (text: string, finishReason: FinishReason | null): TextChoice => ({ text, logprobs: null, finish_reason: finishReason });
  return openAIFormat<TextChoice, TextChoice>(COMPLETION_KIND, modelId, body.stream_options?.include_usage ?? false, {
    body: (result) => ({ text: prefix + result.text, logprobs: logprobsOf(result), finish_reason: result.finishReason }),
    first: () => streamed(prefix, null),
    piece: (text) => streamed(text, null),
    last: (result) => streamed("", result.finishReason),
  });
}

export const completionRoutes = completionRoute({
  url: "/v1/completions",
  body: completionSchema,
  response: completionResponse,
  tags: ["openai"],
  summary: "OpenAI completions, with steering; echo + logprobs scores a text",
  promptChars: (body) => ({ chars: promptText(body).length, param: "prompt" }),
  input: (body) => completionInput(body),
  async format(body, service, input, context) {
    const echoLogprobs = body.echo === true && input.logprobs !== undefined;
    if (body.stream && echoLogprobs) {
      throw new InvalidRequestError("echo with logprobs is not supported when streaming; ask without stream to score a text", "echo");
    }
    const promptLogprobs = echoLogprobs ? (await service.score(input, input.logprobs!, context)).tokens : null;
    return completionFormat(service.modelId, body, input, promptLogprobs);
  },
});
