// TextAssembler with a stand-in detokenizer (token id -> its text): stop strings, and what is held
// back while it could still become one.
import t from "tap";
import { TextAssembler } from "../../../src/engine/textAssembler.js";

function assembler(pieces: string[], stop: string[]) {
  const text = new TextAssembler((tokens) => tokens.map((id) => pieces[id]!).join(""), stop);
  const seen: string[] = [];
  const feed = (id: number) => {
    const more = text.accept(id as never, undefined);
    const final = text.takeFinal();
    seen.push(final?.text ?? "");
    return more;
  };
  return { text, seen, feed };
}

t.test("only a tail that begins a stop string is held back (#26: a long stop string held the whole stream)", async (t) => {
  const pieces = ["Hello", " wor", "ld", "!", " wo", "rk"];
  const long = `${"x".repeat(200)}`;
  const { text, seen, feed } = assembler(pieces, [" world!", long]);
  t.ok(feed(0));
  t.equal(seen.at(-1), "Hello", "nothing that begins a stop string: all of it is final");
  t.ok(feed(1));
  t.equal(seen.at(-1), "", '" wor" may become " world!": held');
  t.ok(feed(2));
  t.equal(seen.at(-1), "", '" world" still may');
  t.notOk(feed(3), "the stop string ends generation");
  t.equal(text.fullText, "Hello", "the text ends before it");
  t.equal(text.takeRest()?.text ?? "", "", "nothing of it is ever sent");
});

t.test("a held tail is released when it stops matching", async (t) => {
  const pieces = ["Hello", " wo", "rk"];
  const { seen, feed } = assembler(pieces, [" world!"]);
  feed(0);
  feed(1);
  t.equal(seen.at(-1), "", '" wo" held');
  t.ok(feed(2));
  t.equal(seen.at(-1), " work", "released with the token that broke the match");
});

t.test("a stop string split across tokens in the middle of the text", async (t) => {
  const pieces = ["a<", "/", "b>c", "<"];
  const { text, feed } = assembler(pieces, ["</b>"]);
  feed(0);
  feed(1);
  t.notOk(feed(2));
  t.equal(text.fullText, "a");
});

t.test("an unfinished UTF-8 character is held until its last byte arrives", async (t) => {
  // token 1 holds the first bytes of 🍕, token 2 the rest: detokenized alone, 1 is U+FFFD
  const detokenize = (tokens: readonly number[]) =>
    tokens
      .map((id) => ["Eat ", "\uFFFD", ""][id])
      .join("")
      .replace("\uFFFD", tokens.includes(2) ? "🍕" : "\uFFFD");
  const text = new TextAssembler(detokenize, []);
  text.accept(0 as never, undefined);
  t.equal(text.takeFinal()?.text, "Eat ");
  text.accept(1 as never, undefined);
  t.equal(text.takeFinal(), null, "half a character is never sent");
  text.accept(2 as never, undefined);
  t.equal(text.takeFinal()?.text, "🍕");
});

t.test("detokenization sees the tokens before the new ones, reaching back into the prompt (a word-initial space survives)", async (t) => {
  // a detokenizer like llama.cpp's: a piece's leading space is dropped at the start of a text
  const pieces = ["Once", " upon", " a", " time"];
  const calls: Array<{ tokens: number[]; context: number[] }> = [];
  const detokenize = (tokens: readonly number[], context: readonly number[]) => {
    calls.push({ tokens: [...tokens], context: [...context] });
    const text = tokens.map((id) => pieces[id]!).join("");
    return context.length === 0 ? text.trimStart() : text;
  };
  const text = new TextAssembler(detokenize as never, [], [0, 1] as never);
  text.accept(2 as never, undefined);
  t.equal(text.takeFinal()?.text, " a", "the first generated token reads after the prompt's last ones");
  t.same(calls[0], { tokens: [2], context: [0, 1] });
  text.accept(3 as never, undefined);
  t.same(calls[1], { tokens: [3], context: [0, 1, 2] }, "only the new token is detokenized, after those before it");
  t.equal(text.fullText, " a time");
  const fresh = new TextAssembler(detokenize as never, []);
  fresh.accept(2 as never, undefined);
  t.equal(fresh.fullText, "a", "without a prompt there is no context: the space is dropped, as llama-server does");
});
