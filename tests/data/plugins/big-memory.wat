;; the component asks for 125 MiB of memory at instantiation.
;;@replace memory
(memory (export "memory") 2000)
