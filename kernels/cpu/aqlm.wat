;; AQLM rows decoded inside the CPU matmul (compiled by kernels/cpu/build_aqlm_wasm.ts into
;; aqlm_wasm.ts). It shares the matmul module's memory (imported), so the decoded rows land where
;; the matmul kernel reads them.
;;
;; decode_aqlm: `rows` rows of packed codes (`rowBytes` bytes each at $data; code k of a row at bit
;; k·B, least significant bit first; at least 4 readable bytes after the last row) into f32 rows of
;; `colsP` floats at $out: w[j·g + i] = scale_r · Σ_m books[m][code(j·M + m)][i], with the f32
;; codebooks (`M × 2^B × g`) at $books and one f32 scale per row at $scales. Groups of a multiple
;; of 4 that end inside the row are summed four lanes at a time; the rest one by one, up to
;; `cols`. Columns cols..colsP are zeroed.
(module
  (import "matmul" "memory" (memory 1))
  ;; The B-bit code at bit offset $bit of $data (B ≤ 16: one unaligned 32-bit load holds it).
  (func $code (param $data i32) (param $bit i32) (param $mask i32) (result i32)
    (i32.and
      (i32.shr_u
        (i32.load (i32.add (local.get $data) (i32.shr_u (local.get $bit) (i32.const 3))))
        (i32.and (local.get $bit) (i32.const 7)))
      (local.get $mask)))
  (func (export "decode_aqlm")
    (param $data i32) (param $rowBytes i32) (param $books i32) (param $scales i32) (param $out i32)
    (param $rows i32) (param $cols i32) (param $colsP i32)
    (param $M i32) (param $B i32) (param $g i32)
    (local $r i32) (local $j i32) (local $m i32) (local $q i32) (local $c0 i32) (local $groups i32)
    (local $mask i32) (local $K i32) (local $groupBit i32) (local $dst i32) (local $c i32)
    (local $acc v128) (local $s v128) (local $scale f32) (local $sum f32) (local $bookBytes i32)
    (local.set $mask (i32.sub (i32.shl (i32.const 1) (local.get $B)) (i32.const 1)))
    (local.set $K (i32.shl (i32.const 1) (local.get $B)))
    (local.set $groups (i32.div_u (i32.sub (i32.add (local.get $cols) (local.get $g)) (i32.const 1))
      (local.get $g)))
    ;; bytes of one codebook: 2^B codewords of g floats
    (local.set $bookBytes (i32.shl (i32.mul (local.get $K) (local.get $g)) (i32.const 2)))
    (block $rdone
      (loop $rloop
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $scale (f32.load (i32.add (local.get $scales) (i32.shl (local.get $r) (i32.const 2)))))
        (local.set $s (f32x4.splat (local.get $scale)))
        (local.set $dst (i32.add (local.get $out)
          (i32.shl (i32.mul (local.get $r) (local.get $colsP)) (i32.const 2))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $jloop
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $groups)))
            (local.set $c0 (i32.mul (local.get $j) (local.get $g)))
            ;; bit of the group's first code: the row's start plus j·M codes
            (local.set $groupBit (i32.add
              (i32.shl (i32.mul (local.get $r) (local.get $rowBytes)) (i32.const 3))
              (i32.mul (i32.mul (local.get $j) (local.get $M)) (local.get $B))))
            (if (i32.and
                  (i32.eqz (i32.and (local.get $g) (i32.const 3)))
                  (i32.le_u (i32.add (local.get $c0) (local.get $g)) (local.get $cols)))
              (then
                (local.set $q (i32.const 0))
                (block $qdone
                  (loop $qloop
                    (br_if $qdone (i32.ge_u (local.get $q) (local.get $g)))
                    (local.set $acc (v128.const f32x4 0 0 0 0))
                    (local.set $m (i32.const 0))
                    (block $mdone
                      (loop $mloop
                        (br_if $mdone (i32.ge_u (local.get $m) (local.get $M)))
                        (local.set $acc (f32x4.add (local.get $acc)
                          (v128.load (i32.add
                            (i32.add (local.get $books) (i32.mul (local.get $m) (local.get $bookBytes)))
                            (i32.shl
                              (i32.add
                                (i32.mul
                                  (call $code (local.get $data)
                                    (i32.add (local.get $groupBit) (i32.mul (local.get $m) (local.get $B)))
                                    (local.get $mask))
                                  (local.get $g))
                                (local.get $q))
                              (i32.const 2))))))
                        (local.set $m (i32.add (local.get $m) (i32.const 1)))
                        (br $mloop)))
                    (v128.store
                      (i32.add (local.get $dst) (i32.shl (i32.add (local.get $c0) (local.get $q)) (i32.const 2)))
                      (f32x4.mul (local.get $acc) (local.get $s)))
                    (local.set $q (i32.add (local.get $q) (i32.const 4)))
                    (br $qloop))))
              (else
                (local.set $q (i32.const 0))
                (block $sdone
                  (loop $sloop
                    (br_if $sdone (i32.ge_u (local.get $q) (local.get $g)))
                    (br_if $sdone (i32.ge_u (i32.add (local.get $c0) (local.get $q)) (local.get $cols)))
                    (local.set $sum (f32.const 0))
                    (local.set $m (i32.const 0))
                    (block $m2done
                      (loop $m2loop
                        (br_if $m2done (i32.ge_u (local.get $m) (local.get $M)))
                        (local.set $sum (f32.add (local.get $sum)
                          (f32.load (i32.add
                            (i32.add (local.get $books) (i32.mul (local.get $m) (local.get $bookBytes)))
                            (i32.shl
                              (i32.add
                                (i32.mul
                                  (call $code (local.get $data)
                                    (i32.add (local.get $groupBit) (i32.mul (local.get $m) (local.get $B)))
                                    (local.get $mask))
                                  (local.get $g))
                                (local.get $q))
                              (i32.const 2))))))
                        (local.set $m (i32.add (local.get $m) (i32.const 1)))
                        (br $m2loop)))
                    (f32.store
                      (i32.add (local.get $dst) (i32.shl (i32.add (local.get $c0) (local.get $q)) (i32.const 2)))
                      (f32.mul (local.get $sum) (local.get $scale)))
                    (local.set $q (i32.add (local.get $q) (i32.const 1)))
                    (br $sloop)))))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $jloop)))
        ;; zero the padding columns
        (local.set $c (local.get $cols))
        (block $pdone
          (loop $ploop
            (br_if $pdone (i32.ge_u (local.get $c) (local.get $colsP)))
            (f32.store (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2))) (f32.const 0))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br $ploop)))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $rloop))))
)
