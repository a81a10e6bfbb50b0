#!/usr/bin/env bash
# The MQTT sink against a real broker (Debian's mosquitto on a free port in
# the test's temp dir): topics and payloads, retained state and the Last Will
# seen by a second subscriber, the broker killed and restarted mid-run
# (bounded queue, counters that add up, no crash), a refused password (the
# daemon keeps detecting and serving), two nodes in one broker.
. "$(dirname "$0")/lib.sh"

for c in mosquitto mosquitto_sub mosquitto_pub mosquitto_passwd jq curl openssl; do
	command -v "$c" >/dev/null || { echo "SKIP: $c not installed"; exit 77; }
done
[ -f "$MODEL" ] || { echo "SKIP: no model at $MODEL"; exit 77; }
VIDEO="$SHARED/traffic/traffic_frames.mp4"

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_broker NAME PORT [ANONYMOUS(true|false) [extra config lines]]
declare -A BROKER_PIDS=()
start_broker() {
	local name=$1 port=$2 anon=${3:-true} extra=${4:-}
	printf 'listener %s 127.0.0.1\nallow_anonymous %s\npersistence false\n%s\n' \
		"$port" "$anon" "$extra" >"$T/$name.conf"
	mosquitto -c "$T/$name.conf" >>"$T/$name.log" 2>&1 &
	BROKER_PIDS[$name]=$!
	CHILDREN+=($!)
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	fail "broker $name did not listen on $port"
}

# node_config FILE ID SOCK MQTT_JSON
node_config() {
	cat >"$1" <<JSON
{
  "model": { "path": "$MODEL", "labels": "$LABELS" },
  "engine": { "min_score": 0.3 },
  "http": { "address": "127.0.0.1", "port": 0 },
  "ipc": { "path": "$3" },
  "mqtt": $4,
  "streams": [ { "id": "cam0", "uri": "$VIDEO", "loop": true, "fps": 10 } ]
}
JSON
}

# A second daemon next to lib.sh's one: start_node NAME CONFIG → NODE_URL[NAME]
declare -A NODE_PIDS=() NODE_URLS=()
start_node() {
	local name=$1 cfg=$2
	"$DETD" --config "$cfg" --port-file "$T/$name.port" >>"$T/$name.log" 2>&1 &
	NODE_PIDS[$name]=$!
	CHILDREN+=($!)
	for _ in $(seq 1 100); do
		[ -s "$T/$name.port" ] && break
		kill -0 "${NODE_PIDS[$name]}" 2>/dev/null || { cat "$T/$name.log" >&2; fail "$name exited"; }
		sleep 0.05
	done
	[ -s "$T/$name.port" ] || fail "$name did not write its port file"
	NODE_URLS[$name]="http://127.0.0.1:$(cat "$T/$name.port")"
}
mq() { curl -sf "${NODE_URLS[$1]}/status" | jq -c ".mqtt$2"; }
mq_is() { [ "$(mq "$1" "$2")" = "$3" ]; }
mq_gt() { [ "$(mq "$1" "$2")" -gt "$3" ]; }

# wait_for CMD... : retry a condition for up to 15 s
wait_for() {
	for _ in $(seq 1 150); do
		if "$@"; then return 0; fi
		sleep 0.1
	done
	return 1
}
lines() { [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -ge "$3" ]; }

# The test refuses to run against a build without MQTT, visibly.
node_config "$T/probe.json" x "$T/p.sock" '{ "enabled": true }'
if "$DETD" --check-config "$T/probe.json" 2>&1 | grep -q "built without MQTT"; then
	echo "SKIP: detd built without libmosquitto"
	exit 77
fi

BPORT=$(free_port)
start_broker b1 "$BPORT"
BROKER="mqtt://127.0.0.1:$BPORT"

# ---- 1. topics and payloads ---------------------------------------------------
mosquitto_sub -h 127.0.0.1 -p "$BPORT" -v -t 'it/#' -t 'ha/#' -T 'it/+/+/snapshot' >"$T/sub1.txt" 2>&1 &
CHILDREN+=($!)
sleep 0.3
node_config "$T/a.json" a "$T/a.sock" "{ \"enabled\": true, \"broker\": \"$BROKER\",
  \"topic_prefix\": \"it/nodeA\", \"client_id\": \"it-nodeA\", \"qos\": 1,
  \"queue_messages\": 20, \"stats_interval_s\": 1, \"ha_discovery\": true, \"ha_prefix\": \"ha\",
  \"reconnect_min_s\": 0.2, \"reconnect_max_s\": 1 }"
