// Tool calls in a model's own syntax, read back from its answer: which syntax a chat template
// teaches (from the template's text), and the calls an answer holds, as OpenAI's `tool_calls`.
// node-llama-cpp's chat wrappers know these syntaxes too, but only inside LlamaChat's generation
// (a grammar that forces their exact bytes); a free answer varies in key order and whitespace, so
// it is parsed here as JSON, the way the templates describe it to the model.
import { randomBytes } from "node:crypto";
import type { OutputConstraint } from "../engine/grammar.js";

/**
 * - `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one element per call
 *   (Qwen2.5, Hermes 2 Pro / 3); small models often write the bare object as their whole answer,
 *   which llama-server's parser of this syntax reads as a call too, and so does this one
 * - `mistral`: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]` (Mistral Nemo and later)
 * - `llama3`: a bare `{"name": ..., "parameters": {...}}` answer, one call (Llama 3.1 - 3.3's JSON tool calling)
 */
export type ToolSyntax = "hermes" | "mistral" | "llama3";

/** The syntax a chat template teaches its model, from its text; null when it teaches none this server reads. */
export function toolSyntaxOf(templateSource: string): ToolSyntax | null {
  if (templateSource.includes("<tool_call>")) return "hermes";
  if (templateSource.includes("[TOOL_CALLS]")) return "mistral";
  if (templateSource.includes('"parameters"') && templateSource.includes("ipython")) return "llama3";
  return null;
}

export interface ToolCall {
  id: string;
  name: string;
  /** the arguments as a JSON text (OpenAI's `function.arguments`) */
  arguments: string;
}

export interface ParsedAnswer {
  /** the text outside the calls (null when there is none) */
  content: string | null;
  calls: ToolCall[];
}

/**
 * Where tool calls begin in an answer: the text before may be streamed as content, what follows is
 * held until the answer ends.
 */
export const CALL_START: Record<ToolSyntax, string> = { hermes: "<tool_call>", mistral: "[TOOL_CALLS]", llama3: "{" };

/** Syntaxes whose call may also be the whole answer: a JSON object (in a ```json fence or not). */
const WHOLE_ANSWER_CALL: Record<ToolSyntax, boolean> = { hermes: true, mistral: false, llama3: true };

/** The answer as one call object, or null. */
function wholeAnswerCall(answer: string, syntax: ToolSyntax, tools: ToolNames): ToolCall | null {
  const fenced = /^```(?:json)?\s*([\s\S]*?)\s*```$/.exec(answer.trim());
  const body = (fenced ? fenced[1]! : answer).trim();
  return body.startsWith("{") ? callOf(parseJson(body), syntax, tools) : null;
}

/**
 * The request's tool names: only a call of one of them is a call. A JSON answer that happens to
 * have a "name" (a user asked for a record) is text.
 */
export type ToolNames = ReadonlySet<string>;

/** A tool call id: Mistral's templates require 9 letters and digits; OpenAI's look like `call_` + 24. */
export function toolCallId(syntax: ToolSyntax): string {
  const hex = randomBytes(12).toString("hex");
  return syntax === "mistral" ? hex.slice(0, 9) : `call_${hex}`;
}

