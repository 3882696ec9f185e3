/**
 * Element formats that weights can be stored in, and the format presets a suite may name by a
 * bare string (`f32`, `int4`, …).
 *
 * @module
 */
import { Registry } from "../../harness/registry.ts";

/** What a weight element is stored as. */
export interface ElementFormat {
  name: string;
  /** `float` formats run unquantized; `int` formats are integer codes with scales. */
  kind: "float" | "int";
  /** Bits of one element (scales excluded). */
  bits: number;
  description: string;
}

/** Known element formats for `weights:`. */
export const elementFormats = new Registry<ElementFormat>("weight format", [
  ["f32", { name: "f32", kind: "float", bits: 32, description: "IEEE float32, unquantized" }],
  ["int8", { name: "int8", kind: "int", bits: 8, description: "8-bit integer codes + scales" }],
  ["int4", { name: "int4", kind: "int", bits: 4, description: "4-bit integer codes + scales" }],
  ["int3", { name: "int3", kind: "int", bits: 3, description: "3-bit integer codes + scales" }],
  ["int2", { name: "int2", kind: "int", bits: 2, description: "2-bit integer codes + scales" }],
]);

/**
 * Default settings of a format named by a bare string: per-channel (group 0), symmetric.
 * `int4` alone means per-channel symmetric int4.
 */
export const DEFAULT_GROUP = 0;
/** Integer formats are symmetric unless a suite says `symmetric: false`. */
export const DEFAULT_SYMMETRIC = true;
/** Bits used to store one scale or zero point (scales are rounded to float16, as deployed). */
export const SCALE_BITS = 16;
