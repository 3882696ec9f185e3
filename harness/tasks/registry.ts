/**
 * Registry of scoring tasks.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { Task } from "./task.ts";
import { perplexity } from "./perplexity.ts";
import { kld } from "./kld.ts";
import { jsonTask } from "./json_validity.ts";
import { toolUse } from "./tool_use.ts";
import { longContext } from "./long_context.ts";
import { throughput } from "./throughput.ts";

/** All known tasks by name. */
export const tasks = new Registry<Task>("task", [
  ["perplexity", perplexity],
  ["kld", kld],
  ["json", jsonTask],
  ["tool_use", toolUse],
  ["long_context", longContext],
  ["throughput", throughput],
]);
