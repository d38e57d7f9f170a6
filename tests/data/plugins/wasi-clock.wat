;; check passes while WASI's wall clock reads 0 (frozen unless the policy
;; grants clocks).
;;@replace component-imports
(import "wasi:clocks/wall-clock@0.2.0" (instance $clock
  (type $dt (record (field "seconds" u64) (field "nanoseconds" u32)))
  (export "datetime" (type $datetime (eq $dt)))
  (export "now" (func (result $datetime)))))
;;@replace lowerings
(core func $now (canon lower (func $clock "now") (memory $memory)))
;;@replace core-imports
(import "wasi-clock" "now" (func $now (param i32)))
;;@replace instance-args
(with "wasi-clock" (instance (export "now" (func $now))))
;;@replace check
(call $now (i32.const 3400))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i64.ne (i64.load (i32.const 3400)) (i64.const 0)))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
