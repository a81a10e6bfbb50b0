#!/usr/bin/env bash
# A failing backend (engine.test_fail): it is marked unhealthy in /status,
# every batch is run again on cpu and results keep coming.
. "$(dirname "$0")/e2e_lib.sh"

write_config "$T/detd.json" \
	'{ "backend": "cpu", "workers": 1, "max_batch": 2, "max_wait_ms": 5, "test_fail": true }' \
	"$(streams_json 2 true 10)"
start_detd "$T/detd.json" --print-detections=json

wait_for '.engine.results >= 5' 60
[ "$(jqs '.engine.backend_health.healthy')" = false ] || fail "backend still healthy"
[ "$(jqs '.engine.backend_health.failures >= 1 and .engine.backend_health.fallback_runs >= 1')" = true ] ||
	fail "failures not counted: $(jqs -c .engine.backend_health)"
[ "$(jqs '.engine.drops.error')" = 0 ] || fail "frames dropped as errors"
n1=$(jqs '.engine.results')
wait_for ".engine.results >= $n1 + 5" 30
stop_detd
grep -q '"backend":"cpu"' "$T/out.txt" || fail "results not from cpu"
ok "failing backend: unhealthy, fallback to cpu, results keep coming"
