;; check returns a pointer outside its memory.
;;@replace check
(i32.const -16)
