;; f32 SIMD matrix kernel for the CPU backend (compiled by kernels/cpu/build_wasm.ts).
;; out[t*ldo + r] = sum_c x[t*cols + c] * w[r*cols + c] for r < rows, t < T.
;; cols is a multiple of 4 and rows a multiple of 4 (the caller pads with zeros).
(module
  (memory (export "memory") 1)
  (func $hsum (param $v v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))
  (func (export "matmul")
    (param $x i32) (param $w i32) (param $out i32)
    (param $T i32) (param $rows i32) (param $cols i32) (param $ldo i32)
    (local $r i32) (local $t i32) (local $c i32) (local $rowBytes i32)
    (local $w0 i32) (local $w1 i32) (local $w2 i32) (local $w3 i32) (local $xp i32) (local $o i32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128) (local $xv v128)
    (local.set $rowBytes (i32.shl (local.get $cols) (i32.const 2)))
    (block $rdone
      (loop $rloop
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $w0 (i32.add (local.get $w) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $w1 (i32.add (local.get $w0) (local.get $rowBytes)))
        (local.set $w2 (i32.add (local.get $w1) (local.get $rowBytes)))
        (local.set $w3 (i32.add (local.get $w2) (local.get $rowBytes)))
        (local.set $t (i32.const 0))
        (block $tdone
          (loop $tloop
            (br_if $tdone (i32.ge_u (local.get $t) (local.get $T)))
            (local.set $xp (i32.add (local.get $x) (i32.mul (local.get $t) (local.get $rowBytes))))
            (local.set $a0 (v128.const f32x4 0 0 0 0))
            (local.set $a1 (v128.const f32x4 0 0 0 0))
            (local.set $a2 (v128.const f32x4 0 0 0 0))
            (local.set $a3 (v128.const f32x4 0 0 0 0))
            (local.set $c (i32.const 0))
            (block $cdone
              (loop $cloop
                (br_if $cdone (i32.ge_u (local.get $c) (local.get $rowBytes)))
                (local.set $xv (v128.load (i32.add (local.get $xp) (local.get $c))))
                (local.set $a0 (f32x4.add (local.get $a0)
                  (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w0) (local.get $c))))))
                (local.set $a1 (f32x4.add (local.get $a1)
                  (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w1) (local.get $c))))))
                (local.set $a2 (f32x4.add (local.get $a2)
                  (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w2) (local.get $c))))))
                (local.set $a3 (f32x4.add (local.get $a3)
                  (f32x4.mul (local.get $xv) (v128.load (i32.add (local.get $w3) (local.get $c))))))
                (local.set $c (i32.add (local.get $c) (i32.const 16)))
                (br $cloop)))
            (local.set $o (i32.add (local.get $out)
              (i32.shl (i32.add (i32.mul (local.get $t) (local.get $ldo)) (local.get $r))
                (i32.const 2))))
            (f32.store offset=0 (local.get $o) (call $hsum (local.get $a0)))
            (f32.store offset=4 (local.get $o) (call $hsum (local.get $a1)))
            (f32.store offset=8 (local.get $o) (call $hsum (local.get $a2)))
            (f32.store offset=12 (local.get $o) (call $hsum (local.get $a3)))
            (local.set $t (i32.add (local.get $t) (i32.const 1)))
            (br $tloop)))
        (local.set $r (i32.add (local.get $r) (i32.const 4)))
        (br $rloop))))
  ;; Decodes `rows` rows of integer codes (one byte per weight, row-major `rows × cols`) into f32
  ;; rows of `colsP` floats at $out: w = scale · (code − zero), per group of `group` columns, with
  ;; scales (f32) and zero points (u8, or the fixed $fixedZero when $hasZeros is 0) per row × group.
  ;; Columns cols..colsP are zeroed.
  (func (export "decode_int")
    (param $codes i32) (param $scales i32) (param $zeros i32) (param $out i32)
    (param $rows i32) (param $cols i32) (param $colsP i32) (param $group i32) (param $groups i32)
    (param $fixedZero f32) (param $hasZeros i32)
    (local $r i32) (local $g i32) (local $c i32) (local $c1 i32) (local $gi i32)
    (local $scale f32) (local $zero f32) (local $vs v128) (local $vz v128)
    (local $src i32) (local $dst i32)
    (block $rdone
      (loop $rloop
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $g (i32.const 0))
        (block $gdone
          (loop $gloop
            (br_if $gdone (i32.ge_u (local.get $g) (local.get $groups)))
            (local.set $gi (i32.add (i32.mul (local.get $r) (local.get $groups)) (local.get $g)))
            (local.set $scale (f32.load (i32.add (local.get $scales) (i32.shl (local.get $gi) (i32.const 2)))))
            (local.set $zero
              (if (result f32) (local.get $hasZeros)
                (then (f32.convert_i32_u (i32.load8_u (i32.add (local.get $zeros) (local.get $gi)))))
                (else (local.get $fixedZero))))
            (local.set $vs (f32x4.splat (local.get $scale)))
            (local.set $vz (f32x4.splat (local.get $zero)))
            (local.set $c (i32.mul (local.get $g) (local.get $group)))
            (local.set $c1 (i32.add (local.get $c) (local.get $group)))
            (if (i32.gt_u (local.get $c1) (local.get $cols)) (then (local.set $c1 (local.get $cols))))
            ;; four at a time
            (block $vdone
              (loop $vloop
                (br_if $vdone (i32.gt_u (i32.add (local.get $c) (i32.const 4)) (local.get $c1)))
                (local.set $src (i32.add (local.get $codes)
                  (i32.add (i32.mul (local.get $r) (local.get $cols)) (local.get $c))))
                (local.set $dst (i32.add (local.get $out)
                  (i32.shl (i32.add (i32.mul (local.get $r) (local.get $colsP)) (local.get $c)) (i32.const 2))))
                (v128.store (local.get $dst)
                  (f32x4.mul (local.get $vs)
                    (f32x4.sub
                      (f32x4.convert_i32x4_u
                        (i32x4.extend_low_i16x8_u (i16x8.extend_low_i8x16_u
                          (v128.load32_zero (local.get $src)))))
                      (local.get $vz))))
                (local.set $c (i32.add (local.get $c) (i32.const 4)))
                (br $vloop)))
            ;; the rest one by one
            (block $sdone
              (loop $sloop
                (br_if $sdone (i32.ge_u (local.get $c) (local.get $c1)))
                (f32.store
                  (i32.add (local.get $out)
                    (i32.shl (i32.add (i32.mul (local.get $r) (local.get $colsP)) (local.get $c)) (i32.const 2)))
                  (f32.mul (local.get $scale)
                    (f32.sub
                      (f32.convert_i32_u (i32.load8_u (i32.add (local.get $codes)
                        (i32.add (i32.mul (local.get $r) (local.get $cols)) (local.get $c)))))
                      (local.get $zero))))
                (local.set $c (i32.add (local.get $c) (i32.const 1)))
                (br $sloop)))
            (local.set $g (i32.add (local.get $g) (i32.const 1)))
            (br $gloop)))
        ;; zero the padding columns
        (local.set $c (local.get $cols))
        (block $pdone
          (loop $ploop
            (br_if $pdone (i32.ge_u (local.get $c) (local.get $colsP)))
            (f32.store
              (i32.add (local.get $out)
                (i32.shl (i32.add (i32.mul (local.get $r) (local.get $colsP)) (local.get $c)) (i32.const 2)))
              (f32.const 0))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $ploop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rloop))))
)
