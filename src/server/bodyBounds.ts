// Counts checked on a parsed body before its schema validates it. Validating each of a client's 100k
// chat messages, or each key of a 100k-entry logit_bias, holds the event loop for a quarter of a
// second, which one client can repeat as fast as the refusals come back; counting them takes
// microseconds. The schemas keep the same bounds (and document them); this only refuses early.
import { MAX_EMPHASIS_ITEMS, MAX_LOGIT_BIAS, MAX_MESSAGES, MAX_TOOLS } from "../defaults.js";
import { InvalidRequestError } from "../errors.js";

const BOUNDS: ReadonlyArray<{ path: readonly string[]; max: number; what: string }> = [
  { path: ["messages"], max: MAX_MESSAGES, what: "messages" },
  { path: ["tools"], max: MAX_TOOLS, what: "tools" },
  { path: ["logit_bias"], max: MAX_LOGIT_BIAS, what: "tokens" },
  { path: ["steering", "emphasis"], max: MAX_EMPHASIS_ITEMS, what: "emphasized spans" },
];

/** An array's length or an object's key count; null for anything else. */
function count(value: unknown): number | null {
  if (Array.isArray(value)) return value.length;
  if (value !== null && typeof value === "object") return Object.keys(value).length;
  return null;
}

/** A 400 naming the first field of `body` with more entries than its bound (before any schema runs). */
export function checkBodyBounds(body: unknown): void {
  for (const { path, max, what } of BOUNDS) {
    let value: unknown = body;
    for (const key of path) value = value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
    const n = count(value);
    if (n !== null && n > max)
      throw new InvalidRequestError(`${path.join(".")}: ${n} ${what}, at most ${max}`, path.join("."), "too_many_items");
  }
}
