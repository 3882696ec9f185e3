/**
 * Float32 WebAssembly SIMD kernels for the searches that re-run parts of a block many times
 * (AWQ's scale and clip searches): {@linkcode gemm} on weights packed once by
 * {@linkcode packRows} (6 tokens × 8 rows per step with relaxed-SIMD multiply-adds, fused where
 * the CPU has FMA: about twice the CPU backend's matmul throughput), {@linkcode sumOfSquares},
 * {@linkcode siluMul} and {@linkcode causalAttention}, whose exponentials use a polynomial
 * (Cephes `expf`, within a few ulp). They agree with the CPU backend's kernels to float32
 * rounding, not bit for bit: sums are taken in another order and in float32 where the backend
 * uses float64. The module is built from {@linkcode searchKernelsWat} and committed as base64;
 * a test checks the two agree.
 *
 * @module
 */

/** Tokens per {@linkcode gemm} kernel step; token counts are padded to a multiple of it. */
const TILE_T = 6;
/** Rows per packed panel (two f32x4 vectors). */
const TILE_R = 8;
/** Tokens per {@linkcode gemm} call into the kernel: the chunk of `x` stays in the L2 cache. */
const GEMM_CHUNK = 96;
/** Query tokens per block of {@linkcode causalAttention}: later keys are skipped per block. */
const ATTENTION_BLOCK = 48;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** `splat(v)`: a WAT f32x4 constant of four `v`. */
const splat = (v: number | string) => `(v128.const f32x4 ${v} ${v} ${v} ${v})`;

/** The constants of {@linkcode expWat}: Cephes `expf`'s range, ln 2 split in two, polynomial. */
const EXP_CONSTANTS: Record<string, number> = {
  lo: -87.33654,
  hi: 88.3762626647949,
  log2e: 1.44269504088896341,
  magic: 12582912,
  ln2hi: 0.693359375,
  ln2lo: -2.12194440e-4,
  p0: 1.9875691500e-4,
  p1: 1.3981999507e-3,
  p2: 8.3334519073e-3,
  p3: 4.1665795894e-2,
  p4: 1.6666665459e-1,
  p5: 5.0000001201e-1,
  one: 1,
};

/**
 * The locals of {@linkcode expWat} (scratch, and one per constant) and the statements that set
 * the constants, for the start of a function: V8 rebuilds a `v128.const` wherever it occurs, so
 * constants in locals make the exponential about twice as fast.
 */
const EXP_LOCALS = "(local $et v128) (local $er v128) (local $ep v128) (local $eu v128) " +
  Object.keys(EXP_CONSTANTS).map((k) => `(local $k_${k} v128)`).join(" ");
const EXP_INIT = Object.entries(EXP_CONSTANTS).map(([k, v]) => `(local.set $k_${k} ${splat(v)})`)
  .join("\n    ");

/**
 * WAT statements setting the f32x4 local `out` to `exp` of the local `x` (which they clamp), in
 * a function with {@linkcode EXP_LOCALS}: Cephes `expf` — `x = n·ln2 + r`, `|r| ≤ ln2/2`, a
 * degree-6 polynomial in `r` — with 0 below -87.3365 (where float32 `exp` leaves the normal
 * range) and the input clamped at 88.3763. Adding 1.5·2²³ rounds `x·log2(e)` to the integer `n`
 * in the low mantissa bits, whence the exponent of `2ⁿ`.
 */
function expWat(out: string, x: string): string {
  const k = (name: string) => `(local.get $k_${name})`;
  const poly = ["p1", "p2", "p3", "p4", "p5"]
    .map((c) => `(local.set $ep (f32x4.relaxed_madd (local.get $ep) (local.get $er) ${k(c)}))`);
  return `
          (local.set $eu (f32x4.lt (local.get ${x}) ${k("lo")}))
          (local.set ${x} (f32x4.pmax (f32x4.pmin (local.get ${x}) ${k("hi")}) ${k("lo")}))
          (local.set $et (f32x4.relaxed_madd (local.get ${x}) ${k("log2e")} ${k("magic")}))
          (local.set $er (f32x4.sub (local.get $et) ${k("magic")}))
          (local.set $er (f32x4.relaxed_nmadd (local.get $er) ${k("ln2lo")}
            (f32x4.relaxed_nmadd (local.get $er) ${k("ln2hi")} (local.get ${x}))))
          (local.set $ep ${k("p0")})
          ${poly.join("\n          ")}
          (local.set $ep (f32x4.add (f32x4.relaxed_madd (f32x4.mul (local.get $ep) (local.get $er))
            (local.get $er) (local.get $er)) ${k("one")}))
          (local.set ${out} (v128.andnot
            (f32x4.mul (local.get $ep)
              (i32x4.shl (i32x4.add (local.get $et) (v128.const i32x4 127 127 127 127))
                (i32.const 23)))
            (local.get $eu)))`;
}

