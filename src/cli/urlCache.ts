// What the cache knows of a model fetched from a plain URL: a record beside the file (the URL, the
// size written, the server's ETag and Last-Modified), as llama.cpp's own downloader keeps one. A copy
// is served only when its size matches its record; when the server answers, its headers decide
// whether the copy is still the file at that URL.
import { readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { z } from "zod";

const urlRecordSchema = z.object({
  url: z.string(),
  size: z.number().int().nonnegative(),
  etag: z.string().optional(),
  lastModified: z.string().optional(),
});
export type UrlRecord = z.infer<typeof urlRecordSchema>;

/** What a HEAD request says of the file behind a URL (each part only when the server sends it). */
export interface UrlHead {
  size?: number;
  etag?: string;
  lastModified?: string;
}

const recordPath = (modelPath: string) => `${modelPath}.source.json`;

/** The record of a cached copy, or null when there is none or it cannot be read. */
export function readUrlRecord(modelPath: string): UrlRecord | null {
  try {
    const parsed = urlRecordSchema.safeParse(JSON.parse(readFileSync(recordPath(modelPath), "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export async function writeUrlRecord(modelPath: string, record: UrlRecord): Promise<void> {
  await writeFile(recordPath(modelPath), `${JSON.stringify(record)}\n`);
}

export async function removeCachedCopy(modelPath: string): Promise<void> {
  await rm(modelPath, { force: true });
  await rm(recordPath(modelPath), { force: true });
}

/**
 * The server's headers for `url` (redirects followed), null when it cannot be reached within
 * `timeoutMs`; an HTTP error status is an Error naming it.
 */
export async function headOf(url: string, timeoutMs: number): Promise<UrlHead | null> {
  let res: Response;
  try {
    res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(timeoutMs) });
  } catch {
    return null;
  }
  if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`.trim());
  const length = Number(res.headers.get("content-length") ?? Number.NaN);
  const etag = res.headers.get("etag");
  const lastModified = res.headers.get("last-modified");
  return {
    ...(Number.isSafeInteger(length) && length > 0 ? { size: length } : {}),
    ...(etag ? { etag } : {}),
    ...(lastModified ? { lastModified } : {}),
  };
}

/** Why the copy recorded in `record` is no longer the file the server has, or null when nothing says so. */
export function staleReason(record: UrlRecord, head: UrlHead): string | null {
  if (record.etag && head.etag && record.etag !== head.etag) return `its ETag changed (${record.etag} -> ${head.etag})`;
  if (head.size !== undefined && head.size !== record.size) return `its size changed (${record.size} -> ${head.size} bytes)`;
  if (!record.etag && record.lastModified && head.lastModified && record.lastModified !== head.lastModified)
    return `it was modified (${head.lastModified})`;
  return null;
}
