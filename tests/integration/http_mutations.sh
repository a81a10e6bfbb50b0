#!/usr/bin/env bash
# Issue 15 #2: a web page in a local browser must not be able to use the
# mutation API.  The real daemon with http.allow_mutations on loopback:
# a cross-origin text/plain POST (what a page can send without a CORS
# preflight) adds nothing, a DNS-rebinding Host is refused, "type":"gst"
# streams are refused unless http.allow_gst_streams, and the token rule looks
# at the peer: on a 0.0.0.0 listener a non-loopback peer needs the token.
source "$(dirname "$0")/lib.sh"

write_config "$T/detd.json"
jq '.http.allow_mutations = true' "$T/detd.json" >"$T/c.json"
start_detd "$T/c.json"
STREAM='{"id":"evil","type":"test","fps":5}'
GST='{"id":"g1","type":"gst","pipeline":"videotestsrc ! video/x-raw,width=64,height=64"}'

post() { # post PATH BODY [curl args...] -> prints the status code
	local path=$1 body=$2
	shift 2
	curl -s -o "$T/out" -w "%{http_code}" -X POST --data-binary "$body" "$@" "$URL$path" || true
}
listed() { curl -s "$URL/streams" | jq -e --arg id "$1" 'any(.streams[]; .id == $id)' >/dev/null; }

# what a page on http://evil.example can send without a preflight
code=$(post /streams "$STREAM" -H 'Content-Type: text/plain' -H 'Origin: http://evil.example')
[ "$code" = 403 ] || fail "cross-origin text/plain POST -> $code"
code=$(post /streams "$STREAM" -H 'Content-Type: text/plain')
[ "$code" = 415 ] || fail "text/plain POST -> $code"
code=$(post /streams "$STREAM" -H 'Content-Type: application/x-www-form-urlencoded')
[ "$code" = 415 ] || fail "form POST -> $code"
code=$(post /streams "$STREAM" -H 'Content-Type: application/json' -H 'Origin: http://evil.example')
[ "$code" = 403 ] || fail "cross-origin JSON POST -> $code"
code=$(post /streams "$STREAM" -H 'Content-Type: application/json' -H 'Host: evil.example')
[ "$code" = 403 ] || fail "rebound Host -> $code"
code=$(post /reload '' -H 'Content-Type: text/plain' -H 'Origin: http://evil.example')
[ "$code" = 403 ] || fail "cross-origin POST /reload -> $code"
listed evil && fail "a refused POST added a stream"
grep -q 'reloading' "$T/detd.log" && fail "a refused POST /reload reloaded"
ok "cross-origin, text/plain, form and rebound-Host mutations refused; nothing added"

# gst pipelines over HTTP: off by default
code=$(post /streams "$GST" -H 'Content-Type: application/json')
[ "$code" = 403 ] || fail "gst stream over HTTP -> $code $(cat "$T/out")"
listed g1 && fail "gst stream added"
ok "\"type\":\"gst\" refused without http.allow_gst_streams"

# the legitimate request works
code=$(post /streams "$STREAM" -H 'Content-Type: application/json')
[ "$code" = 201 ] || fail "JSON POST -> $code $(cat "$T/out")"
listed evil || fail "JSON POST did not add the stream"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/streams/evil" || true)
[ "$code" = 200 ] || fail "DELETE -> $code"
ok "same-origin JSON POST and DELETE work"
stop_detd

# allowed explicitly
jq '.http.allow_mutations = true | .http.allow_gst_streams = true' "$T/detd.json" >"$T/c.json"
start_detd "$T/c.json"
code=$(post /streams "$GST" -H 'Content-Type: application/json')
[ "$code" = 201 ] || fail "gst stream with allow_gst_streams -> $code $(cat "$T/out")"
ok "gst stream accepted with http.allow_gst_streams"
stop_detd

# the token rule is by peer: listen on 0.0.0.0 (as socket activation may),
# no token configured
jq '.http.allow_mutations = true | .http.address = "0.0.0.0"' "$T/detd.json" >"$T/c.json"
start_detd "$T/c.json"
code=$(post /streams "$STREAM" -H 'Content-Type: application/json')
[ "$code" = 201 ] || fail "loopback peer on 0.0.0.0 -> $code $(cat "$T/out")"
ADDR=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')
if [ -z "$ADDR" ]; then
	echo "SKIP: no non-loopback IPv4 address here: the non-loopback peer case cannot run"
	exit 77
fi
PURL="http://$ADDR:$PORT"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X DELETE "$PURL/streams/evil" || true)
[ "$code" = 403 ] || fail "non-loopback peer without a configured token -> $code"
listed evil || fail "non-loopback DELETE removed the stream"
stop_detd
jq '.http.allow_mutations = true | .http.address = "0.0.0.0" | .http.token = "s3cret"' \
	"$T/detd.json" >"$T/c.json"
start_detd "$T/c.json"
PURL="http://$ADDR:$PORT"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	--data-binary "$STREAM" "$PURL/streams" || true)
[ "$code" = 401 ] || fail "non-loopback peer without the token -> $code"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-H 'Authorization: Bearer s3cret' --data-binary "$STREAM" "$PURL/streams")
[ "$code" = 201 ] || fail "non-loopback peer with the token -> $code $(cat "$T/out")"
code=$(post /reload '' -H 'Content-Type: application/json')
[ "$code" = 401 ] || fail "loopback peer without the configured token -> $code"
ok "token by peer: required from $ADDR on a 0.0.0.0 listener, and from everyone once set"
stop_detd
