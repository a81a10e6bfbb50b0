#!/usr/bin/env bash
# /healthz and /status on an ephemeral port; 404/405/431/413 with JSON error bodies.
. "$(dirname "$0")/lib.sh"

write_config "$T/detd.json"
start_detd "$T/detd.json"
[ "$PORT" -gt 0 ] || fail "bad port $PORT"

code=$(curl -s -o "$T/out" -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] || fail "/healthz -> $code"
[ "$(json_get "$(cat "$T/out")" 'd["status"]')" = ok ] || fail "/healthz body: $(cat "$T/out")"
ok "/healthz 200"

body=$(curl -sf -D "$T/hdr" "$URL/status") || fail "/status failed"
grep -qi '^content-type: application/json' "$T/hdr" || fail "/status content type"
[ "$(json_get "$body" 'd["pid"]')" = "$DETD_PID" ] || fail "/status pid: $body"
[ "$(json_get "$body" 'd["version"]')" = "$("$DETD" --version | cut -d' ' -f2)" ] || fail "/status version: $body"
[ "$(json_get "$body" 'd["config"]')" = "$(realpath "$T/detd.json")" ] || fail "/status config: $body"
[ "$(json_get "$body" 'd["http_port"]')" = "$PORT" ] || fail "/status port: $body"
[ "$(json_get "$body" 'd["uptime_s"] >= 0')" = True ] || fail "/status uptime: $body"
ok "/status fields"

code=$(curl -s -o "$T/out" -w '%{http_code}' "$URL/no/such/thing")
[ "$code" = 404 ] || fail "unknown path -> $code"
[ "$(json_get "$(cat "$T/out")" 'd["error"]["code"]')" = 404 ] || fail "404 body: $(cat "$T/out")"
json_get "$(cat "$T/out")" 'd["error"]["message"]' | grep -q /no/such/thing || fail "404 message"
ok "404 JSON"

code=$(curl -s -o "$T/out" -D "$T/hdr" -w '%{http_code}' -X DELETE "$URL/status")
[ "$code" = 405 ] || fail "DELETE /status -> $code"
[ "$(json_get "$(cat "$T/out")" 'd["error"]["code"]')" = 405 ] || fail "405 body: $(cat "$T/out")"
grep -qi '^allow: GET' "$T/hdr" || fail "405 without Allow header"
ok "405 JSON + Allow"

big=$(head -c 6000 /dev/zero | tr '\0' x)
code=$(curl -s -o "$T/out" -w '%{http_code}' -H "X-Big: $big" "$URL/status")
[ "$code" = 431 ] || fail "oversized header -> $code"
[ "$(json_get "$(cat "$T/out")" 'd["error"]["code"]')" = 431 ] || fail "431 body: $(cat "$T/out")"
ok "oversized header -> 431 JSON"

head -c 3000 /dev/zero | tr '\0' y >"$T/body"
code=$(curl -s -o "$T/out" -w '%{http_code}' --data-binary @"$T/body" "$URL/status")
[ "$code" = 413 ] || fail "oversized body -> $code"
[ "$(json_get "$(cat "$T/out")" 'd["error"]["code"]')" = 413 ] || fail "413 body: $(cat "$T/out")"
ok "oversized body -> 413 JSON"

# DNS rebinding: a page whose name now resolves to 127.0.0.1 reads nothing
for h in evil.example evil.example:$PORT 127.0.0.1.evil.example localhost.evil.example; do
	code=$(curl -s -o "$T/out" -w '%{http_code}' -H "Host: $h" "$URL/status")
	[ "$code" = 403 ] || fail "GET /status with Host: $h -> $code"
done
grep -q 'loopback listener' "$T/out" || fail "Host refusal body: $(cat "$T/out")"
for h in localhost "localhost:$PORT" cam.localhost 127.0.0.1 "127.0.0.1:$PORT" 127.0.0.2 '[::1]:8080'; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $h" "$URL/status")
	[ "$code" = 200 ] || fail "GET /status with Host: $h -> $code"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host:' "$URL/status")
[ "$code" = 200 ] || fail "GET /status without a Host header -> $code"
ok "loopback listener: Host names that could be rebound -> 403; localhost, loopback literals, no Host -> 200"

# still serving after the rude requests
curl -sf "$URL/healthz" >/dev/null || fail "/healthz after errors"
stop_detd
ok "SIGTERM -> exit 0 within 2 s"
