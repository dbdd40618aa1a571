// The chat template a loaded model is served with: its own (GGUF tokenizer.chat_template) with its
// BOS/EOS texts, so that `serve` and `eval` render a conversation the same way.
import type { SteeringEngine } from "../engine/engine.js";
import { ChatTemplate } from "./chatTemplate.js";

/** The model's own chat template, or `fallback` (a Jinja source) when its GGUF has none, or null. */
export function modelChatTemplate(engine: SteeringEngine, fallback?: string): ChatTemplate | null {
  const source = engine.model.fileInfo.metadata.tokenizer?.chat_template ?? fallback;
  if (!source) return null;
  const tokens = engine.model.tokens;
  return new ChatTemplate(source, {
    bos_token: tokens.bos != null ? engine.tokenText(tokens.bos) : "",
    eos_token: tokens.eos != null ? engine.tokenText(tokens.eos) : "",
  });
}
