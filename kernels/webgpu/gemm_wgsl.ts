/**
 * WGSL of the prefill GEMM, `out[t][r] (+)= tensorScale · Σ_k x[t][k] · W[r][k]`, over weights
 * in any {@linkcode Layout} the GEMV takes (the same bindings and uniforms, `matmul_wgsl.ts`), with
 * the tile shape a parameter ({@linkcode GemmTiling}):
 *
 * - a workgroup computes `rows × tokens` outputs; each step over `depth` input features stages the
 *   activations (`depth × tokens`) and the weights, decoded to f32 once per tile
 *   (`depth × rows`), in workgroup memory;
 * - each thread then accumulates `rowsPerThread × tokensPerThread` outputs in registers from vec4
 *   reads of both tiles. A thread's vec4s are strided by the threads along that edge, so that the
 *   threads of a warp read consecutive vec4s (rows) or the same one (tokens): no bank conflicts;
 * - activations are read as vec4s of 4 input features of a token (element by element where rows
 *   are not 16-byte aligned), and the tile's rows are padded by one vec4 so that the staging
 *   writes spread over the banks;
 * - weights a thread decodes that are whole words in one scale group (with the default tile: 4-,
 *   8-, 16- and 32-bit codes) are loaded as words (vec4s where the interleave allows) and decoded
 *   with constant shifts; others element by element;
 * - optionally ({@linkcode GemmTiling}), the next step's activations and weight words are loaded
 *   into registers while this step computes, and the input features are split over workgroups
 *   when a dispatch would have few (partial sums added by {@linkcode gemmReduceShader}).
 *
 * Partial tiles (tokens past `T`, rows past the part's rows, features past `cols`) read zeros and
 * write nothing.
 *
 * @module
 */
import { CHUNK, constantZero, type Layout, vectorWords } from "./pack.ts";
import { codeExpr, decoders, elementFn, MATMUL_PARAMS, scaleExpr } from "./matmul_wgsl.ts";

/** The tile shape of the GEMM kernel. */
export interface GemmTiling {
  /** Weight rows (output features) per workgroup. */
  rows: number;
  /** Tokens (activation rows) per workgroup. */
  tokens: number;
  /** Input features per step: 8, 16 or 32 (a step stays inside one 32-element chunk). */
  depth: number;
  /** Output rows per thread, a multiple of 4 (vec4 reads of the weight tile). */
  rowsPerThread: number;
  /** Tokens per thread, a multiple of 4 (vec4 reads of the activation tile). */
  tokensPerThread: number;
  /**
   * Load the next step's activations (and weight words, where a thread's run is whole words)
   * into registers before computing the current step, so that global reads overlap the
   * arithmetic.
   */
  prefetch?: boolean;
  /**
   * Most ways (1, 2, 4 or 8; default 1) the input features may be split over workgroups where a
   * dispatch would have few of them (see {@linkcode splitWays}): each way writes partial sums to
   * a scratch buffer and a second dispatch ({@linkcode gemmReduceShader}) adds them up.
   */
  splitK?: number;
}

/**
 * The default tiling: 128 rows × 64 tokens, 16 features deep, 8 × 4 outputs per thread (256
 * threads, 12 KiB of workgroup memory, within WebGPU's default 16 KiB), input features split up to
 * 8 ways where a dispatch has few workgroups (TinyLlama's 256- and 2048-row projections at T = 512
 * would otherwise have 16 and 128 workgroups for 132 streaming multiprocessors).
 */
export const DEFAULT_GEMM_TILING: Readonly<GemmTiling> = {
  rows: 128,
  tokens: 64,
  depth: 16,
  rowsPerThread: 8,
  tokensPerThread: 4,
  splitK: 8,
};

/**
 * The wide tiling: 128 rows × 128 tokens, 8 × 8 outputs per thread (16.3 KiB of workgroup memory,
 * so only where the device allows more than WebGPU's default 16 KiB). On an H100 at T = 512 it ran
 * 2048×2048, 2048×5632 and 32000×2048 at 24–28 TFLOP/s against 20–21 for the default, and lost
 * where it leaves too few workgroups (256×2048: 8.9 against 12.2; 5632×2048: 19.5 against 21.0):
 * kernels/webgpu/PERF.md's sweep. {@linkcode chooseGemmTiling} picks between them per dispatch.
 */
