// POST /tokenize, /detokenize, /apply-template through a real server: offsets that spell the text,
// round trips, on a SentencePiece model (stories260K) and a byte-level BPE chat model (SmolLM2).
import t from "tap";
import { request, startServer } from "../../../harness/index.js";
import { SMOLLM2_MODEL, STORIES_MODEL } from "../../support/models.js";

interface Piece {
  id: number;
  piece: string | number[];
  start: number;
  end: number;
}

/** The characters of `text` each token covers, none twice: they must join to the text. */
function spelled(text: string, tokens: Piece[]): string {
  let covered = 0;
  let out = "";
  for (const { start, end } of tokens) {
    if (start < covered && end > covered) throw new Error(`token ${start}-${end} starts inside what came before (${covered})`);
    if (end > covered) out += text.slice(Math.max(start, covered), end);
    covered = Math.max(covered, end);
  }
  return out;
}

for (const [name, model] of [
  ["stories260K", STORIES_MODEL],
  ["SmolLM2", SMOLLM2_MODEL],
] as const) {
  t.test(name, async (t) => {
    const server = await startServer(["--model", model, "--ctx-size", "256"]);
    t.teardown(() => server.stop());
    const post = async (path: string, body: object) => {
      const res = await request(server.base, path, { body });
      t.equal(res.status, 200, `${path}: ${JSON.stringify(res.body).slice(0, 200)}`);
      return res.body;
    };

    const text = "Lily had a caf\u00E9 cake and a \u{1F600} kite.\nTom ran.";
    const ids = (await post("/tokenize", { content: text })).tokens as number[];
    t.ok(ids.length > 5 && ids.every((id) => Number.isInteger(id)), "ids");
    const { tokens } = (await post("/tokenize", { content: text, with_pieces: true })) as { tokens: Piece[] };
    t.same(
      tokens.map((p) => p.id),
      ids,
      "the same tokens with pieces",
    );
    t.equal(spelled(text, tokens), text, "the character ranges spell the text");
    t.equal((await post("/detokenize", { tokens: ids })).content, text, "detokenize(tokenize(text)) is the text");
    // the context holds 256 tokens: as many ids are text, one more is a 400 naming the limit
    const full = Array.from({ length: 256 }, (_, i) => ids[i % ids.length]!);
    t.ok((await post("/detokenize", { tokens: full })).content.startsWith(text), "a context's worth of ids is text");
    const tooMany = await request(server.base, "/detokenize", { body: { tokens: [...full, ids[0]] } });
    t.equal(tooMany.status, 400, "one id more than the context holds");
    t.match(tooMany.body.error, {
      code: "context_length_exceeded",
      param: "tokens",
      message: /257 ids, more than a context of 256 tokens/,
    });

    const withBos = (await post("/tokenize", { content: text, add_special: true })).tokens as number[];
    t.ok(withBos.length >= ids.length, "add_special adds the model's BOS where it has one");

    const messages = [{ role: "user", content: "Where is the kite?" }];
    const rendered = await post("/apply-template", { messages });
    const span = rendered.content_spans[0];
    t.equal(rendered.prompt.slice(span.start, span.end), "Where is the kite?", "the message's content lies where content_spans says");
    const chat = (await post("/tokenize", { content: rendered.prompt, with_pieces: true })) as { tokens: Piece[] };
    t.equal(spelled(rendered.prompt, chat.tokens), rendered.prompt, "the rendered prompt's tokens, special ones included, spell it");
    const inContent = chat.tokens.filter((p) => p.end > span.start && p.start < span.end);
    t.equal(rendered.prompt.slice(inContent[0]!.start, inContent.at(-1)!.end).trim(), "Where is the kite?", "tokens of the content");
  });
}