/**
 * The WebAssembly text of the float32 kernels (`simd` and `relaxed_simd`), compiled into
 * {@linkcode SEARCH_KERNELS_WASM_BASE64} (the test checks that it is current):
 *
 * - `gemm(x, ldx, p, pstride, out, ldo, T, rows, cols)`: `out[t·ldo + r] = Σ_{c<cols}
 *   x[t·ldx + c] · W[r][c]` for `t < T` (a multiple of 6) and `r < rows` (a multiple of 8), `W`'s
 *   panel `r/8` at `p + r·pstride` floats holding `(c, r mod 8)` at `c·8 + r mod 8`;
 * - `sub(a, b, n)`: `a[i] −= b[i]` and `sumsq(a, n)`: `Σ a[i]²` in float64, for `i < n` (a
 *   multiple of 4);
 * - `silu_mul(g, u, n)`: `g[i] = g[i] / (1 + exp(−g[i])) · u[i]` for `i < n` (a multiple of 4);
 * - `exp_causal(s, ld, t0, nTok, heads, width, scale, sums)`: rows `i = (t − t0)·heads + h` of
 *   `s` (stride `ld`) for `t0 ≤ t < t0 + nTok` become `exp(scale·s[j] − max_j scale·s[j])` for
 *   `j ≤ t` and zero from `t + 1` up to `width` (columns past that up to the next multiple of 4
 *   may be written); `sums[i]` gets each row's sum (a softmax but for the division).
 *
 * Pointers are byte offsets into the module's memory; strides and sizes count floats.
 */
