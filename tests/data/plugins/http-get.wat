;; check sends one GET through duplex:plugin/http. The URL is the call's
;; `with: {url: …}` (its JSON text minus the 8 bytes `{"url":"` and the 2
;; bytes `"}`); the timeout is `attempt` milliseconds when attempt > 1 (none
;; otherwise). An `err` from the host is returned as the check's error; an
;; answer passes with the message `SSS T LLLLLLL URL BODY` (status, truncated
;; 0/1, body length, the URL that answered, the first 64 bytes of the body)
;; and the response headers as observations.
;;
;; Canonical ABI: send(request) takes 9 flat values (method, url ptr/len,
;; headers ptr/len, body ptr/len, timeout-ms tag/value) and a return pointer;
;; result<response, string> (36): tag 0; ok: status 4 (u16), headers 8,
;; body 16, truncated 24, url 28; err: 4.
;;@replace component-imports
(import "duplex:plugin/http@0.1.0" (instance $http
  (type $method' (enum "get" "head" "post" "put" "patch" "delete"))
  (export "method" (type $method (eq $method')))
  (type $request' (record
    (field "method" $method) (field "url" string)
    (field "headers" (list (tuple string string))) (field "body" (list u8))
    (field "timeout-ms" (option u32))))
  (export "request" (type $request (eq $request')))
  (type $response' (record
    (field "status" u16) (field "headers" (list (tuple string string)))
    (field "body" (list u8)) (field "truncated" bool) (field "url" string)))
  (export "response" (type $response (eq $response')))
  (export "send" (func (param "req" $request) (result (result $response (error string)))))
))
;;@replace lowerings
(core func $send (canon lower (func $http "send") (memory $memory) (realloc $realloc)))
;;@replace core-imports
(import "http" "send" (func $send (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
;;@replace instance-args
(with "http" (instance (export "send" (func $send))))
;;@replace check
(local $p i32) (local $n i32)
(call $send
  (i32.const 0)
  (i32.add (local.get $params) (i32.const 8))
  (i32.sub (local.get $paramslen) (i32.const 10))
  (i32.const 0) (i32.const 0)
  (i32.const 0) (i32.const 0)
  (i32.gt_u (local.get $attempt) (i32.const 1))
  (local.get $attempt)
  (i32.const 3600))
(if (i32.eq (i32.load8_u (i32.const 3600)) (i32.const 1))
  (then
    (i32.store8 (i32.const 3000) (i32.const 1))
    (i32.store (i32.const 3004) (i32.load (i32.const 3604)))
    (i32.store (i32.const 3008) (i32.load (i32.const 3608)))
    (return (i32.const 3000))))
(call $digits (i32.load16_u (i32.const 3604)) (i32.const 4000) (i32.const 3))
(i32.store8 (i32.const 4003) (i32.const 32))
(i32.store8 (i32.const 4004) (i32.add (i32.const 48) (i32.load8_u (i32.const 3624))))
(i32.store8 (i32.const 4005) (i32.const 32))
(call $digits (i32.load (i32.const 3620)) (i32.const 4006) (i32.const 7))
(i32.store8 (i32.const 4013) (i32.const 32))
(local.set $n (i32.load (i32.const 3632)))
(memory.copy (i32.const 4014) (i32.load (i32.const 3628)) (local.get $n))
(local.set $p (i32.add (i32.const 4014) (local.get $n)))
(i32.store8 (local.get $p) (i32.const 32))
(local.set $p (i32.add (local.get $p) (i32.const 1)))
(local.set $n (i32.load (i32.const 3620)))
(if (i32.gt_u (local.get $n) (i32.const 64)) (then (local.set $n (i32.const 64))))
(memory.copy (local.get $p) (i32.load (i32.const 3616)) (local.get $n))
(local.set $p (i32.add (local.get $p) (local.get $n)))
(i32.store8 (i32.const 3000) (i32.const 0))
(i32.store8 (i32.const 3004) (i32.const 0))
(i32.store (i32.const 3008) (i32.const 4000))
(i32.store (i32.const 3012) (i32.sub (local.get $p) (i32.const 4000)))
(i32.store (i32.const 3016) (i32.load (i32.const 3608)))
(i32.store (i32.const 3020) (i32.load (i32.const 3612)))
(i32.const 3000)
;;@replace extra
;; Writes the last `n` decimal digits of `v` at `at`.
(func $digits (param $v i32) (param $at i32) (param $n i32)
  (loop $l
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (i32.store8 (i32.add (local.get $at) (local.get $n))
      (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
    (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
    (br_if $l (i32.gt_u (local.get $n) (i32.const 0)))))
