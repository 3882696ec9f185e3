/**
 * The current git commit, for run metadata.
 *
 * @module
 */
import { REPO_ROOT } from "../../core/shared.ts";

/** `git rev-parse HEAD` of the repository, or null when git or the permission is missing. */
export async function gitSha(): Promise<string | null> {
  try {
    const out = await new Deno.Command("git", {
      args: ["rev-parse", "HEAD"],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}
