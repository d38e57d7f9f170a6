;; check calls the host forever (the deadline must also bound host calls).
;;@replace check
(loop $forever
  (call $log (i32.const 2) (i32.const 2095) (i32.const 2))
  (br $forever))
unreachable
