// The eval's task families, after PASTA's evaluation (Zhang et al., ICLR 2024): each item is one
// user message with a part to emphasize, and checks of what the model makes of it. The public items
// are JSONL files in prompts/eval/, written for this project (none shared with prompts/tasks/).
import { UserError } from "../errors.js";
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import { PACKAGE_ROOT } from "../util/packageRoot.js";
import { firstJsonObject, hasWord, mentions, rewriteFloor } from "./judges.js";

export const EVAL_ITEMS_DIR = join(PACKAGE_ROOT, "prompts", "eval");

export interface EvalItem {
  family: string;
  /** file:line, for reports */
  source: string;
  /** the user message, plain text */
  message: string;
  /** the substring of `message` that steering emphasizes (and the prompting arm wraps in `**`) */
  emphasis: string;
  /** AutoPASTA picks sentences from this substring of `message` (open-book QA only) */
  passage?: string;
  /** the JSON schema the answer should follow (JSON format only): what the `response_format` arms enforce */
  schema?: Record<string, unknown>;
  /** a likelihood check: once the reply starts with `prefix`, `right` should be more likely than `wrong` */
  contrast?: { prefix: string; right: string; wrong: string };
  /** greedy-answer checks, by metric name */
  judge(output: string): Record<string, boolean>;
  /** tokens a greedy answer may take */
  maxTokens: number;
}

export interface Metric {
  name: string;
  label: string;
  /** "contrast": from the likelihood check; "greedy": from judge() */
  kind: "contrast" | "greedy";
}

export interface Family {
  name: string;
  label: string;
  /** the JSONL file of its items in prompts/eval/, when not `${name}.jsonl` */
  itemsFile?: string;
  metrics: Metric[];
  parse(json: unknown, source: string): EvalItem;
}

export class EvalItemError extends UserError {
  override name = "EvalItemError";
}

/** The first (and only) occurrence of `part` in `text`, or an error naming the field. */
function requireSubstring(text: string, part: string, field: string, source: string): void {
  const at = text.indexOf(part);
  if (at < 0 || text.indexOf(part, at + 1) >= 0) throw new EvalItemError(`${source}: "${field}" must occur exactly once in the message`);
}

function parseWith<T extends z.ZodType>(schema: T, json: unknown, source: string): z.infer<T> {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new EvalItemError(`${source}: ${issue?.path.join(".") || "item"}: ${issue?.message}`);
  }
  return parsed.data;
}

const text = z.string().min(1);

// Each kind of task comes twice: today's short items, and PASTA's own setting (long texts full of
// distractors, the instruction before the text or the deciding sentence deep inside), where current
// instruct models fail without help. The long families parse and judge like the short ones.

const knowledgeConflict = (name: string, label: string): Family => ({
  name,
  label,
  metrics: [
    { name: "efficacy", label: "new fact more likely than the old one", kind: "contrast" },
    { name: "states_new", label: "greedy answer states only the new fact", kind: "greedy" },
  ],
  parse(json, source) {
    const item = parseWith(z.object({ prompt: text, emphasis: text, answer_prefix: text, new: text, old: text }).strict(), json, source);
    requireSubstring(item.prompt, item.emphasis, "emphasis", source);
    return {
      family: name,
      source,
      message: item.prompt,
      emphasis: item.emphasis,
      maxTokens: 32,
      contrast: { prefix: item.answer_prefix, right: item.new, wrong: item.old },
      judge: (output) => ({ states_new: mentions(output, item.new) && !mentions(output, item.old) }),
    };
  },
});

const jsonFormat = (name: string, label: string): Family => ({
  name,
  label,
  metrics: [
    { name: "json", label: "greedy answer is JSON with the asked keys", kind: "greedy" },
    { name: "json_value", label: "... and the right value", kind: "greedy" },
  ],
  parse(json, source) {
    const item = parseWith(
      z.object({ prompt: text, emphasis: text, keys: z.array(text).min(1), expect: z.record(z.string(), text) }).strict(),
      json,
      source,
    );
    requireSubstring(item.prompt, item.emphasis, "emphasis", source);
    return {
      family: name,
      source,
      message: item.prompt,
      emphasis: item.emphasis,
      maxTokens: 64,
      // what a client would send as response_format: the asked keys, short strings (a bound keeps a
      // small model that repeats itself inside a string from running out of tokens), nothing else
      schema: {
        type: "object",
        properties: Object.fromEntries(item.keys.map((k) => [k, { type: "string", maxLength: 40 }])),
        required: item.keys,
        additionalProperties: false,
      },
      judge: (output) => {
        const object = firstJsonObject(output);
        const keys = object !== null && item.keys.every((k) => k in object);
        const values = keys && Object.entries(item.expect).every(([k, v]) => mentions(String(object[k]), v));
        return { json: keys, json_value: values };
      },
    };
  },
});

