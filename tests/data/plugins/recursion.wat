;; check recurses without end.
;;@replace check
(call $recurse (i32.const 0))
;;@replace extra
(func $recurse (param i32) (result i32)
  (i32.add (call $recurse (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
