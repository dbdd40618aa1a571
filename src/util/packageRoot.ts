// The package's root directory, where prompts/ and profiles/ ship: the same depth from src/util/
// (tsx) and dist/util/ (built).
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
