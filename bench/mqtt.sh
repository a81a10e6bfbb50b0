#!/usr/bin/env bash
# MQTT scale-out bench: N streams of the sample video through one detd into a
# local mosquitto broker, one subscriber timestamping every detections message
# on arrival; end-to-end latency = arrival (wall clock) − capture_ns (the
# frame's capture time, wall clock) → p50/p99, and messages/s, at QoS 0 and 1.
#
#   bench/mqtt.sh [--build DIR] [--streams 1,4,8] [--fps 15] [--qos 0,1] [--seconds 20]
#
# Needs: mosquitto, mosquitto_sub, jq, curl; the model and video from
# ../shared/data/traffic (or DETD_SHARED_DATA).  Prints one table row per
# (streams, qos).  Loopback only; everything it starts is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build STREAMS=1,4,8 FPS=15 QOS=0,1 SECONDS_RUN=20
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--streams) STREAMS=$2; shift 2 ;;
	--fps) FPS=$2; shift 2 ;;
	--qos) QOS=$2; shift 2 ;;
	--seconds) SECONDS_RUN=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--streams LIST] [--fps F] [--qos LIST] [--seconds S]" >&2; exit 2 ;;
	esac
done
SHARED=${DETD_SHARED_DATA:-../shared/data}
DETD=$BUILD/daemon/detd
for c in mosquitto mosquitto_sub jq curl; do
	command -v "$c" >/dev/null || { echo "bench/mqtt.sh: $c is not installed" >&2; exit 1; }
done
T=$(mktemp -d /tmp/detd-mqtt-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n' "$PORT" >"$T/m.conf"
mosquitto -c "$T/m.conf" >"$T/broker.log" 2>&1 &
PIDS+=($!)
sleep 0.5

echo "| streams × fps | QoS | messages/s | latency p50 ms | p99 ms | max ms | mqtt dropped | detd CPU % |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for n in ${STREAMS//,/ }; do
	for q in ${QOS//,/ }; do
		streams=""
		for i in $(seq 0 $((n - 1))); do
			streams+="${streams:+,}{\"id\":\"cam$i\",\"uri\":\"$PWD/$SHARED/traffic/traffic_frames.mp4\",\"loop\":true,\"fps\":$FPS}"
		done
		cat >"$T/d.json" <<JSON
{ "model": { "path": "$PWD/$SHARED/traffic/traffic_model.tflite",
             "labels": "$PWD/$SHARED/traffic/traffic_label_map.pbtxt" },
  "engine": { "min_score": 0.3, "threads": 2, "max_batch": 4 },
  "http": { "port": 0 }, "ipc": { "path": "$T/d.sock" },
  "mqtt": { "enabled": true, "broker": "mqtt://127.0.0.1:$PORT", "qos": $q,
            "topic_prefix": "bench", "stats_interval_s": 0 },
  "streams": [ $streams ] }
JSON
		rm -f "$T/port" "$T/sub.txt"
		mosquitto_sub -h 127.0.0.1 -p "$PORT" -q "$q" -t 'bench/+/detections' -F '%U %p' >"$T/sub.txt" &
		SUB=$!
		"$DETD" --config "$T/d.json" --port-file "$T/port" --log-level warn >"$T/detd.log" 2>&1 &
		D=$!
		sleep 3 # warm-up: pipelines start, first batches
		: >"$T/sub.txt"
		t0=$(awk '{print $14 + $15}' "/proc/$D/stat")
		sleep "$SECONDS_RUN"
		t1=$(awk '{print $14 + $15}' "/proc/$D/stat")
		dropped=$(curl -sf "http://127.0.0.1:$(cat "$T/port")/status" | jq '.mqtt.dropped + .mqtt.lost')
		kill "$SUB" "$D"
		wait "$SUB" "$D" 2>/dev/null || true
		hz=$(getconf CLK_TCK)
		cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v s="$SECONDS_RUN" 'BEGIN{printf "%.0f", (b-a)/hz/s*100}')
		# arrival − capture per message, in ms
		awk '{ t=$1; sub(/^[^ ]+ /, ""); print t }' "$T/sub.txt" >"$T/arrive"
		cut -d' ' -f2- "$T/sub.txt" | jq -r '.capture_ns' >"$T/capture"
		paste "$T/arrive" "$T/capture" | awk '{ printf "%.3f\n", ($1 - $2 / 1e9) * 1000 }' | sort -n >"$T/lat"
		cnt=$(wc -l <"$T/lat")
		if [ "$cnt" -eq 0 ]; then
			echo "| $n × $FPS | $q | 0 | - | - | - | $dropped | $cpu |"
			continue
		fi
		p50=$(awk -v n="$cnt" 'NR == int(n * 0.50) + 1 {print; exit}' "$T/lat")
		p99=$(awk -v n="$cnt" 'NR == int(n * 0.99) + 1 {print; exit}' "$T/lat")
		max=$(tail -1 "$T/lat")
		rate=$(awk -v c="$cnt" -v s="$SECONDS_RUN" 'BEGIN{printf "%.1f", c/s}')
		echo "| $n × $FPS | $q | $rate | $p50 | $p99 | $max | $dropped | $cpu |"
	done
done
