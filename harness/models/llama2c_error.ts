/**
 * The error of the llama2.c checkpoint and tokenizer readers.
 *
 * @module
 */

/** Thrown for a llama2.c file that cannot be read; names the file and the problem. */
export class Llama2cFormatError extends Error {
  override name = "Llama2cFormatError";
  constructor(readonly file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options);
  }
}
