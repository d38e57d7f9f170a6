;; check returns a message that is not UTF-8.
;;@replace check
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2300)) (i32.store (i32.const 3012) (i32.const 3))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
;;@replace extra
(data (i32.const 2300) "\ff\fe\fd")
