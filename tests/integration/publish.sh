#!/usr/bin/env bash
# Publishing end to end with real detections of the sample video: detctl over
# the Unix socket (readable lines, --json, resume with --since and the gap
# notice), curl -N on /events with filters, /streams, /detections/latest,
# /metrics through promtool, stream add/remove through detctl --http.
# These are the commands docs/PROTOCOL.md shows.
set -euo pipefail
DETD=${DETD:?} DETCTL=${DETCTL:?}
SHARED=$(realpath "${DETD_SHARED_DATA:-$(dirname "$0")/../../../shared/data}")
T=$(mktemp -d "${TMPDIR:-/tmp}/detd-pub.XXXXXX")
DETD_PID=""
cleanup() {
	[ -n "$DETD_PID" ] && { kill "$DETD_PID" 2>/dev/null || true; wait "$DETD_PID" 2>/dev/null || true; }
	rm -rf "$T"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	echo "--- detd log (last 30 lines):" >&2
	tail -n 30 "$T/detd.log" >&2 || true
	exit 1
}
ok() { echo "ok: $*"; }

cat >"$T/detd.json" <<JSON
{
  "model": { "path": "$SHARED/traffic/traffic_model.tflite",
             "labels": "$SHARED/traffic/traffic_label_map.pbtxt" },
  "engine": { "backend": "cpu", "max_batch": 2, "max_wait_ms": 5, "min_score": 0.3 },
  "http": { "address": "127.0.0.1", "port": 0, "allow_mutations": true },
  "ipc": { "path": "$T/detd.sock", "replay_ring": 8 },
  "streams": [ { "id": "cam0", "type": "uri", "uri": "$SHARED/traffic/traffic_frames.mp4",
                 "loop": true, "fps": 10 } ]
}
JSON
"$DETD" --config "$T/detd.json" --port-file "$T/port" >"$T/detd.log" 2>&1 &
DETD_PID=$!
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || fail "detd did not start"
URL="http://127.0.0.1:$(cat "$T/port")"
export DETD_SOCKET="$T/detd.sock"
[ "$(stat -c %a "$DETD_SOCKET")" = 660 ] || fail "socket mode $(stat -c %a "$DETD_SOCKET")"

# readable lines: "cam0 #12 pickup_suv_van 0.50 [551,302 712,410]"
timeout 60 "$DETCTL" subscribe --stream cam0 --count 3 >"$T/lines" || fail "detctl subscribe"
grep -qE '^cam0 #[0-9]+ [A-Za-z_]+ 0\.[0-9]{2} \[[0-9]+,[0-9]+ [0-9]+,[0-9]+\]$' "$T/lines" ||
	fail "no readable detection line: $(head -3 "$T/lines")"
ok "detctl subscribe: $(head -1 "$T/lines")"
# the label filter as docs/PROTOCOL.md shows it (a label the sample model has)
timeout 60 "$DETCTL" subscribe --stream cam0 --label pickup_suv_van --min-score 0.3 --count 2 \
	>"$T/labelled" || fail "detctl subscribe --label"
[ -s "$T/labelled" ] && ! grep -v '^cam0 #[0-9]* pickup_suv_van ' "$T/labelled" ||
	fail "--label pickup_suv_van let other lines through: $(cat "$T/labelled")"
ok "detctl subscribe --label pickup_suv_van --min-score 0.3"

# raw NDJSON, filtered
timeout 60 "$DETCTL" subscribe --json --min-score 0.5 --count 3 >"$T/ndjson" || fail "detctl --json"
[ "$(jq -s 'map(select(.type=="detections")) | length' "$T/ndjson")" -ge 3 ] || fail "json: $(cat "$T/ndjson")"
[ "$(jq -s '[.[] | select(.type=="detections") | .objects[] | select(.score < 0.5)] | length' "$T/ndjson")" = 0 ] ||
	fail "min_score filter leaked lower scores"
jq -e 'select(.type=="detections") | .width > 0 and .height > 0 and (.seq | type) == "number"
       and (.objects[0].box | length) == 4 and (.objects[0].box_norm | length) == 4
       and .timings.inference_ms >= 0 and (.capture_time | endswith("Z"))' "$T/ndjson" >/dev/null ||
	fail "detections message fields: $(head -1 "$T/ndjson")"
ok "detctl subscribe --json: NDJSON with filters"

# resume: what the ring holds after the last seen seq; a gap for what left it
last=$(jq -s 'map(select(.type=="detections")) | last | .seq' "$T/ndjson")
sleep 1.5 # the ring (8 results) moves on meanwhile
timeout 60 "$DETCTL" subscribe --json --since "cam0=$last" --count 2 >"$T/resume" || fail "resume"
first=$(jq -s 'map(select(.type=="detections")) | first | .seq' "$T/resume")
[ "$first" -gt "$last" ] || fail "resume replayed $first after $last"
timeout 60 "$DETCTL" subscribe --json --since cam0=0 --count 1 >"$T/gap" || fail "resume from 0"
jq -e -s '.[0].type == "gap" and .[0].from == 1' "$T/gap" >/dev/null || fail "no gap notice: $(head -2 "$T/gap")"
ok "resume with --since: replay after #$last starts at #$first; gap notice for #1.."

# SSE with curl -N and filters
timeout 30 curl -sN "$URL/events?stream=cam0&min_score=0.5" >"$T/sse" 2>/dev/null &
CURL=$!
for _ in $(seq 1 300); do
	[ "$(grep -c '^data: {"type":"detections"' "$T/sse" || true)" -ge 2 ] && break
	sleep 0.1
