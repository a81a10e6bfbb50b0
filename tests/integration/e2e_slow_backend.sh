#!/usr/bin/env bash
# A deliberately slow backend (engine.test_delay_ms): frames are dropped as
# stale, queues stay within their bounds and memory does not grow.
. "$(dirname "$0")/e2e_lib.sh"

write_config "$T/detd.json" \
	'{ "backend": "cpu", "workers": 1, "max_batch": 2, "max_wait_ms": 5, "test_delay_ms": 400 }' \
	"$(streams_json 2 true 30)"
start_detd "$T/detd.json"

wait_for '.engine.results >= 2 and .engine.drops.stale > 10' 60
rss1=$(rss_kb "$DETD_PID")
for _ in 1 2 3 4 5 6 7 8 9 10; do
	# waiting frames: at most one slot per stream, whatever the backlog
	[ "$(jqs '.engine.queue_depth <= 2 and .engine.in_flight <= 2')" = true ] ||
		fail "queue beyond its bound: $(jqs -c .engine)"
	sleep 0.3
done
wait_for ".engine.drops.stale > $(jqs '.engine.drops.stale') + 20" 30
rss2=$(rss_kb "$DETD_PID")
echo "RSS $rss1 kB -> $rss2 kB; $(jqs '.engine | {results, drops, backend_health}' | jq -c .)"
# ~60 frames of 196 kB each arrived meanwhile: leaking them would add > 10 MB
# (not under a sanitizer: quarantine and shadow memory stay resident)
if sanitizer_build; then
	echo "RSS check skipped: sanitizer build"
else
	[ $((rss2 - rss1)) -lt 8192 ] || fail "RSS grew from $rss1 kB to $rss2 kB"
fi
[ "$(jqs '.streams.cam0.batcher.drops.stale > 0 and .streams.cam1.batcher.drops.stale > 0')" = true ] ||
	fail "stale drops not counted per stream"
[ "$(jqs '.engine.backend_health.name')" = "cpu+test-slow" ] || fail "health name"
stop_detd
ok "slow backend: stale drops counted, bounded queue, RSS $rss1 -> $rss2 kB"
