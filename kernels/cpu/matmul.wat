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
        (br $rloop)))))
