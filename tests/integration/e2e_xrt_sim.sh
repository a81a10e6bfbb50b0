#!/usr/bin/env bash
# "xrt-sim": the daemon runs the traffic model through the FPGA host path
# (plan → device buffers → kernel runs → sync back) on the C-simulated
# detd_accel kernel.  Every published result must come from xrt-sim (not a
# cpu fallback) and equal the cpu engine's output on the same dumped frame,
# bit for bit (e2e_check, as in e2e_detections.sh).
. "$(dirname "$0")/e2e_lib.sh"
E2E_CHECK=${E2E_CHECK:?E2E_CHECK must point at e2e_check}

mkdir -p "$T/dump"
write_config "$T/detd.json" \
	'{ "backend": "xrt-sim", "workers": 1, "max_batch": 1, "max_wait_ms": 0, "min_score": 0.3 }' \
	"$(streams_json 1 true 10)"
start_detd "$T/detd.json" --print-detections=json --dump-frames "$T/dump"

wait_for '.engine.results >= 4' 480  # C-sim under ASan: ~40 s per frame
h=$(status | jq -c '.engine.backend_health')
stop_detd
echo "backend_health: $h"
[ "$(jq -r '.healthy' <<<"$h")" = true ] || fail "xrt-sim unhealthy: $h"
[ "$(jq -r '.failures + .open_failures + .fallback_runs' <<<"$h")" = 0 ] || fail "xrt-sim fell back: $h"
[ "$(jq -r '.device.xclbin_uuid | test("^[0-9a-f-]{36}$")' <<<"$h")" = true ] || fail "no xclbin UUID: $h"
[ "$(jq -r '.device.runs > 0 and .device.placement.device_nodes > 0' <<<"$h")" = true ] ||
	fail "no kernel runs or nothing placed on the device: $h"
results=$(grep -c '"stream"' "$T/out.txt" || true)
[ "$results" -ge 4 ] || fail "only $results results printed"
[ "$(jq -s 'all(.backend == "xrt-sim")' "$T/out.txt")" = true ] || fail "results not from xrt-sim"
objs=$(jq -s 'map(.objects | length) | add' "$T/out.txt")
[ "$objs" -gt 0 ] || fail "no objects detected on the sample video"
ok "$results results with $objs objects from xrt-sim ($(jq -c '.device.placement' <<<"$h"))"

"$E2E_CHECK" "$MODEL" "$LABELS" "$T/dump" "$T/out.txt" 0.3 "$results" ||
	fail "xrt-sim detections differ from the cpu engine's output"
ok "every xrt-sim result equals the cpu engine's output on the dumped frame"
