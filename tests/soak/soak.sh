#!/usr/bin/env bash
# soak.sh — a long run of the real daemon under churn; NOT part of CI.
#
# Starts detd (from BUILD) with N looping file streams of the sample video and
# one RTSP camera served by tools/test-rtsp-server, attaches M subscribers
# (steady, slow readers and reconnecting ones), kills the camera every
# CAM_KILL_S seconds (it comes back 3 s later on the same port), sends SIGHUP
# every HUP_S seconds, and samples every SAMPLE_S seconds: RSS, open
# descriptors, threads, results, drop counters.  The samples are printed as a
# Markdown table (also written to OUT).  Exit 1 when, after WARMUP_S, RSS,
# descriptors or threads grew beyond the tolerances below, or detd died, or
# results stopped; 77 when the sample data or a tool is missing.
#
#   tests/soak/soak.sh [DURATION_S]            (default 1800)
#   env: BUILD=build N=4 M=6 SAMPLE_S=30 WARMUP_S=300 CAM_KILL_S=60 HUP_S=120
#        OUT=soak-table.md  RSS_TOL_KIB=8192 RSS_TOL_PCT=10 FD_TOL=4 THREAD_TOL=4
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DURATION=${1:-1800}
BUILD=${BUILD:-$ROOT/build}
N=${N:-4}
M=${M:-6}
SAMPLE_S=${SAMPLE_S:-30}
WARMUP_S=${WARMUP_S:-300}
CAM_KILL_S=${CAM_KILL_S:-60}
HUP_S=${HUP_S:-120}
OUT=${OUT:-soak-table.md}
RSS_TOL_KIB=${RSS_TOL_KIB:-8192}
RSS_TOL_PCT=${RSS_TOL_PCT:-10}
FD_TOL=${FD_TOL:-4}
THREAD_TOL=${THREAD_TOL:-4}
SHARED=${DETD_SHARED_DATA:-$ROOT/../shared/data}
VIDEO=$SHARED/traffic/traffic_frames.mp4
MODEL=$SHARED/traffic/traffic_model.tflite
LABELS=$SHARED/traffic/traffic_label_map.pbtxt
DETD=$BUILD/daemon/detd
DETCTL=$BUILD/tools/detctl
RTSP=$BUILD/tools/test-rtsp-server

skip() { echo "SKIP: $*"; exit 77; }
[ -f "$VIDEO" ] && [ -f "$MODEL" ] || skip "no sample data in $SHARED/traffic"
for x in "$DETD" "$DETCTL" "$RTSP"; do [ -x "$x" ] || skip "$x not built"; done
command -v curl >/dev/null || skip "curl missing"
[ "$WARMUP_S" -lt "$DURATION" ] || { echo "soak: WARMUP_S must be below the duration" >&2; exit 2; }

T=$(mktemp -d "${TMPDIR:-/tmp}/detd-soak.XXXXXX")
declare -a BG=()
DETD_PID="" CAM_PID=""
cleanup() {
	local p
	for p in "${BG[@]}" $CAM_PID; do kill "$p" 2>/dev/null || true; done
	[ -n "$DETD_PID" ] && kill -TERM "$DETD_PID" 2>/dev/null || true
	for p in "${BG[@]}" $CAM_PID $DETD_PID; do wait "$p" 2>/dev/null || true; done
	[ "${KEEP:-0}" = 1 ] && echo "soak: kept $T" >&2 || rm -rf "$T"
}
trap cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
CAM_PORT=$(free_port)
cam_start() {
	"$RTSP" "$VIDEO" --port "$CAM_PORT" >"$T/cam.out" 2>>"$T/cam.log" &
	CAM_PID=$!
	for _ in $(seq 1 100); do [ -s "$T/cam.out" ] && break; sleep 0.05; done
}
cam_start
CAM_URL=$(head -n1 "$T/cam.out")
[ -n "$CAM_URL" ] || { echo "soak: test RTSP server did not start" >&2; exit 1; }

