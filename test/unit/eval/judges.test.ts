// The eval's checks and bookkeeping, without a model: how answers are judged, which heads the
// baselines steer, and how outcomes become the table.
import t from "tap";
import { buildArms, headCount, randomHeads } from "../../../src/eval/arms.js";
import { familyNamed } from "../../../src/eval/families.js";
import { firstJsonObject, hasWord, mentions, rewriteFloor } from "../../../src/eval/judges.js";
import { markdownTable, summarize } from "../../../src/eval/report.js";
import type { ItemOutcome } from "../../../src/eval/runner.js";

t.test("firstJsonObject finds the answer's JSON object", async (t) => {
  t.same(firstJsonObject('```json\n{ "name": "Ana", "occupation": "nurse" }\n```'), { name: "Ana", occupation: "nurse" }, "inside a fence");
  t.same(firstJsonObject('Sure! {"a": "x}y", "b": {"c": 1}} and more'), { a: "x}y", b: { c: 1 } }, "braces in strings and nesting");
  t.same(firstJsonObject('{not json} then {"ok": true}'), { ok: true }, "skips a brace that is not JSON");
  t.equal(firstJsonObject('{"cut": "off'), null, "an unfinished object is not JSON");
  t.equal(firstJsonObject("The occupation of Ana is nurse."), null, "prose is not JSON");
  t.equal(firstJsonObject("[1, 2]"), null, "an array is not an object");
});

t.test("hasWord matches whole words, any case", async (t) => {
  t.ok(hasWord("Then I walked home.", "i"));
  t.ok(hasWord('"Her" cat', "her"));
  t.notOk(hasWord("There is a theme here", "her"), "not inside a word");
  t.notOk(hasWord("Iris walked", "I"));
  t.ok(mentions("The capital is VIENNA.", "Vienna"));
});

t.test("each family judges a greedy answer as its metric says", async (t) => {
  const kc = familyNamed("knowledge_conflict").parse(
    {
      prompt: "The capital of Italy is Vienna. What is the capital of Italy?",
      emphasis: "The capital of Italy is Vienna.",
      answer_prefix: "The capital of Italy is",
      new: "Vienna",
      old: "Rome",
    },
    "kc:1",
  );
  t.same(kc.judge("The capital of Italy is Vienna."), { states_new: true });
  t.same(kc.judge("Vienna, though really Rome."), { states_new: false }, "both facts: not only the new one");
  t.same(kc.contrast, { prefix: "The capital of Italy is", right: "Vienna", wrong: "Rome" });

  const json = familyNamed("json_format").parse(
    {
      prompt: 'Ana is a nurse. Answer in JSON with "name" and "occupation".',
      emphasis: 'Answer in JSON with "name" and "occupation".',
      keys: ["name", "occupation"],
      expect: { occupation: "nurse" },
    },
    "json:1",
  );
  t.same(json.judge('{"name": "Ana", "occupation": "a nurse"}'), { json: true, json_value: true });
  t.same(json.judge('{"name": "Ana", "occupation": "doctor"}'), { json: true, json_value: false }, "keys right, value wrong");
  t.same(json.judge('{"name": "Ana"}'), { json: false, json_value: false }, "a key missing");

  const pronoun = familyNamed("pronoun_change").parse(
    {
      prompt: "She sings. She dances.\n\nRewrite in the first person.",
      emphasis: "Rewrite in the first person.",
      required: ["I", "my", "me"],
      forbidden: ["she", "her", "hers", "herself"],
    },
    "p:1",
  );
  t.same(pronoun.judge("I sing. I dance."), { person: true });
  t.same(pronoun.judge("I sing. She dances."), { person: false }, "a source pronoun left");
  t.same(pronoun.judge("Sings and dances."), { person: false }, "no target pronoun");
  // the text to rewrite is 22 characters: a rewrite carries at least 11
  t.same(pronoun.judge("I can't."), { person: false }, "a refusal holds the pronouns but rewrites nothing");
  t.same(pronoun.judge("  I sing.  "), { person: false }, "surrounding space counts for nothing");
  t.same(pronoun.judge("I sing, yes."), { person: true }, "half of the text is enough");

  const long = familyNamed("hard_pronoun_change").parse(
    {
      prompt: `Rewrite it in the first person.\n\n${"She walks to the harbour and mends the nets. ".repeat(40)}`,
      emphasis: "Rewrite it in the first person.",
      required: ["I", "my", "me"],
      forbidden: ["she", "her", "hers", "herself"],
    },
    "p:2",
  );
  // 1800 characters of text, 448 tokens to answer in: at least 672 characters
  t.same(long.judge("I'm sorry, but I can't assist with that request."), { person: false }, "a refusal of a long rewrite");
  t.same(long.judge("I walk to the harbour and mend the nets. ".repeat(16)), { person: false }, "656 characters: short of the floor");
  t.same(
    long.judge("I walk to the harbour and mend the nets. ".repeat(17)),
    { person: true },
    "697 characters: a rewrite cut by max_tokens",
  );
  t.equal(rewriteFloor("x".repeat(100), 448), 50, "half the text when max_tokens could write it all");
  t.equal(rewriteFloor("x".repeat(5000), 96), 144, "half of what max_tokens lets it write otherwise");

  const book = familyNamed("open_book").parse(
    {
      context: "First it was Saturday. Then it moved to Sunday. Fine.",
      question: "Which day?",
      gold: "Then it moved to Sunday.",
      answer: "Sunday",
      distractor: "Saturday",
      answer_prefix: "It was on",
    },
    "ob:1",
  );
  t.equal(book.message, "First it was Saturday. Then it moved to Sunday. Fine.\n\nWhich day?", "the passage, then the question");
  t.equal(book.passage, "First it was Saturday. Then it moved to Sunday. Fine.");
  t.same(book.judge("On Sunday."), { correct: true });
  t.same(book.judge("Saturday, then Sunday."), { correct: false });
});

