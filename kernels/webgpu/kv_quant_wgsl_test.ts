/**
 * The WebGPU quantized KV cache against the CPU's (`kernels/cpu/kv_cache.ts`): after a prefill and
 * decode steps, every quantized key and value read back from the GPU's codes and sides equals the
 * CPU's dequantized copy bit for bit (inputs include rounding ties of the codes and of the f16
 * scale), and attention over the cache equals the CPU's attention over its view. The float caches
 * are windows of KIVI's block plus one row, shorter than the context and than some steps (rows
 * wrap); each step's keys and values are written to the step rows, as the projections do, and go
 * into the window through the runner's dispatches (`kv_window_wgsl.ts`).
 */
import assert from "node:assert/strict";
import { attention } from "../cpu/ops.ts";
import { QuantizedKvCache } from "../cpu/kv_cache.ts";
import { pseudoRandom, relativeError } from "../../core/test_values.ts";
import type { KvCacheSettings } from "../../core/model.ts";
import { adapterUnavailable, getGpu } from "./device.ts";
import { encodeDispatches, Kernels, STEP_STRIDE } from "./kernels.ts";
import {
  kvKeyWords,
  KvQuantError,
  type KvQuantLayout,
  kvQuantLayout,
  kvValueWords,
  kvWindowRewind,
} from "./kv_quant_wgsl.ts";

const unavailable = await adapterUnavailable();

/** Decodes position `j`, channel `c` of a read-back key or value buffer (`side` its side index). */
function decode(l: KvQuantLayout, words: Uint32Array, j: number, c: number, side: number): number {
  const word = words[j * l.rowWords + Math.floor(c / l.per)]!;
  const code = (word >>> ((c % l.per) * l.codeBits)) & (2 ** l.codeBits - 1);
  const s = words[l.maxSeqLen * l.rowWords + side]!;
  if (l.element.kind === "fp8") {
    const scale = new Float32Array(Uint32Array.of(s).buffer)[0]!;
    return Math.fround(l.element.minifloat.decode(code) * scale);
  }
  const view = new DataView(Uint32Array.of(s).buffer);
  return Math.fround(code * view.getFloat16(0, true) + view.getFloat16(2, true));
}

/**
 * Keys and values of `len` positions: random, with some groups made of exact rounding ties (a
 * range of `maxq` times an f16 midpoint, values halfway between codes).
 */
function cacheValues(len: number, kvDim: number, seed: number, bits: number): Float32Array {
  const x = pseudoRandom(len * kvDim, seed).map((v) => v * 3);
  const maxq = 2 ** bits - 1;
  // Channel 1 over the first 8 positions: lo = 0, hi = maxq · (1 + 3 · 2^-11), an f16 tie that
  // rounds up to even; then
  // (n + 0.5)-multiples of a representable scale.
  for (let t = 0; t < Math.min(8, len); t++) {
    x[t * kvDim + 1] = t === 0 ? 0 : maxq * (1 + 3 * 2 ** -11);
  }
  for (let c = 0; c < Math.min(8, kvDim); c++) x[3 * kvDim + c] = c === 0 ? 0 : (c + 0.5) / 4;
  x[3 * kvDim + 7] = maxq / 4;
  return x;
}

interface Case {
  settings: KvCacheSettings;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** `[pos, T]` forward steps (default: a prefill of 21, a partial block, then one-token steps). */
  steps?: number[][];
}

