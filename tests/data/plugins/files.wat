;; check drives the `files` and `artifacts` interfaces. The call's context says
;; what to do: the first byte of `request` picks the operation, the rest of it
;; is the path (or the artifact's name), `session-id` is the files root, and
;; `params` (a JSON string, quotes stripped) is the second argument:
;;   r read(root, path, 0, 1 MiB)       w write(root, path, params)
;;   a append(root, path, params)       d remove(root, path)
;;   s symlink(root, params, path)      n rename(root, path, params)
;;   m create-dir(root, path)           A artifacts.read(path, 0, 1 MiB)
;;   C artifacts.copy-to(params, root, path)
;; ok passes with the bytes read (or nothing) as its message; err fails with
;; the error as its message.
;;@replace component-imports
(import "duplex:plugin/files@0.1.0" (instance $files
  (export "read" (func (param "root" string) (param "path" string) (param "offset" u64) (param "max-bytes" u32) (result (result (list u8) (error string)))))
  (export "write" (func (param "root" string) (param "path" string) (param "data" (list u8)) (result (result (error string)))))
  (export "append" (func (param "root" string) (param "path" string) (param "data" (list u8)) (result (result (error string)))))
  (export "remove" (func (param "root" string) (param "path" string) (result (result (error string)))))
  (export "symlink" (func (param "root" string) (param "target" string) (param "path" string) (result (result (error string)))))
  (export "rename" (func (param "root" string) (param "from" string) (param "to" string) (result (result (error string)))))
  (export "create-dir" (func (param "root" string) (param "path" string) (result (result (error string)))))
))
(import "duplex:plugin/artifacts@0.1.0" (instance $artifacts
  (export "read" (func (param "name" string) (param "offset" u64) (param "max-bytes" u32) (result (result (list u8) (error string)))))
  (export "copy-to" (func (param "name" string) (param "root" string) (param "path" string) (result (result u64 (error string)))))
))
;;@replace lowerings
(core func $fread (canon lower (func $files "read") (memory $memory) (realloc $realloc)))
(core func $fwrite (canon lower (func $files "write") (memory $memory) (realloc $realloc)))
(core func $fappend (canon lower (func $files "append") (memory $memory) (realloc $realloc)))
(core func $fremove (canon lower (func $files "remove") (memory $memory) (realloc $realloc)))
(core func $fsymlink (canon lower (func $files "symlink") (memory $memory) (realloc $realloc)))
(core func $frename (canon lower (func $files "rename") (memory $memory) (realloc $realloc)))
(core func $fmkdir (canon lower (func $files "create-dir") (memory $memory) (realloc $realloc)))
(core func $aread (canon lower (func $artifacts "read") (memory $memory) (realloc $realloc)))
(core func $acopy (canon lower (func $artifacts "copy-to") (memory $memory) (realloc $realloc)))
;;@replace core-imports
(import "files" "read" (func $fread (param i32 i32 i32 i32 i64 i32 i32)))
(import "files" "write" (func $fwrite (param i32 i32 i32 i32 i32 i32 i32)))
(import "files" "append" (func $fappend (param i32 i32 i32 i32 i32 i32 i32)))
(import "files" "remove" (func $fremove (param i32 i32 i32 i32 i32)))
(import "files" "symlink" (func $fsymlink (param i32 i32 i32 i32 i32 i32 i32)))
(import "files" "rename" (func $frename (param i32 i32 i32 i32 i32 i32 i32)))
(import "files" "create-dir" (func $fmkdir (param i32 i32 i32 i32 i32)))
(import "artifacts" "read" (func $aread (param i32 i32 i64 i32 i32)))
(import "artifacts" "copy-to" (func $acopy (param i32 i32 i32 i32 i32 i32 i32)))
;;@replace check
(local $op i32) (local $arg i32) (local $arglen i32) (local $at i32) (local $path i32) (local $pathlen i32)
(local.set $op (i32.load8_u (local.get $req)))
;; the rest of the request is the path
(local.set $path (i32.add (local.get $req) (i32.const 1)))
(local.set $pathlen (i32.sub (local.get $reqlen) (i32.const 1)))
;; params without its quotes
(local.set $arg (i32.add (local.get $params) (i32.const 1)))
(local.set $arglen (i32.sub (local.get $paramslen) (i32.const 2)))
(if (i32.lt_s (local.get $arglen) (i32.const 0)) (then (local.set $arglen (i32.const 0))))
;; the import's result at 4000; its payload (ptr, len) at 4004 (at 4008 for copy-to)
(i64.store (i32.const 4000) (i64.const 0))
(i64.store (i32.const 4008) (i64.const 0))
(local.set $at (i32.const 4004))
(block $done
  (if (i32.eq (local.get $op) (i32.const 114)) (then
    (call $fread (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (i64.const 0) (i32.const 1048576) (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 119)) (then
    (call $fwrite (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (local.get $arg) (local.get $arglen) (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 97)) (then
    (call $fappend (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (local.get $arg) (local.get $arglen) (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 100)) (then
    (call $fremove (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 115)) (then
    (call $fsymlink (local.get $sid) (local.get $sidlen) (local.get $arg) (local.get $arglen)
      (local.get $path) (local.get $pathlen) (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 110)) (then
    (call $frename (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (local.get $arg) (local.get $arglen) (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 109)) (then
    (call $fmkdir (local.get $sid) (local.get $sidlen) (local.get $path) (local.get $pathlen)
      (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 65)) (then
    (call $aread (local.get $path) (local.get $pathlen) (i64.const 0) (i32.const 1048576)
      (i32.const 4000)) (br $done)))
  (if (i32.eq (local.get $op) (i32.const 67)) (then
    (call $acopy (local.get $arg) (local.get $arglen) (local.get $sid) (local.get $sidlen)
      (local.get $path) (local.get $pathlen) (i32.const 4000))
    ;; ok(u64): no message; err(string) sits at 4008
    (if (i32.eqz (i32.load8_u (i32.const 4000)))
      (then (i64.store (i32.const 4008) (i64.const 0))))
    (local.set $at (i32.const 4008))
    (br $done)))
  unreachable)
;; ok(check-result { verdict: pass if ok else fail, message: payload, observations: [] })
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.load8_u (i32.const 4000)))
(i32.store (i32.const 3008) (i32.load (local.get $at)))
(i32.store (i32.const 3012) (i32.load (i32.add (local.get $at) (i32.const 4))))
(i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
(i32.const 3000)
;;@replace instance-args
(with "files" (instance
  (export "read" (func $fread)) (export "write" (func $fwrite)) (export "append" (func $fappend))
  (export "remove" (func $fremove)) (export "symlink" (func $fsymlink))
  (export "rename" (func $frename)) (export "create-dir" (func $fmkdir))))
(with "artifacts" (instance (export "read" (func $aread)) (export "copy-to" (func $acopy))))
