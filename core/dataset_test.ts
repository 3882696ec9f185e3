import assert from "node:assert/strict";
import { readText } from "./dataset.ts";

Deno.test("readText skips skipChars characters, then keeps maxChars", async () => {
  const path = await Deno.makeTempFile({ suffix: ".txt" });
  try {
    await Deno.writeTextFile(path, "0123456789abcdef");
    const base = { id: "t", kind: "text" as const, path, maxChars: 0 };
    assert.equal(await readText(base), "0123456789abcdef");
    assert.equal(await readText({ ...base, maxChars: 4 }), "0123");
    assert.equal(await readText({ ...base, skipChars: 10 }), "abcdef");
    assert.equal(await readText({ ...base, skipChars: 10, maxChars: 3 }), "abc");
  } finally {
    await Deno.remove(path);
  }
});