/** A call object as the templates describe it: a tool's name and an arguments (or parameters) object. */
function callOf(value: unknown, syntax: ToolSyntax, tools: ToolNames): ToolCall | null {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
  const { name, arguments: args, parameters } = value as Record<string, unknown>;
  const params = args ?? parameters ?? {};
  if (typeof name !== "string" || !tools.has(name) || typeof params !== "object" || params === null || Array.isArray(params)) return null;
  return { id: toolCallId(syntax), name, arguments: JSON.stringify(params) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The calls in a whole answer. Text that is not a well-formed call stays content: a model that
 * writes something call-like but broken gets its text back, never a call it did not make.
 */
export function parseToolCalls(syntax: ToolSyntax, answer: string, tools: ToolNames): ParsedAnswer {
  const plain = { content: answer, calls: [] };
  switch (syntax) {
    case "hermes": {
      const calls: ToolCall[] = [];
      const pattern = /<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g;
      let rest = "";
      let last = 0;
      if (!answer.includes(CALL_START.hermes)) {
        const call = wholeAnswerCall(answer, syntax, tools);
        return call ? { content: null, calls: [call] } : plain;
      }
      for (const match of answer.matchAll(pattern)) {
        const call = callOf(parseJson(match[1]!), syntax, tools);
        if (!call) return plain;
        calls.push(call);
        rest += answer.slice(last, match.index);
        last = match.index! + match[0].length;
      }
      // an unclosed call (the answer cut at max_tokens) is text, as it was written
      rest += answer.slice(last);
      return withContent(rest, calls);
    }
    case "mistral": {
      const at = answer.indexOf(CALL_START.mistral);
      if (at < 0) return plain;
      const list = parseJson(answer.slice(at + CALL_START.mistral.length).trim());
      if (!Array.isArray(list) || list.length === 0) return plain;
      const calls = list.map((item) => callOf(item, syntax, tools));
      if (calls.some((c) => c === null)) return plain;
      return withContent(answer.slice(0, at), calls as ToolCall[]);
    }
    case "llama3": {
      const call = wholeAnswerCall(answer, syntax, tools);
      return call ? { content: null, calls: [call] } : plain;
    }
  }
}

function withContent(rest: string, calls: ToolCall[]): ParsedAnswer {
  const content = calls.length > 0 ? rest.trim() : rest;
  return { content: content === "" && calls.length > 0 ? null : content, calls };
}

/**
 * Streaming with tools: text goes out as content until a call may have begun; from there on it is
 * held, and read as calls once the answer ends. Text that could still grow into the start marker
 * is held back too (as a stop string is).
 */
export class ToolCallStream {
  private held = "";
  private inCalls = false;
  /** the answer's first characters are known not to start a whole-answer call */
  private started: boolean;

  constructor(
    private readonly syntax: ToolSyntax,
    private readonly tools: ToolNames,
  ) {
    this.started = !WHOLE_ANSWER_CALL[syntax];
  }

  /** Text to stream as content now. */
  push(text: string): string {
    if (this.inCalls) {
      this.held += text;
      return "";
    }
    const all = this.held + text;
    this.held = "";
    if (!this.started) {
      // a whole-answer call starts with `{` or a fence: until the first visible character, wait
      const start = all.trimStart();
      if (start === "" || "{`".includes(start[0]!)) {
        this.inCalls = start !== "";
        this.held = all;
        return "";
      }
      this.started = true;
    }
    if (this.syntax === "llama3") return all;
    const marker = CALL_START[this.syntax];
    const at = all.indexOf(marker);
    if (at >= 0) {
      this.inCalls = true;
      this.held = all.slice(at);
      return all.slice(0, at);
    }
    const keep = partialMarker(all, marker);
    this.held = all.slice(all.length - keep);
    return all.slice(0, all.length - keep);
  }

  /** At the end: the calls, and the content not streamed yet (null: none). */
  finish(): ParsedAnswer {
    const parsed = parseToolCalls(this.syntax, this.held, this.tools);
    if (parsed.calls.length === 0) return { content: this.held === "" ? null : this.held, calls: [] };
    return parsed;
  }
}

/** Length of the longest end of `text` that starts `marker` (and could become it). */
function partialMarker(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) if (marker.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/** A tool, as the call constraint needs it. */
export interface CallableTool {
  name: string;
  parameters?: Record<string, unknown>;
}

/**
 * `tool_choice` "required" or a named function: the answer must be a call (of that function) in
 * the model's syntax, its arguments valid for the tool's parameters; `parallel`: one call or more.
 */
export function callConstraint(syntax: ToolSyntax, tools: readonly CallableTool[], parallel: boolean): OutputConstraint {
  const argumentsKey = syntax === "llama3" ? "parameters" : "arguments";
  const call = (tool: CallableTool) => ({
    type: "object",
    properties: { name: { const: tool.name }, [argumentsKey]: tool.parameters ?? { type: "object" } },
    required: ["name", argumentsKey],
    additionalProperties: false,
  });
  const oneCall = tools.length === 1 ? call(tools[0]!) : { oneOf: tools.map(call) };
  switch (syntax) {
    case "hermes":
      return {
        type: "framed_json",
        schema: oneCall,
        open: "<tool_call>\n",
        close: "\n</tool_call>",
        ...(parallel ? { separator: "\n" } : {}),
      };
    case "mistral":
      return {
        type: "framed_json",
        schema: { type: "array", items: oneCall, minItems: 1, ...(parallel ? {} : { maxItems: 1 }) },
        open: CALL_START.mistral,
        close: "",
      };
    case "llama3":
      return { type: "framed_json", schema: oneCall, open: "", close: "" };
  }
}
