#!/usr/bin/env bash
# Live-view cost: detd's CPU with 0, 1 and 5 MJPEG viewers (and a snapshot
# poller) on the sample video, so "cheap when nobody looks" is a number.
#   bench/view.sh [--build DIR] [--viewers 0,1,5] [--fps 5] [--seconds 20]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build VIEWERS=0,1,5 FPS=5 SECS=20
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--viewers) VIEWERS=$2; shift 2 ;;
	--fps) FPS=$2; shift 2 ;;
	--seconds) SECS=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--viewers LIST] [--fps F] [--seconds S]" >&2; exit 2 ;;
	esac
done
SHARED=${DETD_SHARED_DATA:-../shared/data}
T=$(mktemp -d /tmp/detd-view-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
cat >"$T/d.json" <<JSON
{ "model": { "path": "$PWD/$SHARED/traffic/traffic_model.tflite",
             "labels": "$PWD/$SHARED/traffic/traffic_label_map.pbtxt" },
  "engine": { "min_score": 0.3 }, "http": { "port": 0, "max_viewers": 16, "max_viewer_fps": 30 },
  "ipc": { "path": "$T/d.sock" },
  "streams": [ { "id": "cam0", "uri": "$PWD/$SHARED/traffic/traffic_frames.mp4", "loop": true, "fps": 10 } ] }
JSON
"$BUILD/daemon/detd" --config "$T/d.json" --port-file "$T/port" --log-level warn >"$T/detd.log" 2>&1 &
D=$!
PIDS+=($D)
sleep 3
URL="http://127.0.0.1:$(cat "$T/port")"
hz=$(getconf CLK_TCK)
echo "| MJPEG viewers (${FPS} fps each) | detd CPU % | CPU ms per result | encodes/s | encode ms (mean) | RSS MB |"
echo "| --- | --- | --- | --- | --- | --- |"
for n in ${VIEWERS//,/ }; do
	vp=()
	for _ in $(seq 1 "$n"); do
		curl -s -o /dev/null "$URL/streams/cam0/mjpeg?fps=$FPS" &
		vp+=($!)
	done
	sleep 2
	s0=$(curl -sf "$URL/status")
	t0=$(awk '{print $14 + $15}' "/proc/$D/stat")
	sleep "$SECS"
	t1=$(awk '{print $14 + $15}' "/proc/$D/stat")
	s1=$(curl -sf "$URL/status")
	for p in "${vp[@]+"${vp[@]}"}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	res=$(( $(echo "$s1" | jq .engine.results) - $(echo "$s0" | jq .engine.results) ))
	enc=$(( $(echo "$s1" | jq .view.encodes) - $(echo "$s0" | jq .view.encodes) ))
	rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$D/status")
	awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SECS" -v r="$res" -v e="$enc" -v n="$n" \
		-v em="$(echo "$s1" | jq .view.encode_ms_mean)" -v rss="$rss" 'BEGIN {
		cpu = (b - a) / hz; printf "| %d | %.0f | %.1f | %.1f | %.1f | %s |\n", n, cpu / s * 100,
		r ? cpu * 1000 / r : 0, e / s, em, rss }'
	sleep 1
done
