/**
 * Content hashes for cache keys: files, directories and the harness's own source code.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join, relative } from "node:path";
import { REPO_ROOT } from "../../core/shared.ts";

/** SHA-256 (hex) of a string or bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** SHA-256 of a file, or of a directory's files (names and contents, sorted). */
export async function hashPath(path: string): Promise<string> {
  const info = await Deno.stat(path);
  if (info.isFile) return sha256(await Deno.readFile(path));
  const hash = createHash("sha256");
  for (const file of await listFiles(path)) {
    hash.update(relative(path, file)).update("\0").update(await Deno.readFile(file));
  }
  return hash.digest("hex");
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const p = join(dir, entry.name);
    if (entry.isDirectory) out.push(...await listFiles(p));
    else if (entry.isFile) out.push(p);
  }
  return out.sort();
}

let codeVersionPromise: Promise<string> | undefined;

/**
 * A hash of the harness's source (every non-test `.ts` file under `harness/` and `kernels/`), so a
 * code change invalidates cached results that it might change.
 */
export function codeVersion(): Promise<string> {
  codeVersionPromise ??= (async () => {
    const hash = createHash("sha256");
    for (const folder of ["harness", "kernels"]) {
      const files = (await listFiles(join(REPO_ROOT, folder)))
        .filter((f) => f.endsWith(".ts") && !f.endsWith("_test.ts"));
      for (const f of files) hash.update(relative(REPO_ROOT, f)).update(await Deno.readFile(f));
    }
    return hash.digest("hex").slice(0, 16);
  })();
  return codeVersionPromise;
}
