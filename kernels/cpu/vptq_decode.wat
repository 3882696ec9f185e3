;; VPTQ row decoder for the CPU matmul (compiled by kernels/cpu/build_vptq_wasm.ts). It shares the
;; matmul module's memory and writes decoded weight rows where the SIMD kernel reads them.
;; Row r of the matrix, stored column j: j < o reads the outlier value outl[r*o + j]; otherwise the
;; index of vector (j - o)*groups + r/v (bits wide, packed LSB first at idx) picks centroid lane
;; r%v (f32 at cent), plus the residual centroid when ridx != 0; with scale != 0 the value becomes
;; value*scale[j] + bias[j]; it is stored at column perm[j] (i32) when perm != 0, else at j.
;; Packed index streams need 3 readable bytes after their end (an i32 load reads the last index).
(module
  (import "env" "memory" (memory 1))
  (func $index (param $base i32) (param $i i32) (param $bits i32) (result i32)
    (local $at i32)
    (local.set $at (i32.mul (local.get $i) (local.get $bits)))
    (i32.and
      (i32.shr_u
        (i32.load (i32.add (local.get $base) (i32.shr_u (local.get $at) (i32.const 3))))
        (i32.and (local.get $at) (i32.const 7)))
      (i32.sub (i32.shl (i32.const 1) (local.get $bits)) (i32.const 1))))
  (func (export "decode_vptq")
    (param $idx i32) (param $bits i32) (param $cent i32)
    (param $ridx i32) (param $rbits i32) (param $rcent i32)
    (param $v i32) (param $groups i32) (param $cols i32) (param $o i32) (param $outl i32)
    (param $perm i32) (param $scale i32) (param $bias i32)
    (param $r0 i32) (param $nr i32) (param $out i32) (param $colsP i32)
    (local $i i32) (local $r i32) (local $g i32) (local $lane i32) (local $j i32)
    (local $at i32) (local $k i32) (local $row i32) (local $dst i32) (local $val f32)
    (block $idone
      (loop $iloop
        (br_if $idone (i32.ge_u (local.get $i) (local.get $nr)))
        (local.set $r (i32.add (local.get $r0) (local.get $i)))
        (local.set $g (i32.div_u (local.get $r) (local.get $v)))
        (local.set $lane (i32.rem_u (local.get $r) (local.get $v)))
        (local.set $row (i32.add (local.get $out)
          (i32.shl (i32.mul (local.get $i) (local.get $colsP)) (i32.const 2))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $jloop
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $cols)))
            (if (i32.lt_u (local.get $j) (local.get $o))
              (then
                (local.set $at (i32.add (i32.mul (local.get $r) (local.get $o)) (local.get $j)))
                (local.set $val
                  (f32.load (i32.add (local.get $outl) (i32.shl (local.get $at) (i32.const 2))))))
              (else
                (local.set $at (i32.add
                  (i32.mul (i32.sub (local.get $j) (local.get $o)) (local.get $groups))
                  (local.get $g)))
                (local.set $k (i32.add (local.get $lane) (i32.mul (local.get $v)
                  (call $index (local.get $idx) (local.get $at) (local.get $bits)))))
                (local.set $val
                  (f32.load (i32.add (local.get $cent) (i32.shl (local.get $k) (i32.const 2)))))
                (if (local.get $ridx)
                  (then
                    (local.set $k (i32.add (local.get $lane) (i32.mul (local.get $v)
                      (call $index (local.get $ridx) (local.get $at) (local.get $rbits)))))
                    (local.set $val (f32.add (local.get $val)
                      (f32.load
                        (i32.add (local.get $rcent) (i32.shl (local.get $k) (i32.const 2))))))))))
            (if (local.get $scale)
              (then
                (local.set $val (f32.add
                  (f32.mul (local.get $val)
                    (f32.load (i32.add (local.get $scale) (i32.shl (local.get $j) (i32.const 2)))))
                  (f32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2))))))))
            (local.set $dst (local.get $j))
            (if (local.get $perm)
              (then
                (local.set $dst (i32.load (i32.add (local.get $perm)
                  (i32.shl (local.get $j) (i32.const 2)))))))
            (f32.store (i32.add (local.get $row) (i32.shl (local.get $dst) (i32.const 2)))
              (local.get $val))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $jloop)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $iloop)))))
