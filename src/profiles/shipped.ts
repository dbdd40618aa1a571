// Head profiles that ship with the package (profiles/*.json), each made for one model file and
// keyed by its sha256: a file's profile is found without any profiling, and is never applied to a
// different file (another quantization or fine-tune has other heads).
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../util/packageRoot.js";
import { loadHeadProfileWithModel } from "./headProfile.js";

export const SHIPPED_PROFILES_DIR = join(PACKAGE_ROOT, "profiles");

/** The shipped profile made for the model file with this sha256, or null. */
export function findShippedProfile(modelSha256: string, dir = SHIPPED_PROFILES_DIR): string | null {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .sort();
  } catch {
    return null; // an install without profiles/
  }
  for (const file of files) {
    const path = join(dir, file);
    if (loadHeadProfileWithModel(path).modelSha256 === modelSha256) return path;
  }
  return null;
}