done
kill "$CURL" 2>/dev/null || true
wait "$CURL" 2>/dev/null || true
grep -q '^event: detections$' "$T/sse" || fail "SSE: no detections event: $(head -5 "$T/sse")"
sed -n 's/^data: //p' "$T/sse" | jq -e -s 'map(select(.type=="detections")) | length >= 2 and
	all(.[]; .stream == "cam0" and all(.objects[]; .score >= 0.5))' >/dev/null || fail "SSE data"
ok "curl -N /events?stream=cam0&min_score=0.5"

# REST
curl -sf "$URL/streams" | jq -e '.streams[0].id == "cam0" and .streams[0].state == "running"
	and .streams[0].last_seq > 0 and .streams[0].type == "uri"' >/dev/null || fail "/streams"
curl -sf "$URL/detections/latest?stream=cam0" | jq -e '.type == "detections" and .seq > 0' >/dev/null ||
	fail "/detections/latest"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/streams/nope")" = 404 ] || fail "/streams/nope"
"$DETCTL" streams | grep -qE '^cam0 +running ' || fail "detctl streams: $("$DETCTL" streams)"
"$DETCTL" --http "${URL#http://}" streams | grep -qE '^cam0 +running ' || fail "detctl --http streams"
ok "/streams, /detections/latest, detctl streams"

# metrics: valid exposition with the promised families
curl -sf "$URL/metrics" >"$T/metrics" || fail "/metrics"
promtool check metrics <"$T/metrics" || fail "promtool rejected /metrics"
for m in 'detd_results_total{stream="cam0"}' 'detd_stream_fps{stream="cam0"}' \
	'detd_stream_state{stream="cam0",state="running"} 1' 'detd_inference_seconds_bucket' \
	'detd_batch_size_bucket' 'detd_subscribers{transport="ipc"}' \
	'detd_frames_dropped_total{stream="cam0",reason="pipeline_rate_limit"}' \
	'detd_queue_depth{queue="batcher"}' 'detd_queue_depth{queue="results"}'; do
	grep -qF "$m" "$T/metrics" || fail "/metrics lacks $m"
done
ok "/metrics passes promtool check metrics"

# add and remove a stream at run time
cat >"$T/cam1.json" <<JSON
{ "id": "cam1", "type": "test", "pattern": "ball", "fps": 5 }
JSON
"$DETCTL" --http "${URL#http://}" add-stream "$T/cam1.json" >/dev/null || fail "add-stream"
"$DETCTL" streams | grep -q '^cam1 ' || fail "cam1 not listed"
"$DETCTL" --http "${URL#http://}" add-stream "$T/cam1.json" 2>"$T/err" && fail "duplicate add accepted"
grep -q 'HTTP 409' "$T/err" || fail "duplicate add: $(cat "$T/err")"
"$DETCTL" --http "${URL#http://}" remove-stream cam1 >/dev/null || fail "remove-stream"
"$DETCTL" streams | grep -q '^cam1 ' && fail "cam1 still listed"
# the same with curl, as docs/PROTOCOL.md shows it
code=$(curl -s -o "$T/out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
	-d '{"id":"cam1","type":"test","pattern":"ball","fps":5}' "$URL/streams")
[ "$code" = 201 ] || fail "curl POST /streams -> $code $(cat "$T/out")"
jq -e '.id == "cam1"' "$T/out" >/dev/null || fail "POST /streams body: $(cat "$T/out")"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X DELETE "$URL/streams/cam1")
[ "$code" = 200 ] || fail "curl DELETE /streams/cam1 -> $code"
code=$(curl -s -o "$T/out" -w '%{http_code}' -X DELETE "$URL/streams/cam1")
[ "$code" = 404 ] || fail "second DELETE -> $code"
jq -e '.error.code == 404 and (.error.message | length > 0)' "$T/out" >/dev/null || fail "404 body"
ok "detctl add-stream / remove-stream, curl POST / DELETE /streams"

# POST /reload (= SIGHUP): streams added to / removed from the file follow
jq '.streams += [{"id":"cam2","type":"test","fps":5}]' "$T/detd.json" >"$T/new.json"
mv "$T/new.json" "$T/detd.json"
"$DETCTL" --http "${URL#http://}" reload >/dev/null || fail "detctl reload"
for _ in $(seq 1 100); do "$DETCTL" streams | grep -q '^cam2 ' && break; sleep 0.05; done
"$DETCTL" streams | grep -q '^cam2 ' || fail "cam2 not listed after reload"
jq 'del(.streams[] | select(.id == "cam2"))' "$T/detd.json" >"$T/new.json"
mv "$T/new.json" "$T/detd.json"
kill -HUP "$DETD_PID"
for _ in $(seq 1 100); do "$DETCTL" streams | grep -q '^cam2 ' || break; sleep 0.05; done
"$DETCTL" streams | grep -q '^cam2 ' && fail "cam2 still listed after its removal"
ok "reload adds and removes streams"

# detctl's errors: usage 2, refused mutation and missing daemon 1
rc=0; "$DETCTL" frobnicate 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "unknown command exit $rc"
rc=0; "$DETCTL" subscribe --min-score 7 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "bad --min-score exit $rc"
rc=0; "$DETCTL" --http "${URL#http://}" remove-stream nosuch 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q 'HTTP 404' "$T/err" || fail "remove unknown: rc $rc $(cat "$T/err")"
ok "detctl exit codes"

kill -TERM "$DETD_PID"
wait "$DETD_PID" || fail "detd exit code $?"
DETD_PID=""
[ ! -e "$T/detd.sock" ] || fail "socket file left behind"
rc=0; "$DETCTL" streams 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q 'cannot connect' "$T/err" || fail "no daemon: rc $rc $(cat "$T/err")"
ok "stopped, socket removed; detctl without a daemon exits 1"
