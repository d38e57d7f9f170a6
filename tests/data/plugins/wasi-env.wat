;; A component importing WASI (as wasm32-wasip2 / componentize-py / jco output
;; does): check passes while the plugin sees no environment variables.
;;@replace component-imports
(import "wasi:cli/environment@0.2.0" (instance $env
  (export "get-environment" (func (result (list (tuple string string)))))))
;;@replace lowerings
(core func $getenv (canon lower (func $env "get-environment") (memory $memory) (realloc $realloc)))
;;@replace core-imports
(import "wasi-env" "get-environment" (func $getenv (param i32)))
;;@replace instance-args
(with "wasi-env" (instance (export "get-environment" (func $getenv))))
;;@replace check
(call $getenv (i32.const 3400))
(i32.store8 (i32.const 3000) (i32.const 0))
;; verdict: pass (0) when the list is empty, fail (1) otherwise
(i32.store8 (i32.const 3004) (i32.ne (i32.load (i32.const 3404)) (i32.const 0)))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
