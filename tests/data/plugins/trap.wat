;; check traps (wasm `unreachable`).
;;@replace check
unreachable
