// How a greedy answer is judged: plain functions of the model's text, so that each check can be
// tested on its own and read in one place.

/** The first balanced `{...}` in the text that parses as a JSON object (a ```json fence or a lead-in sentence around it is fine). */
export function firstJsonObject(text: string): Record<string, unknown> | null {
  for (let start = text.indexOf("{"); start >= 0; start = text.indexOf("{", start + 1)) {
    const end = balancedEnd(text, start);
    if (end < 0) continue;
    try {
      const value: unknown = JSON.parse(text.slice(start, end));
      if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
    } catch {
      // not JSON from this brace: try the next one
    }
  }
  return null;
}

/** Index just past the `}` that closes the `{` at `start` (braces inside strings do not count), or -1. */
function balancedEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i + 1;
  }
  return -1;
}

/** Whether `word` occurs in the text as a whole word, case-insensitively. */
export function hasWord(text: string, word: string): boolean {
  const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`(?<![\\p{L}\\p{N}])${escaped}(?![\\p{L}\\p{N}])`, "iu").test(text);
}

/**
 * The fewest characters an answer that rewrites `text` can have: half of the text, or of what
 * `maxTokens` lets it write (3 characters a token, fewer than English text takes). A refusal or a
 * one-line comment ("I should be the one speaking throughout.") holds the asked pronouns too.
 */
export function rewriteFloor(text: string, maxTokens: number): number {
  return Math.min(text.length, maxTokens * 3) / 2;
}

/** Case-insensitive substring test. */
export function mentions(text: string, phrase: string): boolean {
  return text.toLowerCase().includes(phrase.toLowerCase());
}
