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
