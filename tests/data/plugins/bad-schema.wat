;; describe declares a parameter schema that is not JSON.
;;@replace schema
(data (i32.const 2080) "{x")
