;; check logs an error line (as the SDK's panic hook does) and then traps.
;;@replace check
(call $log (i32.const 4) (i32.const 2300) (i32.const 26))
unreachable
;;@replace extra
(data (i32.const 2300) "panicked at src/lib.rs:1:1")
