// The playground page: emphasize text, run the same request steered and unsteered side by side
// (both streamed), chart where the steered heads look (steering.diagnostics), try AutoPASTA.
// Plain browser JavaScript talking to this server's own API; nothing is loaded from elsewhere.

const $ = (selector) => document.querySelector(selector);
const KEY_STORAGE = "pasta-playground-api-key";
const EXAMPLE =
  "Maria Lopez grew up in Seville. She works as a marine biologist and studies dolphins near the coast.\nQuestion: What is Maria Lopez's occupation?\nAnswer:";

/** Emphasized spans: which box, the characters, and the text they held (edits that change it drop the span). */
let spans = [];
/** The text box a selection is taken from: the last one focused. */
let lastBox = $("#prompt");
/** Sentences AutoPASTA chose in the last run, highlighted in the preview. */
let autoSentences = [];
let profile = null;

const kind = () => document.querySelector('input[name="kind"]:checked').value;
const boxes = () => (kind() === "prompt" ? ["prompt"] : ["system", "user"]);

function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

async function errorMessage(res) {
  const body = await res.json().catch(() => null);
  return body?.error?.message ?? `HTTP ${res.status}`;
}

async function loadModelInfo() {
  const info = $("#model-info");
  try {
    const res = await fetch("/v1/models", { headers: authHeaders() });
    if (!res.ok) {
      info.textContent = res.status === 401 ? "enter the API key" : await errorMessage(res);
      return;
    }
    const model = (await res.json()).data[0];
    profile = model.meta.profile;
    const heads = profile ? Object.entries(profile.heads).map(([layer, hs]) => `${layer}:[${hs.join(",")}]`) : [];
    info.textContent = `${model.id}, ${model.meta.heads_per_layer.length} layers; profile heads ${heads.join(" ") || "none"}`;
    $("#alpha").placeholder = String(profile?.alpha ?? 0.01);
  } catch (err) {
    info.textContent = `cannot reach the server: ${err.message}`;
  }
}

// ---- emphasis -------------------------------------------------------------------------------

function addSelection() {
  const box = lastBox;
  const { selectionStart: start, selectionEnd: end } = box;
  if (!boxes().includes(box.id) || end <= start) {
    setStatus("select some text in a box first", true);
    return;
  }
  spans = spans.filter((s) => s.box !== box.id || s.end <= start || s.start >= end); // a new span replaces what it overlaps
  spans.push({ box: box.id, start, end, text: box.value.slice(start, end) });
  spans.sort((a, b) => a.box.localeCompare(b.box) || a.start - b.start);
  renderEmphasis();
}

function dropStaleSpans(box) {
  spans = spans.filter((s) => s.box !== box.id || box.value.slice(s.start, s.end) === s.text);
}

function renderEmphasis() {
  const list = $("#spans");
  list.replaceChildren(
    ...spans.map((span, i) => {
      const item = document.createElement("li");
      item.textContent = span.text;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.title = "remove";
      remove.textContent = "×";
      remove.addEventListener("click", () => {
        spans.splice(i, 1);
        renderEmphasis();
      });
      item.append(remove);
      return item;
    }),
  );
  const preview = $("#preview");
  preview.replaceChildren();
  for (const id of boxes()) {
    const text = $(`#${id}`).value;
    if (!text) continue;
    const marks = spans.filter((s) => s.box === id).map((s) => ({ start: s.start, end: s.end, className: "" }));
    for (const sentence of autoSentences) {
      const at = text.indexOf(sentence);
      if (at >= 0) marks.push({ start: at, end: at + sentence.length, className: "auto" });
    }
    marks.sort((a, b) => a.start - b.start);
    let cursor = 0;
    for (const m of marks) {
      if (m.start < cursor) continue;
      preview.append(text.slice(cursor, m.start));
      const mark = document.createElement("mark");
      mark.className = m.className;
      mark.textContent = text.slice(m.start, m.end);
      preview.append(mark);
      cursor = m.end;
    }
    preview.append(`${text.slice(cursor)}\n`);
  }
}