export function searchKernelsWat(): string {
  const acc = (i: number, j: number) => `$a${i}_${j}`;
  const tile = [...Array(TILE_T).keys()];
  const vecs = [...Array(TILE_R / 4).keys()];
  const all = (f: (i: number, j: number) => string) =>
    tile.flatMap((i) => vecs.map((j) => f(i, j))).join("\n        ");
  // A loop over byte offsets $i < $n in steps of one vector.
  const vectorLoop = (body: string) => `
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      ${body}
      (local.set $i (i32.add (local.get $i) (i32.const 16)))
      (br $next)))`;
  return `(module
  (memory (export "memory") 1)
  (func (export "gemm")
    (param $x i32) (param $ldx i32) (param $p i32) (param $pstride i32) (param $out i32)
    (param $ldo i32) (param $T i32) (param $rows i32) (param $cols i32)
    (local $r i32) (local $t i32) (local $pp i32) (local $pe i32) (local $xp i32) (local $o i32)
    (local $s v128) ${vecs.map((j) => `(local $w${j} v128)`).join(" ")}
    ${all((i, j) => `(local ${acc(i, j)} v128)`)}
    (local.set $ldx (i32.shl (local.get $ldx) (i32.const 2)))
    (local.set $ldo (i32.shl (local.get $ldo) (i32.const 2)))
    (local.set $pstride (i32.shl (local.get $pstride) (i32.const 2)))
    (block $rdone (loop $rloop
      (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $t (i32.const 0))
      (block $tdone (loop $tloop
        (br_if $tdone (i32.ge_u (local.get $t) (local.get $T)))
        ${all((i, j) => `(local.set ${acc(i, j)} ${splat(0)})`)}
        (local.set $pp (i32.add (local.get $p) (i32.mul (local.get $r) (local.get $pstride))))
        (local.set $pe (i32.add (local.get $pp)
          (i32.mul (local.get $cols) (i32.const ${TILE_R * 4}))))
        (local.set $xp (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $ldx))))
        (block $cdone (loop $cloop
          (br_if $cdone (i32.ge_u (local.get $pp) (local.get $pe)))
          ${
    vecs.map((j) => `(local.set $w${j} (v128.load offset=${16 * j} (local.get $pp)))`).join(" ")
  }
${
    tile.map((i) =>
      `          (local.set $s (v128.load32_splat (i32.add (local.get $xp) ` +
      `(i32.mul (local.get $ldx) (i32.const ${i})))))\n` +
      vecs.map((j) =>
        `          (local.set ${acc(i, j)} (f32x4.relaxed_madd (local.get $s) (local.get $w${j}) ` +
        `(local.get ${acc(i, j)})))`
      ).join("\n")
    ).join("\n")
  }
          (local.set $xp (i32.add (local.get $xp) (i32.const 4)))
          (local.set $pp (i32.add (local.get $pp) (i32.const ${TILE_R * 4})))
          (br $cloop)))
        (local.set $o (i32.add (local.get $out) (i32.add
          (i32.mul (local.get $t) (local.get $ldo)) (i32.shl (local.get $r) (i32.const 2)))))
${
    tile.map((i) =>
      vecs.map((j) =>
        `        (v128.store offset=${16 * j} (local.get $o) (local.get ${acc(i, j)}))`
      ).join("\n") + `\n        (local.set $o (i32.add (local.get $o) (local.get $ldo)))`
    ).join("\n")
  }
        (local.set $t (i32.add (local.get $t) (i32.const ${TILE_T})))
        (br $tloop)))
      (local.set $r (i32.add (local.get $r) (i32.const ${TILE_R})))
      (br $rloop))))
  (func (export "sub") (param $a i32) (param $b i32) (param $n i32) (local $i i32)
    (local.set $n (i32.shl (local.get $n) (i32.const 2)))
    ${
    vectorLoop(`(v128.store (i32.add (local.get $a) (local.get $i)) (f32x4.sub
        (v128.load (i32.add (local.get $a) (local.get $i)))
        (v128.load (i32.add (local.get $b) (local.get $i)))))`)
  })
  (func (export "sumsq") (param $a i32) (param $n i32) (result f64)
    (local $i i32) (local $v v128) (local $lo v128) (local $hi v128) (local $sum v128)
    (local.set $n (i32.shl (local.get $n) (i32.const 2)))
    ${
    vectorLoop(`(local.set $v (v128.load (i32.add (local.get $a) (local.get $i))))
      (local.set $lo (f64x2.promote_low_f32x4 (local.get $v)))
      (local.set $hi (f64x2.promote_low_f32x4
        (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))))
      (local.set $sum (f64x2.add (local.get $sum) (f64x2.add
        (f64x2.mul (local.get $lo) (local.get $lo)) (f64x2.mul (local.get $hi) (local.get $hi)))))`)
  }
    (f64.add (f64x2.extract_lane 0 (local.get $sum)) (f64x2.extract_lane 1 (local.get $sum))))
  (func (export "silu_mul") (param $g i32) (param $u i32) (param $n i32)
    (local $i i32) (local $v v128) (local $e v128) ${EXP_LOCALS}
    ${EXP_INIT}
    (local.set $n (i32.shl (local.get $n) (i32.const 2)))
    ${
    vectorLoop(`(local.set $v (v128.load (i32.add (local.get $g) (local.get $i))))
      (local.set $e (f32x4.neg (local.get $v)))${expWat("$e", "$e")}
      (v128.store (i32.add (local.get $g) (local.get $i))
        (f32x4.mul (f32x4.div (local.get $v) (f32x4.add (local.get $k_one) (local.get $e)))
          (v128.load (i32.add (local.get $u) (local.get $i)))))`)
  })
  (func (export "exp_causal")
    (param $s i32) (param $ld i32) (param $t0 i32) (param $nTok i32) (param $heads i32)
    (param $width i32) (param $scale f32) (param $sums i32)
    (local $tt i32) (local $h i32) (local $n i32) (local $n4 i32) (local $j i32) (local $a i32)
    (local $m v128) (local $sum v128) (local $e v128) (local $mx f32) ${EXP_LOCALS}
    ${EXP_INIT}
    (local.set $ld (i32.shl (local.get $ld) (i32.const 2)))
    (local.set $width (i32.shl (local.get $width) (i32.const 2)))
    (block $tdone (loop $tloop
      (br_if $tdone (i32.ge_u (local.get $tt) (local.get $nTok)))
      ;; Keys 0 … t: n of them in bytes, and n rounded up to whole vectors.
      (local.set $n (i32.shl (i32.add (i32.add (local.get $t0) (local.get $tt)) (i32.const 1))
        (i32.const 2)))
      (local.set $n4 (i32.and (i32.add (local.get $n) (i32.const 15)) (i32.const -16)))
      (local.set $h (i32.const 0))
      (block $hdone (loop $hloop
        (br_if $hdone (i32.ge_u (local.get $h) (local.get $heads)))
        ;; Lanes past the last key are -inf (exp gives 0), columns past the vectors 0.
        (local.set $j (local.get $n))
        (block $mdone (loop $mloop
          (br_if $mdone (i32.ge_u (local.get $j) (local.get $n4)))
          (f32.store (i32.add (local.get $s) (local.get $j)) (f32.const -inf))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $mloop)))
        (block $zdone (loop $zloop
          (br_if $zdone (i32.ge_u (local.get $j) (local.get $width)))
          (f32.store (i32.add (local.get $s) (local.get $j)) (f32.const 0))
          (local.set $j (i32.add (local.get $j) (i32.const 4)))
          (br $zloop)))
        (local.set $m ${splat("-inf")})
        (local.set $j (i32.const 0))
        (block $xdone (loop $xloop
          (br_if $xdone (i32.ge_u (local.get $j) (local.get $n4)))
          (local.set $m (f32x4.pmax (local.get $m)
            (v128.load (i32.add (local.get $s) (local.get $j)))))
          (local.set $j (i32.add (local.get $j) (i32.const 16)))
          (br $xloop)))
        (local.set $mx (f32.mul (local.get $scale) (f32.max
          (f32.max (f32x4.extract_lane 0 (local.get $m)) (f32x4.extract_lane 1 (local.get $m)))
          (f32.max (f32x4.extract_lane 2 (local.get $m)) (f32x4.extract_lane 3 (local.get $m))))))
        (local.set $sum ${splat(0)})
        (local.set $j (i32.const 0))
        (block $edone (loop $eloop
          (br_if $edone (i32.ge_u (local.get $j) (local.get $n4)))
          (local.set $a (i32.add (local.get $s) (local.get $j)))
          (local.set $e (f32x4.sub
            (f32x4.mul (v128.load (local.get $a)) (f32x4.splat (local.get $scale)))
            (f32x4.splat (local.get $mx))))${expWat("$e", "$e")}
          (v128.store (local.get $a) (local.get $e))
          (local.set $sum (f32x4.add (local.get $sum) (local.get $e)))
          (local.set $j (i32.add (local.get $j) (i32.const 16)))
          (br $eloop)))
        (f32.store (local.get $sums) (f32.add
          (f32.add (f32x4.extract_lane 0 (local.get $sum)) (f32x4.extract_lane 1 (local.get $sum)))
          (f32.add (f32x4.extract_lane 2 (local.get $sum)) (f32x4.extract_lane 3 (local.get $sum)))))
        (local.set $sums (i32.add (local.get $sums) (i32.const 4)))
        (local.set $s (i32.add (local.get $s) (local.get $ld)))
        (local.set $h (i32.add (local.get $h) (i32.const 1)))
        (br $hloop)))
      (local.set $tt (i32.add (local.get $tt) (i32.const 1)))
      (br $tloop))))
)
`;
}

