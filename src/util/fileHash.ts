// sha256 of files too large to read at once (models), computed once per process per file version.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";

// Keyed by what changes when a file is replaced or rewritten, so a changed file is hashed anew.
// Promises, not digests: two callers asking at once share one read of the file.
const digests = new Map<string, Promise<string>>();

/**
 * The file's sha256 (lowercase hex), streamed. Memoized by (absolute path, size, mtimeMs): verifying
 * the model and later looking up its head profile read a 100 MB file once, not twice.
 */
export async function sha256File(path: string): Promise<string> {
  const absolute = resolve(path);
  const { size, mtimeMs } = await stat(absolute);
  const key = `${absolute}\0${size}\0${mtimeMs}`;
  let digest = digests.get(key);
  if (!digest) {
    digest = hashStream(absolute);
    digests.set(key, digest);
    // a failed read (file removed mid-way, EACCES) must not be remembered
    digest.catch(() => digests.delete(key));
  }
  return digest;
}

async function hashStream(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
