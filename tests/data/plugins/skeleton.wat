;; A hand-written component of the duplex:plugin@0.1.0 world, no toolchain needed.
;;
;; As is, it is a well-behaved plugin named `hostile` (check `gate` passes,
;; operation `split` is done, installer `sim`, partner `up`). The tests make
;; misbehaving plugins from it by replacing the text between a `;;@begin NAME`
;; and its `;;@end NAME` line with one of the `*.wat` snippets next to this file.
;;
;; Canonical ABI layouts used below (all offsets in bytes):
;;   plugin-info (52): name 0, version 8, description 16, checks 24, operations 32,
;;                     installers 40, reports-partner 48 (each string/list = ptr, len)
;;   check-info / installer-info (24): name 0, description 8, params-schema 16
;;   operation-info (20): op 0 (u8), description 4, params-schema 12
;;   result<check-result, string> (24): tag 0; ok: verdict 4, message 8, observations 16; err: 4
;;   progress (20): tag 0; done: 4; pending: percent 4, message 8, retry-after-ms 16;
;;                  failed: message 4, retryable 12
;;   result<partner-state, string> (12): tag 0; ok: state 4; err: 4
(component
  (import "duplex:plugin/host@0.1.0" (instance $host
    (type $ll (enum "trace" "debug" "info" "warn" "error"))
    (export "log-level" (type $log-level (eq $ll)))
    (export "log" (func (param "level" $log-level) (param "message" string)))
    (export "progress" (func (param "percent" u8) (param "message" string)))
  ))
  (import "duplex:plugin/storage@0.1.0" (instance $storage
    (export "get" (func (param "key" string) (result (result (option (list u8)) (error string)))))
    ;;@begin storage-imports
    ;;@end storage-imports
  ))
  ;;@begin component-imports
  ;;@end component-imports

  ;; Memory and allocator live in their own module so imports can be lowered
  ;; into it before the main module is instantiated.
  (core module $Mem
    ;;@begin memory
    (memory (export "memory") 4)
    ;;@end memory
    (global $bump (mut i32) (i32.const 131072))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      ;; p = align_up(bump, align)
      (local.set $p
        (i32.and
          (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
          (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (if (i32.gt_u (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (drop (memory.grow
            (i32.add (i32.const 1)
              (i32.div_u
                (i32.sub (global.get $bump) (i32.mul (memory.size) (i32.const 65536)))
                (i32.const 65536)))))))
      (local.get $p))
  )
  (core instance $mem (instantiate $Mem))
  (alias core export $mem "memory" (core memory $memory))
  (alias core export $mem "realloc" (core func $realloc))

  (core func $log (canon lower (func $host "log") (memory $memory)))
  (core func $progress (canon lower (func $host "progress") (memory $memory)))
  (core func $get (canon lower (func $storage "get") (memory $memory) (realloc $realloc)))
  ;;@begin lowerings
  ;;@end lowerings

  (core module $Main
    (import "mem" "memory" (memory 1))
    (import "mem" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (import "host" "progress" (func $progress (param i32 i32 i32)))
    (import "storage" "get" (func $get (param i32 i32 i32)))
    ;;@begin core-imports
    ;;@end core-imports

    (data (i32.const 2048) "hostile")
    (data (i32.const 2056) "0.0.0")
    (data (i32.const 2070) "gate")
    ;;@begin schema
    (data (i32.const 2080) "{}")
    ;;@end schema
    (data (i32.const 2090) "sim")
    (data (i32.const 2095) "ok")
    (data (i32.const 2100) "world")
    (data (i32.const 2110) "done")

    ;;@begin describe
    (func (export "describe") (result i32)
      ;; plugin-info at 1024
      (i32.store (i32.const 1024) (i32.const 2048)) (i32.store (i32.const 1028) (i32.const 7))
      (i32.store (i32.const 1032) (i32.const 2056)) (i32.store (i32.const 1036) (i32.const 5))
      (i32.store (i32.const 1040) (i32.const 2064)) (i32.store (i32.const 1044) (i32.const 0))
      (i32.store (i32.const 1048) (i32.const 1100)) (i32.store (i32.const 1052) (i32.const 1))
      (i32.store (i32.const 1056) (i32.const 1132)) (i32.store (i32.const 1060) (i32.const 1))
      (i32.store (i32.const 1064) (i32.const 1160)) (i32.store (i32.const 1068) (i32.const 1))
      (i32.store8 (i32.const 1072) (i32.const 1))
      ;; check-info `gate` at 1100
      (i32.store (i32.const 1100) (i32.const 2070)) (i32.store (i32.const 1104) (i32.const 4))
      (i32.store (i32.const 1108) (i32.const 2064)) (i32.store (i32.const 1112) (i32.const 0))
      (i32.store (i32.const 1116) (i32.const 2080)) (i32.store (i32.const 1120) (i32.const 2))
      ;; operation-info `split` at 1132
      (i32.store8 (i32.const 1132) (i32.const 0))
      (i32.store (i32.const 1136) (i32.const 2064)) (i32.store (i32.const 1140) (i32.const 0))
      (i32.store (i32.const 1144) (i32.const 2080)) (i32.store (i32.const 1148) (i32.const 2))
      ;; installer-info `sim` at 1160
      (i32.store (i32.const 1160) (i32.const 2090)) (i32.store (i32.const 1164) (i32.const 3))
      (i32.store (i32.const 1168) (i32.const 2064)) (i32.store (i32.const 1172) (i32.const 0))
      (i32.store (i32.const 1176) (i32.const 2080)) (i32.store (i32.const 1180) (i32.const 2))
      (i32.const 1024))
    ;;@end describe

    ;; check(ctx: 9 flat values, name ptr, name len) -> result<check-result, string>
    (func (export "check")
      (param $sid i32) (param $sidlen i32) (param $state i32) (param $req i32) (param $reqlen i32)
      (param $attempt i32) (param $side i32) (param $params i32) (param $paramslen i32)
      (param $name i32) (param $namelen i32)
      (result i32)
      ;;@begin check
      ;; ok(check-result { verdict: pass, message: "ok", observations: [] })
      (i32.store8 (i32.const 3000) (i32.const 0))
      (i32.store8 (i32.const 3004) (i32.const 0))
      (i32.store (i32.const 3008) (i32.const 2095)) (i32.store (i32.const 3012) (i32.const 2))
      (i32.store (i32.const 3016) (i32.const 0)) (i32.store (i32.const 3020) (i32.const 0))
      (i32.const 3000)
      ;;@end check
    )

    ;; operate(ctx: 9 flat values, op) -> progress
    (func (export "operate")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (param $op i32)
      (result i32)
      ;;@begin operate
      (call $progress (i32.const 100) (i32.const 2110) (i32.const 4))
      (i32.store8 (i32.const 3100) (i32.const 0))
      (i32.store (i32.const 3104) (i32.const 2110)) (i32.store (i32.const 3108) (i32.const 4))
      (i32.const 3100)
      ;;@end operate
    )

    ;; install(pointer to (ctx, artifact): more than 16 flat values) -> progress
    (func (export "install") (param $args i32) (result i32)
      (i32.store8 (i32.const 3100) (i32.const 0))
      (i32.store (i32.const 3104) (i32.const 2110)) (i32.store (i32.const 3108) (i32.const 4))
      (i32.const 3100))

    ;; partner(ctx: 9 flat values) -> result<partner-state, string>
    (func (export "partner") (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 3200) (i32.const 0))
      (i32.store8 (i32.const 3204) (i32.const 3))
      (i32.const 3200))

    ;;@begin extra
    ;;@end extra
  )
  (core instance $main (instantiate $Main
    (with "mem" (instance $mem))
    (with "host" (instance (export "log" (func $log)) (export "progress" (func $progress))))
    (with "storage" (instance (export "get" (func $get))))
    ;;@begin instance-args
    ;;@end instance-args
  ))

  ;; The world's types, named (exported) as the component model requires.
  (type $upgrade-state' (enum "idle" "prepare-split" "split" "prepare-merge" "merge" "commit" "abort" "finish"))
  (export $upgrade-state "upgrade-state" (type $upgrade-state'))
  (type $side' (enum "production" "upgrade"))
  (export $side "side" (type $side'))
  (type $partner-state' (enum "unknown" "off" "booting" "up" "hung" "crashed"))
  (export $partner-state "partner-state" (type $partner-state'))
  (type $hardware-op' (enum "split" "merge" "commit" "abort" "finish"))
  (export $hardware-op "hardware-op" (type $hardware-op'))
  (type $call-context' (record
    (field "session-id" string) (field "state" $upgrade-state) (field "request" string)
    (field "attempt" u32) (field "side" $side) (field "params" string)))
  (export $call-context "call-context" (type $call-context'))
  (type $verdict' (enum "pass" "fail" "inconclusive"))
  (export $verdict "verdict" (type $verdict'))
  (type $check-result' (record
    (field "verdict" $verdict) (field "message" string)
    (field "observations" (list (tuple string string)))))
  (export $check-result "check-result" (type $check-result'))
  (type $pending' (record (field "percent" u8) (field "message" string) (field "retry-after-ms" u32)))
  (export $pending "pending" (type $pending'))
  (type $failure' (record (field "message" string) (field "retryable" bool)))
  (export $failure "failure" (type $failure'))
  (type $progress' (variant (case "done" string) (case "pending" $pending) (case "failed" $failure)))
  (export $progress "progress" (type $progress'))
  (type $artifact' (record
    (field "name" string) (field "version" string) (field "sha256" string)
    (field "size" u64) (field "source" string)))
  (export $artifact "artifact" (type $artifact'))
  (type $check-info' (record (field "name" string) (field "description" string) (field "params-schema" string)))
  (export $check-info "check-info" (type $check-info'))
  (type $operation-info' (record (field "op" $hardware-op) (field "description" string) (field "params-schema" string)))
  (export $operation-info "operation-info" (type $operation-info'))
  (type $installer-info' (record (field "name" string) (field "description" string) (field "params-schema" string)))
  (export $installer-info "installer-info" (type $installer-info'))
  (type $plugin-info' (record
    (field "name" string) (field "version" string) (field "description" string)
    (field "checks" (list $check-info)) (field "operations" (list $operation-info))
    (field "installers" (list $installer-info)) (field "reports-partner" bool)))
  (export $plugin-info "plugin-info" (type $plugin-info'))

  (func (export "describe") (result $plugin-info)
    (canon lift (core func $main "describe") (memory $memory) (realloc $realloc)))
  (func (export "check") (param "ctx" $call-context) (param "name" string)
    (result (result $check-result (error string)))
    (canon lift (core func $main "check") (memory $memory) (realloc $realloc)))
  (func (export "operate") (param "ctx" $call-context) (param "op" $hardware-op) (result $progress)
    (canon lift (core func $main "operate") (memory $memory) (realloc $realloc)))
  (func (export "install") (param "ctx" $call-context) (param "artifact" $artifact) (result $progress)
    (canon lift (core func $main "install") (memory $memory) (realloc $realloc)))
  (func (export "partner") (param "ctx" $call-context) (result (result $partner-state (error string)))
    (canon lift (core func $main "partner") (memory $memory) (realloc $realloc)))
)