// ---- requests -------------------------------------------------------------------------------

function headsSetting() {
  const value = $("#heads-value").value.trim();
  switch ($("#heads-kind").value) {
    case "profile":
      return undefined;
    case "layers": {
      const layers = value.split(",").flatMap((part) => {
        const [from, to] = part.split("-").map((n) => Number(n.trim()));
        if (!Number.isInteger(from) || (to !== undefined && !Number.isInteger(to))) throw new Error(`layers: cannot read "${part}"`);
        return to === undefined ? [from] : Array.from({ length: to - from + 1 }, (_, i) => from + i);
      });
      return layers;
    }
    default:
      try {
        return JSON.parse(value);
      } catch {
        throw new Error('heads: write a JSON object such as {"6": [8], "19": [1]}');
      }
  }
}

/** The request body for one side: unsteered, steered with the emphasis, or AutoPASTA. */
function requestFor(side) {
  const common = { max_tokens: Number($("#max-tokens").value) || 48, temperature: 0, stream: true };
  let steering;
  if (side !== "unsteered") {
    steering = { diagnostics: { all_heads: $("#all-heads").checked } };
    const heads = headsSetting();
    if (heads !== undefined) steering.heads = heads;
    if ($("#alpha").value !== "") steering.alpha = Number($("#alpha").value);
    if (side === "auto") steering.auto = true;
  }
  // AutoPASTA picks its sentences itself, from the whole prompt (or the user message)
  const emphasized = side === "auto" ? [] : spans;
  if (kind() === "prompt") {
    if (steering) steering.emphasis = emphasized.map(({ start, end }) => ({ start, end }));
    return { path: "/v1/generate", body: { prompt: $("#prompt").value, ...common, ...(steering ? { steering } : {}) } };
  }
  const system = $("#system").value;
  const messages = [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: $("#user").value }];
  if (steering) {
    const index = (box) => (box === "system" ? 0 : messages.length - 1);
    steering.emphasis = emphasized.map(({ box, start, end }) => ({ start, end, message: index(box) }));
  }
  return { path: "/v1/chat/completions", body: { messages, ...common, ...(steering ? { steering } : {}) } };
}

/** POSTs a streaming request; `onChunk` gets each event's JSON. An `error` event or a non-200 throws. */
async function streamRequest({ path, body }, onChunk) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...authHeaders() },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(await errorMessage(res));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: ?(.*)$/m.exec(block)?.[1];
      const data = [...block.matchAll(/^data: ?(.*)$/gm)].map((m) => m[1]).join("\n");
      if (!data || data === "[DONE]") continue;
      const json = JSON.parse(data);
      if (event === "error") throw new Error(json.error?.message ?? "the stream failed");
      onChunk(json);
    }
  }
}

/** Runs one side into its panel; resolves with the steering reports that came with the stream. */
async function runSide(side, output) {
  output.textContent = "";
  output.classList.remove("error");
  const steering = {};
  try {
    await streamRequest(requestFor(side), (chunk) => {
      const text = chunk.text ?? chunk.choices?.[0]?.delta?.content ?? "";
      if (text) output.textContent += text;
      if (chunk.steering) Object.assign(steering, chunk.steering);
    });
  } catch (err) {
    output.textContent = err.message;
    output.classList.add("error");
    throw err;
  }
  return steering;
}

