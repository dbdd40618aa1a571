// Counts checked on a parsed body before its schema validates it. Validating each of a client's 100k
// chat messages, or each key of a 100k-entry logit_bias, holds the event loop for a quarter of a
// second, which one client can repeat as fast as the refusals come back; counting them takes
// microseconds. The schemas keep the same bounds (and document them); this only refuses early.
import { MAX_EMPHASIS_ITEMS, MAX_LOGIT_BIAS, MAX_MESSAGE_ITEMS, MAX_MESSAGES, MAX_TOOLS } from "../defaults.js";
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

function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
}

/** A 400 naming the first field of `body` with more entries than its bound (before any schema runs). */
export function checkBodyBounds(body: unknown): void {
  for (const { path, max, what } of BOUNDS) {
    const n = count(path.reduce(field, body));
    if (n !== null && n > max)
      throw new InvalidRequestError(`${path.join(".")}: ${n} ${what}, at most ${max}`, path.join("."), "too_many_items");
  }
  checkMessageItems(field(body, "messages"));
}

/** The messages' content parts and tool calls, counted together (their number is already bounded above). */
function checkMessageItems(messages: unknown): void {
  if (!Array.isArray(messages)) return;
  let items = 0;
  for (const message of messages) {
    for (const key of ["content", "tool_calls"]) {
      const value = field(message, key);
      if (Array.isArray(value)) items += value.length;
    }
  }
  if (items > MAX_MESSAGE_ITEMS)
    throw new InvalidRequestError(
      `messages: ${items} content parts and tool calls in all, at most ${MAX_MESSAGE_ITEMS}`,
      "messages",
      "too_many_items",
    );
}