start_node a "$T/a.json"
wait_for lines "$T/sub1.txt" '^it/nodeA/cam0/detections ' 10 || fail "no detections on MQTT"
wait_for lines "$T/sub1.txt" '^it/nodeA/stats ' 1 || fail "no stats on MQTT"

det=$(grep -m1 '^it/nodeA/cam0/detections ' "$T/sub1.txt" | cut -d' ' -f2-)
echo "$det" | jq -e '.type == "detections" and .protocol == 1 and .stream == "cam0" and
  (.seq | type) == "number" and (.node | type) == "string" and .width == 960 and
  (.objects | type) == "array" and (.capture_ns | type) == "number"' >/dev/null ||
	fail "detections payload: $det"
# the same object schema as the socket's detections message
echo "$det" | jq -e '[.objects[] | has("label") and has("class_id") and has("score") and
  has("box") and has("box_norm")] | all' >/dev/null || fail "object schema: $det"
ok "detections: topic it/nodeA/cam0/detections, protocol 1 payload"

grep -qE '^it/nodeA/cam0/(sedan|pickup_suv_van|large_veh_bus) [0-9]+$' "$T/sub1.txt" ||
	fail "no label count topic"
grep -qE '^it/nodeA/cam0/occupied (ON|OFF)$' "$T/sub1.txt" || fail "no occupied topic"
grep -qE '^it/nodeA/cam0/state running$' "$T/sub1.txt" || fail "no stream state topic"
grep -m1 '^it/nodeA/stats ' "$T/sub1.txt" | cut -d' ' -f2- |
	jq -e '.mqtt.connected == true and (.engine | type) == "object"' >/dev/null ||
	fail "stats payload"
ok "label counts, occupied, state and stats topics"


cfg=$(grep -m1 '^ha/sensor/.*/config ' "$T/sub1.txt" | cut -d' ' -f2-)
echo "$cfg" | jq -e '(.state_topic | startswith("it/nodeA/cam0/")) and
  .availability_topic == "it/nodeA/status" and .payload_not_available == "offline" and
  (.unique_id | length) > 0 and (.device.identifiers | length) == 1' >/dev/null ||
	fail "HA sensor discovery: $cfg"
grep -q '^ha/binary_sensor/.*_cam0_occupied/config ' "$T/sub1.txt" || fail "no HA binary sensor"
ok "Home Assistant discovery: sensor per label, binary sensor per stream, availability = LWT"

# ---- 2. retained state for a subscriber that comes later -----------------------
ret=$(mosquitto_sub -h 127.0.0.1 -p "$BPORT" -v --retained-only -W 2 -t 'it/nodeA/#' -T 'it/+/+/snapshot' 2>/dev/null || true)
echo "$ret" | grep -qx 'it/nodeA/status online' || fail "status not retained: $ret"
echo "$ret" | grep -qE '^it/nodeA/cam0/(sedan|pickup_suv_van|large_veh_bus) [0-9]+$' ||
	fail "counts not retained: $ret"
echo "$ret" | grep -q 'detections' && fail "detections must not be retained"
ok "retained: status online, per-label counts, no detections"

# ---- 3. broker killed and restarted mid-run -------------------------------------
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/${NODE_PIDS[a]}/status")
last_seq=$(grep '^it/nodeA/cam0/detections ' "$T/sub1.txt" | tail -1 | cut -d' ' -f2- | jq .seq)
kill -TERM "${BROKER_PIDS[b1]}"
wait "${BROKER_PIDS[b1]}" 2>/dev/null || true
# 10 fps fills the queue of 20 in about two seconds (more under sanitizers)
for _ in 1 2 3; do wait_for mq_gt a .dropped 0 && break; done
[ "$(curl -s -o /dev/null -w '%{http_code}' "${NODE_URLS[a]}/healthz")" = 200 ] ||
	fail "healthz during the broker outage"
