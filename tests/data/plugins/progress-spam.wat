;; check reports progress 100 000 times (percent = n mod 100), then passes.
;;@replace check
(local.set $attempt (i32.const 100000))
(loop $more
  (call $progress (i32.rem_u (local.get $attempt) (i32.const 100)) (i32.const 2110) (i32.const 4))
  (local.set $attempt (i32.sub (local.get $attempt) (i32.const 1)))
  (br_if $more (local.get $attempt)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
