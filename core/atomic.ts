/**
 * Atomic file writes: an interrupted run never leaves a truncated report that looks complete
 * (DESIGN.md, "Command-line contract").
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

/**
 * Writes `data` (text as UTF-8) to `path` by writing a temporary file in the same directory, flushing
 * it to disk and renaming it over `path`. Readers see either the old file or the complete new one.
 * Parent directories are created as needed. On failure the temporary file is removed and the error
 * is rethrown.
 *
 * @example
 * ```ts
 * await writeFileAtomic("out/quickstart/results.csv", csvText);
 * ```
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const dir = dirname(path);
  await Deno.mkdir(dir, { recursive: true });
  // Same directory as the target so the rename stays on one file system (rename is atomic there);
  // a leading dot keeps half-written files out of casual listings.
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
    try {
      let written = 0;
      while (written < bytes.length) written += await file.write(bytes.subarray(written));
      // Flush before the rename: otherwise a crash can leave the new name pointing at empty data.
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}