streams=""
for i in $(seq 1 "$N"); do
	streams+="{ \"id\": \"file$i\", \"uri\": \"$VIDEO\", \"loop\": true, \"fps\": 5 },"
done
streams+="{ \"id\": \"cam\", \"uri\": \"$CAM_URL\", \"latency_ms\": 100, \"stall_timeout_s\": 3,
             \"backoff_initial_s\": 0.5, \"backoff_max_s\": 4 }"
cat >"$T/detd.json" <<JSON
{
  "log": { "level": "info" },
  "model": { "path": "$MODEL", "labels": "$LABELS" },
  "engine": { "workers": 1, "threads": 1, "max_batch": 4, "min_score": 0.3 },
  "http": { "address": "127.0.0.1", "port": 0 },
  "ipc": { "path": "$T/detd.sock", "client_buffer_bytes": 65536, "client_hard_limit_bytes": 1048576,
           "slow_client_timeout_s": 20 },
  "streams": [ $streams ]
}
JSON
"$DETD" --config "$T/detd.json" --port-file "$T/port" >"$T/detd.log" 2>&1 &
DETD_PID=$!
for _ in $(seq 1 200); do [ -s "$T/port" ] && break; sleep 0.05; done
[ -s "$T/port" ] || { cat "$T/detd.log" >&2; echo "soak: detd did not start" >&2; exit 1; }
URL="http://127.0.0.1:$(cat "$T/port")"
export DETD_SOCKET=$T/detd.sock

# Subscribers: a third steady, a third slow (read one line a second, so the
# daemon's per-client buffer fills and it drops), a third reconnecting.
for i in $(seq 1 "$M"); do
	case $((i % 3)) in
	0) (while :; do "$DETCTL" subscribe --json >/dev/null 2>&1 || sleep 1; done) & ;;
	1) (while :; do "$DETCTL" subscribe --json 2>/dev/null | while read -r _; do sleep 1; done
		sleep 1; done) & ;;
	2) (while :; do timeout 3 "$DETCTL" subscribe --json >/dev/null 2>&1 || true; done) & ;;
	esac
	BG+=($!)
done

# SIGHUP every HUP_S; the camera is killed every CAM_KILL_S by the loop below.
(while sleep "$HUP_S"; do kill -HUP "$DETD_PID" 2>/dev/null || exit 0; done) &
BG+=($!)

metric_sum() { # NAME [label filter]: sum of a metric's samples
	awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"({|$)" && (f == "" || index($1, f)) { s += $NF } END { printf "%d", s }' "$T/metrics"
}

hdr="| t (s) | RSS (KiB) | fds | threads | results | pipeline drops | batcher drops | subscriber msgs dropped | slow disconnects | cam restarts | reloads ok |"
sep="| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "$hdr" | tee "$OUT"
echo "$sep" | tee -a "$OUT"
declare -a S_T=() S_RSS=() S_FD=() S_TH=() S_RES=()
start=$(date +%s)
cam_restarts=0
next=$((start + SAMPLE_S))
next_kill=$((start + CAM_KILL_S))
status=0
while :; do
	now=$(date +%s)
	# the camera dies (SIGKILL: no RTSP teardown) and is back 3 s later
	if [ "$now" -ge "$next_kill" ]; then
		next_kill=$((next_kill + CAM_KILL_S))
		kill -KILL "$CAM_PID" 2>/dev/null || true
		wait "$CAM_PID" 2>/dev/null || true
		sleep 3
		cam_start
		cam_restarts=$((cam_restarts + 1))
		now=$(date +%s)
	fi
	if [ "$now" -lt "$next" ]; then
		sleep 1
		continue
	fi
	next=$((next + SAMPLE_S))
	kill -0 "$DETD_PID" 2>/dev/null || { echo "soak: detd died" >&2; status=1; break; }
	t=$((now - start))
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DETD_PID/status")
	th=$(awk '/^Threads:/ { print $2 }' "/proc/$DETD_PID/status")
	fds=$(ls "/proc/$DETD_PID/fd" | wc -l)
	curl -sf -m 10 "$URL/metrics" >"$T/metrics" || : >"$T/metrics"
	res=$(metric_sum detd_results_total)
	pdrop=$(metric_sum detd_frames_dropped_total 'reason="pipeline_')
	bdrop=$(metric_sum detd_frames_dropped_total 'reason="batcher_')
	mdrop=$(metric_sum detd_messages_dropped_total)
	slow=$(metric_sum detd_clients_disconnected_total 'slow')
	rok=$(curl -sf -m 10 "$URL/status" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["reloads"]["ok"])' 2>/dev/null || echo "?")
	row="| $t | $rss | $fds | $th | $res | $pdrop | $bdrop | $mdrop | $slow | $cam_restarts | $rok |"
	echo "$row" | tee -a "$OUT"
	S_T+=("$t") S_RSS+=("$rss") S_FD+=("$fds") S_TH+=("$th") S_RES+=("$res")
	[ "$t" -ge "$DURATION" ] && break