t.test("items are refused with the line and the field", async (t) => {
  const family = familyNamed("knowledge_conflict");
  t.throws(() => family.parse({ prompt: "x", emphasis: "y", answer_prefix: "a", new: "b", old: "c" }, "kc.jsonl:3"), {
    name: "EvalItemError",
    message: /kc\.jsonl:3: "emphasis" must occur exactly once/,
  });
  t.throws(() => family.parse({ prompt: "x" }, "kc.jsonl:4"), { name: "EvalItemError", message: /kc\.jsonl:4: emphasis/ });
  t.throws(() => familyNamed("nope"), {
    message: /unknown eval task "nope": the tasks are knowledge_conflict, json_format, pronoun_change, open_book/,
  });
});

t.test("baseline arms: every head, and random heads as many as the profile's, fixed by the seed", async (t) => {
  const headsPerLayer = [4, 4, 4];
  const profile = { "1": [0, 2], "2": [3] };
  const random = randomHeads(3, headsPerLayer, 7);
  t.equal(headCount(random, headsPerLayer), 3);
  t.same(randomHeads(3, headsPerLayer, 7), random, "the same seed, the same heads");
  t.not(JSON.stringify(randomHeads(3, headsPerLayer, 8)), JSON.stringify(random), "another seed, other heads");
  const arms = buildArms(["unsteered", "prompting", "profile", "all_heads", "random_heads", "auto"], profile, headsPerLayer, 7);
  t.same(
    arms.map((a) => a.heads),
    [null, null, profile, [0, 1, 2], random, profile],
  );
  t.same(
    arms.map((a) => a.markdown),
    [false, true, false, false, false, false],
  );
  t.same(
    arms.map((a) => a.auto),
    [false, false, false, false, false, true],
  );
  t.equal(headCount([0, 2], headsPerLayer), 8, "a layer list counts all its heads");
});

t.test("summarize: the share of items passing each metric per arm", async (t) => {
  const family = familyNamed("open_book");
  const item = (n: number) =>
    family.parse(
      {
        context: `A was first. Then B${n} won.`,
        question: "Who won?",
        gold: `Then B${n} won.`,
        answer: `B${n}`,
        distractor: "A",
        answer_prefix: "The winner was",
      },
      `ob:${n}`,
    );
  const items = [item(1), item(2), item(3)];
  const arms = buildArms(["unsteered", "profile", "auto"], { "0": [0] }, [2], 0);
  const outcome = (i: number, arm: ItemOutcome["arm"], right: number, correct: boolean, gold?: boolean): ItemOutcome => ({
    item: items[i]!,
    arm,
    output: "",
    checks: { correct },
    // AutoPASTA: item 0 emphasized the deciding sentence, item 1's pass 1 ran out of tokens, item 2's named most of the passage
    ...(arm === "auto"
      ? {
          auto: {
            selection: "",
            finished: i !== 1,
            sentences: gold ? [items[i]!.emphasis] : [],
            gold: gold!,
            ...(i > 0 ? { reason: i === 1 ? "length" : "most_of_context" } : {}),
          },
        }
      : { contrast: { right, wrong: 0 } }),
  });
  const rows = summarize(
    [
      outcome(0, "unsteered", -1, false),
      outcome(1, "unsteered", 1, true),
      outcome(0, "profile", 1, true),
      outcome(1, "profile", 1, true),
      outcome(0, "auto", 0, true, true),
      outcome(1, "auto", 0, false, false),
      outcome(2, "unsteered", -1, false),
      outcome(2, "profile", 1, true),
      outcome(2, "auto", 0, false, false),
    ],
    arms,
  );
  t.same(
    rows.map((r) => [r.metric, r.items, r.byArm]),
    [
      ["efficacy", 3, { unsteered: 1 / 3, profile: 1, auto: null }],
      ["correct", 3, { unsteered: 1 / 3, profile: 1, auto: 1 / 3 }],
      ["auto_gold", 3, { unsteered: null, profile: null, auto: 1 / 3 }],
      ["auto_unfinished", 3, { unsteered: null, profile: null, auto: 1 / 3 }],
      ["auto_most_of_context", 3, { unsteered: null, profile: null, auto: 1 / 3 }],
    ],
  );
  const table = markdownTable(rows, arms);
  t.match(table, /^\| task \| metric \| items \| unsteered \| profile \| AutoPASTA \|$/m);
  t.match(table, /^\| open-book QA \| answer more likely than the misleading one \| 3 \| 33\.3% \| 100\.0% \| – \|$/m);
});
