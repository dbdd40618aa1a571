// The eval's public items (prompts/eval/): enough per family, well-formed, and none taken from the
// profiling tasks, so that the eval measures heads on text they were not chosen on.
import t from "tap";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../../../harness/index.js";
import { FAMILIES, loadItems } from "../../../src/eval/families.js";
import { loadBuiltinTasks } from "../../../src/profiles/tasks.js";

/** At least this many items per family (issue #12). */
const MIN_ITEMS = 40;

const sentences = (text: string) =>
  text
    .split(/(?<=[.!?])\s+|\n+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 20);

t.test("every family has enough well-formed items", async (t) => {
  for (const family of FAMILIES) {
    const items = loadItems(family);
    t.ok(items.length >= MIN_ITEMS, `${family.name}: ${items.length} items`);
    t.equal(new Set(items.map((i) => i.message)).size, items.length, `${family.name}: no item twice`);
    for (const item of items) {
      if (item.contrast) {
        // the wrong answer must not be given away by the message, and the right one must not contain it
        t.notOk(item.contrast.right.toLowerCase().includes(item.contrast.wrong.toLowerCase()), `${item.source}: answers differ`);
        if (family.name.endsWith("knowledge_conflict"))
          t.notOk(
            item.message.toLowerCase().includes(item.contrast.wrong.toLowerCase()),
            `${item.source}: the old answer is not in the prompt`,
          );
      }
      if (item.passage) t.ok(item.passage.indexOf(item.emphasis) > 0, `${item.source}: the deciding sentence is not the passage's first`);
    }
  }
});

t.test(
  "the long families are PASTA's own setting: 48+ items, 150-300 words, the instruction first or the deciding sentence deep inside",
  async (t) => {
    const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
    const long = FAMILIES.filter((f) => f.name.startsWith("long_"));
    t.same(
      long.map((f) => f.name),
      ["long_knowledge_conflict", "long_json_format", "long_pronoun_change", "long_open_book"],
    );
    for (const family of long) {
      const items = loadItems(family);
      t.ok(items.length >= 48, `${family.name}: ${items.length} items`);
      for (const item of items) {
        const text = item.passage ?? item.message;
        const at = text.indexOf(item.emphasis);
        if (family.name === "long_json_format" || family.name === "long_pronoun_change") {
          t.equal(at, 0, `${item.source}: the instruction comes first`);
          const body = text.slice(item.emphasis.length);
          t.ok(words(body) >= 150 && words(body) <= 300, `${item.source}: ${words(body)} words after the instruction`);
        } else {
          t.ok(at >= 0.4 * text.length, `${item.source}: the emphasized sentence starts at ${((100 * at) / text.length).toFixed(0)}%`);
          t.ok(words(text) >= 150 && words(text) <= 320, `${item.source}: ${words(text)} words`);
        }
      }
    }
  },
);

t.test("the hard families are the long items, whole, between two biographies of other people (scripts/composeHardEval.ts)", async (t) => {
  const words = (text: string) => text.split(/\s+/).filter(Boolean).length;
  const named = (name: string) => FAMILIES.find((f) => f.name === name)!;
  const biographies = new Set(loadItems(named("long_json_format")).map((item) => item.message.split("\n\n")[1]!));
  for (const kind of ["knowledge_conflict", "json_format", "open_book", "pronoun_change"]) {
    const long = loadItems(named(`long_${kind}`));
    const hard = loadItems(named(`hard_${kind}`));
    t.equal(hard.length, long.length, `hard_${kind}: one item per long item`);
    for (const [i, item] of hard.entries()) {
      const base = long[i]!;
      t.equal(item.emphasis, base.emphasis, `${item.source}: the same emphasis`);
      if (kind === "pronoun_change") {
        t.equal(item.message, base.message, `${item.source}: the long item itself`);
        t.ok(item.maxTokens > 2 * base.maxTokens, `${item.source}: judged over the whole rewrite (${item.maxTokens} tokens)`);
        continue;
      }
      const paragraphs = (item.passage ?? item.message).split("\n\n");
      const around = paragraphs.filter((p) => biographies.has(p) && !(base.passage ?? base.message).includes(p));
      t.equal(around.length, 2, `${item.source}: two biographies of other people around the item`);
      const own = (base.passage ?? base.message).split("\n\n").filter((p) => !p.endsWith("?"));
      t.ok(
        own.every((p) => paragraphs.includes(p)),
        `${item.source}: the item's own text is whole inside`,
      );
      t.ok(words(item.message) >= 600 && words(item.message) <= 1000, `${item.source}: ${words(item.message)} words`);
    }
  }
});

t.test("no sentence of an eval item comes from the profiling tasks", async (t) => {
  const profiling = new Set(loadBuiltinTasks().flatMap((task) => task.examples.flatMap((e) => sentences(e.context))));
  let checked = 0;
  for (const family of FAMILIES) {
    for (const item of loadItems(family)) {
      for (const sentence of sentences(item.message)) {
        checked++;
        if (profiling.has(sentence)) t.fail(`${item.source}: "${sentence}" is a profiling sentence`);
      }
    }
  }
  t.ok(checked > 4 * MIN_ITEMS, `${checked} sentences checked`);
});

t.test("the knowledge-conflict facts are not the profiling tasks' facts", async (t) => {
  const profilingText = loadBuiltinTasks()
    .flatMap((task) => task.examples.map((e) => `${e.context} ${e.target}`))
    .join("\n")
    .toLowerCase();
  for (const line of readFileSync(join(PROJECT_ROOT, "prompts", "eval", "knowledge_conflict.jsonl"), "utf8")
    .trim()
    .split("\n")) {
    const { answer_prefix: prefix } = JSON.parse(line) as { answer_prefix: string };
    t.notOk(profilingText.includes(prefix.toLowerCase()), `"${prefix}" is not asked in profiling`);
  }
});
