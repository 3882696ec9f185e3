import assert from "node:assert/strict";
import { methods } from "./registry.ts";
import type { Method } from "./method.ts";

Deno.test("methods: every method a file of this folder exports is registered under its name", async () => {
  const found: string[] = [];
  for await (const entry of Deno.readDir(new URL(".", import.meta.url))) {
    if (!entry.name.endsWith(".ts") || entry.name.endsWith("_test.ts")) continue;
    const module = await import(`./${entry.name}`);
    for (const value of Object.values(module)) {
      const m = value as Partial<Method>;
      if (typeof m?.quantize !== "function" || typeof m.unsupported !== "function") continue;
      assert.equal(methods.get(m.name!), value, `${entry.name} exports "${m.name}"`);
      found.push(m.name!);
    }
  }
  assert.deepEqual(found.sort(), [...methods.names()].sort());
});
