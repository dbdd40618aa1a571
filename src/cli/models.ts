// `pasta-server models`: the models `--model <name>` fetches, what they are, and what is here already.
import { statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { findShippedProfile } from "../profiles/shipped.js";
import { type CatalogModel, DEFAULT_MODEL, MODEL_CATALOG } from "./modelCatalog.js";
import { modelCacheDir } from "./modelSource.js";

export const MODELS_USAGE = "pasta-server models   (the catalog: serve --model <name> fetches one into the cache)";

/** One row per model: its name, size, licence, attention shape, shipped profile, cached copy. */
export function catalogTable(catalog: readonly CatalogModel[], cacheDir: string): string {
  const rows = catalog.map((m) => {
    // size only: hashing every cached GB to print a table would take seconds; serve checks the sha256
    const cachedSize = statSync(join(cacheDir, m.fileName), { throwIfNoEntry: false })?.size;
    return [
      m === DEFAULT_MODEL ? `${m.name} (default)` : m.name,
      m.label,
      `${(m.size / 1e6).toFixed(0)} MB`,
      m.licence,
      `${m.layers} x ${m.heads} (${m.kvHeads} KV)`,
      findShippedProfile(m.sha256) ? "yes" : "no",
      cachedSize === undefined ? "no" : cachedSize === m.size ? "yes" : "partial or corrupt",
    ];
  });
  const header = ["name", "model", "size", "licence", "layers x heads", "profile ships", "cached"];
  return [header, header.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export function modelsCommand(argv: string[]): void {
  parseArgs({ args: argv, strict: true, options: {} });
  const cacheDir = modelCacheDir();
  console.log(`${catalogTable(MODEL_CATALOG, cacheDir)}\n\ncache: ${cacheDir} (PASTA_MODELS_DIR)`);
}