/** {@linkcode searchKernelsWat} compiled with wabt (`simd`, `relaxed_simd`). */
export const SEARCH_KERNELS_WASM_BASE64 = [
  "AGFzbQEAAAABJARgCX9/f39/f39/fwBgA39/fwBgAn9/AXxgCH9/f39/f31/AAMGBQABAgEDBQMBAAEHNwYGbWVtb3",
  "J5AgAEZ2VtbQAAA3N1YgABBXN1bXNxAAIIc2lsdV9tdWwAAwpleHBfY2F1c2FsAAQK/hEF+AUCBn8PeyABQQJ0IQEg",
  "BUECdCEFIANBAnQhAwJAA0AgCSAHTw0BQQAhCgJAA0AgCiAGTw0B/QwAAAAAAAAAAAAAAAAAAAAAIRL9DAAAAAAAAA",
  "AAAAAAAAAAAAAhE/0MAAAAAAAAAAAAAAAAAAAAACEU/QwAAAAAAAAAAAAAAAAAAAAAIRX9DAAAAAAAAAAAAAAAAAAA",
  "AAAhFv0MAAAAAAAAAAAAAAAAAAAAACEX/QwAAAAAAAAAAAAAAAAAAAAAIRj9DAAAAAAAAAAAAAAAAAAAAAAhGf0MAA",
  "AAAAAAAAAAAAAAAAAAACEa/QwAAAAAAAAAAAAAAAAAAAAAIRv9DAAAAAAAAAAAAAAAAAAAAAAhHP0MAAAAAAAAAAAA",
  "AAAAAAAAACEdIAIgCSADbGohCyALIAhBIGxqIQwgACAKIAFsaiENAkADQCALIAxPDQEgC/0ABAAhECAL/QAEECERIA",
  "0gAUEAbGr9CQIAIQ8gDyAQIBL9hQIhEiAPIBEgE/2FAiETIA0gAUEBbGr9CQIAIQ8gDyAQIBT9hQIhFCAPIBEgFf2F",
  "AiEVIA0gAUECbGr9CQIAIQ8gDyAQIBb9hQIhFiAPIBEgF/2FAiEXIA0gAUEDbGr9CQIAIQ8gDyAQIBj9hQIhGCAPIB",
  "EgGf2FAiEZIA0gAUEEbGr9CQIAIQ8gDyAQIBr9hQIhGiAPIBEgG/2FAiEbIA0gAUEFbGr9CQIAIQ8gDyAQIBz9hQIh",
  "HCAPIBEgHf2FAiEdIA1BBGohDSALQSBqIQsMAAsLIAQgCiAFbCAJQQJ0amohDiAOIBL9CwQAIA4gE/0LBBAgDiAFai",
  "EOIA4gFP0LBAAgDiAV/QsEECAOIAVqIQ4gDiAW/QsEACAOIBf9CwQQIA4gBWohDiAOIBj9CwQAIA4gGf0LBBAgDiAF",
  "aiEOIA4gGv0LBAAgDiAb/QsEECAOIAVqIQ4gDiAc/QsEACAOIB39CwQQIA4gBWohDiAKQQZqIQoMAAsLIAlBCGohCQ",
  "wACwsLPwEBfyACQQJ0IQICQANAIAMgAk8NASAAIANqIAAgA2r9AAQAIAEgA2r9AAQA/eUB/QsEACADQRBqIQMMAAsL",
  "C3ECAX8EeyABQQJ0IQECQANAIAIgAU8NASAAIAJq/QAEACEDIAP9XyEEIAMgA/0NCAkKCwwNDg8AAQIDBAUGB/1fIQ",
  "UgBiAEIAT98gEgBSAF/fIB/fAB/fABIQYgAkEQaiECDAALCyAG/SEAIAb9IQGgC40EAgF/E3v9DE+srsJPrK7CT6yu",
  "wk+srsIhCv0MpcCwQqXAsEKlwLBCpcCwQiEL/Qw7qrg/O6q4PzuquD87qrg/IQz9DAAAQEsAAEBLAABASwAAQEshDf",
  "0MAIAxPwCAMT8AgDE/AIAxPyEO/QyDgF65g4BeuYOAXrmDgF65IQ/9DGdpUDlnaVA5Z2lQOWdpUDkhEP0MzkO3Os5D",
  "tzrOQ7c6zkO3OiER/QwIiQg8CIkIPAiJCDwIiQg8IRL9DMGpKj3BqSo9wakqPcGpKj0hE/0MqqoqPqqqKj6qqio+qq",
  "oqPiEU/QwAAAA/AAAAPwAAAD8AAAA/IRX9DAAAgD8AAIA/AACAPwAAgD8hFiACQQJ0IQICQANAIAMgAk8NASAAIANq",
  "/QAEACEEIAT94QEhBSAFIAr9QyEJIAUgC/3qASAK/esBIQUgBSAMIA39hQIhBiAGIA395QEhByAHIA8gByAOIAX9hg",
  "L9hgIhByAQIQggCCAHIBH9hQIhCCAIIAcgEv2FAiEIIAggByAT/YUCIQggCCAHIBT9hQIhCCAIIAcgFf2FAiEIIAgg",
  "B/3mASAHIAf9hQIgFv3kASEIIAggBv0MfwAAAH8AAAB/AAAAfwAAAP2uAUEX/asB/eYBIAn9TyEFIAAgA2ogBCAWIA",
  "X95AH95wEgASADav0ABAD95gH9CwQAIANBEGohAwwACwsLwAYEBn8DewF9EXv9DE+srsJPrK7CT6yuwk+srsIhFv0M",
  "pcCwQqXAsEKlwLBCpcCwQiEX/Qw7qrg/O6q4PzuquD87qrg/IRj9DAAAQEsAAEBLAABASwAAQEshGf0MAIAxPwCAMT",
  "8AgDE/AIAxPyEa/QyDgF65g4BeuYOAXrmDgF65IRv9DGdpUDlnaVA5Z2lQOWdpUDkhHP0MzkO3Os5DtzrOQ7c6zkO3",
  "OiEd/QwIiQg8CIkIPAiJCDwIiQg8IR79DMGpKj3BqSo9wakqPcGpKj0hH/0MqqoqPqqqKj6qqio+qqoqPiEg/QwAAA",
  "A/AAAAPwAAAD8AAAA/ISH9DAAAgD8AAIA/AACAPwAAgD8hIiABQQJ0IQEgBUECdCEFAkADQCAIIANPDQEgAiAIakEB",
  "akECdCEKIApBD2pBcHEhC0EAIQkCQANAIAkgBE8NASAKIQwCQANAIAwgC08NASAAIAxqQwAAgP84AgAgDEEEaiEMDA",
  "ALCwJAA0AgDCAFTw0BIAAgDGpDAAAAADgCACAMQQRqIQwMAAsL/QwAAID/AACA/wAAgP8AAID/IQ5BACEMAkADQCAM",
  "IAtPDQEgDiAAIAxq/QAEAP3rASEOIAxBEGohDAwACwsgBiAO/R8AIA79HwGXIA79HwIgDv0fA5eXlCER/QwAAAAAAA",
  "AAAAAAAAAAAAAAIQ9BACEMAkADQCAMIAtPDQEgACAMaiENIA39AAQAIAb9E/3mASAR/RP95QEhECAQIBb9QyEVIBAg",
  "F/3qASAW/esBIRAgECAYIBn9hQIhEiASIBn95QEhEyATIBsgEyAaIBD9hgL9hgIhEyAcIRQgFCATIB39hQIhFCAUIB",
  "MgHv2FAiEUIBQgEyAf/YUCIRQgFCATICD9hQIhFCAUIBMgIf2FAiEUIBQgE/3mASATIBP9hQIgIv3kASEUIBQgEv0M",
  "fwAAAH8AAAB/AAAAfwAAAP2uAUEX/asB/eYBIBX9TyEQIA0gEP0LBAAgDyAQ/eQBIQ8gDEEQaiEMDAALCyAHIA/9Hw",
  "AgD/0fAZIgD/0fAiAP/R8DkpI4AgAgB0EEaiEHIAAgAWohACAJQQFqIQkMAAsLIAhBAWohCAwACwsL",
].join("");

