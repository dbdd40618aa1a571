// The GGUF writer and generated models: a real tokenizer, the requested shape, loadable by llama.cpp.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { SteeringEngine } from "../../../src/engine/engine.js";
import { GgufType, readGgufMetadata } from "../../../src/gguf/gguf.js";
import { defaultVocabPath, generateTestModel } from "../../../src/testModels/randomModel.js";

const dir = mkdtempSync(join(tmpdir(), "pasta-gguf-"));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test("metadata round trip and tokenizer reuse", async (t) => {
  const path = join(dir, "m.gguf");
  generateTestModel(path, { architecture: "llama", embedding: 32, layers: 2, heads: 4, kvHeads: 2, feedForward: 64, seed: 7 });
  const meta = readGgufMetadata(path);
  const vocab = readGgufMetadata(defaultVocabPath());
  t.equal(meta.get("general.architecture")?.value, "llama");
  t.equal(meta.get("llama.attention.head_count_kv")?.value, 2);
  const tokens = meta.get("tokenizer.ggml.tokens");
  t.equal(tokens?.type, GgufType.ARRAY);
  t.same(tokens?.value, vocab.get("tokenizer.ggml.tokens")?.value, "the real tokenizer's vocabulary");

  const engine = await SteeringEngine.load({ modelPath: path, contextSize: 64 });
  t.teardown(() => engine.dispose());
  t.same(engine.headsPerLayer, [4, 4]);
  t.same(engine.tokenizePrompt("Hello world").tokens, [1, 15043, 3186], "llama SentencePiece tokens");
});

t.test("same seed, same file; F16 weights load", async (t) => {
  const shape = {
    architecture: "qwen2" as const,
    embedding: 32,
    layers: 1,
    heads: 2,
    kvHeads: 1,
    feedForward: 64,
    seed: 3,
    weightType: "f16" as const,
  };
  generateTestModel(join(dir, "a.gguf"), shape);
  generateTestModel(join(dir, "b.gguf"), shape);
  const { readFileSync } = await import("node:fs");
  t.ok(readFileSync(join(dir, "a.gguf")).equals(readFileSync(join(dir, "b.gguf"))));
  const engine = await SteeringEngine.load({ modelPath: join(dir, "a.gguf"), contextSize: 64 });
  t.teardown(() => engine.dispose());
  const once = await engine.generate({ prompt: "Hi there", maxTokens: 3, temperature: 0, logprobs: 3 });
  const again = await engine.generate({ prompt: "Hi there", maxTokens: 3, temperature: 0, logprobs: 3 });
  t.same(again.tokens, once.tokens, "greedy decoding is deterministic");
  const noise = await engine.generate({ prompt: "Hi there", maxTokens: 48, temperature: 1, seed: 5 });
  t.equal(noise.text, engine.model.detokenize(noise.tokens), "random tokens (multi-byte pieces too) detokenize incrementally as a whole");
  t.ok(
    once.logprobs!.every((lp) => Number.isFinite(lp.logprob) && lp.top[0]!.logprob >= lp.logprob),
    "finite log-probs; greedy picks the top token",
  );
});
