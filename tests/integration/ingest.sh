#!/usr/bin/env bash
# ingest.sh — the real tools end to end: test-rtsp-server serves the sample
# video in a loop, detd-ingest reads it over RTSP (TCP) next to the file
# itself and a stream that cannot exist, and its JSON stats tell the story.
set -euo pipefail
INGEST=${DETD_INGEST:?DETD_INGEST must point at detd-ingest}
SERVER=${DETD_TEST_RTSP_SERVER:-}
SHARED=${DETD_SHARED_DATA:?}
VIDEO="$SHARED/traffic/traffic_frames.mp4"
T=$(mktemp -d "${TMPDIR:-/tmp}/detd-ingest.XXXXXX")
SPID=""
cleanup() {
	if [ -n "$SPID" ]; then
		kill "$SPID" 2>/dev/null || true
		wait "$SPID" 2>/dev/null || true
	fi
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; cat "$T/out" "$T/err" >&2 2>/dev/null || true; exit 1; }

sources=("$VIDEO" "file:///nonexistent/detd-ingest.mp4")
if [ -n "$SERVER" ]; then
	"$SERVER" "$VIDEO" --port 0 >"$T/url" 2>"$T/server.err" &
	SPID=$!
	for _ in $(seq 100); do [ -s "$T/url" ] && break; sleep 0.1; done
	[ -s "$T/url" ] || fail "test-rtsp-server printed no URL"
	sources+=("$(head -1 "$T/url")")
fi

"$INGEST" --seconds 4 --tcp "${sources[@]}" >"$T/out" 2>"$T/err" || fail "detd-ingest exited $?"
last() { grep "\"id\":\"$1\"" "$T/out" | tail -1; }
# field ID .a.b — one value of the last stats line of stream ID (python3 is
# there wherever meson is).
field() {
	last "$1" | python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].strip(".").split("."):
    v = v[k] if v is not None else None
print("null" if v is None else str(v).lower() if isinstance(v, bool) else v)' "$2"
}

[ "$(field s0 .state)" = ended ] || fail "file: state $(field s0 .state)"
[ "$(field s0 .frames_delivered)" = 20 ] || fail "file: $(field s0 .frames_delivered) frames"
[ "$(field s0 .source_width)x$(field s0 .source_height)" = 960x540 ] || fail "file: size"
echo "ok: file delivered 20 frames of 960x540 and ended"

st=$(field s1 .state)
[ "$st" = backoff ] || [ "$st" = reconnecting ] || fail "missing file: state $st"
field s1 .last_error.message | grep -q "No such file" || fail "missing file: error"
[ "$(field s1 .reconnects)" -ge 1 ] || fail "missing file: no retry"
echo "ok: missing file backs off with '$(field s1 .last_error.message)'"

if [ -n "$SERVER" ]; then
	[ "$(field s2 .state)" = live ] || fail "rtsp: state $(field s2 .state)"
	[ "$(field s2 .frames_delivered)" -gt 20 ] || fail "rtsp: $(field s2 .frames_delivered) frames"
	[ "$(field s2 .live_source)" = true ] || fail "rtsp: not live"
	echo "ok: rtsp live, $(field s2 .frames_delivered) frames"
fi