export const WIDE_GEMM_TILING: Readonly<GemmTiling> = {
  rows: 128,
  tokens: 128,
  depth: 16,
  rowsPerThread: 8,
  tokensPerThread: 8,
  splitK: 8,
};

/**
 * The tiling of a GEMM over `rows × T` among `candidates` (widest first): the first one unless it
 * leaves fewer workgroups, after splitting, than the next one does, capped at
 * {@linkcode SPLIT_TARGET_GROUPS} (a GPU then has more tiles in flight than the wide tile's
 * better arithmetic intensity is worth; measured on an H100, see {@linkcode WIDE_GEMM_TILING}).
 *
 * @example
 * ```ts
 * const both = [WIDE_GEMM_TILING, DEFAULT_GEMM_TILING];
 * chooseGemmTiling(both, 32000, 512, 64, 1 << 24) === WIDE_GEMM_TILING; // 1000 tiles
 * chooseGemmTiling(both, 256, 512, 64, 1 << 24) === DEFAULT_GEMM_TILING; // 64 against 128
 * ```
 */
export function chooseGemmTiling(
  candidates: readonly Readonly<GemmTiling>[],
  rows: number,
  T: number,
  chunks: number,
  scratchFloats: number,
): Readonly<GemmTiling> {
  const groups = (t: GemmTiling) => {
    const [x, y] = gemmGroups(t, rows, T);
    return x * y * splitWays(t, rows, T, chunks, scratchFloats);
  };
  let best = candidates[0]!;
  for (const next of candidates.slice(1)) {
    if (groups(best) < Math.min(groups(next), SPLIT_TARGET_GROUPS)) best = next;
  }
  return best;
}

/** Thrown for a tiling the kernel cannot be built with. */
export class GemmTilingError extends Error {
  override name = "GemmTilingError";
}

/**
 * A tiling's name and pipeline-cache key, `rows×tokens×depth/rowsPerThread×tokensPerThread`, with
 * `+prefetch` when it prefetches and `/split<n>` when it may split the input features.
 */
export function gemmTilingKey(t: GemmTiling): string {
  return `${t.rows}x${t.tokens}x${t.depth}/${t.rowsPerThread}x${t.tokensPerThread}${
    t.prefetch ? "+prefetch" : ""
  }${(t.splitK ?? 1) > 1 ? `/split${t.splitK}` : ""}`;
}

/** Parses a {@linkcode gemmTilingKey} (`128x64x16/8x4`, `…+prefetch`, `…/split8`). */
export function parseGemmTiling(key: string): GemmTiling {
  const m = /^(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)(\+prefetch)?(?:\/split(\d+))?$/.exec(key);
  if (!m) {
    throw new GemmTilingError(
      `GEMM tiling "${key}" is not rows×tokens×depth/rows×tokens per thread[+prefetch][/splitN]`,
    );
  }
  const [rows, tokens, depth, rowsPerThread, tokensPerThread] = m.slice(1, 6).map(Number);
  return {
    rows: rows!,
    tokens: tokens!,
    depth: depth!,
    rowsPerThread: rowsPerThread!,
    tokensPerThread: tokensPerThread!,
    ...(m[6] ? { prefetch: true } : {}),
    ...(m[7] ? { splitK: Number(m[7]) } : {}),
  };
}

/** Threads per workgroup of a tiling. */
export function gemmThreads(t: GemmTiling): number {
  return (t.rows / t.rowsPerThread) * (t.tokens / t.tokensPerThread);
}

/** Workgroup memory of a tiling in bytes (weight tile and padded activation tile). */
export function gemmWorkgroupBytes(t: GemmTiling): number {
  return t.depth * (t.rows + t.tokens + 4) * 4;
}

/**
 * Checks a tiling against the kernel's rules and a device's limits (threads and workgroup memory
 * per workgroup); throws {@linkcode GemmTilingError}.
 */
