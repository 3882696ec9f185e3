/**
 * Registry of row codecs for {@linkcode CodedMatrix} weights.
 *
 * @module
 */
import { Registry } from "../../harness/registry.ts";
import type { RowCodec } from "./coded.ts";

/** All known row codecs by name. */
export const rowCodecs: Registry<RowCodec> = new Registry<RowCodec>("row codec", []);
