/**
 * Turning a conversation (and tool definitions) into prompt tokens: through the model's own chat
 * template when its tokenizer ships one (`tokenizer.chat`), else through a plain fallback format.
 *
 * With a template, the rendered text is encoded as it is (Hugging Face's `apply_chat_template`
 * convention: the template writes any BOS and role tokens itself). The fallback, for base models
 * without a template, is BOS (unless the tokenizer says it adds none) followed by:
 *
 * ```text
 * System: <system message>          ← only when there is one
 * Tools: <one JSON tool definition per line>
 * Call tools by answering with JSON: [{"name": "<tool>", "arguments": {<name>: <value>, …}}, …]
 *                                    ← these two only when there are tools
 * User: <message>
 * Assistant: <message>              ← earlier assistant turns, if any
 * Assistant:                        ← the generation prompt
 * ```
 *
 * each part on its own line(s), separated by a blank line.
 *
 * @module
 */
import type { ChatMessage, Tokenizer } from "../../core/model.ts";
import type { ChatPrompt } from "./engine.ts";

/** Renders messages (and tools) for generation and encodes them with `tokenizer`. */
export function chatPrompt(
  tokenizer: Tokenizer,
  messages: readonly ChatMessage[],
  tools?: readonly unknown[],
): ChatPrompt {
  const hasTools = tools !== undefined && tools.length > 0;
  if (tokenizer.chat) {
    const text = tokenizer.chat.render(messages, {
      tools: hasTools ? tools : undefined,
      addGenerationPrompt: true,
    });
    return { text, ids: tokenizer.encode(text), source: "template" };
  }
  const text = fallbackChat(messages, hasTools ? tools : undefined);
  const bos = tokenizer.addBos === false ? [] : [tokenizer.bosId];
  return { text, ids: [...bos, ...tokenizer.encode(text)], source: "fallback" };
}

/** The fallback chat format (see the module documentation). */
export function fallbackChat(messages: readonly ChatMessage[], tools?: readonly unknown[]): string {
  const parts: string[] = [];
  const system = messages.filter((m) => m.role === "system").map((m) => m.content ?? "");
  if (system.length > 0) parts.push(`System: ${system.join("\n")}`);
  if (tools && tools.length > 0) {
    parts.push(
      `Tools: ${tools.map((t) => JSON.stringify(t)).join("\n")}\n` +
        `Call tools by answering with JSON: ` +
        `[{"name": "<tool>", "arguments": {<name>: <value>, …}}, …]`,
    );
  }
  for (const m of messages) {
    if (m.role === "system") continue;
    const who = m.role === "assistant" ? "Assistant" : m.role === "tool" ? "Tool" : "User";
    parts.push(`${who}: ${m.content ?? ""}`);
  }
  parts.push("Assistant:");
  return parts.join("\n\n");
}
