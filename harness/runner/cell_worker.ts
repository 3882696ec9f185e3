/**
 * Worker-thread entry: receives a {@linkcode CellJob}, posts {@linkcode CellEvent}s, then `done`.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { type CellJob, computeCell } from "./compute.ts";

self.onmessage = async (event: MessageEvent<CellJob>) => {
  await computeCell(event.data, (e) => self.postMessage(e));
  self.postMessage({ type: "done" });
};