const CASES: Case[] = [
  { settings: { format: "int4", group: 8, residual: 16 }, nHeads: 4, nKvHeads: 2, headDim: 8 },
  { settings: { format: "int2", group: 0, residual: 16 }, nHeads: 2, nKvHeads: 2, headDim: 16 },
  { settings: { format: "int8", group: 4, residual: 8 }, nHeads: 4, nKvHeads: 1, headDim: 12 },
  { settings: { format: "int3", group: 8, residual: 0 }, nHeads: 2, nKvHeads: 1, headDim: 8 },
  { settings: { format: "fp8", group: 8, residual: 16 }, nHeads: 4, nKvHeads: 2, headDim: 8 },
  { settings: { format: "fp8_e5m2", group: 0, residual: 8 }, nHeads: 2, nKvHeads: 1, headDim: 8 },
  // Head size 128: where workgroup memory is 32 KiB (lavapipe), the quantized prefill tile does
  // not fit and the one-workgroup-per-row kernel runs the prefill.
  {
    settings: { format: "int4", group: 32, residual: 32 },
    nHeads: 2,
    nKvHeads: 1,
    headDim: 128,
    steps: [[0, 40], [40, 1]],
  },
  // A prompt in steps longer than the residual window (each overwriting window rows the step
  // before read), then decode steps across key groups and blocks.
  {
    settings: { format: "int4", group: 8, residual: 16 },
    nHeads: 4,
    nKvHeads: 2,
    headDim: 8,
    steps: [[0, 24], [24, 24], [48, 20], ...Array.from({ length: 12 }, (_, i) => [68 + i, 1])],
  },
  // mini's heads with KIVI's defaults: one prefill past the residual window, then a decode step.
  {
    settings: { format: "int2", group: 32, residual: 128 },
    nHeads: 8,
    nKvHeads: 2,
    headDim: 32,
    steps: [[0, 160], [160, 1]],
  },
];