interface SearchKernels {
  memory: WebAssembly.Memory;
  gemm(
    x: number,
    ldx: number,
    p: number,
    pstride: number,
    out: number,
    ldo: number,
    T: number,
    rows: number,
    cols: number,
  ): void;
  sub(a: number, b: number, n: number): void;
  sumsq(a: number, n: number): number;
  silu_mul(g: number, u: number, n: number): void;
  exp_causal(
    s: number,
    ld: number,
    t0: number,
    nTok: number,
    heads: number,
    width: number,
    scale: number,
    sums: number,
  ): void;
}

let instance: SearchKernels | undefined;

/** The kernels, with their memory grown to hold `floats` floats, and that memory as floats. */
function kernelMemory(floats: number): { k: SearchKernels; mem: Float32Array } {
  if (instance === undefined) {
    const bytes = Uint8Array.from(atob(SEARCH_KERNELS_WASM_BASE64), (c) => c.charCodeAt(0));
    instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {})
      .exports as unknown as SearchKernels;
  }
  const have = instance.memory.buffer.byteLength;
  if (have < floats * 4) instance.memory.grow(Math.ceil((floats * 4 - have) / 65536));
  return { k: instance, mem: new Float32Array(instance.memory.buffer) };
}

/** A `rows × cols` matrix packed for {@linkcode gemm} (see {@linkcode searchKernelsWat}). */
export interface PackedRows {
  rows: number;
  cols: number;
  /** Panels of 8 rows, `cols × 8` floats each; rows past `rows` are zero. */
  panels: Float32Array;
}

