;; describe blocks on a WASI monotonic-clock pollable for 30 s before it
;; answers: loading the plugin (and `duplex plugin inspect`) must end at the
;; call's deadline, not wait.
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
(core func $subscribe (canon lower (func $mono "subscribe-duration")))
(core func $block (canon lower (func $poll "[method]pollable.block")))
;;@replace core-imports
(import "clock" "subscribe-duration" (func $subscribe (param i64) (result i32)))
(import "clock" "block" (func $block (param i32)))
;;@replace instance-args
(with "clock" (instance
  (export "subscribe-duration" (func $subscribe))
  (export "block" (func $block))))
;;@replace describe
    (func (export "describe") (result i32)
      (call $block (call $subscribe (i64.const 30000000000)))
      ;; plugin-info at 1024
      (i32.store (i32.const 1024) (i32.const 2048)) (i32.store (i32.const 1028) (i32.const 7))
      (i32.store (i32.const 1032) (i32.const 2056)) (i32.store (i32.const 1036) (i32.const 5))
      (i32.store (i32.const 1040) (i32.const 2064)) (i32.store (i32.const 1044) (i32.const 0))
      (i32.store (i32.const 1048) (i32.const 1100)) (i32.store (i32.const 1052) (i32.const 1))
      (i32.store (i32.const 1056) (i32.const 1132)) (i32.store (i32.const 1060) (i32.const 1))
      (i32.store (i32.const 1064) (i32.const 1160)) (i32.store (i32.const 1068) (i32.const 1))
      (i32.store8 (i32.const 1072) (i32.const 1))
      ;; check-info `gate` at 1100
      (i32.store (i32.const 1100) (i32.const 2070)) (i32.store (i32.const 1104) (i32.const 4))
      (i32.store (i32.const 1108) (i32.const 2064)) (i32.store (i32.const 1112) (i32.const 0))
      (i32.store (i32.const 1116) (i32.const 2080)) (i32.store (i32.const 1120) (i32.const 2))
      ;; operation-info `split` at 1132
      (i32.store8 (i32.const 1132) (i32.const 0))
      (i32.store (i32.const 1136) (i32.const 2064)) (i32.store (i32.const 1140) (i32.const 0))
      (i32.store (i32.const 1144) (i32.const 2080)) (i32.store (i32.const 1148) (i32.const 2))
      ;; installer-info `sim` at 1160
      (i32.store (i32.const 1160) (i32.const 2090)) (i32.store (i32.const 1164) (i32.const 3))
      (i32.store (i32.const 1168) (i32.const 2064)) (i32.store (i32.const 1172) (i32.const 0))
      (i32.store (i32.const 1176) (i32.const 2080)) (i32.store (i32.const 1180) (i32.const 2))
      (i32.const 1024))
    