// A direct, plain-TypeScript float64 forward pass of a small F32 llama GGUF (stories260K), with
// PASTA steering and each head's attention weights in the open: the reference that the native
// engine's attention diagnostics are checked against. Slow by design (no batching, no cache tricks):
// one token at a time, every formula written out. It is itself checked against the authors' PASTA
// library (the fixture's log-probs) in test/model/engine/diagnostics.test.ts.
import { readFileSync } from "node:fs";
import { readGgufFileInfo } from "node-llama-cpp";

interface Layer {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  ffnNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

export interface ReferenceSteering {
  /** layer -> steered query heads */
  heads: ReadonlyMap<number, readonly number[]>;
  /** log(alpha), added to the scores of the positions in `biased` */
  bias: number;
  /** [start, end) positions that get the bias */
  biased: ReadonlyArray<readonly [number, number]>;
  /**
   * Target share (issue #25): per steered head and query, the bias on `biased` is log(a), with a the
   * scale of their unbiased weight that gives the `emphasized` positions this share, kept in
   * [exp(bias), 1]; positions in neither set keep their weight.
   */
  target?: { share: number; emphasized: ReadonlyArray<readonly [number, number]> };
}

/** For the query at one position: per layer, per query head, the softmax weights over positions 0..pos. */
export type AttentionWeights = number[][][];

export interface ReferenceStep {
  logits: Float64Array;
  attention: AttentionWeights;
  /** the same queries and keys without the steering bias: what each head would attend unsteered at this step */
  unbiasedAttention: AttentionWeights;
}

export class ReferenceLlama {
  private constructor(
    readonly nLayer: number,
    readonly nEmbd: number,
    readonly nHead: number,
    readonly nHeadKv: number,
    private readonly eps: number,
    private readonly ropeDims: number,
    private readonly ropeBase: number,
    private readonly embd: Float32Array,
    private readonly outNorm: Float32Array,
    private readonly output: Float32Array,
    private readonly layers: Layer[],
    readonly nVocab: number,
  ) {}

