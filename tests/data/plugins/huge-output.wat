;; check returns a 2 MiB message (over the 1 MiB default output cap).
;;@replace check
(drop (memory.grow (i32.const 40)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 262144)) (i32.store (i32.const 3012) (i32.const 2097152))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
