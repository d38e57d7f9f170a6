;; operate reports pending at 150 %.
;;@replace operate
(i32.store8 (i32.const 3100) (i32.const 1))
(i32.store8 (i32.const 3104) (i32.const 150))
(i32.store (i32.const 3108) (i32.const 2110)) (i32.store (i32.const 3112) (i32.const 4))
(i32.store (i32.const 3116) (i32.const 10))
(i32.const 3100)
