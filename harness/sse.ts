// Server-sent events, read the one way every test and benchmark reads them. The server writes
// `data: <json>` per chunk, `data: [DONE]` last, and an error after the stream has begun as
// `event: error` + `data: <OpenAI error body>` (src/server/sse.ts); llama-server writes `data:` blocks.
//
// Lines are `field: value`; as the SSE spec says, one space after the colon is optional and
// several `data:` lines are joined with "\n". `wellFormed` says whether a block is exactly what the
// server writes (an optional `event: NAME` line, then one `data: ` line), for the tests that check
// the wire format itself.

export interface SseEvent {
  /** the `event:` field; undefined for plain data events */
  event?: string;
  /** the `data:` lines, joined; "" when the block has none */
  data: string;
  /** an optional `event: NAME` line, then exactly one `data: ...` line, nothing else */
  wellFormed: boolean;
}

/** One event block (the text between two blank lines). */
export function parseSseBlock(block: string): SseEvent {
  const lines = block.split("\n");
  let event: string | undefined;
  const data: string[] = [];
  for (const line of lines) {
    const m = /^(event|data):(.*)$/s.exec(line);
    if (!m) continue; // comments (":...") and other fields carry nothing for us
    const value = m[2]!.replace(/^ /, "");
    if (m[1] === "event") event = value;
    else data.push(value);
  }
  const wellFormed =
    lines.length === (event === undefined ? 1 : 2) &&
    (event === undefined || (lines[0]!.startsWith("event: ") && event !== "")) &&
    lines.at(-1)!.startsWith("data: ");
  return { ...(event === undefined ? {} : { event }), data: data.join("\n"), wellFormed };
}

/** Every event of a complete SSE body, in order. */
export function sseEvents(text: string): SseEvent[] {
  return text
    .split("\n\n")
    .filter((block) => block !== "")
    .map(parseSseBlock);
}

/**
 * The `data` of each event of a complete stream, `[DONE]` included; throws on an `event: error`
 * (with its body in the message) or on any other named event, so that a test reading only data
 * cannot pass over an error.
 */
export function sseData(text: string): string[] {
  return sseEvents(text).map((e) => {
    if (e.event !== undefined) throw new Error(`the stream carries an "${e.event}" event: ${e.data.slice(0, 500)}`);
    return e.data;
  });
}

/** Incremental parsing: push text as it arrives, get the events completed by it. */
export class SseParser {
  private buffer = "";

  push(text: string): SseEvent[] {
    this.buffer += text;
    const events: SseEvent[] = [];
    let end: number;
    while ((end = this.buffer.indexOf("\n\n")) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      if (block !== "") events.push(parseSseBlock(block));
    }
    return events;
  }

  /** what arrived after the last complete event (a stream that broke off mid-event) */
  get rest(): string {
    return this.buffer;
  }
}
