/**
 * Registry of quantization methods: adding a method is one file plus one line here.
 *
 * @module
 */
import { Registry } from "../../core/registry.ts";
import type { Method } from "./method.ts";
import { none } from "./none.ts";
import { rtn } from "./rtn.ts";
import { gptq } from "./gptq.ts";
import { awq } from "./awq.ts";
import { smoothquant } from "./smoothquant.ts";
import { hqq } from "./hqq.ts";
import { quipSharp } from "./quip_sharp.ts";
import { quip } from "./quip.ts";
import { aqlm } from "./aqlm.ts";
import { vptq } from "./vptq.ts";
import { affinequant } from "./affinequant.ts";
import { quarot } from "./quarot.ts";
import { llmQat } from "./llm_qat.ts";
import { randomCodes } from "./random_codes.ts";

/** All known methods by name. */
export const methods = new Registry<Method>("method", [
  ["none", none],
  ["rtn", rtn],
  ["gptq", gptq],
  ["awq", awq],
  ["smoothquant", smoothquant],
  ["hqq", hqq],
  ["quip_sharp", quipSharp],
  ["quip", quip],
  ["aqlm", aqlm],
  ["vptq", vptq],
  ["affinequant", affinequant],
  ["quarot", quarot],
  ["llm_qat", llmQat],
  ["random_codes", randomCodes],
]);
