;; check passes with 2 000 000 empty observations (32 MB of zeroed memory
;; read as (ptr 0, len 0) string pairs): each one still costs the runner.
;;@replace check
(drop (memory.grow (i32.const 500)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 262144)) (i32.store (i32.const 3020) (i32.const 2000000))
(i32.const 3000)
