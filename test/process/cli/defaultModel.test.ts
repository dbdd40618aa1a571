// Out of the box: `serve` without --model serves the default model (SmolLM2-135M-Instruct Q4_1) from
// its cache, and a chat request that only marks its emphasis (`**...**`, no heads) is steered by the
// profile that ships for that model file. The cache is seeded with a link to ../shared's copy: the
// fetching itself is test/process/cli/modelSource.test.ts's.
import t from "tap";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { DEFAULT_MODEL } from "../../../src/cli/modelCatalog.js";
import { familyNamed, loadItems } from "../../../src/eval/families.js";
import { mentions } from "../../../src/eval/judges.js";
import { SMOLLM2_MODEL } from "../../support/models.js";
import { startServer } from "../../../harness/index.js";

/** Knowledge-conflict items asked both ways: enough for steering to show, few enough for CI. */
const ITEMS = 8;

t.test("the default model is served and steered by its shipped profile", async (t) => {
  const cache = mkdtempSync(join(tmpdir(), "pasta-default-model-"));
  symlinkSync(SMOLLM2_MODEL, join(cache, DEFAULT_MODEL.fileName));
  const server = await startServer(["--ctx-size", "1024"], { PASTA_MODELS_DIR: cache }, { noModel: true, readyTimeoutMs: 120_000 });
  t.teardown(() => server.stop());
  t.match(server.log(), /head profile: shipped for this model file/);
  const client = new OpenAI({ apiKey: "unused", baseURL: `${server.base}/v1`, maxRetries: 0 });
  t.same(
    (await client.models.list()).data.map((m) => m.id),
    ["SmolLM2-135M-Instruct.Q4_1"],
  );

  const ask = async (content: string, steering?: object) => {
    const res = await client.chat.completions.create({
      model: "SmolLM2-135M-Instruct.Q4_1",
      messages: [{ role: "user", content }],
      max_tokens: 32,
      temperature: 0,
      // @ts-expect-error steering is this server's extra body field
      steering,
    });
    return {
      text: res.choices[0]!.message.content!,
      spans: (res as unknown as { steering?: { spans: Array<{ text: string }> } }).steering?.spans,
    };
  };
  let plainNew = 0,
    steeredNew = 0,
    differ = 0;
  for (const item of loadItems(familyNamed("knowledge_conflict")).slice(0, ITEMS)) {
    const plain = await ask(item.message);
    const steered = await ask(item.message.replace(item.emphasis, `**${item.emphasis}**`), { markup: "markdown" });
    t.same(
      steered.spans?.map((s) => s.text),
      [item.emphasis],
      `${item.source}: the marked fact is the steered span`,
    );
    t.equal(plain.spans, undefined, "an unmarked request is not steered");
    const statesNew = (text: string) => mentions(text, item.contrast!.right) && !mentions(text, item.contrast!.wrong);
    plainNew += Number(statesNew(plain.text));
    steeredNew += Number(statesNew(steered.text));
    differ += Number(plain.text !== steered.text);
  }
  t.comment(`answers stating the new fact: ${plainNew}/${ITEMS} unsteered, ${steeredNew}/${ITEMS} steered; ${differ} answers changed`);
  t.ok(differ > 0, "steering changes answers");
  t.ok(steeredNew > plainNew, "steered answers state the new fact more often");
});
