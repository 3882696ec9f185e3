/**
 * Chat templates: the Jinja source a model ships (`tokenizer_config.json` `chat_template`,
 * `chat_template.jinja`, or GGUF `tokenizer.chat_template`) rendered with `@huggingface/jinja` the
 * way transformers' `apply_chat_template` renders it: `messages`, `tools` (null when none),
 * `add_generation_prompt`, and the special-token strings `bos_token`, `eos_token`, `unk_token`,
 * `pad_token`.
 *
 * @module
 */
import { Template } from "@huggingface/jinja";
import type { ChatMessage, ChatTemplate } from "../../core/model.ts";
import { ModelFileError } from "./errors.ts";

/** A template that does not parse, or that fails while rendering (`raise_exception`). */
export class ChatTemplateError extends ModelFileError {
  override name = "ChatTemplateError";
}

/** Special-token strings that templates may reference. */
export interface ChatSpecialTokens {
  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  pad_token?: string;
}

/** A Jinja chat template; parsed on first use, so a broken template does not stop loading. */
export class JinjaChatTemplate implements ChatTemplate {
  #template: Template | undefined;

  constructor(
    readonly source: string,
    readonly specialTokens: ChatSpecialTokens,
    /** The file the template came from, for errors. */
    readonly file: string,
  ) {}

  render(
    messages: readonly ChatMessage[],
    options: { tools?: readonly unknown[]; addGenerationPrompt?: boolean } = {},
  ): string {
    try {
      this.#template ??= new Template(this.source);
    } catch (e) {
      throw new ChatTemplateError(
        this.file,
        `chat template does not parse: ${(e as Error).message}`,
        { cause: e },
      );
    }
    try {
      return this.#template.render({
        ...this.specialTokens,
        messages,
        tools: options.tools ?? null,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (e) {
      throw new ChatTemplateError(this.file, `chat template failed: ${(e as Error).message}`, {
        cause: e,
      });
    }
  }
}