export function validateGemmTiling(
  t: GemmTiling,
  limits: { maxThreads: number; maxWorkgroupBytes: number } = {
    maxThreads: 256,
    maxWorkgroupBytes: 16384,
  },
): void {
  const key = gemmTilingKey(t);
  const fail = (why: string) => {
    throw new GemmTilingError(`GEMM tiling "${key}": ${why}`);
  };
  if (![8, 16, 32].includes(t.depth)) fail("depth must be 8, 16 or 32");
  if (![1, 2, 4, 8].includes(t.splitK ?? 1)) fail("splitK must be 1, 2, 4 or 8");
  const edges: [number, number][] = [[t.rows, t.rowsPerThread], [t.tokens, t.tokensPerThread]];
  for (const [edge, per] of edges) {
    if (!(Number.isInteger(per) && per >= 4 && per % 4 === 0)) {
      fail("outputs per thread must be multiples of 4");
    }
    if (!(Number.isInteger(edge) && edge % per === 0)) {
      fail("tile edges must be multiples of the outputs per thread");
    }
  }
  const threads = gemmThreads(t);
  if (threads < 32 || threads > limits.maxThreads) {
    fail(`${threads} threads per workgroup (32 to ${limits.maxThreads} allowed)`);
  }
  // Each thread decodes a run of whole elements of one weight row and stages whole activations.
  const perThread = (t.rows * t.depth) / threads;
  if (!Number.isInteger(perThread) || t.depth % perThread !== 0) {
    fail("rows × depth must split into runs of one row per thread");
  }
  if ((t.tokens * t.depth) % (4 * threads) !== 0 || threads % (t.depth / 4) !== 0) {
    fail("tokens × depth must be a multiple of 4 × threads, and threads of depth / 4");
  }
  const bytes = gemmWorkgroupBytes(t);
  if (bytes > limits.maxWorkgroupBytes) {
    fail(`${bytes} bytes of workgroup memory (at most ${limits.maxWorkgroupBytes})`);
  }
}

/** WGSL expression applying the layout's scale (named `scale`, or the pair `sz`) to code value `q`. */
function applyScale(layout: Layout, q: string): string {
  const qz = constantZero(layout) ? `(${q} - ${layout.zero}.0)` : q;
  switch (layout.scale) {
    case "f16zero":
      return `sz.x * (${q} - sz.y)`;
    case "f16min":
      return `sz.x * ${q} + sz.y`;
    case "none":
      return qz;
    default:
      return `scale * ${qz}`;
  }
}

/**
 * Whether a thread's run of `run` weights (starting at a multiple of `run` in its chunk) is whole
 * u32 words inside one scale group: it is then loaded as words (`wr<i>`, with its scale in `sr`)
 * and decoded with constant shifts.
 */
function wordRuns(layout: Layout, run: number): boolean {
  return (run * layout.bits) % 32 === 0 && (layout.element === "f32" || 2 ** layout.gshift >= run);
}

/** The register holding a word run's scale: f32, the f16zero/f16min pair, or none. */
function scaleRegister(layout: Layout): string | undefined {
  if (layout.element === "f32" || layout.scale === "none") return undefined;
  return layout.scale === "f16zero" || layout.scale === "f16min" ? "vec2<f32>" : "f32";
}

/**
 * WGSL loading this thread's word run for the step at input feature `kl` (chunk `cl`) into the
 * registers `wr<i>` and `sr`.
 */
function loadRun(layout: Layout, run: number): string[] {
  const W = layout.bits;
  const lines = [`let el = kl % ${CHUNK}u + part * ${run}u;`, `let wb = (el * ${W}u) >> 5u;`];
  const words = (run * W) / 32;
  if (vectorWords(W) === 4 && words % 4 === 0) {
    // Whole vectors of the interleave (the run starts at a multiple of 4 words): vec4 loads.
    for (let v = 0; v < words / 4; v++) {
      lines.push(`let v${v} = wvec(rr, cl, wb + ${4 * v}u);`);
      for (let i = 0; i < 4; i++) lines.push(`wr${4 * v + i} = v${v}.${"xyzw"[i]};`);
    }
  } else {
    for (let w = 0; w < words; w++) lines.push(`wr${w} = wrd(rr, cl, wb + ${w}u);`);
  }
  if (scaleRegister(layout)) {
    lines.push(`let gidx = rr * p.groups + ((cl * ${CHUNK}u + el) >> p.gshift);`);
    lines.push(`sr = ${scaleExpr(layout, "gidx")};`);
  }
  return lines;
}

/**
 * WGSL decoding this thread's run of `run` weights for the step at `k0` (chunk `c`) into the
 * weight tile at input features `part·run …` (zeros for rows past the part's end): from the
 * registers {@linkcode loadRun} filled, or, for runs that straddle words or groups, element by
 * element from global memory.
 */
