import assert from "node:assert/strict";
import { UnknownNameError } from "../../core/registry.ts";
import { engineFor, inProcessFactory } from "./registry.ts";

Deno.test("kernel backends open in process; an unknown backend lists the known names", () => {
  assert.equal(engineFor("cpu"), inProcessFactory);
  assert.equal(engineFor("webgpu").id("webgpu"), "in_process/webgpu");
  assert.throws(
    () => engineFor("cpuu"),
    (e) => e instanceof UnknownNameError && /"cpu"/.test(e.message),
  );
});