/** Packs a row-major `rows × cols` matrix for {@linkcode gemm}. */
export function packRows(data: Float32Array, rows: number, cols: number): PackedRows {
  const panels = new Float32Array(roundUp(rows, TILE_R) * cols);
  for (let r = 0; r < rows; r++) {
    const base = Math.floor(r / TILE_R) * cols * TILE_R + (r % TILE_R);
    for (let c = 0; c < cols; c++) panels[base + c * TILE_R] = data[r * cols + c]!;
  }
  return { rows, cols, panels };
}

/**
 * Runs `W·x` over chunks of the rows of `x` (minus those of `minus`, when given), calling `each`
 * with the kernels, their memory, the chunk's output offset (`rowsP` floats a token, zero past
 * `rows`), its first token, its tokens, and its tokens padded to the kernel's step (zero outputs).
 */
function chunkedGemm(
  w: PackedRows,
  x: Float32Array,
  minus: Float32Array | undefined,
  each: (
    k: SearchKernels,
    mem: Float32Array,
    oOff: number,
    t0: number,
    n: number,
    nP: number,
  ) => void,
): void {
  const { cols, panels } = w;
  const T = x.length / cols;
  const rowsP = panels.length / cols;
  const span = roundUp(GEMM_CHUNK * cols, 4);
  const [xOff, mOff, oOff] = [panels.length, panels.length + span, panels.length + 2 * span];
  const { k, mem } = kernelMemory(oOff + GEMM_CHUNK * rowsP);
  mem.set(panels, 0);
  for (let t0 = 0; t0 < T; t0 += GEMM_CHUNK) {
    const n = Math.min(GEMM_CHUNK, T - t0);
    const nP = roundUp(n, TILE_T);
    mem.set(x.subarray(t0 * cols, (t0 + n) * cols), xOff);
    if (minus !== undefined) {
      mem.set(minus.subarray(t0 * cols, (t0 + n) * cols), mOff);
      k.sub(xOff * 4, mOff * 4, roundUp(n * cols, 4));
    }
    mem.fill(0, xOff + n * cols, xOff + nP * cols);
    k.gemm(xOff * 4, cols, 0, cols, oOff * 4, rowsP, nP, rowsP, cols);
    each(k, mem, oOff, t0, n, nP);
  }
}

