// Structured output through a real server on SmolLM2 (a chat model): `response_format` through the
// official `openai` client on chat and completions, streamed and not, steered and not, and
// `grammar` / `json_schema` on /v1/generate. Every answer must parse and validate against its
// schema; what cannot be enforced is a 400 that names it.
import t from "tap";
import OpenAI from "openai";
import { Ajv2020 } from "ajv/dist/2020.js";
import { request, startServer } from "../../../harness/index.js";
import { assertOpenAI } from "../../support/openaiSchema.js";
import { SMOLLM2_MODEL } from "../../support/models.js";

const API_KEY = "structured-key";
const BIO = "Tobias Brandt lives in Ghent and works as a carpenter. He builds tables and chairs in a workshop behind his house.";
const ASK = "Give the name and occupation of Tobias Brandt in JSON.";
const PERSON = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 40 },
    occupation: { type: "string", maxLength: 40 },
    employed: { type: "boolean" },
    kind: { enum: ["person", "company"] },
  },
  required: ["name", "occupation", "employed", "kind"],
  additionalProperties: false,
};
const ajv = new Ajv2020({ strict: false });
const validPerson = ajv.compile(PERSON);

type Server = Awaited<ReturnType<typeof startServer>>;
let server: Server;
let client: OpenAI;
let model: string;
t.before(async () => {
  // the shipped profile of this model file is the server's default head set
  server = await startServer(["--model", SMOLLM2_MODEL, "--ctx-size", "1024", "--api-key", API_KEY]);
  client = new OpenAI({ apiKey: API_KEY, baseURL: `${server.base}/v1`, maxRetries: 0 });
  model = (await client.models.list()).data[0]!.id;
});
t.teardown(() => server?.stop());

const auth = { authorization: `Bearer ${API_KEY}` };
const personFormat = { type: "json_schema" as const, json_schema: { name: "person", schema: PERSON, strict: true } };

t.test("chat: the answer follows the json_schema, unsteered and steered", async (t) => {
  for (const steered of [false, true]) {
    const content = steered ? `${BIO} **${ASK}**` : `${BIO} ${ASK}`;
    const body = {
      model,
      messages: [{ role: "user" as const, content }],
      max_tokens: 80,
      temperature: 0,
      response_format: personFormat,
      ...(steered ? { steering: { markup: "markdown" } } : {}),
    };
    // `steering` is an extra body field the client's types do not know
    const res = await client.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsNonStreaming);
    const raw = res as unknown as Record<string, any>;
    assertOpenAI(t, "CreateChatCompletionResponse", raw);
    const text = raw.choices[0].message.content as string;
    const parsed = JSON.parse(text);
    t.ok(validPerson(parsed), `${steered ? "steered" : "unsteered"}: ${text} validates (${ajv.errorsText(validPerson.errors)})`);
    t.equal(raw.choices[0].finish_reason, "stop");
    if (steered) t.equal(raw.steering.spans[0].text, ASK, "the instruction was steered");
    else t.notOk(raw.steering, "no steering asked, none reported");
  }
});

t.test("chat, streamed: the deltas join to JSON that validates", async (t) => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: `${BIO} ${ASK}` }],
    max_tokens: 80,
    temperature: 0,
    stream: true,
    response_format: personFormat,
  });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  t.ok(validPerson(JSON.parse(text)), `${text} validates`);
});

t.test("json_object on chat and completions: a JSON object", async (t) => {
  const chat = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: `${BIO} ${ASK}` }],
    max_tokens: 80,
    temperature: 0,
    response_format: { type: "json_object" },
  });
  const object = JSON.parse(chat.choices[0]!.message.content!);
  t.type(object, "object");
  t.notOk(Array.isArray(object));
  const completion = await client.completions.create({
    model,
    prompt: `${BIO}\nAs JSON: `,
    max_tokens: 80,
    temperature: 0,
    // not in the legacy API's types: an extra field, as `steering` is
    ...({ response_format: { type: "json_schema", json_schema: { name: "person", schema: PERSON } } } as object),
  });
  assertOpenAI(t, "CreateCompletionResponse", completion);
  t.ok(validPerson(JSON.parse(completion.choices[0]!.text)), `completions: ${completion.choices[0]!.text}`);
});

