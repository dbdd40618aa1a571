// The sampling controls and `n` over HTTP, through the official `openai` client where it has the
// field: n choices (each the answer its seed gives alone, the prompt counted once), streamed by
// index; logit_bias, min_tokens / ignore_eos, the repetition penalties under both names, min_p; and
// /v1/generate's strict schema taking the same fields. Responses validate against OpenAI's schemas.
import t from "tap";
import OpenAI from "openai";
import { assertOpenAI as validate } from "../../support/openaiSchema.js";
import { postJson, postOk, startServer } from "../../../harness/index.js";

type Server = Awaited<ReturnType<typeof startServer>>;
let server: Server;
let client: OpenAI;

t.before(async () => {
  server = await startServer(["--ctx-size", "256", "--parallel", "4", "--model-alias", "stories", "--profile", "none"]);
  client = new OpenAI({ apiKey: "unused", baseURL: `${server.base}/v1`, maxRetries: 0 });
});
t.teardown(async () => {
  await server?.stop();
});

const messages = [{ role: "user" as const, content: "Tom had a red ball. He liked to play with it in the park." }];
const prompt = "Once upon a time there was a little dog named Max.";

/** The end-of-generation token of stories260K, as the server tokenizes it. */
async function eosToken(): Promise<number> {
  const { tokens } = (await postOk(server.base, "/tokenize", { content: "</s>", parse_special: true })) as { tokens: number[] };
  t.equal(tokens.length, 1, "</s> is one special token");
  return tokens[0]!;
}

t.test("n: 3 choices, each equal to n: 1 with seed + index; the prompt counted once", async (t) => {
  const many = await client.chat.completions.create({ model: "stories", messages, n: 3, seed: 40, temperature: 1, max_tokens: 12 });
  validate(t, "CreateChatCompletionResponse", many);
  t.same(
    many.choices.map((c) => c.index),
    [0, 1, 2],
  );
  const alone = await Promise.all(
    [40, 41, 42].map((seed) => client.chat.completions.create({ model: "stories", messages, seed, temperature: 1, max_tokens: 12 })),
  );
  for (const [i, one] of alone.entries()) t.equal(many.choices[i]!.message.content, one.choices[0]!.message.content, `choice ${i}`);
  t.equal(many.usage!.prompt_tokens, alone[0]!.usage!.prompt_tokens, "the prompt once");
  t.equal(
    many.usage!.completion_tokens,
    alone.reduce((n, r) => n + r.usage!.completion_tokens, 0),
    "every choice's tokens",
  );
  t.ok(new Set(many.choices.map((c) => c.message.content)).size > 1, "different seeds, different answers");
});

t.test("n: 2 streamed: chunks by index, each choice finishing; the same text as unstreamed", async (t) => {
  const body = { model: "stories", prompt, n: 2, seed: 7, temperature: 1, max_tokens: 10 } as const;
  const whole = await client.completions.create(body);
  validate(t, "CreateCompletionResponse", whole);
  const texts = ["", ""];
  const finished: Array<string | null> = [null, null];
  for await (const chunk of await client.completions.create({ ...body, stream: true })) {
    // as OpenAI, chunks before a choice's last carry a null finish_reason, which its schema lacks
    if (chunk.choices.every((c) => c.finish_reason !== null)) validate(t, "CreateCompletionResponse", chunk);
    for (const c of chunk.choices) {
      texts[c.index] += c.text;
      if (c.finish_reason) finished[c.index] = c.finish_reason;
    }
  }
  t.same(
    texts,
    whole.choices.map((c) => c.text),
  );
  t.same(finished, ["length", "length"]);

  const chat = await client.chat.completions.create({
    model: "stories",
    messages,
    n: 2,
    seed: 7,
    temperature: 1,
    max_tokens: 6,
    stream: true,
  });
  const roles = new Set<number>();
  for await (const chunk of chat) {
    validate(t, "CreateChatCompletionStreamResponse", chunk);
    for (const c of chunk.choices) if (c.delta.role === "assistant") roles.add(c.index);
  }
  t.same([...roles].sort(), [0, 1], "each choice opens with the assistant role");
});

t.test("logit_bias: -100 bans the greedy token; the next most likely comes instead", async (t) => {
  const plain = await client.completions.create({ model: "stories", prompt, max_tokens: 1, temperature: 0, logprobs: 2 });
  const top = Object.entries(plain.choices[0]!.logprobs!.top_logprobs![0]!).sort((a, b) => b[1] - a[1]);
  const ids = (await postOk(server.base, "/tokenize", { content: `${prompt}${plain.choices[0]!.text}` })) as { tokens: number[] };
  const greedyId = ids.tokens.at(-1)!;
  const banned = await client.completions.create({
    model: "stories",
    prompt,
    max_tokens: 1,
    temperature: 0,
    logit_bias: { [String(greedyId)]: -100 },
  });
  t.not(banned.choices[0]!.text, plain.choices[0]!.text);
  t.equal(banned.choices[0]!.text, top[1]![0], "the second most likely token");
});

t.test("min_tokens and ignore_eos hold the end back; without them the answer ends at once", async (t) => {
  const eos = await eosToken();
  const base = { model: "stories", messages, max_tokens: 8, temperature: 0, logit_bias: { [String(eos)]: 100 } };
  const ends = await client.chat.completions.create(base);
  t.same([ends.choices[0]!.finish_reason, ends.usage!.completion_tokens], ["stop", 0]);
  const held = await client.chat.completions.create({ ...base, min_tokens: 3 } as typeof base);
  t.same([held.choices[0]!.finish_reason, held.usage!.completion_tokens], ["stop", 3]);
  const endless = await client.chat.completions.create({ ...base, ignore_eos: true } as typeof base);
  t.same([endless.choices[0]!.finish_reason, endless.usage!.completion_tokens], ["length", 8]);
});

t.test("repetition penalties: vLLM's and llama-server's names are one penalty; penalties change the answer", async (t) => {
  const ask = async (fields: object) =>
    (await client.completions.create({ model: "stories", prompt, max_tokens: 24, temperature: 0, ...fields })).choices[0]!.text;
  const plain = await ask({});
  const vllm = await ask({ repetition_penalty: 1.8, repeat_last_n: 32 });
  t.not(vllm, plain);
  t.equal(await ask({ repeat_penalty: 1.8, repeat_last_n: 32 }), vllm);
  t.not(await ask({ presence_penalty: 1.5, frequency_penalty: 1 }), plain);
  t.equal(await ask({ repetition_penalty: 1.8, repeat_last_n: 0 }), plain, "an empty window penalizes nothing");
});

t.test("/v1/generate takes the same fields; min_p 1 at temperature 1 is greedy", async (t) => {
  const greedy = (await postOk(server.base, "/v1/generate", { prompt, max_tokens: 10, temperature: 0 })) as { text: string };
  const sampled = (await postOk(server.base, "/v1/generate", {
    prompt,
    max_tokens: 10,
    temperature: 1,
    min_p: 1,
    seed: 3,
    repetition_penalty: 1,
    presence_penalty: 0,
    logit_bias: {},
    min_tokens: 2,
  })) as { text: string };
  t.equal(sampled.text, greedy.text);
  const refused = await postJson(`${server.base}/v1/generate`, { prompt, n: 2 });
  t.equal(refused.status, 400, "no n on the native endpoint");
});
