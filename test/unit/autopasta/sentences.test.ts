import t, { type Test } from "tap";
import {
  DEFAULT_THRESHOLD,
  isQuestion,
  matchSentences,
  namesMostOfContext,
  splitAnswer,
  splitSentences,
} from "../../../src/autopasta/sentences.js";

// A biography with a counterfactual fact (Lisbon, not Paris), a product description, a story.
const BIO = [
  "Marie Curie was born in Warsaw on 7 November 1867.",
  "In this account, she moved to Lisbon in 1891 to study chemistry at the university.",
  "Dr. Pierre Curie, a physicist, met her there in 1894.",
  "They married a year later, in 1895.",
  "She won the Nobel Prize in Physics in 1903, shared with Pierre and Henri Becquerel.",
  "She measured a half-life of 3.82 days for radon.",
  "Her daughter, Irène Joliot-Curie, also won a Nobel Prize.",
  "Marie died in 1934 at Sancellemoz in France.",
];
const PRODUCT = [
  "The Aurora X2 is a cordless vacuum cleaner for small apartments.",
  "Its battery lasts 45 minutes on the eco setting and 12 minutes on boost.",
  "The dust bin holds 0.6 liters and empties with one button.",
  "A HEPA filter traps 99.97% of particles, e.g. pollen and pet dander.",
  "It weighs 2.4 kg, i.e. less than a full kettle.",
  "The charger takes 3.5 hours to fill the battery.",
  "Accessories include a crevice tool, a soft brush and a wall mount.",
  "The warranty covers two years of normal use.",
];
const STORY = [
  "Tom found an old map in his grandfather's attic.",
  "The map showed a path from the lighthouse to a cave by the cliffs.",
  "He waited for low tide before setting out.",
  "Mrs. Alvarez, the neighbor, warned him that the tide turned quickly.",
  "At the cave he found a rusty box full of letters.",
  "The letters were written by his grandfather to a woman named Clara.",
  "Tom read them by the fire that night.",
  "He decided to find Clara's family.",
];
const CONTEXTS = { bio: BIO.join(" "), product: PRODUCT.join(" "), story: STORY.join(" ") };

/** The texts of the matched sentences, checking that their offsets point at them in the context. */
function texts(t: Test, context: string, answer: string, threshold?: number): string[] {
  const result = matchSentences(context, answer, threshold === undefined ? undefined : { threshold });
  t.equal(result.matched, result.sentences.length > 0, "matched says whether anything matched");
  for (const s of result.sentences) {
    t.equal(context.slice(s.start, s.end), s.text, "offsets point at the sentence");
    t.ok(s.score >= 0 && s.score <= 1 && Math.round(s.score * 1000) === s.score * 1000, `score ${s.score} in [0,1], 3 decimals`);
  }
  const starts = result.sentences.map((s) => s.start);
  t.same(
    starts,
    [...starts].sort((a, b) => a - b),
    "sorted by position",
  );
  return result.sentences.map((s) => s.text);
}

t.test("segmentation: exact offsets with abbreviations, decimals, quotes, newlines and list items", async (t) => {
  const text =
    'Dr. Smith paid $3.14 for a pen, e.g. a cheap one. He shouted "Stop!" and ran. J. K. Rowling met Mrs. Gray vs. Mr. Lee in St. Louis.\n' +
    'She said, "It is done." (The end came later.) Wait... what? Yes!\n' +
    "\n" +
    "Shopping list:\n" +
    "- eggs and milk\n" +
    "* 2.5 kg of flour\n" +
    "• butter\n" +
    "  1. Preheat the oven.\n" +
    "2) Mix it all. Bake for 20 min.\r\n" +
    "I chose plan B. Then I left.";
  const expected = [
    "Dr. Smith paid $3.14 for a pen, e.g. a cheap one.",
    'He shouted "Stop!" and ran.',
    "J. K. Rowling met Mrs. Gray vs. Mr. Lee in St. Louis.",
    'She said, "It is done."',
    "(The end came later.)",
    "Wait... what?",
    "Yes!",
    "Shopping list:",
    "eggs and milk",
    "2.5 kg of flour",
    "butter",
    "Preheat the oven.",
    "Mix it all.",
    "Bake for 20 min.",
    "I chose plan B.",
    "Then I left.",
  ];
  const sentences = splitSentences(text);
  t.same(
    sentences.map((s) => s.text),
    expected,
  );
  let from = 0;
  for (const s of sentences) {
    t.equal(s.start, text.indexOf(s.text, from), `start of ${JSON.stringify(s.text)}`);
    t.equal(s.end, s.start + s.text.length);
    t.equal(text.slice(s.start, s.end), s.text);
    from = s.end;
  }
  t.same(splitSentences(""), []);
  t.same(splitSentences("  \n\n "), []);
  t.same(splitSentences("  no stop at the end  "), [{ text: "no stop at the end", start: 2, end: 20 }]);
});

t.test("segmentation of the test contexts gives back their sentences", async (t) => {
  for (const [name, sentences] of [
    ["bio", BIO],
    ["product", PRODUCT],
    ["story", STORY],
  ] as const) {
    t.same(
      splitSentences(CONTEXTS[name]).map((s) => s.text),
      sentences,
      name,
    );
  }
});

