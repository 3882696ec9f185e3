/**
 * Registry of scoring tasks.
 *
 * @module
 */
import { Registry } from "../registry.ts";
import type { Task } from "./task.ts";
import { perplexity } from "./perplexity.ts";

/** All known tasks by name. */
export const tasks = new Registry<Task>("task", [
  ["perplexity", perplexity],
]);