/** `out[t][r] = Σ_c x[t][c] · W[r][c]` for the rows of `x` (as `ops.matmul`), float32 sums. */
export function gemm(out: Float32Array, x: Float32Array, w: PackedRows): void {
  const { rows } = w;
  const rowsP = w.panels.length / w.cols;
  chunkedGemm(w, x, undefined, (_, mem, oOff, t0, n) => {
    if (rowsP === rows) {
      out.set(mem.subarray(oOff, oOff + n * rows), t0 * rows);
    } else {
      for (let t = 0; t < n; t++) {
        out.set(mem.subarray(oOff + t * rowsP, oOff + t * rowsP + rows), (t0 + t) * rows);
      }
    }
  });
}

/**
 * `Σ_t Σ_r (W·(x_t − minus_t))_r²` over the rows of `x` (and of `minus`, when given): the
 * squared error of a linear's output when only its input changed. Float32 products, squares
 * summed in float64.
 */
export function sumOfSquares(w: PackedRows, x: Float32Array, minus?: Float32Array): number {
  const rowsP = w.panels.length / w.cols;
  let sum = 0;
  chunkedGemm(w, x, minus, (k, _, oOff, _t0, _n, nP) => {
    sum += k.sumsq(oOff * 4, nP * rowsP);
  });
  return sum;
}

