// Tool calling on /v1/chat/completions, as llama-server does it with --jinja: the tools and the
// history's calls go through the model's own chat template; the answer's calls, in the syntax that
// template teaches (src/prompt/toolCalls.ts), come back as OpenAI's `tool_calls`. `tool_choice`
// "required" or a named function is enforced with a grammar of that syntax.
import { InvalidRequestError } from "../../errors.js";
import type { ChatMessage, ChatTemplate, TemplateTool } from "../../prompt/chatTemplate.js";
import { callConstraint, type ParsedAnswer, type ToolCall, type ToolSyntax, toolSyntaxOf } from "../../prompt/toolCalls.js";
import type { CompletionInput } from "../completionService.js";
import type { ChatCompletionBody } from "../schemas.js";

type Message = ChatCompletionBody["messages"][number];

/** What a request's tools make of it: they are rendered, and the answer is read for calls. */
export interface ToolUse {
  tools: TemplateTool[];
  /** their names: only calls of these are read as calls */
  names: ReadonlySet<string>;
  syntax: ToolSyntax;
  /** more than one call per answer (parallel_tool_calls, default true) */
  parallel: boolean;
  /** "required" or a named function: the answer is a call, by grammar */
  forced?: Pick<CompletionInput, "output">;
}

/**
 * The request's tool use, or undefined: no tools, or `tool_choice: "none"` (the model is then not
 * shown them, so it cannot call them). A template that does not render tools, or teaches a call
 * syntax this server cannot read, is a 400: never an answer that silently ignores the tools.
 */
export function toolUse(body: ChatCompletionBody, template: ChatTemplate): ToolUse | undefined {
  const choice = body.tool_choice ?? "auto";
  if (!body.tools?.length) {
    if (choice !== "none" && choice !== "auto")
      throw new InvalidRequestError("tool_choice: there are no tools to choose from", "tool_choice");
    if (body.parallel_tool_calls != null) throw new InvalidRequestError("parallel_tool_calls: there are no tools", "parallel_tool_calls");
    return undefined;
  }
  if (choice === "none") return undefined;
  const syntax = toolSyntaxOf(template.source);
  if (!template.rendersTools || !syntax)
    throw new InvalidRequestError(
      syntax === null && template.rendersTools
        ? "tools: this model's chat template shows tools in a call syntax this server does not read (it reads Qwen2.5 / Hermes <tool_call>, Mistral [TOOL_CALLS] and Llama 3.x JSON calls)"
        : "tools: this model's chat template has no tools section, so the model cannot be shown them (tool calling needs a model whose template renders tools, such as Qwen2.5)",
      "tools",
      "unsupported_tools",
    );
  if (body.steering?.auto)
    throw new InvalidRequestError("steering.auto answers without tools: leave tools out, or steering.auto", "steering.auto");
  const tools: TemplateTool[] = body.tools.map(({ function: f }) => ({
    type: "function",
    function: {
      name: f.name,
      ...(f.description !== undefined ? { description: f.description } : {}),
      ...(f.parameters ? { parameters: f.parameters } : {}),
    },
  }));
  const parallel = body.parallel_tool_calls ?? true;
  const names = new Set(tools.map((t) => t.function.name));
  if (choice === "auto") return { tools, names, syntax, parallel };
  if (body.response_format && body.response_format.type !== "text")
    throw new InvalidRequestError("response_format: the answer is a tool call (tool_choice), which has its own format", "response_format");
  const callable = typeof choice === "object" ? tools.filter((t) => t.function.name === choice.function.name) : tools;
  if (callable.length === 0)
    throw new InvalidRequestError(
      `tool_choice: no tool is named ${JSON.stringify((choice as { function: { name: string } }).function.name)}`,
      "tool_choice",
    );
  const constraint = callConstraint(
    syntax,
    callable.map((t) => ({ name: t.function.name, ...(t.function.parameters ? { parameters: t.function.parameters } : {}) })),
    parallel,
  );
  return { tools, names, syntax, parallel, forced: { output: { constraint, param: "tool_choice" } } };
}

/** A message as the template takes it: calls with their arguments as objects. */
export function templateMessage(m: Message, index: number, content: string): ChatMessage {
  return {
    role: m.role,
    content,
    ...(m.name ? { name: m.name } : {}),
    ...(m.tool_calls?.length
      ? {
          tool_calls: m.tool_calls.map((call, j) => ({
            id: call.id,
            type: "function" as const,
            function: {
              name: call.function.name,
              arguments: callArguments(call.function.arguments, `messages.${index}.tool_calls.${j}.function.arguments`),
            },
          })),
        }
      : {}),
    ...(m.tool_call_id ? { tool_call_id: m.tool_call_id } : {}),
  };
}

function callArguments(text: string, param: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new InvalidRequestError(`${param}: not JSON`, param);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InvalidRequestError(`${param}: not a JSON object`, param);
  return value as Record<string, unknown>;
}

/** OpenAI's `tool_calls` of a message (`index`: in a stream's delta). */
export function toolCallsJson(calls: readonly ToolCall[], withIndex = false) {
  return calls.map((call, index) => ({
    ...(withIndex ? { index } : {}),
    id: call.id,
    type: "function" as const,
    function: { name: call.name, arguments: call.arguments },
  }));
}

/** parallel_tool_calls: false asks for one call at most: an answer that makes more keeps its first. */
export function limitCalls(parsed: ParsedAnswer, use: ToolUse): ParsedAnswer {
  return use.parallel || parsed.calls.length <= 1 ? parsed : { ...parsed, calls: parsed.calls.slice(0, 1) };
}