async function run(side) {
  setStatus("running…");
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  const started = performance.now();
  try {
    if (side === "steered" && spans.length === 0) throw new Error("emphasize something first (select text, then Emphasize selection)");
    $("#steered-title").textContent = side === "auto" ? "AutoPASTA" : "Steered";
    const [, steering] = await Promise.all([runSide("unsteered", $("#out-unsteered")), runSide(side, $("#out-steered"))]);
    autoSentences = steering.auto ? steering.auto.sentences.map((s) => s.text) : [];
    renderAuto(steering.auto);
    renderEmphasis();
    renderChart(steering.diagnostics);
    setStatus(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    for (const b of document.querySelectorAll("button")) b.disabled = false;
  }
}

// ---- results --------------------------------------------------------------------------------

function renderAuto(auto) {
  const list = $("#auto-sentences");
  list.replaceChildren();
  if (!auto) return;
  if (!auto.matched) {
    const why = {
      length: `AutoPASTA's pass 1 was still writing after ${auto.selection.completion_tokens} tokens, so it chose nothing`,
      most_of_context: `AutoPASTA's pass 1 named ${auto.named_sentences} of the context's ${auto.context_sentences} sentences, which is no choice`,
    }[auto.reason] ?? "AutoPASTA matched no sentence";
    list.append(Object.assign(document.createElement("li"), { textContent: `${why}: the answer is unsteered` }));
    return;
  }
  for (const s of auto.sentences) {
    const item = document.createElement("li");
    item.textContent = `${s.text} (score ${s.score.toFixed(2)})`;
    list.append(item);
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Two bars per head: its share of attention on the emphasis unsteered and steered. */
function renderChart(diagnostics) {
  const chart = $("#chart");
  chart.replaceChildren();
  const heads = diagnostics?.tokens?.[0]?.heads ?? [];
  if (heads.length === 0) {
    chart.textContent = "no diagnostics in this answer";
    return;
  }
  const [labelWidth, barWidth, row] = [70, 420, 30];
  const root = svg("svg", { width: labelWidth + barWidth + 60, height: heads.length * row + 10, role: "img", "aria-label": "attention chart" });
  heads.forEach((h, i) => {
    const y = i * row + 4;
    root.append(svg("text", { x: 0, y: y + 16 }, `L${h.layer} H${h.head}`));
    for (const [offset, value, className] of [
      [0, h.share_unsteered, "bar-unsteered"],
      [12, h.share_steered, "bar-steered"],
    ]) {
      root.append(
        svg("rect", {
          x: labelWidth,
          y: y + offset,
          width: Math.max(1, value * barWidth),
          height: 10,
          class: `bar ${className}${h.steered_head ? "" : " bar-dim"}`,
          "data-layer": h.layer,
          "data-head": h.head,
        }),
      );
      root.append(svg("text", { x: labelWidth + value * barWidth + 4, y: y + offset + 9 }, value.toFixed(3)));
    }
  });
  chart.append(root);
}

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ---- wiring ---------------------------------------------------------------------------------

$("#prompt").value = EXAMPLE;
$("#api-key").value = localStorage.getItem(KEY_STORAGE) ?? "";
$("#api-key").addEventListener("change", () => {
  localStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
  loadModelInfo();
});
for (const radio of document.querySelectorAll('input[name="kind"]')) {
  radio.addEventListener("change", () => {
    $("#prompt-fields").hidden = kind() !== "prompt";
    $("#chat-fields").hidden = kind() !== "chat";
    lastBox = $(kind() === "prompt" ? "#prompt" : "#user");
    spans = [];
    renderEmphasis();
  });
}
for (const box of document.querySelectorAll("textarea")) {
  box.addEventListener("focus", () => {
    lastBox = box;
  });
  box.addEventListener("input", () => {
    dropStaleSpans(box);
    renderEmphasis();
  });
}
$("#heads-kind").addEventListener("change", () => {
  const value = $("#heads-value");
  value.disabled = $("#heads-kind").value === "profile";
  value.placeholder = { profile: "", layers: "e.g. 20-25 or 3,7", list: '{"6": [8], "19": [1]}' }[$("#heads-kind").value];
});
$("#emphasize").addEventListener("click", addSelection);
$("#clear-emphasis").addEventListener("click", () => {
  spans = [];
  autoSentences = [];
  renderEmphasis();
});
$("#run").addEventListener("click", () => run("steered"));
$("#auto").addEventListener("click", () => run("auto"));
renderEmphasis();
loadModelInfo();