/** In place `gate[i] = silu(gate[i]) · up[i]` (as `ops.swiglu`), in float32. */
export function siluMul(gate: Float32Array, up: Float32Array): void {
  const n = roundUp(gate.length, 4);
  const { k, mem } = kernelMemory(2 * n);
  mem.set(gate, 0);
  mem.fill(0, gate.length, n);
  mem.set(up, n);
  mem.fill(0, n + up.length, 2 * n);
  k.silu_mul(0, n * 4, n);
  gate.set(mem.subarray(0, gate.length));
}

/**
 * Causal grouped-query attention of `T` tokens at positions `0 … T−1` (as `ops.attention` with
 * `pos` 0): `q` is `T × nHeads·headDim`, `k` and `v` `T × nKvHeads·headDim`. Per key/value
 * head, the scores of its query heads come from {@linkcode gemm} over blocks of tokens (each block
 * against the keys up to its last token), then their exponentials weigh the values and the sum
 * divides (as `ops.attention` does).
 */
export function causalAttention(
  out: Float32Array,
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
): void {
  const width = nHeads * headDim;
  const kvWidth = nKvHeads * headDim;
  const T = q.length / width;
  const G = nHeads / nKvHeads;
  const TP = roundUp(T, TILE_R);
  const hdP = roundUp(headDim, TILE_R);
  const rowsQ = roundUp(T * G, TILE_T);
  const qOff = 0;
  const kOff = qOff + rowsQ * headDim;
  const vOff = kOff + TP * headDim;
  const sOff = vOff + hdP * TP;
  const oOff = sOff + rowsQ * TP;
  const sumOff = oOff + rowsQ * hdP;
  const { k: kernels, mem } = kernelMemory(sumOff + rowsQ);
  const scale = Math.fround(1 / Math.sqrt(headDim));
  for (let g = 0; g < nKvHeads; g++) {
    // Query rows (t, head of the group); keys as panels of 8 keys; values transposed, as
    // panels of 8 dimensions over all keys.
    mem.fill(0, qOff, sOff);
    for (let t = 0; t < T; t++) {
      const src = t * width + g * G * headDim;
      mem.set(q.subarray(src, src + G * headDim), qOff + t * G * headDim);
      const kv = t * kvWidth + g * headDim;
      const kBase = kOff + Math.floor(t / TILE_R) * headDim * TILE_R + (t % TILE_R);
      for (let d = 0; d < headDim; d++) {
        mem[kBase + d * TILE_R] = k[kv + d]!;
        mem[vOff + Math.floor(d / TILE_R) * TP * TILE_R + t * TILE_R + (d % TILE_R)] = v[kv + d]!;
      }
    }
    for (let t0 = 0; t0 < T; t0 += ATTENTION_BLOCK) {
      const t1 = Math.min(T, t0 + ATTENTION_BLOCK);
      const rows = roundUp((t1 - t0) * G, TILE_T);
      const s = (sOff + t0 * G * TP) * 4;
      kernels.gemm(
        (qOff + t0 * G * headDim) * 4,
        headDim,
        kOff * 4,
        headDim,
        s,
        TP,
        rows,
        roundUp(t1, TILE_R),
        headDim,
      );
      kernels.exp_causal(s, TP, t0, t1 - t0, G, t1, scale, (sumOff + t0 * G) * 4);
      kernels.gemm(s, TP, vOff * 4, TP, (oOff + t0 * G * hdP) * 4, hdP, rows, hdP, t1);
    }
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < G; h++) {
        const src = oOff + (t * G + h) * hdP;
        const dst = t * width + (g * G + h) * headDim;
        const sum = mem[sumOff + t * G + h]!;
        for (let d = 0; d < headDim; d++) out[dst + d] = mem[src + d]! / sum;
      }
    }
  }
}
