#!/usr/bin/env bash
# CoDeNet on "xrt-sim": the daemon runs the 256² W4A8 CoDeNet model with a
# bounded depthwise deformable decoder through the FPGA host path (the layers
# the kernel takes on the C-simulated detd_accel, the rest on cpu).  Every
# published result must come from xrt-sim and equal the cpu engine's output
# on the same dumped frame, bit for bit (e2e_check).
. "$(dirname "$0")/e2e_lib.sh"
E2E_CHECK=${E2E_CHECK:?E2E_CHECK must point at e2e_check}
[ -n "${CDN_FIXTURES:-}" ] || skip "no CoDeNet fixtures (need /usr/bin/python3 with torch)"
CDN_MODEL=$CDN_FIXTURES/s256_dw_q.json
[ -f "$CDN_MODEL" ] || skip "no $CDN_MODEL"
MODEL_CFG="{ \"path\": \"$CDN_MODEL\", \"format\": \"codenet\" }"

mkdir -p "$T/dump"
write_config "$T/detd.json" \
	'{ "backend": "xrt-sim", "workers": 1, "max_batch": 1, "max_wait_ms": 0, "min_score": 0.3 }' \
	"$(streams_json 1 true 10)"
start_detd "$T/detd.json" --print-detections=json --dump-frames "$T/dump"

wait_for '.engine.results >= 4' 480
h=$(status | jq -c '.engine.backend_health')
stop_detd
echo "backend_health: $h"
[ "$(jq -r '.healthy' <<<"$h")" = true ] || fail "xrt-sim unhealthy: $h"
[ "$(jq -r '.failures + .open_failures + .fallback_runs' <<<"$h")" = 0 ] || fail "xrt-sim fell back: $h"
[ "$(jq -r '.device.runs > 0 and .device.placement.device_nodes > 0 and .device.placement.cpu_nodes > 0' <<<"$h")" = true ] ||
	fail "no kernel runs, or not split between device and cpu: $h"
results=$(grep -c '"stream"' "$T/out.txt" || true)
[ "$results" -ge 4 ] || fail "only $results results printed"
[ "$(jq -s 'all(.backend == "xrt-sim")' "$T/out.txt")" = true ] || fail "results not from xrt-sim"
objs=$(jq -s 'map(.objects | length) | add' "$T/out.txt")
[ "$objs" -gt 0 ] || fail "no objects (min_score 0.3, random weights)"
ok "CoDeNet: $results results with $objs objects from xrt-sim ($(jq -c '.device.placement' <<<"$h"))"

"$E2E_CHECK" "$CDN_MODEL" "" "$T/dump" "$T/out.txt" 0.3 "$results" ||
	fail "xrt-sim CoDeNet detections differ from the cpu engine's output"
ok "every xrt-sim CoDeNet result equals the cpu engine's output on the dumped frame"
