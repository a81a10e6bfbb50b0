#!/usr/bin/env bash
# The detections detd publishes for each frame equal the engine's output on
# the same decoded frame: detd dumps every model input it decodes
# (--dump-frames) and prints every result as JSON (--print-detections=json);
# e2e_check runs the engine on the dumped frames and compares bit for bit.
. "$(dirname "$0")/e2e_lib.sh"
E2E_CHECK=${E2E_CHECK:?E2E_CHECK must point at e2e_check}

mkdir -p "$T/dump"
write_config "$T/detd.json" \
	'{ "backend": "cpu", "workers": 1, "max_batch": 1, "max_wait_ms": 0, "min_score": 0.3 }' \
	"$(streams_json 1 true 10)"
start_detd "$T/detd.json" --print-detections=json --dump-frames "$T/dump"

# the 20-frame file loops (each loop is a new stream generation)
wait_for '.engine.results >= 6' 120
stop_detd
results=$(grep -c '"stream"' "$T/out.txt" || true)
delivered=$(ls "$T/dump" | wc -l)
[ "$results" -ge 6 ] || fail "only $results results printed"
objs=$(jq -s 'map(.objects | length) | add' "$T/out.txt")
[ "$objs" -gt 0 ] || fail "no objects detected on the sample video"
ok "$results results with $objs objects published for $delivered delivered frames"

"$E2E_CHECK" "$MODEL" "$LABELS" "$T/dump" "$T/out.txt" 0.3 "$results" ||
	fail "published detections differ from the engine's output"
ok "every published result equals the engine's output on the dumped frame"