t.test("splitAnswer: lines, bullets, numbering, quotes, then sentences", async (t) => {
  const answer =
    "Here are the key sentences:\n" +
    '1. "Marie Curie was born in Warsaw."\n' +
    "2) “She moved to Lisbon.” \n" +
    "- 'They married.'\n" +
    "* Dr. Curie met her. They married later.\n" +
    "• ...she won the prize...\n" +
    "\n" +
    "Sentence 3: Her daughter won.";
  t.same(splitAnswer(answer), [
    "Marie Curie was born in Warsaw.",
    "She moved to Lisbon.",
    "They married.",
    "Dr. Curie met her.",
    "They married later.",
    "she won the prize",
    "Her daughter won.",
  ]);
  t.same(splitAnswer(""), []);
  t.same(splitAnswer('""\n- \n'), []);
});

t.test("exact quotes map to their own sentence with score 1", async (t) => {
  for (const [name, sentences] of [
    ["bio", BIO],
    ["product", PRODUCT],
    ["story", STORY],
  ] as const) {
    for (const sentence of sentences) {
      const result = matchSentences(CONTEXTS[name], sentence);
      t.same(
        result.sentences.map((s) => [s.text, s.score]),
        [[sentence, 1]],
        `${name}: ${sentence}`,
      );
    }
  }
  const context = CONTEXTS.bio;
  const result = matchSentences(context, BIO[4]!);
  t.equal(result.matched, true);
  t.equal(result.sentences[0]!.start, context.indexOf(BIO[4]!));
  t.equal(result.sentences[0]!.end, context.indexOf(BIO[4]!) + BIO[4]!.length);
});

t.test("paraphrases map to the right sentence", async (t) => {
  t.same(texts(t, CONTEXTS.bio, "In 1891 she relocated to Lisbon to study chemistry at the university."), [BIO[1]]);
  t.same(texts(t, CONTEXTS.product, "On boost the battery runs for 12 minutes, and 45 minutes on the eco setting."), [PRODUCT[1]]);
  t.same(texts(t, CONTEXTS.story, "The neighbor, Mrs. Alvarez, warned him that the tide turned fast."), [STORY[3]]);
  t.same(texts(t, CONTEXTS.product, "The charger needs 3.5 hours to fully charge the battery."), [PRODUCT[5]]);
  // inflections differ from the context's ("fills"/"fill", "batteries"/"battery", "filling")
  t.same(texts(t, CONTEXTS.product, "The charger fills the batteries."), [PRODUCT[5]]);
  t.same(texts(t, CONTEXTS.product, "Filling the batteries takes the charger 3.5 hours."), [PRODUCT[5]]);
  // reordered throughout (the in-order overlap alone is low); the order-free containment carries it
  t.same(texts(t, CONTEXTS.product, "Pet dander and pollen are among the 99.97% of particles that its HEPA filter traps."), [PRODUCT[3]]);
  const score = matchSentences(CONTEXTS.story, "The neighbor, Mrs. Alvarez, warned him that the tide turned fast.").sentences[0]!.score;
  t.ok(score >= DEFAULT_THRESHOLD && score < 1, `a paraphrase passes but scores below an exact quote (${score})`);
  // a stricter threshold keeps exact quotes and drops the paraphrase
  t.same(texts(t, CONTEXTS.story, `The neighbor, Mrs. Alvarez, warned him that the tide turned fast.\n${STORY[6]}`, 0.95), [STORY[6]]);
});

t.test("partial quotes map to their sentence", async (t) => {
  t.same(texts(t, CONTEXTS.story, "The map showed a path from the lighthouse"), [STORY[1]]);
  t.same(texts(t, CONTEXTS.product, "Its battery lasts 45 minutes"), [PRODUCT[1]]);
  t.same(texts(t, CONTEXTS.bio, "...shared with Pierre and Henri Becquerel"), [BIO[4]]);
  t.same(texts(t, CONTEXTS.bio, "she moved to Lisbon in 1891"), [BIO[1]], "the counterfactual sentence, as the context says it");
});

t.test("several sentences in one answer map to all of them", async (t) => {
  const numbered = `1. ${BIO[0]}\n2. ${BIO[3]}\n3) She measured a half-life of 3.82 days`;
  t.same(texts(t, CONTEXTS.bio, numbered), [BIO[0], BIO[3], BIO[5]]);
  const bullets = `The relevant sentences are:\n- "${STORY[4]}"\n* "${STORY[0]}"\n• The letters were written to a woman named Clara by his grandfather.`;
  t.same(texts(t, CONTEXTS.story, bullets), [STORY[0], STORY[4], STORY[5]], "in context order, whatever the answer's order");
  // two sentences on one line, and the same sentence twice: deduplicated
  t.same(texts(t, CONTEXTS.product, `${PRODUCT[2]} ${PRODUCT[3]}\n${PRODUCT[2]}`), [PRODUCT[2], PRODUCT[3]]);
  // one quote running two sentences together, with no sentence break between them
  const runOn =
    "They married a year later, in 1895, and she won the Nobel Prize in Physics in 1903, shared with Pierre and Henri Becquerel";
  t.same(texts(t, CONTEXTS.bio, runOn), [BIO[3], BIO[4]]);
});

