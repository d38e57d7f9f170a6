;; check returns a `result` whose tag is neither ok nor err.
;;@replace check
(i32.store8 (i32.const 3000) (i32.const 7))
(i32.const 3000)
