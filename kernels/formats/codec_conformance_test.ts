/**
 * The codec conformance table (`codec_conformance.ts`) against every registered row codec, each
 * with the error bound its format module declares.
 */
import assert from "node:assert/strict";
import { ensureRowCodec, rowCodecs } from "./codecs.ts";
import { boundOf, CODEC_PROPERTIES } from "./codec_conformance.ts";
import { formatOfCodec } from "./formats.ts";
import { FP4_E2M1, FP6_E3M2, FP8_E4M3 } from "./minifloat.ts";
import { scaledMinifloatCodec } from "./scaled_minifloat.ts";

// Grouped scaled minifloats are made on first use; put a few in the table.
ensureRowCodec(scaledMinifloatCodec({ element: FP8_E4M3, group: 32, scaleDtype: "bf16" }));
ensureRowCodec(scaledMinifloatCodec({ element: FP4_E2M1, group: 64, scaleDtype: "f16" }));
ensureRowCodec(scaledMinifloatCodec({ element: FP6_E3M2, group: 128, scaleDtype: "f16" }));

for (const name of rowCodecs.names()) {
  for (const [property, check] of Object.entries(CODEC_PROPERTIES)) {
    Deno.test(
      `${name}: ${property}`,
      () => check(rowCodecs.get(name), boundOf(formatOfCodec(name), name)),
    );
  }
}

Deno.test("every registered codec has an error bound", () => {
  for (const name of rowCodecs.names()) boundOf(formatOfCodec(name), name);
  assert.ok(rowCodecs.names().length >= 35);
});