t.test("invented text maps to nothing", async (t) => {
  const invented: Array<[keyof typeof CONTEXTS, string]> = [
    ["bio", "Marie Curie taught physics at Oxford University in 1910."],
    ["bio", "She moved to Paris in 1891 with her sister Bronisława."],
    ["product", "The Aurora X2 can mop floors and is controlled by a smartphone app."],
    ["product", "The battery can be replaced without tools."],
    ["story", "Tom sold the map to a museum in the city."],
    ["story", "Clara's grandson later opened a bakery by the lighthouse."],
  ];
  for (const [name, answer] of invented) {
    t.same(matchSentences(CONTEXTS[name], answer), { matched: false, sentences: [], candidates: 8 }, answer);
  }
  // an invented line does not stop the real quote next to it from matching
  t.same(texts(t, CONTEXTS.story, `Tom sold the map to a museum in the city.\n${STORY[2]}`), [STORY[2]]);
});

t.test("empty answers and 'None' map to nothing", async (t) => {
  for (const answer of ["", "   \n ", "None", "None.", '"None"', "- None", "N/A", "Nothing."]) {
    t.same(matchSentences(CONTEXTS.bio, answer), { matched: false, sentences: [], candidates: 8 }, JSON.stringify(answer));
  }
  t.same(matchSentences("", BIO[0]!), { matched: false, sentences: [], candidates: 0 }, "empty context");
  // "None" is not a quote even where the context has the word
  const party = "None of the guests stayed late. The party ended at nine.";
  t.same(matchSentences(party, "None"), { matched: false, sentences: [], candidates: 2 }, "None, in a context with 'None'");
  t.same(texts(t, party, "None of the guests stayed late."), ["None of the guests stayed late."]);
});

t.test("a quote found partly in two sentences picks the better one", async (t) => {
  // "box", "full", "letters" are in STORY[4]; only "letters" and "grandfather" in STORY[5]
  const quote = "a box full of letters from his grandfather";
  t.same(texts(t, CONTEXTS.story, quote), [STORY[4]]);
  // "Nobel Prize" is in both BIO[4] and BIO[6]; the daughter is only in BIO[6]
  t.same(texts(t, CONTEXTS.bio, "her daughter also won the Nobel Prize"), [BIO[6]]);
  t.same(texts(t, CONTEXTS.bio, "won the Nobel Prize in Physics"), [BIO[4]]);
  // all of the quote is in both: the sentence it covers more of wins (not simply the first)
  t.same(texts(t, CONTEXTS.bio, "the Nobel Prize"), [BIO[6]]);
  // an exact tie goes to the earlier sentence
  const twice = "The bell rang twice. Nobody came. The bell rang twice.";
  t.same(matchSentences(twice, "The bell rang twice.").sentences, [{ text: "The bell rang twice.", start: 0, end: 20, score: 1 }]);
});

t.test("the question is never a candidate, even when pass 1 quotes it", async (t) => {
  const context = "The bus leaves at nine. In the end, the trip was moved to Sunday. Q: On which day did the club go hiking?";
  const quoted = matchSentences(context, "Q: On which day did the club go hiking?");
  t.equal(quoted.matched, false, "a quoted question maps to nothing");
  const both = matchSentences(context, "On which day did the club go hiking?\nIn the end, the trip was moved to Sunday.");
  t.same(
    both.sentences.map((s) => s.text),
    ["In the end, the trip was moved to Sunday."],
  );
  t.equal(quoted.candidates, 2, "nor is it counted among the sentences pass 1 could name");
  t.ok(isQuestion('Did she say "yes?"'));
  t.notOk(isQuestion("She asked why."));
});

t.test("an answer naming more than half of the context's sentences has not chosen", async (t) => {
  const naming = (n: number) => matchSentences(CONTEXTS.story, STORY.slice(0, n).join("\n"));
  t.equal(naming(4).sentences.length, 4);
  t.notOk(namesMostOfContext(naming(4)), "4 of 8: a choice");
  t.equal(naming(5).sentences.length, 5);
  t.ok(namesMostOfContext(naming(5)), "5 of 8: most of the context");
  t.ok(namesMostOfContext(matchSentences(CONTEXTS.story, CONTEXTS.story)), "the whole passage copied");
  // questions are not candidates: one sentence of two is half, not most
  const withQuestion = "The bus leaves at nine. The trip was moved to Sunday. Which day was the trip? When does the bus leave?";
  t.notOk(namesMostOfContext(matchSentences(withQuestion, "The trip was moved to Sunday.")));
  t.ok(
    namesMostOfContext(matchSentences("The trip was moved to Sunday.", "The trip was moved to Sunday.")),
    "a one-sentence context: no choice",
  );
  t.notOk(namesMostOfContext(matchSentences(CONTEXTS.story, "None")), "nothing named");
});
