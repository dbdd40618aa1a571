// Where things are, computed once from this file's location (harness/ is a folder of the project
// root), so that no test or benchmark has to count `..` from wherever it sits.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** the project's root folder (package.json, src/, test/, bench/) */
export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
/** ../shared beside the checkout: the shared models, fixtures and specs (read-only) */
export const SHARED = join(PROJECT_ROOT, "..", "shared");
/** the CLI's entry point, relative to PROJECT_ROOT (children run with PROJECT_ROOT as their cwd) */
export const CLI = join("src", "cli", "main.ts");
/** the tiny model every server process starts with unless told otherwise (tests and `npm run load`) */
export const STORIES_MODEL = join(SHARED, "models", "stories260K.gguf");
/** the real instruct chat model of ../shared: quality and speed claims are made on it */
export const SMOLLM2_MODEL = join(SHARED, "models", "SmolLM2-135M-Instruct.Q4_1.gguf");
