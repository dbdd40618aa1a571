// Head profiles: which attention heads a model steers by default. A profile file is either what
// `pasta-server profile` writes ({"heads": {"<layer>": [head, ...]}, ...}) or the bare
// {"<layer>": [head, ...]} form of PASTA's published head configs.
import { UserError } from "../errors.js";
import { readFileSync } from "node:fs";
import { z } from "zod";
import type { HeadSelection } from "../engine/steering.js";

const headMap = z.record(z.string().regex(/^\d+$/, "layer keys are layer indices"), z.array(z.number().int().nonnegative()));
const profileFile = z.union([z.object({ heads: headMap }).loose(), headMap]);

export class HeadProfileError extends UserError {
  override name = "HeadProfileError";
}

export function parseHeadProfile(json: unknown, source: string): HeadSelection {
  const parsed = profileFile.safeParse(json);
  if (!parsed.success) {
    throw new HeadProfileError(
      `${source} is not a head profile ({"heads": {"<layer>": [head, ...]}} or {"<layer>": [head, ...]}): ${parsed.error.issues[0]?.message}`,
    );
  }
  const heads =
    "heads" in parsed.data && typeof parsed.data.heads === "object" && !Array.isArray(parsed.data.heads)
      ? (parsed.data.heads as Record<string, number[]>)
      : (parsed.data as Record<string, number[]>);
  if (Object.values(heads).every((h) => h.length === 0)) throw new HeadProfileError(`${source} selects no head`);
  return heads;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new HeadProfileError(`cannot read head profile ${file}: ${(err as Error).message}`);
  }
}

export function loadHeadProfile(file: string): HeadSelection {
  return parseHeadProfile(readJson(file), file);
}

export interface HeadProfile {
  heads: HeadSelection;
  /** the sha256 of the model file it was made for (null for the bare form): valid for that exact file only */
  modelSha256: string | null;
  /** the alpha it was chosen with (null for the bare form) */
  alpha: number | null;
}

/** The heads with what a file `pasta-server profile` wrote says of them. */
export function loadHeadProfileWithModel(file: string): HeadProfile {
  const json = readJson(file);
  const { model, alpha } = (json ?? {}) as { model?: { sha256?: unknown }; alpha?: unknown };
  return {
    heads: parseHeadProfile(json, file),
    modelSha256: typeof model?.sha256 === "string" ? model.sha256 : null,
    alpha: typeof alpha === "number" ? alpha : null,
  };
}
