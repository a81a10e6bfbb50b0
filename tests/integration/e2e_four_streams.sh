#!/usr/bin/env bash
# 4 streams at batch 4: for every stream, frames the pipeline delivered =
# results + counted drops, and every result reached the loop (printed) or was
# counted as dropped by the result queue.
. "$(dirname "$0")/e2e_lib.sh"

write_config "$T/detd.json" \
	'{ "backend": "cpu", "workers": 1, "max_batch": 4, "max_wait_ms": 20, "min_score": 0.5 }' \
	"$(streams_json 4 false 0)"
start_detd "$T/detd.json" --print-detections=json

wait_for '[.streams[] | .pipeline.state] | all(. == "ended")' 60
wait_for '.engine.in_flight == 0 and .engine.queue_depth == 0 and .engine.result_queue.depth == 0' 10
st=$(status)
echo "$st" | jq -c '.engine | {batches, frames, mean_batch_size, inference_ms_p50, drops}'
for i in 0 1 2 3; do
	s=$(echo "$st" | jq ".streams.cam$i")
	delivered=$(echo "$s" | jq '.pipeline.frames_delivered')
	submitted=$(echo "$s" | jq '.batcher.submitted')
	results=$(echo "$s" | jq '.batcher.results')
	drops=$(echo "$s" | jq '[.batcher.drops[]] | add')
	rdel=$(echo "$s" | jq '.result_queue.delivered // 0')
	rdrop=$(echo "$s" | jq '.result_queue.dropped_full // 0')
	[ "$delivered" -gt 0 ] || fail "cam$i delivered no frame"
	[ "$submitted" = "$delivered" ] || fail "cam$i: pipeline delivered $delivered, batcher got $submitted"
	[ $((results + drops)) = "$delivered" ] ||
		fail "cam$i: $results results + $drops drops != $delivered delivered"
	[ $((rdel + rdrop)) = "$results" ] || fail "cam$i: result queue $rdel + $rdrop != $results"
	printed=$(grep -c "\"stream\":\"cam$i\"" "$T/out.txt" || true)
	[ "$printed" = "$rdel" ] || fail "cam$i: printed $printed, delivered $rdel"
	ok "cam$i: $delivered delivered = $results results + $drops drops"
done
[ "$(echo "$st" | jq '.engine.max_batch')" = 4 ] || fail "max_batch not 4"
[ "$(echo "$st" | jq '.engine.batches > 0 and .engine.mean_batch_size <= 4')" = true ] ||
	fail "batch stats: $(echo "$st" | jq -c .engine)"
stop_detd
ok "4 streams at batch 4: every delivered frame is a result or a counted drop"
