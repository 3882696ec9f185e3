/**
 * Reads llama.cpp's tokenizer test vectors (`tests/test-tokenizer-0`'s `.inp`/`.out` pairs, as in
 * `shared/models/gguf-vocab/`): inputs separated by `"\n__ggml_vocab_test__\n"`, expected ids one
 * line per input, space-separated.
 *
 * @module
 */

/** The test vectors of a vocabulary file: `[text, expected ids]` pairs. */
export async function readVocabVectors(vocabPath: string): Promise<[string, number[]][]> {
  const inp = await Deno.readTextFile(vocabPath + ".inp");
  const out = await Deno.readTextFile(vocabPath + ".out");
  const sep = "\n__ggml_vocab_test__\n";
  const inputs: string[] = [];
  for (let pos = 0; pos < inp.length;) {
    const next = inp.indexOf(sep, pos);
    if (next < 0) {
      inputs.push(inp.slice(pos));
      break;
    }
    inputs.push(inp.slice(pos, next));
    pos = next + sep.length;
  }
  const lines = out.split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (lines.length !== inputs.length) {
    throw new RangeError(`${vocabPath}: ${inputs.length} inputs but ${lines.length} outputs`);
  }
  return inputs.map((s, i) => {
    const line = lines[i]!.trim();
    return [s, line === "" ? [] : line.split(" ").map(Number)];
  });
}
