;; check never returns.
;;@replace check
(loop $forever (br $forever))
unreachable
