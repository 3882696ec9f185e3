;; VPTQ row decoder for the CPU matmul (compiled by kernels/cpu/build_vptq_wasm.ts). It shares the
;; matmul module's memory and writes decoded weight rows [r0, r0 + nr) where the SIMD kernel reads
;; them (rows of colsP floats at out), one vector row (rows g*v .. g*v + v - 1) at a time. Stored
;; column j: j < o reads the outlier values outl[r*o + j]; otherwise vector (j - o)*groups + g
;; reads its index once (bits wide, packed LSB first at idx) and writes the centroid's lanes (f32
;; at cent) to its rows, plus the residual centroid's when ridx != 0; with scale != 0 a value becomes
;; value*scale[j] + bias[j]; it lands in column perm[j] (i32) when perm != 0, else in column j.
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
    (local $j i32) (local $dst i32) (local $s f32) (local $b f32) (local $norm i32)
    (local $g i32) (local $g1 i32) (local $ra i32) (local $rb i32) (local $c i32) (local $rc i32)
    (local $r i32) (local $r1 i32) (local $val f32) (local $rowBytes i32)
    (local.set $rowBytes (i32.shl (local.get $colsP) (i32.const 2)))
    (local.set $r1 (i32.add (local.get $r0) (local.get $nr)))
    (local.set $norm (i32.ne (local.get $scale) (i32.const 0)))
    (local.set $g (i32.div_u (local.get $r0) (local.get $v)))
    (local.set $g1 (i32.div_u (i32.sub (local.get $r1) (i32.const 1)) (local.get $v)))
    ;; One vector row at a time: rows [ra, rb) of the chunk share every index.
    (block $gdone
      (loop $gloop
        (br_if $gdone (i32.gt_u (local.get $g) (local.get $g1)))
        (local.set $ra (i32.mul (local.get $g) (local.get $v)))
        (local.set $rb (i32.add (local.get $ra) (local.get $v)))
        (if (i32.lt_u (local.get $ra) (local.get $r0)) (then (local.set $ra (local.get $r0))))
        (if (i32.gt_u (local.get $rb) (local.get $r1)) (then (local.set $rb (local.get $r1))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $jloop
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $cols)))
            (local.set $dst (local.get $j))
            (if (local.get $perm)
              (then
                (local.set $dst
                  (i32.load (i32.add (local.get $perm) (i32.shl (local.get $j) (i32.const 2)))))))
            (if (local.get $norm)
              (then
                (local.set $s
                  (f32.load (i32.add (local.get $scale) (i32.shl (local.get $j) (i32.const 2)))))
                (local.set $b
                  (f32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2)))))))
            ;; $dst: byte offset of (row ra, column dst); $c, $rc: the values of row ra.
            (local.set $dst (i32.add (i32.add (local.get $out) (i32.shl (local.get $dst) (i32.const 2)))
              (i32.mul (i32.sub (local.get $ra) (local.get $r0)) (local.get $rowBytes))))
            (if (i32.lt_u (local.get $j) (local.get $o))
              (then
                (local.set $c (i32.add (local.get $outl) (i32.shl
                  (i32.add (i32.mul (local.get $ra) (local.get $o)) (local.get $j)) (i32.const 2)))))
              (else
                (local.set $c (i32.add (local.get $cent) (i32.shl (i32.add
                  (i32.mul (local.get $v) (call $index (local.get $idx)
                    (i32.add (i32.mul (i32.sub (local.get $j) (local.get $o)) (local.get $groups))
                      (local.get $g))
                    (local.get $bits)))
                  (i32.sub (local.get $ra) (i32.mul (local.get $g) (local.get $v))))
                  (i32.const 2))))
                (if (local.get $ridx)
                  (then
                    (local.set $rc (i32.add (local.get $rcent) (i32.shl (i32.add
                      (i32.mul (local.get $v) (call $index (local.get $ridx)
                        (i32.add (i32.mul (i32.sub (local.get $j) (local.get $o)) (local.get $groups))
                          (local.get $g))
                        (local.get $rbits)))
                      (i32.sub (local.get $ra) (i32.mul (local.get $g) (local.get $v))))
                      (i32.const 2))))))))
            (local.set $r (local.get $ra))
            (block $ldone
              (loop $lloop
                (br_if $ldone (i32.ge_u (local.get $r) (local.get $rb)))
                (local.set $val (f32.load (local.get $c)))
                (if (i32.lt_u (local.get $j) (local.get $o))
                  (then (local.set $c (i32.add (local.get $c) (i32.shl (local.get $o) (i32.const 2)))))
                  (else
                    (local.set $c (i32.add (local.get $c) (i32.const 4)))
                    (if (local.get $ridx)
                      (then
                        (local.set $val (f32.add (local.get $val) (f32.load (local.get $rc))))
                        (local.set $rc (i32.add (local.get $rc) (i32.const 4)))))))
                (if (local.get $norm)
                  (then
                    (local.set $val (f32.add (f32.mul (local.get $val) (local.get $s))
                      (local.get $b)))))
                (f32.store (local.get $dst) (local.get $val))
                (local.set $dst (i32.add (local.get $dst) (local.get $rowBytes)))
                (local.set $r (i32.add (local.get $r) (i32.const 1)))
                (br $lloop)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $jloop)))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $gloop)))))
