// Random-weight GGUF models of several architectures, with a real tokenizer taken from a
// vocab-only GGUF of the bundled llama.cpp tree. For tests and speed measurements: the weights
// are noise, but every attention path (GQA, sliding window, softcap, ALiBi, attention sinks,
// recurrent) is the real one.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { GgmlType, GgufType, readGgufMetadata, writeGguf, type GgufMetadata, type GgufTensor, type GgufValue } from "../gguf/gguf.js";
import { seededRandom } from "../util/random.js";

export type TestArchitecture = "llama" | "qwen2" | "gemma2" | "mpt" | "granite_swa" | "mamba";

export interface TestModelShape {
  architecture: TestArchitecture;
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  /** sliding-window size, for gemma2 and granite_swa */
  slidingWindow?: number;
  weightType?: "f32" | "f16";
  seed?: number;
}

/** Tiny shapes that load in milliseconds; used by the invariant tests. */
export const TINY_SHAPES: Record<TestArchitecture, TestModelShape> = {
  llama: { architecture: "llama", embedding: 64, layers: 3, heads: 8, kvHeads: 2, feedForward: 128 },
  qwen2: { architecture: "qwen2", embedding: 64, layers: 3, heads: 4, kvHeads: 2, feedForward: 128 },
  gemma2: { architecture: "gemma2", embedding: 64, layers: 4, heads: 4, kvHeads: 2, feedForward: 128, slidingWindow: 6 },
  // ALiBi (no RoPE): the attention mask carries the position bias, scaled per head by a slope
  mpt: { architecture: "mpt", embedding: 64, layers: 3, heads: 4, kvHeads: 4, feedForward: 128 },
  // learned attention sinks on every layer, interleaved sliding-window layers
  granite_swa: { architecture: "granite_swa", embedding: 64, layers: 4, heads: 4, kvHeads: 2, feedForward: 128, slidingWindow: 16 },
  mamba: { architecture: "mamba", embedding: 64, layers: 2, heads: 1, kvHeads: 1, feedForward: 128 },
};

/** Where node-llama-cpp's source download puts the bundled llama.cpp tree. */
export function bundledLlamaCppDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("node-llama-cpp")), "..", "llama", "llama.cpp"); // resolves to dist/index.js
}

export function defaultVocabPath(): string {
  const path = join(bundledLlamaCppDir(), "models", "ggml-vocab-llama-spm.gguf");
  if (!existsSync(path)) throw new Error(`${path} is missing: run "npm run build" first (it unpacks the bundled llama.cpp source)`);
  return path;
}