done

# Verdict: the smallest of the first three samples after warm-up against the
# smallest of the last three (minima ride out a transient reconnect).
verdict() {
	local -a base=() last=()
	local i n=${#S_T[@]}
	for ((i = 0; i < n; i++)); do [ "${S_T[$i]}" -ge "$WARMUP_S" ] && base+=("$i"); done
	if [ ${#base[@]} -lt 6 ]; then
		echo "soak: too few samples after warm-up (${#base[@]}) for a verdict" >&2
		return 1
	fi
	last=("${base[@]: -3}")
	base=("${base[@]:0:3}")
	min_of() { # ARRAY_NAME idx...
		local -n a=$1
		shift
		local m=
		for i in "$@"; do [ -z "$m" ] || [ "${a[$i]}" -lt "$m" ] && m=${a[$i]}; done
		echo "$m"
	}
	local r0 r1 f0 f1 t0 t1 bad=0
	r0=$(min_of S_RSS "${base[@]}") r1=$(min_of S_RSS "${last[@]}")
	f0=$(min_of S_FD "${base[@]}") f1=$(min_of S_FD "${last[@]}")
	t0=$(min_of S_TH "${base[@]}") t1=$(min_of S_TH "${last[@]}")
	local rlim=$((r0 + RSS_TOL_KIB + r0 * RSS_TOL_PCT / 100))
	echo "after warm-up: RSS $r0 -> $r1 KiB (limit $rlim), fds $f0 -> $f1 (+$FD_TOL), threads $t0 -> $t1 (+$THREAD_TOL)"
	[ "$r1" -le "$rlim" ] || { echo "FAIL: RSS grew" >&2; bad=1; }
	[ "$f1" -le $((f0 + FD_TOL)) ] || { echo "FAIL: descriptors grew" >&2; bad=1; }
	[ "$t1" -le $((t0 + THREAD_TOL)) ] || { echo "FAIL: threads grew" >&2; bad=1; }
	local n_res=${#S_RES[@]}
	[ "${S_RES[$((n_res - 1))]}" -gt "${S_RES[$((n_res - 2))]}" ] || { echo "FAIL: no results in the last interval" >&2; bad=1; }
	return $bad
}
if [ "$status" = 0 ]; then
	verdict | tee -a "$OUT" || status=1
fi
grep -cE ' (error|warn) ' "$T/detd.log" | sed 's/^/detd log warnings+errors: /'
[ "$status" = 0 ] && echo "soak: PASS (${DURATION}s, N=$N streams + 1 camera, M=$M subscribers)" ||
	{ tail -n 30 "$T/detd.log" >&2; echo "soak: FAIL" >&2; }
exit "$status"
