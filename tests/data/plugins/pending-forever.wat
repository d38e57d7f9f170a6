;; A hardware plugin that provides every operation and never finishes one:
;; `operate` answers the same `pending 0%: waiting` forever, asking to be
;; called again at once (retry-after-ms 0). The runner must pace it and must
;; not journal every identical answer.
;;@replace describe
(func (export "describe") (result i32)
  (local $i i32)
  ;; plugin-info at 1024
  (i32.store (i32.const 1024) (i32.const 2048)) (i32.store (i32.const 1028) (i32.const 7))
  (i32.store (i32.const 1032) (i32.const 2056)) (i32.store (i32.const 1036) (i32.const 5))
  (i32.store (i32.const 1040) (i32.const 2064)) (i32.store (i32.const 1044) (i32.const 0))
  (i32.store (i32.const 1048) (i32.const 1100)) (i32.store (i32.const 1052) (i32.const 1))
  (i32.store (i32.const 1056) (i32.const 1132)) (i32.store (i32.const 1060) (i32.const 5))
  (i32.store (i32.const 1064) (i32.const 1240)) (i32.store (i32.const 1068) (i32.const 1))
  (i32.store8 (i32.const 1072) (i32.const 1))
  ;; check-info `gate` at 1100
  (i32.store (i32.const 1100) (i32.const 2070)) (i32.store (i32.const 1104) (i32.const 4))
  (i32.store (i32.const 1108) (i32.const 2064)) (i32.store (i32.const 1112) (i32.const 0))
  (i32.store (i32.const 1116) (i32.const 2080)) (i32.store (i32.const 1120) (i32.const 2))
  ;; operation-info for split, merge, commit, abort, finish at 1132 + 20 i
  (loop $ops
    (i32.store8 (i32.add (i32.const 1132) (i32.mul (local.get $i) (i32.const 20))) (local.get $i))
    (i32.store (i32.add (i32.const 1136) (i32.mul (local.get $i) (i32.const 20))) (i32.const 2064))
    (i32.store (i32.add (i32.const 1140) (i32.mul (local.get $i) (i32.const 20))) (i32.const 0))
    (i32.store (i32.add (i32.const 1144) (i32.mul (local.get $i) (i32.const 20))) (i32.const 2080))
    (i32.store (i32.add (i32.const 1148) (i32.mul (local.get $i) (i32.const 20))) (i32.const 2))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $ops (i32.lt_u (local.get $i) (i32.const 5))))
  ;; installer-info `sim` at 1240
  (i32.store (i32.const 1240) (i32.const 2090)) (i32.store (i32.const 1244) (i32.const 3))
  (i32.store (i32.const 1248) (i32.const 2064)) (i32.store (i32.const 1252) (i32.const 0))
  (i32.store (i32.const 1256) (i32.const 2080)) (i32.store (i32.const 1260) (i32.const 2))
  (i32.const 1024))
;;@replace operate
;; pending { percent: 0, message: "waiting", retry-after-ms: 0 }
(i32.store8 (i32.const 3100) (i32.const 1))
(i32.store8 (i32.const 3104) (i32.const 0))
(i32.store (i32.const 3108) (i32.const 2120)) (i32.store (i32.const 3112) (i32.const 7))
(i32.store (i32.const 3116) (i32.const 0))
(i32.const 3100)
;;@replace extra
(data (i32.const 2120) "waiting")