st=$(curl -sf "${NODE_URLS[a]}/status")
echo "$st" | jq -e '.mqtt.connected == false and .mqtt.queued <= 20 and .mqtt.dropped > 0 and
  (.mqtt.last_error | type) == "string"' >/dev/null || fail "status during outage: $(echo "$st" | jq -c .mqtt)"
echo "$st" | jq -e '.engine.results > 0' >/dev/null || fail "engine stopped during the outage"
ok "broker down: daemon serving, queue bounded at 20, drops counted ($(echo "$st" | jq .mqtt.dropped))"

start_broker b1 "$BPORT"
mosquitto_sub -h 127.0.0.1 -p "$BPORT" -v -t 'it/#' -T 'it/+/+/snapshot' >"$T/sub2.txt" 2>&1 &
CHILDREN+=($!)
wait_for mq_is a .connected true || fail "no reconnect: $(mq a '')"
wait_for lines "$T/sub2.txt" '^it/nodeA/cam0/detections ' 5 || fail "detections did not resume"
[ "$(mq a .reconnects)" -ge 1 ] || fail "reconnects not counted"
new_seq=$(grep '^it/nodeA/cam0/detections ' "$T/sub2.txt" | tail -1 | cut -d' ' -f2- | jq .seq)
[ "$new_seq" != "$last_seq" ] || fail "no new results after the restart"
# the accounting identity holds on one snapshot
s=$(curl -sf "${NODE_URLS[a]}/status" | jq -c .mqtt)
echo "$s" | jq -e '.offered == .published + .dropped + .lost + .queued + .inflight' >/dev/null ||
	fail "counters do not add up: $s"
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/${NODE_PIDS[a]}/status")
# (not under a sanitizer: quarantine and shadow memory stay resident; LeakSanitizer checks instead)
if ! sanitizer_build; then
	[ "$rss_after" -lt $((rss_before + 16384)) ] || fail "RSS grew from $rss_before to $rss_after kB"
fi
curl -sf "${NODE_URLS[a]}/metrics" | grep -q '^detd_mqtt_reconnects_total' || fail "no mqtt metrics"
ok "broker restarted: reconnected, messages resume, offered = published+dropped+lost+queued+inflight ($s)"

# ---- 4. two nodes, one broker ----------------------------------------------------
node_config "$T/b.json" b "$T/b.sock" "{ \"enabled\": true, \"broker\": \"$BROKER\",
  \"topic_prefix\": \"it/nodeB\", \"client_id\": \"it-nodeB\", \"only_with_objects\": true,
  \"min_score\": 0.35, \"stats_interval_s\": 0, \"snapshot_interval_s\": 1 }"
start_node b "$T/b.json"
wait_for lines "$T/sub2.txt" '^it/nodeB/cam0/detections ' 5 || fail "node B publishes nothing"
grep '^it/nodeB/cam0/detections ' "$T/sub2.txt" | cut -d' ' -f2- |
	jq -e -s 'all(.[]; (.objects | length) > 0 and all(.objects[]; .score >= 0.35))' >/dev/null ||
	fail "node B filters (only_with_objects, min_score)"
lines "$T/sub2.txt" '^it/nodeA/cam0/detections ' 6 || fail "node A stopped publishing"
# the snapshot topic: a retained JPEG of the latest frame with its boxes
timeout 20 mosquitto_sub -h 127.0.0.1 -p "$BPORT" -C 1 -N -t 'it/nodeB/cam0/snapshot' >"$T/snap.jpg" ||
	fail "no snapshot on MQTT"
[ "$(head -c 2 "$T/snap.jpg" | od -An -tx1 | tr -d ' ')" = ffd8 ] || fail "snapshot is not a JPEG"
[ "$(stat -c %s "$T/snap.jpg")" -gt 10000 ] || fail "snapshot too small"
ok "snapshot topic: a $(stat -c %s "$T/snap.jpg")-byte JPEG every mqtt.snapshot_interval_s"
ok "two nodes publish into one broker under it/nodeA and it/nodeB; node B's filters hold"

