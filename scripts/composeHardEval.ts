// Writes prompts/eval/hard_*.jsonl from the long families: the same items with more text around them,
// for models that the long items leave no room on (Qwen2.5-Coder-1.5B: 75-100% unsteered). The
// distractor text is other items' biographies from long_json_format.jsonl (people and jobs, no
// counterfactual claim of their own), chosen so they share no name with the item. Deterministic:
// run it again after editing the long items (`node --import tsx scripts/composeHardEval.ts`).
//   hard_json_format: the instruction, then three biographies; the asked person's is the middle one
//   hard_knowledge_conflict: a biography, the item's passage (the new fact deep inside), another
//     biography, then the question: the fact is further from the start and from the question
//   hard_open_book: a biography, the item's context (misleading sentence early, deciding one deep
//     inside), another biography, then the question
// (hard_pronoun_change needs no file: it is long_pronoun_change judged over the whole rewrite.)
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EVAL_ITEMS_DIR } from "../src/eval/families.js";

type Item = Record<string, unknown> & { prompt?: string; context?: string };

function read(name: string): Item[] {
  return readFileSync(join(EVAL_ITEMS_DIR, `${name}.jsonl`), "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "" && !line.startsWith("//"))
    .map((line) => JSON.parse(line) as Item);
}

function write(name: string, items: Item[]): void {
  writeFileSync(join(EVAL_ITEMS_DIR, `${name}.jsonl`), `${items.map((item) => JSON.stringify(item)).join("\n")}\n`);
  console.log(`${name}.jsonl: ${items.length} items`);
}

/** Capitalized words of a text (names, places), which a distractor must not share with the item. */
function names(text: string): Set<string> {
  return new Set((text.match(/\b[A-Z][a-z]{2,}\b/g) ?? []).filter((w) => !COMMON.has(w)));
}
const COMMON = new Set([
  "The",
  "She",
  "Her",
  "His",
  "They",
  "Their",
  "After",
  "When",
  "Most",
  "Every",
  "Answer",
  "JSON",
  "What",
  "Which",
  "Where",
  "Who",
  "How",
  "In",
  "On",
  "At",
  "By",
]);

const biographies = read("long_json_format").map((item) => (item.prompt as string).split("\n\n")[1]!);

/**
 * Two biographies, by a fixed walk from item i, sharing no name with `text` and mentioning none of
 * the item's answers (a knowledge conflict's old fact must not be given away by a distractor).
 */
function distractors(i: number, text: string, answers: readonly string[]): [string, string] {
  const own = names(text);
  const mentions = (bio: string) => answers.some((a) => new RegExp(`\\b${a.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\b`, "i").test(bio));
  const picked: string[] = [];
  for (let step = 1; picked.length < 2 && step < biographies.length; step++) {
    const bio = biographies[(i * 7 + step * 5) % biographies.length]!;
    if (![...names(bio)].some((w) => own.has(w)) && !text.includes(bio) && !mentions(bio)) picked.push(bio);
  }
  if (picked.length < 2) throw new Error(`item ${i}: no two biographies share no name with it`);
  return picked as [string, string];
}

write(
  "hard_json_format",
  read("long_json_format").map((item, i) => {
    const [instruction, bio] = (item.prompt as string).split("\n\n") as [string, string];
    const [before, after] = distractors(i, item.prompt as string, Object.values(item.expect as Record<string, string>));
    return { ...item, prompt: [instruction, before, bio, after].join("\n\n") };
  }),
);

write(
  "hard_knowledge_conflict",
  read("long_knowledge_conflict").map((item, i) => {
    const parts = (item.prompt as string).split("\n\n");
    const question = parts.pop()!;
    const [before, after] = distractors(i, item.prompt as string, [item.new as string, item.old as string]);
    return { ...item, prompt: [before, ...parts, after, question].join("\n\n") };
  }),
);

write(
  "hard_open_book",
  read("long_open_book").map((item, i) => {
    const [before, after] = distractors(i, `${item.context} ${item.question}`, [item.answer as string, item.distractor as string]);
    return { ...item, context: [before, item.context, after].join("\n\n") };
  }),
);
