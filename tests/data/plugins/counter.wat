;; check counts its calls in a global: passes only on the first call of its
;; instance (proves every call gets a fresh instance).
;;@replace check
(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.ne (global.get $calls) (i32.const 1)))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
;;@replace extra
(global $calls (mut i32) (i32.const 0))
