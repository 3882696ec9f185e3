/**
 * Locates the `shared/` folder of public models and data (see `../shared/README.md`): the
 * `QUANTBENCH_SHARED` environment variable, else `../shared` beside the repository root.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Absolute path of the repository root. */
export const REPO_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Absolute path of the shared folder (it may not exist). */
export function sharedDir(): string {
  const env = Deno.env.get("QUANTBENCH_SHARED");
  return env ? resolve(env) : resolve(REPO_ROOT, "..", "shared");
}

/** Absolute path of a file under the shared folder. */
export function sharedPath(...parts: string[]): string {
  return join(sharedDir(), ...parts);
}

/**
 * Whether a shared file exists. Tests use it as
 * `Deno.test({ name, ignore: !hasShared("models/stories260K"), fn })` and print why they skip.
 */
export function hasShared(...parts: string[]): boolean {
  const ok = existsSync(sharedPath(...parts));
  if (!ok) {
    console.warn(`skipping: ${sharedPath(...parts)} is absent (set QUANTBENCH_SHARED)`);
  }
  return ok;
}