# ---- 5. Last Will on a crash, "offline" on a clean stop --------------------------
mosquitto_sub -h 127.0.0.1 -p "$BPORT" -v -t 'it/+/status' -T 'it/+/+/snapshot' >"$T/sub3.txt" 2>&1 &
CHILDREN+=($!)
wait_for lines "$T/sub3.txt" '^it/nodeA/status online' 1 || fail "no status for node A"
kill -KILL "${NODE_PIDS[a]}"
wait_for lines "$T/sub3.txt" '^it/nodeA/status offline' 1 || fail "no Last Will after a crash"
kill -TERM "${NODE_PIDS[b]}"
wait "${NODE_PIDS[b]}" || fail "node B did not stop cleanly"
wait_for lines "$T/sub3.txt" '^it/nodeB/status offline' 1 || fail "no offline at a clean stop"
ok "Last Will: offline after kill -9; a clean stop says offline itself"

# ---- 6. refused credentials: the daemon keeps working --------------------------
APORT=$(free_port)
mosquitto_passwd -b -c "$T/pw" detd right-password >/dev/null 2>&1 || fail "mosquitto_passwd"
chmod 0600 "$T/pw"
# as root, mosquitto drops to its own user, which cannot read our temp dir
start_broker b2 "$APORT" false "$(printf 'password_file %s\nuser %s' "$T/pw" "$(id -un)")"
echo "wrong-secret-42" >"$T/pass"
node_config "$T/c.json" c "$T/c.sock" "{ \"enabled\": true, \"broker\": \"mqtt://127.0.0.1:$APORT\",
  \"username\": \"detd\", \"password_file\": \"$T/pass\", \"reconnect_min_s\": 0.2, \"reconnect_max_s\": 1 }"
start_node c "$T/c.json"
wait_for mq_is c .state '"refused"' || fail "refused auth not reported: $(mq c '')"
mq c .last_error | grep -qi 'not authori' || fail "reason: $(mq c .last_error)"
results_c() { curl -sf "${NODE_URLS[c]}/status" | jq .engine.results; }
r1=$(results_c)
more_results() { [ "$(results_c)" -gt "$r1" ]; }
wait_for more_results || fail "detection stopped while the broker refuses us"
curl -sf "${NODE_URLS[c]}/detections/latest?stream=cam0" | jq -e '.type == "detections"' >/dev/null ||
	fail "HTTP not serving detections"
grep -q "wrong-secret-42" "$T/c.log" && fail "the password appears in the log"
ok "wrong password: state refused ('$(mq c .last_error)'), detection and HTTP go on, password never logged"

# ---- 7. mqtts:// with a CA of our own ----------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=detd-test-ca" \
	-keyout "$T/ca.key" -out "$T/ca.pem" >/dev/null 2>&1 || fail "openssl CA"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$T/srv.key" \
	-out "$T/srv.csr" >/dev/null 2>&1 || fail "openssl CSR"
printf 'subjectAltName=IP:127.0.0.1\n' >"$T/san.ext"
openssl x509 -req -in "$T/srv.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
	-days 2 -extfile "$T/san.ext" -out "$T/srv.pem" >/dev/null 2>&1 || fail "openssl sign"
SPORT=$(free_port)
start_broker b3 "$SPORT" true "$(printf 'cafile %s\ncertfile %s\nkeyfile %s\nuser %s' \
	"$T/ca.pem" "$T/srv.pem" "$T/srv.key" "$(id -un)")"
mosquitto_sub -h 127.0.0.1 -p "$SPORT" --cafile "$T/ca.pem" -v -t 'tls/#' >"$T/sub4.txt" 2>&1 &
CHILDREN+=($!)
node_config "$T/d.json" d "$T/d.sock" "{ \"enabled\": true,
  \"broker\": \"mqtts://127.0.0.1:$SPORT\", \"ca_file\": \"$T/ca.pem\", \"topic_prefix\": \"tls/nodeD\" }"
start_node d "$T/d.json"
wait_for mq_is d .connected true || fail "no TLS connection: $(mq d '')"
wait_for lines "$T/sub4.txt" '^tls/nodeD/cam0/detections ' 3 || fail "nothing over TLS"
ok "mqtts:// with ca_file: connected, detections delivered"
