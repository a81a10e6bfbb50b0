#!/usr/bin/env bash
# The watchdog pings only while the data path is alive, against a real
# NOTIFY_SOCKET listener: with a working inference worker WATCHDOG=1 keeps
# coming; with a worker stuck in a batch (engine.test_delay_ms) longer than
# the limit (half of WATCHDOG_USEC) the pings stop, STATUS= says why and
# /status shows the stalled worker.
. "$(dirname "$0")/lib.sh"
LISTEN=${NOTIFY_LISTEN:?}
VIDEO="$SHARED/traffic/traffic_frames.mp4"
[ -f "$VIDEO" ] || { echo "SKIP: $VIDEO missing"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl missing"; exit 77; }

"$LISTEN" "$T/notify.sock" >"$T/notify.out" &
CHILDREN+=($!)
for _ in $(seq 1 50); do [ -S "$T/notify.sock" ] && break; sleep 0.05; done
[ -S "$T/notify.sock" ] || fail "listener did not start"

# config FILE TEST_DELAY_MS [DEADLINE_MS [LOOP]]: one stream of the sample video
config() {
	cat >"$1" <<JSON
{
  "log": { "level": "info" },
  "model": { "path": "$MODEL", "labels": "$LABELS" },
  "engine": { "workers": 1, "test_delay_ms": $2, "deadline_ms": ${3:-0} },
  "http": { "address": "127.0.0.1", "port": 0 },
  "ipc": { "enabled": false, "path": "$T/detd.sock" },
  "streams": [ { "id": "cam0", "type": "uri", "uri": "$VIDEO", "loop": ${4:-true}, "fps": 5 } ]
}
JSON
}
pings() { grep -ac '^WATCHDOG=1$' "$T/notify.out" || true; }
engine_status() { curl -sf "$URL/status" | /usr/bin/python3 -c \
	'import json,sys; e=json.load(sys.stdin)["engine"]; print(e["batches"], e["worker_liveness"]["stalled"], e["worker_liveness"]["busy_ms"][0], e["worker_liveness"]["stall_limit_ms"])'; }
# kill_detd: a stuck batch cannot be interrupted, so no graceful-stop timing here
kill_detd() {
	kill -KILL "$DETD_PID" 2>/dev/null || true
	wait "$DETD_PID" 2>/dev/null || true
	DETD_PID=""
}

# 1. Healthy: 6 s watchdog → a tick every 3 s; with a 2.5 s deadline a batch
# may run max(3 s, 2 x 2.5 s) = 5 s (room for a sanitizer build on a loaded
# machine).  Batches complete and the pings go on; nothing is reported hung.
config "$T/ok.json" 0 2500
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=6000000 start_detd "$T/ok.json"
for _ in $(seq 1 400); do
	[ "$(pings)" -ge 3 ] && break
	kill -0 "$DETD_PID" 2>/dev/null || fail "detd exited"
	sleep 0.05
done
[ "$(pings)" -ge 3 ] || fail "healthy daemon sent $(pings) pings: $(cat "$T/notify.out")"
st=$(engine_status) || fail "no engine.worker_liveness in /status"
read -r batches stalled busy limit <<<"$st"
[ "$batches" -gt 0 ] || fail "no batch ran in the healthy case"
[ "$stalled" = False ] || fail "a healthy worker reported stalled (busy $busy ms)"
[ "$limit" = 5000 ] || fail "stall limit $limit ms, expected 5000 (2 x deadline_ms)"
! grep -a -q 'STATUS=hung' "$T/notify.out" || fail "healthy daemon reported hung"
! grep -q 'watchdog:' "$T/detd.log" || fail "healthy daemon logged a watchdog error"
ok "healthy: $(pings) pings, $batches batches, no stall"
stop_detd

# 2. Stuck: 2 s watchdog → limit 1 s; each batch takes 20 s.
: >"$T/notify.out"
: >"$T/detd.log"
config "$T/stuck.json" 20000
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000 start_detd "$T/stuck.json"
for _ in $(seq 1 200); do
	grep -a -q 'STATUS=hung' "$T/notify.out" && break
	kill -0 "$DETD_PID" 2>/dev/null || fail "detd exited"
	sleep 0.05
done
grep -a -q 'STATUS=hung: inference worker 0 busy for [0-9]* ms (limit 1000 ms)' "$T/notify.out" ||
	fail "no STATUS=hung within 10 s: $(cat "$T/notify.out")"
n0=$(pings)
st=$(engine_status) || fail "no engine.worker_liveness in /status"
read -r batches stalled busy limit <<<"$st"
[ "$stalled" = True ] || fail "/status does not show the stalled worker (busy $busy ms)"
[ "$busy" -ge 1000 ] || fail "/status busy_ms $busy < the 1000 ms limit"
# Three more ticks (one a second): none may ping while the batch hangs.
sleep 3
n1=$(pings)
[ "$n1" = "$n0" ] || fail "pings went on with a stuck worker ($n0 → $n1)"
# the pings that came before were sent before the stall was noticed
last_wd=$(grep -a -n '^WATCHDOG=1$' "$T/notify.out" | tail -n 1 | cut -d: -f1)
hung_at=$(grep -a -n 'STATUS=hung' "$T/notify.out" | head -n 1 | cut -d: -f1)
[ -z "$last_wd" ] || [ "$last_wd" -lt "$hung_at" ] || fail "a ping after STATUS=hung"
[ "$(grep -c 'watchdog: inference worker 0 busy' "$T/detd.log")" = 1 ] ||
	fail "the stall must be logged exactly once"
curl -sf "$URL/healthz" >/dev/null || fail "the loop itself must stay responsive"
ok "stuck worker: pings stopped after $n0, STATUS=hung, /status stalled (busy $busy ms)"
kill_detd

# 3. Recovery: batches of 2.5 s (limit 1 s) on a video that ends: once the
# last frame is done the worker is idle, the pings resume and STATUS= is the
# normal one again (systemd would have restarted us by then in real life;
# this is the path for a stall shorter than WatchdogSec).
: >"$T/notify.out"
: >"$T/detd.log"
config "$T/short.json" 2500 0 false
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000 start_detd "$T/short.json"
recovered() { grep -q 'watchdog: the data path recovered' "$T/detd.log"; }
for _ in $(seq 1 400); do
	recovered && break
	kill -0 "$DETD_PID" 2>/dev/null || fail "detd exited"
	sleep 0.05
done
recovered || fail "no recovery logged: $(cat "$T/notify.out")"
grep -a -q 'STATUS=hung' "$T/notify.out" || fail "the 2.5 s batches were not reported"
hung_at=$(grep -a -n 'STATUS=hung' "$T/notify.out" | tail -n 1 | cut -d: -f1)
tail -n +"$hung_at" "$T/notify.out" | grep -a -q '^STATUS=running' || fail "STATUS= not restored"
n0=$(pings)
for _ in $(seq 1 100); do
	[ "$(pings)" -gt "$n0" ] && break
	sleep 0.05
done
[ "$(pings)" -gt "$n0" ] || fail "pings did not resume"
ok "recovery: pings resumed, STATUS= restored"
stop_detd