for (const { settings, nHeads, nKvHeads, headDim, steps: given } of CASES) {
  Deno.test({
    name: `webgpu: quantized KV cache ${JSON.stringify(settings)} equals the CPU's`,
    ignore: unavailable !== undefined,
    async fn() {
      // A prefill of 21 (a partial block), then one-token steps across block boundaries.
      const steps = given ?? [[0, 21], ...Array.from({ length: 19 }, (_, i) => [21 + i, 1])];
      const len = steps.reduce((end, [pos, T]) => Math.max(end, pos! + T!), 0);
      const maxSeqLen = len + 8;
      const kvDim = nKvHeads * headDim;
      const qDim = nHeads * headDim;
      const bits = Number(/\d/.exec(settings.format)?.[0] ?? 8);
      const keys = cacheValues(maxSeqLen, kvDim, 31, bits);
      const values = cacheValues(maxSeqLen, kvDim, 32, bits);
      const q = pseudoRandom(len * qDim, 33).map((v) => v * 2);
      const layout = kvQuantLayout(settings, nKvHeads, headDim, maxSeqLen, 1);
      const k = new Kernels(await getGpu());
      try {
        const step = k.buffer(STEP_STRIDE, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST);
        const keyBuf = k.storage(layout.window * kvDim * 4);
        const valueBuf = k.storage(layout.window * kvDim * 4);
        const stepTokens = Math.max(...steps.map(([, T]) => T!));
        const kv = {
          layout,
          keys: k.storage(4 * kvKeyWords(layout)),
          values: k.storage(4 * kvValueWords(layout)),
          rows: {
            keys: k.storage(stepTokens * kvDim * 4),
            values: k.storage(stepTokens * kvDim * 4),
          },
        };
        const qBuf = k.storage(len * qDim * 4);
        const out = k.storage(len * qDim * 4);
        const program = [
          ...await k.kvQuantize(step, keyBuf, valueBuf, kv),
          await k.kvWindowWrite(step, kv, keyBuf, valueBuf, "decode"),
          ...await k.attention(
            step,
            qBuf,
            keyBuf,
            valueBuf,
            out,
            { nHeads, nKvHeads, headDim },
            kv,
          ),
          await k.kvWindowWrite(step, kv, keyBuf, valueBuf, "prefill"),
        ];
        const cpu = new QuantizedKvCache(settings, 1, maxSeqLen, nKvHeads, headDim);
        for (const [pos, T] of steps) {
          const rows = q.subarray(pos! * qDim, (pos! + T!) * qDim);
          k.device.queue.writeBuffer(qBuf, 0, rows);
          const [from, to] = [pos! * kvDim, (pos! + T!) * kvDim];
          k.device.queue.writeBuffer(kv.rows.keys, 0, keys.slice(from, to));
          k.device.queue.writeBuffer(kv.rows.values, 0, values.slice(from, to));
          k.device.queue.writeBuffer(step, 0, Uint32Array.of(T!, pos!, 0, 0));
          const read = k.buffer(T! * qDim * 4, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
          const enc = k.device.createCommandEncoder();
          const pass = enc.beginComputePass();
          encodeDispatches(pass, program, T!, 0);
          pass.end();
          enc.copyBufferToBuffer(out, 0, read, 0, T! * qDim * 4);
          k.device.queue.submit([enc.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const got = new Float32Array(read.getMappedRange().slice(0));
          read.unmap();
          cpu.update(0, keys, values, pos!, pos! + T!);
          const want = new Float32Array(T! * qDim);
          attention(want, rows, keys, values, pos!, nHeads, nKvHeads, headDim, cpu.view(0));
          const error = relativeError(got, want);
          assert.ok(error <= 1e-5, `attention at ${pos} of ${T}: relative error ${error}`);
        }
        const readBack = async (buf: GPUBuffer) => {
          const read = k.buffer(buf.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
          const enc = k.device.createCommandEncoder();
          enc.copyBufferToBuffer(buf, 0, read, 0, buf.size);
          k.device.queue.submit([enc.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const words = new Uint32Array(read.getMappedRange().slice(0));
          read.unmap();
          return words;
        };
        const [kq, vq] = [await readBack(kv.keys), await readBack(kv.values)];
        const view = cpu.view(0);
        const keysDone = layout.keyGroup * Math.floor(len / layout.keyGroup);
        let checked = 0;
        for (let j = 0; j < len; j++) {
          for (let c = 0; c < kvDim; c++) {
            const i = j * kvDim + c;
            const v = decode(
              layout,
              vq,
              j,
              c,
              j * (kvDim / layout.valueGroup) + Math.floor(c / layout.valueGroup),
            );
            assert.equal(v, view.values[i], `value ${j}, ${c}: ${v} vs CPU ${view.values[i]}`);
            if (j < keysDone) {
              const key = decode(layout, kq, j, c, Math.floor(j / layout.keyGroup) * kvDim + c);
              assert.equal(key, view.keys[i], `key ${j}, ${c}: ${key} vs CPU ${view.keys[i]}`);
            }
            checked++;
          }
        }
        assert.equal(checked, len * kvDim);
      } finally {
        k.destroy();
      }
    },
  });
}

Deno.test("kv quant layout: settings the kernels cannot take are refused", () => {
  assert.throws(
    () => kvQuantLayout({ format: "int4", group: 8, residual: 12 }, 2, 8, 64),
    KvQuantError,
  );
  assert.throws(
    () => kvQuantLayout({ format: "int4", group: 0, residual: 16 }, 2, 6, 64),
    KvQuantError,
  );
  assert.throws(
    () => kvQuantLayout({ format: "nf4", group: 0, residual: 16 }, 2, 8, 64),
    KvQuantError,
  );
  const l = kvQuantLayout({ format: "int3", group: 0, residual: 32 }, 2, 64, 256);
  assert.deepEqual([l.codeBits, l.per, l.rowWords, l.keyGroup, l.valueGroup], [4, 8, 16, 32, 64]);
  assert.equal(kvQuantLayout({ format: "fp8", group: 32, residual: 64 }, 1, 8, 64).codeBits, 8);
});

Deno.test("kv quant layout: the float window is KIVI's residual block plus the slack", () => {
  const kivi = { format: "int4", group: 32, residual: 128 };
  // TinyLlama's cache at 2048 positions with 32 rows of slack: 160 float rows, not 2048.
  const l = kvQuantLayout(kivi, 4, 64, 2048, 32);
  assert.deepEqual([l.window, kvWindowRewind(l)], [160, 33]);
  // Residual 0: keys enter a group at a time, values at once.
  const r0 = kvQuantLayout({ format: "int4", group: 32, residual: 0 }, 4, 64, 2048, 1);
  assert.deepEqual([r0.window, kvWindowRewind(r0)], [33, 2]);
  // A window as long as the context holds every position: any cut back continues.
  const short = kvQuantLayout(kivi, 4, 64, 144, 32);
  assert.deepEqual([short.window, kvWindowRewind(short)], [144, Infinity]);
});