function storeRun(layout: Layout, run: number, WS: number): string[] {
  const put = (i: string, v: string) =>
    `ws[(part * ${run}u + ${i}) * ${WS}u + drow / 4u][drow % 4u] = select(0.0, ${v}, rowOk);`;
  const W = layout.bits;
  const pair = layout.scale === "f16zero" || layout.scale === "f16min";
  if (wordRuns(layout, run)) {
    const lines: string[] = [];
    for (let w = 0; w < (run * W) / 32; w++) lines.push(`let w${w} = wr${w};`);
    if (scaleRegister(layout)) lines.push(`let ${pair ? "sz" : "scale"} = sr;`);
    for (let i = 0; i < run; i++) {
      lines.push(put(
        `${i}u`,
        layout.element === "f32"
          ? `bitcast<f32>(w${i})`
          : applyScale(layout, `${elementFn(layout)}(${codeExpr(W, i)})`),
      ));
    }
    return lines;
  }
  const scale = layout.scale === "none"
    ? ""
    : `let ${pair ? "sz" : "scale"} = ${scaleExpr(layout, "gidx")};`;
  return [
    `for (var i = 0u; i < ${run}u; i++) {`,
    `  let e = k0 % ${CHUNK}u + part * ${run}u + i;`,
    `  let bit = e * ${W}u;`,
    `  let wi = bit >> 5u;`,
    `  let sh = bit & 31u;`,
    `  var code = wrd(rr, c, wi) >> sh;`,
    `  if (sh + ${W}u > 32u) { code |= wrd(rr, c, wi + 1u) << (32u - sh); }`,
    `  code &= ${(1 << W) - 1}u;`,
    `  let q = ${elementFn(layout)}(code);`,
    `  let gidx = rr * p.groups + ((c * ${CHUNK}u + e) >> p.gshift);`,
    `  ${scale}`,
    `  ${put("i", applyScale(layout, "q"))}`,
    `}`,
  ];
}

/**
 * The GEMM kernel of a layout and tiling (validated by the caller). Dispatch
 * {@linkcode gemmGroups} workgroups; `st.T` tokens from `p.xOff` with row stride `p.xStride`.
 */
