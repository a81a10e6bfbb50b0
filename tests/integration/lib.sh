# lib.sh — helpers for the integration tests (sourced, not run).
# Each test gets a private temp dir ($T), writes configs there and starts the
# real detd on port 0; the bound port is read back from --port-file.
set -euo pipefail

DETD=${DETD:?DETD must point at the detd binary}
SHARED=${DETD_SHARED_DATA:-$(dirname "$0")/../../../shared/data}
MODEL="$SHARED/traffic/traffic_model.tflite"
LABELS="$SHARED/traffic/traffic_label_map.pbtxt"

T=$(mktemp -d "${TMPDIR:-/tmp}/detd-it.XXXXXX")
DETD_PID=""
declare -a CHILDREN=()

cleanup() {
	local p
	for p in "${CHILDREN[@]}" $DETD_PID; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${CHILDREN[@]}" $DETD_PID; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$T/detd.log" ]; then
		echo "--- detd log:" >&2
		cat "$T/detd.log" >&2
	fi
	exit 1
}
ok() { echo "ok: $*"; }
# skip REASON: the test cannot run here; meson shows exit 77 as SKIP, never as a pass.
skip() {
	echo "SKIP: $*"
	exit 77
}
# need_model: skip unless the shared traffic model and labels are present.
need_model() {
	[ -f "$MODEL" ] && [ -f "$LABELS" ] || skip "no test model at $MODEL (../shared/data)"
}

# write_config FILE [extra top-level JSON members, each followed by a comma]
write_config() {
	local file=$1 extra=${2:-}
	cat >"$file" <<JSON
{
  $extra
  "log": { "level": "info" },
  "model": { "path": "$MODEL", "labels": "$LABELS" },
  "http": { "address": "127.0.0.1", "port": 0, "max_header_bytes": 4096, "max_body_bytes": 1024 },
  "ipc": { "path": "$T/detd.sock" },
  "streams": []
}
JSON
}

# start_detd CONFIG [more args]: starts detd in the background, waits for the port.
start_detd() {
	local cfg=$1
	shift
	rm -f "$T/port"
	"$DETD" --config "$cfg" --port-file "$T/port" "$@" >>"$T/detd.log" 2>&1 &
	DETD_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$T/port" ] && break
		kill -0 "$DETD_PID" 2>/dev/null || fail "detd exited during start-up"
		sleep 0.05
	done
	[ -s "$T/port" ] || fail "detd did not write its port file"
	PORT=$(cat "$T/port")
	URL="http://127.0.0.1:$PORT"
}

# wait_log PATTERN [tries]: wait until the detd log matches (grep -E).
wait_log() {
	local pat=$1 tries=${2:-100}
	for _ in $(seq 1 "$tries"); do
		grep -qE "$pat" "$T/detd.log" && return 0
		sleep 0.05
	done
	fail "log never matched: $pat"
}

# stop_detd: SIGTERM and wait, fail if it takes more than 2 s or exits non-zero.
stop_detd() {
	local t0 t1 rc=0
	t0=$(date +%s%N)
	kill -TERM "$DETD_PID"
	wait "$DETD_PID" || rc=$?
	t1=$(date +%s%N)
	DETD_PID=""
	[ "$rc" -eq 0 ] || fail "detd exited with $rc after SIGTERM"
	# sanitizer builds spend a second or more in the leak check at exit
	local limit=2000
	if sanitizer_build; then limit=8000; fi
	[ $(((t1 - t0) / 1000000)) -lt "$limit" ] || fail "detd took $(((t1 - t0) / 1000000)) ms to stop"
}

# sanitizer_build: is $DETD built with ASan or TSan?  Their runtimes keep
# freed memory (quarantine) or shadow it, so RSS checks say nothing there, and
# they are slower to start and stop.  (grep without -q: ldd must not see
# SIGPIPE under pipefail.)
sanitizer_build() {
	ldd "$DETD" | grep -E 'lib(asan|tsan)' >/dev/null
}

# json_get JSON_TEXT EXPR: evaluate a python expression on the parsed document `d`.
json_get() {
	/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}
