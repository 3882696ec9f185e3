import assert from "node:assert/strict";
import { adapterUnavailable, getGpu } from "./device.ts";
import { hadamardFactorData } from "./hadamard_wgsl.ts";
import {
  WideHadamardError,
  wideHadamardKey,
  type WideHadamardOptions,
  wideHadamardPasses,
} from "./hadamard_wide_wgsl.ts";
import { HadamardSizeError, hadamardTransform } from "../cpu/hadamard.ts";
import { pseudoRandom } from "../../core/test_values.ts";

const unavailable = await adapterUnavailable();

/** What one run binds: the work rows and, by the options, the source or the target. */
interface Case {
  n: number;
  transpose: boolean;
  options: WideHadamardOptions;
  /** Rows the step covers (`Step.T`) and its position (`Step.pos`). */
  rows: number;
  pos?: number;
  /** Params `{workOff, workPos, workRow, outOff, outPos, outRow, accumulate}`. */
  params: number[];
  /** Blocks of `n` per row (the dispatch's `z`). */
  blocks?: number;
  work: Float32Array;
  signs?: Float32Array;
  source?: Float32Array;
  post?: Float32Array;
  target?: Float32Array;
}

/** Runs every pass of a case on the shared device; returns the work rows and the target. */
async function run(c: Case): Promise<{ work: Float32Array; target?: Float32Array }> {
  const { device } = await getGpu();
  const made: GPUBuffer[] = [];
  const buffer = (data: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>, usage: number) => {
    const b = device.createBuffer({
      size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
      usage: usage | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
    });
    device.queue.writeBuffer(b, 0, data);
    made.push(b);
    return b;
  };
  const storage = (data: Float32Array) => buffer(new Float32Array(data), GPUBufferUsage.STORAGE);
  const params = buffer(
    Uint32Array.from([...c.params, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8)),
    GPUBufferUsage.UNIFORM,
  );
  const step = buffer(Uint32Array.of(c.rows, c.pos ?? 0, 0, 0), GPUBufferUsage.UNIFORM);
  const work = storage(c.work);
  const factor = storage(hadamardFactorData(c.n));
  const target = c.target && storage(c.target);
  const passes = wideHadamardPasses(c.n, c.transpose, c.options);
  const encoder = device.createCommandEncoder();
  for (const [i, p] of passes.entries()) {
    const layout = device.createBindGroupLayout({
      entries: [...p.sig].map((kind, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: kind === "u"
          ? { type: "uniform" }
          : kind === "s"
          ? { type: "uniform", hasDynamicOffset: true }
          : { type: kind === "r" ? "read-only-storage" : "storage" },
      })),
    });
    const pipeline = device.createComputePipeline({
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: device.createShaderModule({ code: p.code }), entryPoint: "main" },
    });
    const extra = i === 0 && c.options.input === "source"
      ? [storage(c.signs!), storage(c.source!)]
      : i === passes.length - 1 && c.options.output === "target"
      ? [storage(c.post!), target!]
      : [];
    const bind = device.createBindGroup({
      layout,
      entries: [params, { buffer: step, size: 16 }, work, factor, ...extra].map((b, binding) => ({
        binding,
        resource: b instanceof GPUBuffer ? { buffer: b } : b,
      })),
    });
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind, [0]);
    pass.dispatchWorkgroups(p.groups, c.rows, c.blocks ?? 1);
    pass.end();
  }
  const read = async (b: GPUBuffer) => {
    const r = device.createBuffer({
      size: b.size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const e = device.createCommandEncoder();
    e.copyBufferToBuffer(b, 0, r, 0, b.size);
    device.queue.submit([e.finish()]);
    await r.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(r.getMappedRange().slice(0));
    r.destroy();
    return out;
  };
  device.queue.submit([encoder.finish()]);
  const result = {
    work: (await read(work)).slice(0, c.work.length),
    ...(target ? { target: (await read(target)).slice(0, c.target!.length) } : {}),
  };
  for (const b of made) b.destroy();
  return result;
}

const randomSigns = (n: number, seed: number) =>
  Float32Array.from(pseudoRandom(n, seed), (v) => (v < 0 ? -1 : 1));

function assertNear(got: Float32Array, want: Float64Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `${what} [${i}]: ${got[i]} vs ${want[i]}`);
  }
}

/** Source rows times signs, then `M` or `Mᵀ` (QuIP#'s input transform), as the CPU computes it. */
async function checkSigned(n: number, transpose: boolean, rows: number, tile?: number) {
  const source = pseudoRandom(rows * n, n);
  const signs = randomSigns(n, n + 1);
  const want = Float64Array.from(source, (v, i) => v * signs[i % n]!);
  hadamardTransform(want, n, transpose);
  const { work } = await run({
    n,
    transpose,
    options: { input: "source", output: "work", ...(tile ? { tile } : {}) },
    rows,
    params: [0, 0, n],
    work: new Float32Array(rows * n),
    signs,
    source,
  });
  assertNear(work, want, `n=${n} t=${transpose} tile=${tile}`);
}

