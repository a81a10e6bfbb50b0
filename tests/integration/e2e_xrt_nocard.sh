#!/usr/bin/env bash
# "xrt" with the real XRT runtime and no card: the daemon must not exit or
# abort.  It reports why in /status (engine.backend_health.last_error), serves
# every frame on cpu, and keeps re-probing with backoff.  Twice: without
# XILINX_XRT (XRT would abort the process if called) and with XILINX_XRT
# pointing at Debian's real device library (xrtDeviceOpen finds no device).
. "$(dirname "$0")/e2e_lib.sh"
write_config "$T/probe.json" '{ "backend": "xrt" }' ""
probe=$("$DETD" --check-config "$T/probe.json" 2>&1 || true)
if grep -q 'built without XRT' <<<"$probe"; then
	echo "SKIP: detd built without XRT"
	exit 77
fi
CORE=$(ls /usr/lib/*/libxrt_core.so.2 2>/dev/null | head -n 1 || true)

run_case() { # NAME EXPECTED_REASON_REGEX
	write_config "$T/detd.json" \
		"{ \"backend\": \"xrt\", \"workers\": 1, \"max_batch\": 2, \"max_wait_ms\": 5,
		   \"xrt\": { \"xclbin\": \"$T/detd_accel.xclbin\" } }" \
		"$(streams_json 2 true 10)"
	start_detd "$T/detd.json" --print-detections=json
	wait_for '.engine.results >= 6 and .engine.backend_health.open_failures >= 1' 60
	local h
	h=$(status | jq -c '.engine.backend_health')
	echo "$1: $h"
	[ "$(jq -r .healthy <<<"$h")" = false ] || fail "$1: xrt healthy without a card: $h"
	jq -r .last_error <<<"$h" | grep -Eq "$2" || fail "$1: reason not in /status: $h"
	[ "$(jqs '.engine.drops.error')" = 0 ] || fail "$1: frames dropped as errors"
	kill -0 "$DETD_PID" || fail "$1: detd died"
	# still serving, on cpu, and the next probe is scheduled
	local n1
	n1=$(jqs '.engine.results')
	wait_for ".engine.results >= $n1 + 4" 30
	[ "$(jqs '.engine.backend_health.next_probe_ms >= 0')" = true ] || fail "$1: no probe scheduled"
	curl -sf "$URL/metrics" >"$T/metrics" || fail "$1: /metrics"
	grep -q '^detd_backend_healthy{backend="xrt"} 0' "$T/metrics" ||
		fail "$1: metrics: $(grep detd_backend "$T/metrics")"
	grep -q 'detd_backend_events_total{backend="xrt",event="open_failures"}' "$T/metrics" ||
		fail "$1: no open_failures metric"
	stop_detd
	grep -q '"backend":"xrt"' "$T/out.txt" && fail "$1: a result claims xrt"
	grep -q '"backend":"cpu"' "$T/out.txt" || fail "$1: no cpu results"
	grep -q 'backend xrt unhealthy' "$T/detd.log" || fail "$1: no log line"
	ok "$1: detd serves on cpu, /status says: $(jq -r .last_error <<<"$h")"
}

unset XILINX_XRT
run_case "no XILINX_XRT" 'XILINX_XRT is not set'

if [ -n "$CORE" ]; then
	mkdir -p "$T/xrt/lib"
	ln -s "$CORE" "$T/xrt/lib/libxrt_core.so.2"
	export XILINX_XRT="$T/xrt"
	run_case "real runtime, no card" 'no XRT device 0'
else
	# detd was built with XRT, so libxrt1 (which ships the shim) is installed
	fail "libxrt_core.so.2 missing beside the XRT detd links: broken XRT install"
fi
