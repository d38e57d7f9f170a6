;; A WASI plugin that looks at its preopened directories: check passes
;; when it has at least one (a `dirs` grant), fails otherwise.
;;@replace component-imports
(import "wasi:filesystem/types@0.2.0" (instance $fstypes
  (export "descriptor" (type (sub resource)))))
(alias export $fstypes "descriptor" (type $descriptor))
(import "wasi:filesystem/preopens@0.2.0" (instance $preopens
  (alias outer 1 $descriptor (type $outer-d))
  (export "descriptor" (type $d (eq $outer-d)))
  (export "get-directories" (func (result (list (tuple (own $d) string)))))))
;;@replace lowerings
(core func $get-directories (canon lower (func $preopens "get-directories") (memory $memory) (realloc $realloc)))
;;@replace core-imports
(import "preopens" "get-directories" (func $get-directories (param i32)))
;;@replace instance-args
(with "preopens" (instance (export "get-directories" (func $get-directories))))
;;@replace check
(call $get-directories (i32.const 3400))
(i32.store8 (i32.const 3000) (i32.const 0))
;; verdict: pass (0) with a preopen, fail (1) without
(i32.store8 (i32.const 3004) (i32.eqz (i32.load (i32.const 3404))))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
