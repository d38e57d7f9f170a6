;; check reads key `world` from storage: err(e) is returned as the check's
;; error, ok(_) passes with message "ok".
;;@replace check
(call $get (i32.const 2100) (i32.const 5) (i32.const 3300))
(if (i32.eq (i32.load8_u (i32.const 3300)) (i32.const 1))
  (then
    (i32.store8 (i32.const 3000) (i32.const 1))
    (i32.store (i32.const 3004) (i32.load (i32.const 3304)))
    (i32.store (i32.const 3008) (i32.load (i32.const 3308)))
    (return (i32.const 3000))))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