t.test("/v1/generate: grammar and json_schema", async (t) => {
  const post = (body: object) => request(server.base, "/v1/generate", { body, headers: auth });
  const yesNo = await post({ prompt: `${BIO}\nIs Tobias a carpenter? Answer: `, grammar: 'root ::= "yes" | "no"', max_tokens: 8 });
  t.equal(yesNo.status, 200);
  t.match(yesNo.body.text, /^(yes|no)$/, `a GBNF grammar: ${yesNo.body.text}`);
  const steered = await post({
    prompt: `${BIO}\nIs Tobias a carpenter? Answer: `,
    grammar: 'root ::= "yes" | "no"',
    max_tokens: 8,
    steering: { emphasis: ["works as a carpenter"] },
  });
  t.match(steered.body.text, /^(yes|no)$/, "steered too");
  t.equal(steered.body.steering.spans[0].text, "works as a carpenter");
  // greedy: a sampled answer may still be inside a string value at max_tokens (finish_reason "length")
  const json = await post({ prompt: `${BIO}\nAs JSON: `, json_schema: PERSON, max_tokens: 80, temperature: 0 });
  t.equal(json.status, 200);
  t.equal(json.body.finish_reason, "stop", json.body.text);
  t.ok(validPerson(JSON.parse(json.body.text)), json.body.text);
});

t.test("what cannot be enforced is a 400 that names it", async (t) => {
  const chat = (response_format: object) =>
    request(server.base, "/v1/chat/completions", { body: { messages: [{ role: "user", content: ASK }], response_format }, headers: auth });
  const pattern = await chat({
    type: "json_schema",
    json_schema: { name: "p", schema: { type: "object", properties: { id: { type: "string", pattern: "^[a-z]+$" } } } },
  });
  t.equal(pattern.status, 400);
  t.equal(pattern.body.error.code, "unsupported_schema");
  t.equal(pattern.body.error.param, "response_format");
  t.match(pattern.body.error.message, /response_format\.json_schema\.schema\.properties\.id: "pattern" is not supported/);
  t.equal((await chat({ type: "xml" })).status, 400, "an unknown response_format type");

  const badGrammar = await request(server.base, "/v1/generate", { body: { prompt: "x", grammar: "root ::= (" }, headers: auth });
  t.equal(badGrammar.status, 400);
  t.equal(badGrammar.body.error.code, "invalid_grammar");
  // #26: the parser's own words reach the client; the grammar reaches neither stderr nor the log
  t.match(badGrammar.body.error.message, /^grammar: expecting .* \(GBNF, as llama\.cpp parses it\)$/);
  const secret = 'root ::= "SECRET-GRAMMAR-TEXT" undefinedrule';
  const undefinedRule = await request(server.base, "/v1/generate", { body: { prompt: "x", grammar: secret }, headers: auth });
  t.equal(undefinedRule.status, 400);
  t.match(undefinedRule.body.error.message, /Undefined rule identifier 'undefinedrule'/);
  const noRoot = await request(server.base, "/v1/generate", { body: { prompt: "x", grammar: 'start ::= "a"' }, headers: auth });
  t.match(noRoot.body.error.message, /no root rule/);
  t.notMatch(server.log(), /SECRET-GRAMMAR-TEXT|root ::= \(/, "no grammar text in the server's output");
  const both = await request(server.base, "/v1/generate", {
    body: { prompt: "x", grammar: 'root ::= "a"', json_schema: { type: "string" } },
    headers: auth,
  });
  t.equal(both.status, 400);
  t.match(both.body.error.message, /grammar or json_schema, not both/);
});
