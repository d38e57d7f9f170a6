;; A WASI plugin whose check calls `wasi:cli/exit` with an error status
;; instead of returning.
;;@replace component-imports
(import "wasi:cli/exit@0.2.0" (instance $exit
  (export "exit" (func (param "status" (result))))))
;;@replace lowerings
(core func $exit (canon lower (func $exit "exit")))
;;@replace core-imports
(import "wasi-exit" "exit" (func $exit (param i32)))
;;@replace instance-args
(with "wasi-exit" (instance (export "exit" (func $exit))))
;;@replace check
(call $exit (i32.const 1))
unreachable
