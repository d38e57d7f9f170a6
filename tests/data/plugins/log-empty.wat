;; check logs 1 000 000 empty lines, then passes: empty lines are not free.
;;@replace check
(local.set $attempt (i32.const 1000000))
(loop $more
  (call $log (i32.const 2) (i32.const 2300) (i32.const 0))
  (local.set $attempt (i32.sub (local.get $attempt) (i32.const 1)))
  (br_if $more (local.get $attempt)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
