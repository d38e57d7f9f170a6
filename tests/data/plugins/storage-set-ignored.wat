;; check stores key `world` and passes whatever the store answered: a
;; plugin that swallows the error does not hide the host's fault.
;;@replace storage-imports
(export "set" (func (param "key" string) (param "value" (list u8)) (result (result (error string)))))
;;@replace lowerings
(core func $set (canon lower (func $storage "set") (memory $memory) (realloc $realloc)))
;;@replace core-imports
(import "storage-set" "set" (func $set (param i32 i32 i32 i32 i32)))
;;@replace instance-args
(with "storage-set" (instance (export "set" (func $set))))
;;@replace check
(call $set (i32.const 2100) (i32.const 5) (i32.const 2095) (i32.const 2) (i32.const 3300))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
