;; check stores key `blocked` (a marker the test waits for), then blocks on
;; a WASI monotonic-clock pollable for 30 s and passes: a cancelled run must
;; end the call at once.
;;@replace storage-imports
(export "set" (func (param "key" string) (param "value" (list u8)) (result (result (error string)))))
;;@replace component-imports
(import "wasi:io/poll@0.2.0" (instance $poll
  (export "pollable" (type (sub resource)))
  (export "[method]pollable.block" (func (param "self" (borrow 0))))))
(alias export $poll "pollable" (type $pollable))
(import "wasi:clocks/monotonic-clock@0.2.0" (instance $mono
  (alias outer 1 $pollable (type))
  (export "pollable" (type (eq 0)))
  (export "subscribe-duration" (func (param "when" u64) (result (own 1))))))
;;@replace lowerings
(core func $set (canon lower (func $storage "set") (memory $memory) (realloc $realloc)))
(core func $subscribe (canon lower (func $mono "subscribe-duration")))
(core func $block (canon lower (func $poll "[method]pollable.block")))
;;@replace core-imports
(import "storage-set" "set" (func $set (param i32 i32 i32 i32 i32)))
(import "clock" "subscribe-duration" (func $subscribe (param i64) (result i32)))
(import "clock" "block" (func $block (param i32)))
;;@replace instance-args
(with "storage-set" (instance (export "set" (func $set))))
(with "clock" (instance
  (export "subscribe-duration" (func $subscribe))
  (export "block" (func $block))))
;;@replace check
(call $set (i32.const 2400) (i32.const 7) (i32.const 2400) (i32.const 7) (i32.const 3300))
(call $block (call $subscribe (i64.const 30000000000)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
;;@replace extra
(data (i32.const 2400) "blocked")