export function generateTestModel(outPath: string, shape: TestModelShape, vocabPath = defaultVocabPath()): void {
  const vocab = readGgufMetadata(vocabPath);
  const tokens = vocab.get("tokenizer.ggml.tokens");
  if (!tokens || tokens.type !== GgufType.ARRAY) throw new Error(`${vocabPath} has no tokenizer`);
  const nVocab = tokens.value.length;
  const arch = shape.architecture;
  const weightType = shape.weightType === "f16" ? GgmlType.F16 : GgmlType.F32;
  const random = seededRandom(shape.seed ?? 1234);
  const headDim = shape.embedding / shape.heads;
  const kvDim = headDim * shape.kvHeads;

  const metadata: GgufMetadata = new Map();
  const u32 = (v: number): GgufValue => ({ type: GgufType.UINT32, value: v });
  const f32 = (v: number): GgufValue => ({ type: GgufType.FLOAT32, value: v });
  metadata.set("general.architecture", { type: GgufType.STRING, value: arch });
  metadata.set("general.name", { type: GgufType.STRING, value: `pasta-test-${arch}-${shape.embedding}x${shape.layers}` });
  metadata.set(`${arch}.context_length`, u32(4096));
  metadata.set(`${arch}.embedding_length`, u32(shape.embedding));
  metadata.set(`${arch}.block_count`, u32(shape.layers));
  metadata.set(`${arch}.attention.layer_norm_rms_epsilon`, f32(1e-5));
  if (arch === "mpt") {
    metadata.set("mpt.attention.layer_norm_epsilon", f32(1e-5));
    metadata.set("mpt.attention.max_alibi_bias", f32(8));
  }
  if (arch === "mamba") {
    metadata.set("mamba.ssm.conv_kernel", u32(4));
    metadata.set("mamba.ssm.inner_size", u32(2 * shape.embedding));
    metadata.set("mamba.ssm.state_size", u32(16));
    metadata.set("mamba.ssm.time_step_rank", u32(Math.ceil(shape.embedding / 16)));
  } else {
    metadata.set(`${arch}.feed_forward_length`, u32(shape.feedForward));
    metadata.set(`${arch}.attention.head_count`, u32(shape.heads));
    metadata.set(`${arch}.attention.head_count_kv`, u32(shape.kvHeads));
    if (arch !== "mpt") metadata.set(`${arch}.rope.dimension_count`, u32(headDim));
  }
  if (arch === "gemma2") {
    metadata.set("gemma2.attention.sliding_window", u32(shape.slidingWindow ?? 8));
    metadata.set("gemma2.attn_logit_softcapping", f32(50));
    metadata.set("gemma2.final_logit_softcapping", f32(30));
  }
  if (arch === "granite_swa") {
    metadata.set("granite_swa.logit_scale", f32(1));
    metadata.set("granite_swa.attention.sliding_window", u32(shape.slidingWindow ?? 8));
    // every other layer slides
    const pattern = Array.from({ length: shape.layers }, (_, i) => i % 2 === 0);
    metadata.set("granite_swa.attention.sliding_window_pattern", { type: GgufType.ARRAY, itemType: GgufType.BOOL, value: pattern });
  }
  for (const [key, value] of vocab) if (key.startsWith("tokenizer.")) metadata.set(key, value);

  const tensors: GgufTensor[] = [];
  const weight = (name: string, shape2: number[], scale = 1 / Math.sqrt(shape2[0]!)) =>
    tensors.push({
      name,
      shape: shape2,
      type: shape2.length > 1 ? weightType : GgmlType.F32,
      fill: (out) => {
        for (let i = 0; i < out.length; i++) out[i] = (random() * 2 - 1) * scale * Math.sqrt(3);
      },
    });
  const constant = (name: string, shape2: number[], value: number) =>
    tensors.push({ name, shape: shape2, type: GgmlType.F32, fill: (out) => out.fill(value) });

  const E = shape.embedding;
  weight("token_embd.weight", [E, nVocab], 1);
  constant("output_norm.weight", [E], 1);
  if (arch !== "gemma2") weight("output.weight", [E, nVocab]);
  for (let i = 0; i < shape.layers; i++) {
    const blk = `blk.${i}`;
    constant(`${blk}.attn_norm.weight`, [E], 1);
    if (arch === "mamba") {
      const inner = 2 * E,
        state = 16,
        dtRank = Math.ceil(E / 16);
      weight(`${blk}.ssm_in.weight`, [E, 2 * inner]);
      weight(`${blk}.ssm_conv1d.weight`, [4, inner], 0.5);
      constant(`${blk}.ssm_conv1d.bias`, [inner], 0);
      weight(`${blk}.ssm_x.weight`, [inner, dtRank + 2 * state]);
      weight(`${blk}.ssm_dt.weight`, [dtRank, inner]);
      constant(`${blk}.ssm_dt.bias`, [inner], 0);
      constant(`${blk}.ssm_a`, [state, inner], -1);
      constant(`${blk}.ssm_d`, [inner], 1);
      weight(`${blk}.ssm_out.weight`, [inner, E]);
      continue;
    }
    if (arch === "mpt") {
      // LayerNorm, fused QKV, GELU feed-forward without a gate
      weight(`${blk}.attn_qkv.weight`, [E, E + 2 * kvDim]);
      weight(`${blk}.attn_output.weight`, [E, E], 0.25 / Math.sqrt(E));
      constant(`${blk}.ffn_norm.weight`, [E], 1);
      weight(`${blk}.ffn_up.weight`, [E, shape.feedForward]);
      weight(`${blk}.ffn_down.weight`, [shape.feedForward, E]);
      continue;
    }
    weight(`${blk}.attn_q.weight`, [E, E]);
    weight(`${blk}.attn_k.weight`, [E, kvDim]);
    weight(`${blk}.attn_v.weight`, [E, kvDim]);
    // sink logits of the size trained models have: each head parks part of its attention there
    if (arch === "granite_swa") weight(`${blk}.attn_sinks.weight`, [shape.heads], 2);
    if (arch === "qwen2") {
      weight(`${blk}.attn_q.bias`, [E], 0.1);
      weight(`${blk}.attn_k.bias`, [kvDim], 0.1);
      weight(`${blk}.attn_v.bias`, [kvDim], 0.1);
    }
    // a modest attention output keeps the residual stream dominated by the embeddings, as in trained
    // models; CPU flash attention accumulates V in F16, and its ~1e-3 relative error then stays small
    weight(`${blk}.attn_output.weight`, [E, E], 0.25 / Math.sqrt(E));
    constant(`${blk}.ffn_norm.weight`, [E], 1);
    weight(`${blk}.ffn_gate.weight`, [E, shape.feedForward]);
    weight(`${blk}.ffn_up.weight`, [E, shape.feedForward]);
    weight(`${blk}.ffn_down.weight`, [shape.feedForward, E]);
    if (arch === "gemma2") {
      constant(`${blk}.post_attention_norm.weight`, [E], 1);
      constant(`${blk}.post_ffw_norm.weight`, [E], 1);
    }
  }
  writeGguf(outPath, metadata, tensors);
}