export function gemmShader(layout: Layout, tiling: GemmTiling = DEFAULT_GEMM_TILING): string {
  const { rows: BM, tokens: BN, depth: BK, rowsPerThread: TM, tokensPerThread: TN } = tiling;
  const threads = gemmThreads(tiling);
  const NTX = BM / TM; // threads along rows
  const NTY = BN / TN; // threads along tokens
  const WS = BM / 4; // vec4s per weight-tile row (one input feature)
  const XS = BN / 4 + 1; // vec4s per activation-tile row, padded
  const EW = (BM * BK) / threads; // weight elements each thread decodes per step
  const EX = (BN * BK) / threads; // activations each thread stages per step
  const V = vectorWords(layout.bits);
  const NV = layout.bits / V;
  const MI = TM / 4;
  const NJ = TN / 4;
  const prefetch = tiling.prefetch ?? false;
  const words = wordRuns(layout, EW) ? (EW * layout.bits) / 32 : 0;
  // Registers a step's global reads land in: activations, weight words and their scale.
  const registers = [
    ...Array.from({ length: EX / 4 }, (_, h) => `  var xr${h} = vec4<f32>(0.0);`),
    ...Array.from({ length: words }, (_, w) => `  var wr${w} = 0u;`),
    ...(words && scaleRegister(layout) ? [`  var sr: ${scaleRegister(layout)};`] : []),
  ];
  const indent = (lines: string[], n: number) => lines.map((l) => " ".repeat(n) + l).join("\n");
  // Each thread stages EX / 4 vec4s: input features 4·xk4 … 4·xk4 + 3 of tokens xtt, xtt +
  // 4·threads / depth …, read as one vec4 where the rows are 16-byte aligned and whole.
  const xLoad: string[] = [`let cl = kl / ${CHUNK}u;`];
  const xStore: string[] = [];
  for (let h = 0; h < EX / 4; h++) {
    const tt = `xtt + ${(h * threads * 4) / BK}u`;
    xLoad.push(
      `{`,
      `  let t = tokBase + ${tt};`,
      `  let k = kl + 4u * xk4;`,
      `  let xi = p.xOff + t * p.xStride + k;`,
      `  if (xAligned && t < st.T && k + 4u <= p.cols) {`,
      `    xr${h} = x[xi >> 2u];`,
      `  } else {`,
      `    let lim = select(k, p.cols, t < st.T);`,
      `    xr${h} = vec4<f32>(xa(xi, k, lim), xa(xi + 1u, k + 1u, lim), ` +
        `xa(xi + 2u, k + 2u, lim), xa(xi + 3u, k + 3u, lim));`,
      `  }`,
      `}`,
    );
    for (let c = 0; c < 4; c++) {
      xStore.push(
        `xs[(4u * xk4 + ${c}u) * ${XS}u + (${tt}) / 4u][(${tt}) % 4u] = xr${h}.${"xyzw"[c]};`,
      );
    }
  }
  const load = (n: number) => indent([...xLoad, ...(words ? loadRun(layout, EW) : [])], n);
  // Without prefetching a step loads its own inputs; with it, the first step's are loaded before
  // the loop and each step loads the next one's between staging and computing.
  const first = prefetch ? `  if (kBegin < K) {\n    let kl = kBegin;\n${load(4)}\n  }\n` : "";
  const inStep = prefetch ? "" : `    {\n      let kl = k0;\n${load(6)}\n    }\n`;
  const next = prefetch
    ? `    if (k0 + ${BK}u < K) {\n      let kl = k0 + ${BK}u;\n${load(6)}\n    }\n`
    : "";
  const store = indent([...xStore, ...storeRun(layout, EW, WS)], 4);
  const accs: string[] = [];
  const body: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < MI; i++) body.push(`      let b${i} = ws[kk * ${WS}u + tx + ${i * NTX}u];`);
  for (let j = 0; j < NJ; j++) {
    body.push(`      let a${j} = xs[kk * ${XS}u + ty + ${j * NTY}u];`);
    for (let u = 0; u < 4; u++) {
      for (let i = 0; i < MI; i++) {
        const acc = `acc${j}_${u}_${i}`;
        accs.push(`  var ${acc} = vec4<f32>(0.0);`);
        body.push(`      ${acc} = fma(vec4<f32>(a${j}.${"xyzw"[u]}), b${i}, ${acc});`);
        stores.push(
          `  store(tokBase + ${4 * (j * NTY) + u}u + ty * 4u, rowBase + ${
            4 * (i * NTX)
          }u + tx * 4u, ${acc}, wg.z, nwg.z);`,
        );
      }
    }
  }
  return `${MATMUL_PARAMS}
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wq: array<${V === 4 ? "vec4<u32>" : "u32"}>;
var<workgroup> xs: array<vec4<f32>, ${BK * XS}>;
var<workgroup> ws: array<vec4<f32>, ${BK * WS}>;
${decoders(layout)}
/** Activation element i (input feature k of its row): zero at or past the row's limit. */
fn xa(i: u32, k: u32, lim: u32) -> f32 {
  return select(0.0, x[i >> 2u][i & 3u], k < lim);
}
/** Index of the interleave's vector holding word w of chunk c of a row. */
fn wvi(row: u32, c: u32, w: u32) -> u32 {
  let s0 = (c / ${layout.tpr}u) * ${layout.tpr}u;
  let width = min(${layout.tpr}u, p.chunks - s0);
  return (row * p.chunks + s0) * ${NV}u + (w / ${V}u) * width + (c - s0);
}
fn wrd(row: u32, c: u32, w: u32) -> u32 {
  ${
    V === 4
      ? "return wq[wvi(row, c, w)][w % 4u];"
      : `return wq[wvi(row, c, w) * ${V}u + w % ${V}u];`
  }
}
${V === 4 ? "fn wvec(row: u32, c: u32, w: u32) -> vec4<u32> { return wq[wvi(row, c, w)]; }" : ""}

/**
 * Writes 4 consecutive rows of token t (those inside the output); split over ways, the raw
 * partial sums of this way, to out[(way·T + t)·rows + r] (the scratch buffer).
 */
fn store(t: u32, r: u32, v: vec4<f32>, way: u32, ways: u32) {
  if (t >= st.T) { return; }
  if (ways > 1u) {
    let pb = (way * st.T + t) * p.rows;
    for (var c = 0u; c < 4u; c++) {
      if (r + c < p.rows) { out[pb + r + c] = v[c]; }
    }
    return;
  }
  let ob = p.outOff + st.pos * p.outPosStride + t * p.outStride;
  for (var c = 0u; c < 4u; c++) {
    if (r + c < p.rows) {
      var y = v[c] * p.tscale;
      if (p.accumulate != 0u) { y += out[ob + r + c]; }
      out[ob + r + c] = y;
    }
  }
}

@compute @workgroup_size(${threads})
fn main(
  @builtin(local_invocation_index) lid: u32,
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let tx = lid % ${NTX}u;
  let ty = lid / ${NTX}u;
  let rowBase = wg.x * ${BM}u;
  let tokBase = wg.y * ${BN}u;
  // The weight run this thread decodes: row drow of the tile, elements part·EW … of the step.
  let drow = lid / ${BK / EW}u;
  let part = lid % ${BK / EW}u;
  let rr = min(rowBase + drow, p.rows - 1u);
  let rowOk = rowBase + drow < p.rows;
  let xk4 = lid % ${BK / 4}u;
  let xtt = lid / ${BK / 4}u;
  let xAligned = ((p.xOff | p.xStride) & 3u) == 0u;
${accs.join("\n")}
${registers.join("\n")}
  // Split over nwg.z ways, this workgroup takes the input features of chunks [c0, c1).
  let per = (p.chunks + nwg.z - 1u) / nwg.z;
  let K = min(p.chunks, (wg.z + 1u) * per) * ${CHUNK}u;
  let kBegin = min(wg.z * per * ${CHUNK}u, K);
${first}  for (var k0 = kBegin; k0 < K; k0 += ${BK}u) {
    let c = k0 / ${CHUNK}u;
${inStep}${store}
    workgroupBarrier();
${next}    for (var kk = 0u; kk < ${BK}u; kk++) {
${body.join("\n")}
    }
    workgroupBarrier();
  }
${stores.join("\n")}
}
`;
}

