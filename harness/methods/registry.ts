/**
 * Registry of quantization methods: adding a method is one file plus one line here.
 *
 * @module
 */
import { Registry } from "../registry.ts";
import type { Method } from "./method.ts";
import { none } from "./none.ts";
import { rtn } from "./rtn.ts";

/** All known methods by name. */
export const methods = new Registry<Method>("method", [
  ["none", none],
  ["rtn", rtn],
]);
