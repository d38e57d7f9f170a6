;; check looks for what an earlier call could have left behind, then leaves
;; all of it: memory grown to 5 MiB with markers below and above 4 MiB, a
;; data segment overwritten, a global set, a table slot filled. It fails
;; (message: two letters, the bits of what it found) unless it starts from
;; a fresh instance: proves a pooled slot is reset between calls.
;;@replace check
(local $seen i32)
;; 1: memory is not at its initial size
(if (i32.ne (memory.size) (i32.const 4))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 1)))))
;; 2: a marker written in the initial pages
(if (i32.ne (i32.load (i32.const 200000)) (i32.const 0))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 2)))))
;; 4: the data segment "world" at 2100 was overwritten
(if (i32.ne (i32.load8_u (i32.const 2100)) (i32.const 119))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 4)))))
;; 8: the global was set
(if (i32.ne (global.get $leak) (i32.const 0))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 8)))))
;; 16: the table slot was filled
(if (i32.eqz (ref.is_null (table.get $t (i32.const 0))))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 16)))))
;; grow to 80 pages (5 MiB); 32: the grown pages are not zero
(drop (memory.grow (i32.sub (i32.const 80) (memory.size))))
(if (i32.or
      (i32.ne (i32.load (i32.const 3145728)) (i32.const 0))
      (i32.ne (i32.load (i32.const 4980736)) (i32.const 0)))
  (then (local.set $seen (i32.or (local.get $seen) (i32.const 32)))))
;; leave everything behind
(i32.store (i32.const 200000) (i32.const 0xdeadbeef))
(i32.store (i32.const 3145728) (i32.const 0xdeadbeef))
(i32.store (i32.const 4980736) (i32.const 0xdeadbeef))
(i32.store8 (i32.const 2100) (i32.const 88))
(global.set $leak (i32.const 1))
(table.set $t (i32.const 0) (ref.func $marker))
;; ok(check-result { verdict: pass unless seen, message: the bits })
(i32.store8 (i32.const 2400) (i32.add (i32.const 97) (i32.and (local.get $seen) (i32.const 15))))
(i32.store8 (i32.const 2401) (i32.add (i32.const 97) (i32.shr_u (local.get $seen) (i32.const 4))))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.ne (local.get $seen) (i32.const 0)))
(i32.store (i32.const 3008) (i32.const 2400)) (i32.store (i32.const 3012) (i32.const 2))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
;;@replace extra
(global $leak (mut i32) (i32.const 0))
(table $t 2 funcref)
(func $marker)
(elem declare func $marker)