/**
 * Workgroups of a GEMM dispatch over `rows` weight rows and `T` tokens, the input features split
 * `ways` ways.
 */
export function gemmGroups(
  tiling: GemmTiling,
  rows: number,
  T: number,
  ways = 1,
): [number, number, number] {
  return [Math.ceil(rows / tiling.rows), Math.ceil(T / tiling.tokens), ways];
}

/**
 * Workgroups a dispatch is split up to (about two per streaming multiprocessor of a 132-SM H100):
 * a guess, to be settled by the sweep.
 */
export const SPLIT_TARGET_GROUPS = 256;

/** Fewest 32-element chunks of input features each way of a split takes. */
export const MIN_SPLIT_CHUNKS = 8;

/**
 * Ways to split the input features of a GEMM over `rows × T` (`chunks` chunks per row): doubled,
 * up to the tiling's `splitK`, while the dispatch stays within {@linkcode SPLIT_TARGET_GROUPS}
 * workgroups, each way keeps {@linkcode MIN_SPLIT_CHUNKS} chunks, and the partial sums fit
 * `scratchFloats`.
 */
export function splitWays(
  tiling: GemmTiling,
  rows: number,
  T: number,
  chunks: number,
  scratchFloats: number,
): number {
  const [x, y] = gemmGroups(tiling, rows, T);
  let ways = 1;
  while (
    2 * ways <= (tiling.splitK ?? 1) && x * y * 2 * ways <= SPLIT_TARGET_GROUPS &&
    chunks >= 2 * ways * MIN_SPLIT_CHUNKS && 2 * ways * T * rows <= scratchFloats
  ) ways *= 2;
  return ways;
}

/**
 * WGSL adding up `ways` ways of partial sums (binding 2, laid out as the GEMM's store writes them)
 * into the output as the unsplit GEMM would write it (scaled, accumulated where asked). Same
 * bindings as the GEMM; dispatch `linearGroups(T · rows)`.
 */
export function gemmReduceShader(ways: number): string {
  return `${MATMUL_PARAMS}
@group(0) @binding(2) var<storage, read> partial: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  let n = st.T * p.rows;
  if (i >= n) { return; }
  var s = 0.0;
  for (var z = 0u; z < ${ways}u; z++) { s += partial[z * n + i]; }
  let t = i / p.rows;
  let o = p.outOff + st.pos * p.outPosStride + t * p.outStride + i % p.rows;
  var y = s * p.tscale;
  if (p.accumulate != 0u) { y += out[o]; }
  out[o] = y;
}
`;
}
