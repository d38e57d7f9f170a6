;; check grows a table by 100 000 elements (over the sandbox's limit).
;;@replace extra
(table $t 1 funcref)
;;@replace check
(drop (table.grow $t (ref.null func) (i32.const 100000)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