Deno.test({
  name: "webgpu: wide Hadamard with signs matches the CPU at 5632, 8192, 11008, 14336 and 16384",
  ignore: unavailable !== undefined,
  async fn() {
    for (const n of [5632, 8192, 11008, 14336, 16384]) {
      for (const transpose of [false, true]) await checkSigned(n, transpose, 2);
    }
  },
});

Deno.test({
  name: "webgpu: wide Hadamard passes at small tiles (butterflies, strided, factor) match the CPU",
  ignore: unavailable !== undefined,
  async fn() {
    // 768 = 12 · 64 at a tile of 16: all three passes; 172 · 4 at 256: the factor 172 over
    // single offsets; 1024 at 64: two butterfly passes; 28 · 2 at 32: the factor over all of P.
    for (const [n, tile] of [[768, 16], [688, 256], [1024, 64], [56, 32]] as const) {
      for (const transpose of [false, true]) await checkSigned(n, transpose, 3, tile);
    }
  },
});

Deno.test({
  name: "webgpu: wide Hadamard in place at offsets (a block's step) and placed into a target",
  ignore: unavailable !== undefined,
  async fn() {
    // In place: 2 rows of 3 blocks of 768 at position 5, rows 2600 apart after 40 values.
    const n = 768;
    const [rows, blocks, pos, off, posStride, rowStride] = [2, 3, 5, 40, 7, 2600];
    const size = off + pos * posStride + rows * rowStride;
    const buf = pseudoRandom(size, 3);
    const want = Float64Array.from(buf);
    for (let t = 0; t < rows; t++) {
      const at = off + pos * posStride + t * rowStride;
      const block = want.slice(at, at + blocks * n);
      hadamardTransform(block, n);
      want.set(block, at);
    }
    const inPlace = await run({
      n,
      transpose: false,
      options: { input: "work", output: "work", tile: 64 },
      rows,
      pos,
      params: [off, posStride, rowStride],
      blocks,
      work: buf,
    });
    assertNear(inPlace.work, want, "in place");
    // Placed: rows of 1024 into an output of stride 1100 at 30 + pos · 3, times a factor per
    // value, added to what is there.
    const m = 1024;
    const work = pseudoRandom(rows * m, 4);
    const post = pseudoRandom(m, 5);
    const before = pseudoRandom(30 + pos * 3 + rows * 1100, 6);
    const placed = Float64Array.from(before);
    const z = Float64Array.from(work);
    hadamardTransform(z, m, false);
    for (let t = 0; t < rows; t++) {
      for (let o = 0; o < m; o++) placed[30 + pos * 3 + t * 1100 + o]! += z[t * m + o]! * post[o]!;
    }
    const { target } = await run({
      n: m,
      transpose: false,
      options: { input: "work", output: "target", tile: 256 },
      rows,
      pos,
      params: [0, 0, m, 30, 3, 1100, 1],
      work,
      post,
      target: before,
    });
    assertNear(target!, placed, "placed");
  },
});

Deno.test("wideHadamardPasses: passes by shape; refuses rows that fit a tile and sizes with no factor", () => {
  const names = (n: number, tile?: number) =>
    wideHadamardPasses(n, false, { input: "work", output: "work", ...(tile ? { tile } : {}) })
      .map((p) => p.name);
  assert.deepEqual(names(8192), ["butterflies", "strided butterflies"]);
  assert.deepEqual(names(11008), ["butterflies", "factor"]);
  assert.deepEqual(names(12 * 8192), ["butterflies", "strided butterflies", "factor"]);
  const [first, second] = wideHadamardPasses(5632, true, { input: "source", output: "target" });
  assert.equal(first!.sig, "uswrrr");
  assert.equal(second!.sig, "uswrrw");
  assert.match(second!.code, /h\[c \* 44u \+ r\]/);
  assert.notEqual(first!.key, second!.key);
  assert.notEqual(
    wideHadamardKey(8192, false, { input: "work", output: "work" }),
    wideHadamardKey(8192, true, { input: "work", output: "work" }),
  );
  assert.throws(() => names(4096), WideHadamardError);
  assert.throws(() => names(172 * 4, 64), WideHadamardError);
  assert.throws(
    () => names(100 * 64),
    (e: Error) =>
      e instanceof HadamardSizeError && /6400/.test(e.message) &&
      /power of two, or 172, 12, 44 or 28 times a power of two/.test(e.message),
  );
});
