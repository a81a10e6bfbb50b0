# e2e_lib.sh — helpers for the end-to-end data path tests (sourced).
# Each test gets a private temp dir ($T), writes a config with streams of the
# sample video and starts the real detd on port 0 (--port-file).  Built on
# lib.sh (temp dir, cleanup, ok/skip, sanitizer_build); the functions below
# replace its fail/write_config/start_detd/stop_detd with the e2e variants.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SHARED=$(realpath "$SHARED")
MODEL="$SHARED/traffic/traffic_model.tflite"
LABELS="$SHARED/traffic/traffic_label_map.pbtxt"
VIDEO="$SHARED/traffic/traffic_frames.mp4"

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$T/detd.log" ]; then
		echo "--- detd log (last 40 lines):" >&2
		tail -n 40 "$T/detd.log" >&2
	fi
	exit 1
}

# streams_json N LOOP FPS: N streams cam0..cam{N-1} of the sample video.
streams_json() {
	local n=$1 loop=$2 fps=$3 i sep=""
	for ((i = 0; i < n; i++)); do
		printf '%s{ "id": "cam%d", "type": "uri", "uri": "%s", "loop": %s, "fps": %s }' \
			"$sep" "$i" "$VIDEO" "$loop" "$fps"
		sep=", "
	done
}

# write_config FILE ENGINE_JSON STREAMS_JSON  (MODEL_CFG, if set, replaces
# the "model" object)
write_config() {
	local model=${MODEL_CFG:-"{ \"path\": \"$MODEL\", \"labels\": \"$LABELS\" }"}
	cat >"$1" <<JSON
{
  "log": { "level": "info" },
  "model": $model,
  "engine": $2,
  "http": { "address": "127.0.0.1", "port": 0 },
  "ipc": { "enabled": false, "path": "$T/detd.sock" },
  "streams": [ $3 ]
}
JSON
}

# start_detd CONFIG [args]: stdout → $T/out.txt, stderr → $T/detd.log.
start_detd() {
	local cfg=$1
	shift
	rm -f "$T/port"
	"$DETD" --config "$cfg" --port-file "$T/port" "$@" >"$T/out.txt" 2>"$T/detd.log" &
	DETD_PID=$!
	for _ in $(seq 1 200); do
		[ -s "$T/port" ] && break
		kill -0 "$DETD_PID" 2>/dev/null || fail "detd exited during start-up"
		sleep 0.05
	done
	[ -s "$T/port" ] || fail "detd did not write its port file"
	URL="http://127.0.0.1:$(cat "$T/port")"
}

stop_detd() {
	local rc=0
	kill -TERM "$DETD_PID"
	wait "$DETD_PID" || rc=$?
	DETD_PID=""
	[ "$rc" -eq 0 ] || fail "detd exited with $rc after SIGTERM"
}

status() { curl -sf "$URL/status" || fail "GET /status"; }

# jqs EXPR: evaluate jq on the current /status.
jqs() { status | jq -r "$1"; }

# wait_for JQ_BOOL_EXPR SECONDS: poll /status until the expression is true.
wait_for() {
	local expr=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		[ "$(status | jq -r "$expr")" = true ] && return 0
		sleep 0.1
	done
	fail "timed out waiting for: $expr ($(status | jq -c '.engine, .streams'))"
}

# rss_kb PID
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# xrt_sim_matches_cpu WHAT CHECK_MODEL CHECK_LABELS: run one looping stream of
# the sample video on backend "xrt-sim" (model from MODEL/LABELS or
# MODEL_CFG), then require that every published result came from xrt-sim
# (no cpu fallback), that kernel runs happened with nodes split between the
# device and cpu, and that each result equals the cpu engine's output on the
# dumped frame, bit for bit (e2e_check on CHECK_MODEL; CHECK_LABELS "" = the
# model's own labels).
xrt_sim_matches_cpu() {
	local what=$1 check_model=$2 check_labels=$3 h results objs
	: "${E2E_CHECK:?E2E_CHECK must point at e2e_check}"
	mkdir -p "$T/dump"
	write_config "$T/detd.json" \
		'{ "backend": "xrt-sim", "workers": 1, "max_batch": 1, "max_wait_ms": 0, "min_score": 0.3 }' \
		"$(streams_json 1 true 10)"
	start_detd "$T/detd.json" --print-detections=json --dump-frames "$T/dump"
	wait_for '.engine.results >= 4' 480 # the C-sim under ASan: ~40 s per traffic frame
	h=$(status | jq -c '.engine.backend_health')
	stop_detd
	echo "backend_health: $h"
	[ "$(jq -r '.healthy' <<<"$h")" = true ] || fail "xrt-sim unhealthy: $h"
	[ "$(jq -r '.failures + .open_failures + .fallback_runs' <<<"$h")" = 0 ] ||
		fail "xrt-sim fell back: $h"
	[ "$(jq -r '.device.xclbin_uuid | test("^[0-9a-f-]{36}$")' <<<"$h")" = true ] ||
		fail "no xclbin UUID: $h"
	[ "$(jq -r '.device.runs > 0 and .device.placement.device_nodes > 0 and
		.device.placement.cpu_nodes > 0' <<<"$h")" = true ] ||
		fail "no kernel runs, or not split between device and cpu: $h"
	results=$(grep -c '"stream"' "$T/out.txt" || true)
	[ "$results" -ge 4 ] || fail "only $results results printed"
	[ "$(jq -s 'all(.backend == "xrt-sim")' "$T/out.txt")" = true ] || fail "results not from xrt-sim"
	objs=$(jq -s 'map(.objects | length) | add' "$T/out.txt")
	[ "$objs" -gt 0 ] || fail "no objects detected on the sample video"
	ok "$what: $results results with $objs objects from xrt-sim ($(jq -c '.device.placement' <<<"$h"))"
	"$E2E_CHECK" "$check_model" "$check_labels" "$T/dump" "$T/out.txt" 0.3 "$results" ||
		fail "$what: xrt-sim detections differ from the cpu engine's output"
	ok "$what: every xrt-sim result equals the cpu engine's output on the dumped frame"
}
