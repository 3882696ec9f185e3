;; QuIP#'s E8P12 codes decoded inside the CPU matmul (compiled by kernels/cpu/build_e8p_wasm.ts into
;; e8p_wasm.ts). It shares the matmul module's memory (imported), so the decoded rows land where
;; the matmul kernel reads them.
;;
;; decode_e8p: `rows` rows of codes (`rowBytes` bytes each at $data: `vectors` little-endian 16-bit
;; E8P12 codes, then for $second = 1 one 8-bit E81B code per vector, for $second = 2 one 16-bit
;; E8P12 code per vector) into f32 rows of `colsP` floats at $out: the rows of Ŵ (before the
;; Hadamard transforms), 8 values per code, the first `cols` of them. Tables at $tables:
;;   +0      signed:  256 patterns × 8 f32 (the absolute pattern, last lane negated for odd sums)
;;   +8192   masks:   256 sign bytes × 8 u32 lane masks (0x80000000 where the lane is negated)
;;   +16384  shifts:  256 f32 (±1/4 by the sign byte's parity)
;;   +17408  e81b:    256 × 8 f32 (the E81B codebook)
;;   +25600  scratch: 8 f32 for a row's last, partial vector
;; A code c decodes to (signed[c >> 8] ^ masks[c & 255]) + shifts[c & 255]; a second-stage code's
;; vector is added times $inv (1 / residual scale). Columns cols..colsP are zeroed.
(module
  (import "matmul" "memory" (memory 1))
  ;; The low four lanes ($half 0) or high four ($half 16) of the E8P12 codeword $code.
  (func $word (param $tables i32) (param $code i32) (param $half i32) (result v128)
    (f32x4.add
      (v128.xor
        (v128.load (i32.add (i32.add (local.get $tables)
          (i32.shl (i32.shr_u (local.get $code) (i32.const 8)) (i32.const 5))) (local.get $half)))
        (v128.load (i32.add (i32.add (i32.add (local.get $tables) (i32.const 8192))
          (i32.shl (i32.and (local.get $code) (i32.const 255)) (i32.const 5))) (local.get $half))))
      (f32x4.splat (f32.load (i32.add (i32.add (local.get $tables) (i32.const 16384))
        (i32.shl (i32.and (local.get $code) (i32.const 255)) (i32.const 2)))))))
  (func (export "decode_e8p")
    (param $data i32) (param $rowBytes i32) (param $tables i32) (param $out i32)
    (param $rows i32) (param $cols i32) (param $colsP i32) (param $vectors i32)
    (param $second i32) (param $inv f32)
    (local $r i32) (local $j i32) (local $row i32) (local $dst i32) (local $code i32)
    (local $c2 i32) (local $lo v128) (local $hi v128) (local $s v128) (local $c i32) (local $at i32)
    (local.set $s (f32x4.splat (local.get $inv)))
    (block $rdone
      (loop $rloop
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $rows)))
        (local.set $row (i32.add (local.get $data) (i32.mul (local.get $r) (local.get $rowBytes))))
        (local.set $dst (i32.add (local.get $out)
          (i32.shl (i32.mul (local.get $r) (local.get $colsP)) (i32.const 2))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $jloop
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $vectors)))
            (local.set $code (i32.load16_u
              (i32.add (local.get $row) (i32.shl (local.get $j) (i32.const 1)))))
            (local.set $lo (call $word (local.get $tables) (local.get $code) (i32.const 0)))
            (local.set $hi (call $word (local.get $tables) (local.get $code) (i32.const 16)))
            (if (i32.eq (local.get $second) (i32.const 1))
              (then
                (local.set $c2 (i32.add (i32.add (local.get $tables) (i32.const 17408))
                  (i32.shl (i32.load8_u (i32.add (i32.add (local.get $row)
                    (i32.shl (local.get $vectors) (i32.const 1))) (local.get $j))) (i32.const 5))))
                (local.set $lo (f32x4.add (local.get $lo)
                  (f32x4.mul (v128.load (local.get $c2)) (local.get $s))))
                (local.set $hi (f32x4.add (local.get $hi)
                  (f32x4.mul (v128.load offset=16 (local.get $c2)) (local.get $s))))))
            (if (i32.eq (local.get $second) (i32.const 2))
              (then
                (local.set $c2 (i32.load16_u (i32.add (i32.add (local.get $row)
                  (i32.shl (local.get $vectors) (i32.const 1))) (i32.shl (local.get $j) (i32.const 1)))))
                (local.set $lo (f32x4.add (local.get $lo) (f32x4.mul
                  (call $word (local.get $tables) (local.get $c2) (i32.const 0)) (local.get $s))))
                (local.set $hi (f32x4.add (local.get $hi) (f32x4.mul
                  (call $word (local.get $tables) (local.get $c2) (i32.const 16)) (local.get $s))))))
            (local.set $c (i32.shl (local.get $j) (i32.const 3)))
            (if (i32.le_u (i32.add (local.get $c) (i32.const 8)) (local.get $cols))
              (then
                (local.set $at (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2))))
                (v128.store (local.get $at) (local.get $lo))
                (v128.store offset=16 (local.get $at) (local.get $hi)))
              (else
                ;; the row's last vector reaches past `cols`: through the scratch, one by one
                (local.set $at (i32.add (local.get $tables) (i32.const 25600)))
                (v128.store (local.get $at) (local.get $lo))
                (v128.store offset=16 (local.get $at) (local.get $hi))
                (block $tdone
                  (loop $tloop
                    (br_if $tdone (i32.ge_u (local.get $c) (local.get $cols)))
                    (f32.store (i32.add (local.get $dst) (i32.shl (local.get $c) (i32.const 2)))
                      (f32.load (local.get $at)))
                    (local.set $at (i32.add (local.get $at) (i32.const 4)))
                    (local.set $c (i32.add (local.get $c) (i32.const 1)))
                    (br $tloop)))))
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
