// Head profiles: which attention heads a model steers by default. A profile file is either what
// `pasta-server profile` writes ({"heads": {"<layer>": [head, ...]}, ...}) or the bare
// {"<layer>": [head, ...]} form of PASTA's published head configs.
import { readFileSync } from "node:fs";
import { z } from "zod";
import type { HeadSelection } from "../engine/steering.js";

const headMap = z.record(z.string().regex(/^\d+$/, "layer keys are layer indices"), z.array(z.number().int().nonnegative()));
const profileFile = z.union([z.object({ heads: headMap }).loose(), headMap]);

export class HeadProfileError extends Error {
  override name = "HeadProfileError";
}

export function parseHeadProfile(json: unknown, source: string): HeadSelection {
  const parsed = profileFile.safeParse(json);
  if (!parsed.success) {
    throw new HeadProfileError(`${source} is not a head profile ({"heads": {"<layer>": [head, ...]}} or {"<layer>": [head, ...]}): ${parsed.error.issues[0]?.message}`);
  }
  const heads = "heads" in parsed.data && typeof parsed.data.heads === "object" && !Array.isArray(parsed.data.heads)
    ? parsed.data.heads as Record<string, number[]>
    : parsed.data as Record<string, number[]>;
  if (Object.values(heads).every((h) => h.length === 0)) throw new HeadProfileError(`${source} selects no head`);
  return heads;
}

export function loadHeadProfile(file: string): HeadSelection {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new HeadProfileError(`cannot read head profile ${file}: ${(err as Error).message}`);
  }
  return parseHeadProfile(json, file);
}
