// The benchmarks' generated models: written once into the OS temp folder and reused by later runs.
import { existsSync, mkdirSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { generateTestModel, type TestModelShape } from "../src/testModels/randomModel.js";

export function benchModel(fileName: string, shape: TestModelShape): string {
  const dir = join(os.tmpdir(), "pasta-server-bench");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, fileName);
  if (!existsSync(path)) {
    console.error(`generating ${path} ...`);
    generateTestModel(path, shape);
  }
  return path;
}