const pronounChange = (name: string, label: string, maxTokens = 96, itemsFile?: string): Family => ({
  name,
  label,
  ...(itemsFile ? { itemsFile } : {}),
  metrics: [{ name: "person", label: "greedy rewrite is in the asked person", kind: "greedy" }],
  parse(json, source) {
    const item = parseWith(
      z.object({ prompt: text, emphasis: text, required: z.array(text).min(1), forbidden: z.array(text).min(1) }).strict(),
      json,
      source,
    );
    requireSubstring(item.prompt, item.emphasis, "emphasis", source);
    // the emphasis is the instruction: the rest is the text to rewrite
    const floor = rewriteFloor(item.prompt.replace(item.emphasis, "").trim(), maxTokens);
    return {
      family: name,
      source,
      message: item.prompt,
      emphasis: item.emphasis,
      maxTokens,
      judge: (output) => ({
        person:
          output.trim().length >= floor && item.required.some((w) => hasWord(output, w)) && !item.forbidden.some((w) => hasWord(output, w)),
      }),
    };
  },
});

const openBook = (name: string, label: string): Family => ({
  name,
  label,
  metrics: [
    { name: "efficacy", label: "answer more likely than the misleading one", kind: "contrast" },
    { name: "correct", label: "greedy answer is right", kind: "greedy" },
  ],
  parse(json, source) {
    const item = parseWith(
      z.object({ context: text, question: text, gold: text, answer: text, distractor: text, answer_prefix: text }).strict(),
      json,
      source,
    );
    requireSubstring(item.context, item.gold, "gold", source);
    return {
      family: name,
      source,
      message: `${item.context}\n\n${item.question}`,
      emphasis: item.gold,
      passage: item.context,
      maxTokens: 32,
      contrast: { prefix: item.answer_prefix, right: item.answer, wrong: item.distractor },
      judge: (output) => ({ correct: mentions(output, item.answer) && !mentions(output, item.distractor) }),
    };
  },
});

export const FAMILIES: readonly Family[] = [
  knowledgeConflict("knowledge_conflict", "knowledge conflict"),
  jsonFormat("json_format", "JSON format"),
  pronounChange("pronoun_change", "pronoun change"),
  openBook("open_book", "open-book QA"),
  // the new fact once, deep inside a 150-300 word passage that implies the old one
  knowledgeConflict("long_knowledge_conflict", "long knowledge conflict"),
  // the instruction first, then a 150-300 word biography naming other people and their jobs
  jsonFormat("long_json_format", "long JSON format"),
  // the instruction first, then a 150-300 word text to rewrite
  pronounChange("long_pronoun_change", "long pronoun change"),
  // 150-300 words: an early sentence misleads, one deep inside decides
  openBook("long_open_book", "long open-book QA"),
  // The long families with more text around them (scripts/composeHardEval.ts), for models the long
  // ones leave no room on: two biographies of other people around the item's text
  knowledgeConflict("hard_knowledge_conflict", "hard knowledge conflict"),
  jsonFormat("hard_json_format", "hard JSON format"),
  // the long items judged over the whole rewrite, not its first 96 tokens: the instruction is further
  // from the end of the answer than from its start
  pronounChange("hard_pronoun_change", "hard pronoun change", 448, "long_pronoun_change.jsonl"),
  openBook("hard_open_book", "hard open-book QA"),
];

export function familyNamed(name: string): Family {
  const family = FAMILIES.find((f) => f.name === name);
  if (!family)
    throw new EvalItemError(`unknown eval task ${JSON.stringify(name)}: the tasks are ${FAMILIES.map((f) => f.name).join(", ")}`);
  return family;
}

/** A family's items from a JSONL file (blank lines and // comments skipped). */
export function loadItems(family: Family, file = join(EVAL_ITEMS_DIR, family.itemsFile ?? `${family.name}.jsonl`)): EvalItem[] {
  let content: string;
  try {
    content = readFileSync(file, "utf8");
  } catch (err) {
    throw new EvalItemError(`cannot read eval items ${file}: ${(err as Error).message}`);
  }
  const items: EvalItem[] = [];
  for (const [i, raw] of content.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("//")) continue;
    const source = `${basename(file)}:${i + 1}`;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (err) {
      throw new EvalItemError(`${source}: not JSON: ${(err as Error).message}`);
    }
    items.push(family.parse(json, source));
  }
  if (items.length === 0) throw new EvalItemError(`${file} has no items`);
  return items;
}