  static async load(path: string): Promise<ReferenceLlama> {
    const info = await readGgufFileInfo(path, { readTensorInfo: true });
    const md = info.metadata as unknown as {
      general: { architecture: string };
      llama: {
        embedding_length: number;
        block_count: number;
        attention: { head_count: number; head_count_kv: number; layer_norm_rms_epsilon: number };
        rope: { dimension_count: number; freq_base?: number };
      };
    };
    if (md.general.architecture !== "llama") throw new Error(`${path}: the reference handles llama models only`);
    const file = readFileSync(path);
    const tensors = new Map(info.tensorInfo!.map((t) => [t.name, t]));
    const tensor = (name: string) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${path}: no tensor ${name}`);
      if (t.ggmlType !== 0) throw new Error(`${path}: ${name} is not F32`);
      const n = t.dimensions.reduce((a: number, b) => a * Number(b), 1);
      const at = Number(t.fileOffset);
      return new Float32Array(file.buffer.slice(file.byteOffset + at, file.byteOffset + at + n * 4));
    };
    const p = md.llama;
    const layers = Array.from({ length: p.block_count }, (_, il) => ({
      attnNorm: tensor(`blk.${il}.attn_norm.weight`),
      wq: tensor(`blk.${il}.attn_q.weight`),
      wk: tensor(`blk.${il}.attn_k.weight`),
      wv: tensor(`blk.${il}.attn_v.weight`),
      wo: tensor(`blk.${il}.attn_output.weight`),
      ffnNorm: tensor(`blk.${il}.ffn_norm.weight`),
      gate: tensor(`blk.${il}.ffn_gate.weight`),
      up: tensor(`blk.${il}.ffn_up.weight`),
      down: tensor(`blk.${il}.ffn_down.weight`),
    }));
    const embd = tensor("token_embd.weight");
    return new ReferenceLlama(
      p.block_count,
      p.embedding_length,
      p.attention.head_count,
      p.attention.head_count_kv,
      p.attention.layer_norm_rms_epsilon,
      p.rope.dimension_count,
      p.rope.freq_base ?? 10000,
      embd,
      tensor("output_norm.weight"),
      tensors.has("output.weight") ? tensor("output.weight") : embd,
      layers,
      embd.length / p.embedding_length,
    );
  }

  /**
   * Runs `tokens` (position 0 on) and returns, for each position, the logits of the next token and
   * the attention weights of that position's query, with `steering` applied (none: unsteered).
   */
  run(tokens: readonly number[], steering?: ReferenceSteering): ReferenceStep[] {
    const headDim = this.nEmbd / this.nHead;
    const kvDim = headDim * this.nHeadKv;
    const keys: Float64Array[][] = this.layers.map(() => []);
    const values: Float64Array[][] = this.layers.map(() => []);
    const biased = (p: number) => steering?.biased.some(([s, e]) => p >= s && p < e) ?? false;
    const emphasized = (p: number) => steering?.target?.emphasized.some(([s, e]) => p >= s && p < e) ?? false;
    /** the bias this head and query get: log(alpha), or with a target share the one that reaches it */
    const biasFor = (unbiased: number[]): number => {
      if (!steering?.target) return steering!.bias;
      const sum = (f: (j: number) => boolean) => unbiased.reduce((acc, w, j) => acc + (f(j) ? w : 0), 0);
      const [e, b] = [sum(emphasized), sum(biased)];
      const a = b > 0 ? 1 + (e / steering.target.share - 1) / b : 0;
      return Math.log(Math.min(1, Math.max(Math.exp(steering.bias), a)));
    };
    const steps: ReferenceStep[] = [];

    for (const [pos, token] of tokens.entries()) {
      let x: Float64Array = Float64Array.from(this.embd.subarray(token * this.nEmbd, (token + 1) * this.nEmbd));
      const attention: AttentionWeights = [];
      const unbiasedAttention: AttentionWeights = [];
      for (const [il, layer] of this.layers.entries()) {
        const h = rmsNorm(x, layer.attnNorm, this.eps);
        const q = matVec(layer.wq, h, this.nEmbd);
        const k = matVec(layer.wk, h, kvDim);
        const v = matVec(layer.wv, h, kvDim);
        for (let head = 0; head < this.nHead; head++) rope(q, head * headDim, this.ropeDims, pos, this.ropeBase);
        for (let head = 0; head < this.nHeadKv; head++) rope(k, head * headDim, this.ropeDims, pos, this.ropeBase);
        keys[il]!.push(k);
        values[il]!.push(v);

        const attended = new Float64Array(this.nEmbd);
        const perHead: number[][] = [];
        const perHeadUnbiased: number[][] = [];
        const steered = steering?.heads.get(il) ?? [];
        for (let head = 0; head < this.nHead; head++) {
          const kvHead = Math.floor(head / (this.nHead / this.nHeadKv));
          const scores = keys[il]!.map((key) => {
            let dot = 0;
            for (let d = 0; d < headDim; d++) dot += q[head * headDim + d]! * key[kvHead * headDim + d]!;
            return dot / Math.sqrt(headDim);
          });
          const unbiased = softmax(scores);
          const bias = steered.includes(head) ? biasFor(unbiased) : 0;
          const weights = softmax(scores.map((s, j) => s + (biased(j) ? bias : 0)));
          perHead.push(weights);
          perHeadUnbiased.push(unbiased);
          for (const [j, w] of weights.entries()) {
            for (let d = 0; d < headDim; d++) attended[head * headDim + d]! += w * values[il]![j]![kvHead * headDim + d]!;
          }
        }
        attention.push(perHead);
        unbiasedAttention.push(perHeadUnbiased);
        x = add(x, matVec(layer.wo, attended, this.nEmbd));

        const f = rmsNorm(x, layer.ffnNorm, this.eps);
        const nFf = layer.gate.length / this.nEmbd;
        const gate = matVec(layer.gate, f, nFf);
        const up = matVec(layer.up, f, nFf);
        const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
        x = add(x, matVec(layer.down, act, this.nEmbd));
      }
      const logits = matVec(this.output, rmsNorm(x, this.outNorm, this.eps), this.nVocab);
      steps.push({ logits, attention, unbiasedAttention });
    }
    return steps;
  }
}

/** ggml's mul_mat(W, x): W has rows of x.length floats; row r gives output r. */
function matVec(w: Float32Array, x: Float64Array, rows: number): Float64Array {
  const n = x.length;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += w[r * n + i]! * x[i]!;
    out[r] = sum;
  }
  return out;
}

function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  const mean = x.reduce((s, v) => s + v * v, 0) / x.length;
  const scale = 1 / Math.sqrt(mean + eps);
  return Float64Array.from(x, (v, i) => v * scale * weight[i]!);
}

/** llama.cpp's LLAMA_ROPE_TYPE_NORM: adjacent pairs rotate by pos * base^(-2i/dims). */
function rope(x: Float64Array, offset: number, dims: number, pos: number, base: number) {
  for (let i = 0; i < dims; i += 2) {
    const theta = pos * base ** (-i / dims);
    const [a, b] = [x[offset + i]!, x[offset + i + 1]!];
    x[offset + i] = a * Math.cos(theta) - b * Math.sin(theta);
    x[offset + i + 1] = a * Math.sin(theta) + b * Math.cos(theta);
  }
}

function softmax(scores: number[]): number[] {
  const max = Math.max(...scores);
  const e = scores.map((s) => Math.exp(s - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]!);
}

/** Natural-log softmax of logits. */
export function logSoftmax(logits: Float64Array): number[] {
  const max = Math.max(...logits);
  const logZ = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
  return Array.from(logits, (v) => v - logZ);
}
