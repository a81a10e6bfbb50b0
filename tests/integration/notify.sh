#!/usr/bin/env bash
# sd_notify protocol against a real NOTIFY_SOCKET: READY, WATCHDOG, RELOADING/READY, STOPPING.
. "$(dirname "$0")/lib.sh"
LISTEN=${NOTIFY_LISTEN:?}

"$LISTEN" "$T/notify.sock" >"$T/notify.out" &
CHILDREN+=($!)
for _ in $(seq 1 50); do [ -S "$T/notify.sock" ] && break; sleep 0.05; done
[ -S "$T/notify.sock" ] || fail "listener did not start"

write_config "$T/detd.json"
# 200 ms watchdog: detd must ping every 100 ms
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=200000 start_detd "$T/detd.json"
# Poll (up to 5 s) rather than sleep a fixed time: a loaded machine may be slow.
n_wd=0
for _ in $(seq 1 100); do
	n_wd=$(grep -c '^WATCHDOG=1$' "$T/notify.out" || true)
	[ "$n_wd" -ge 3 ] && break
	sleep 0.05
done
[ "$n_wd" -ge 3 ] || fail "expected watchdog pings, got $n_wd: $(cat "$T/notify.out")"
ok "WATCHDOG=1 sent repeatedly"

kill -HUP "$DETD_PID"
wait_log 'reloaded'
sleep 0.1
stop_detd
sleep 0.1

# Order: READY first (with STATUS and MAINPID), RELOADING then READY, STOPPING last.
msgs=$(grep -v '^LISTENING$' "$T/notify.out" | grep -v '^WATCHDOG=1$')
echo "$msgs"
first=$(echo "$msgs" | sed -n 1p)
echo "$first" | grep -q '^READY=1 ' || fail "first message is not READY=1: $first"
echo "$first" | grep -q 'STATUS=running' || fail "READY without STATUS: $first"
echo "$first" | grep -q "MAINPID=[0-9]" || fail "READY without MAINPID: $first"
second=$(echo "$msgs" | sed -n 2p)
third=$(echo "$msgs" | sed -n 3p)
last=$(echo "$msgs" | tail -n 1)
[ "$second" = "RELOADING=1" ] || fail "expected RELOADING=1, got: $second"
echo "$third" | grep -q '^READY=1 STATUS=.*reloaded' || fail "expected READY=1 after reload, got: $third"
[ "$last" = "STOPPING=1" ] || fail "last message is not STOPPING=1: $last"
[ "$(echo "$msgs" | wc -l)" = 4 ] || fail "unexpected messages: $msgs"
# no watchdog ping before READY
first_any=$(grep -v '^LISTENING$' "$T/notify.out" | sed -n 1p)
echo "$first_any" | grep -q '^READY=1' || fail "something before READY: $first_any"
ok "READY, RELOADING/READY, STOPPING in order"

# WATCHDOG_PID naming another process: no pings
: >"$T/notify.out"
NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=100000 WATCHDOG_PID=1 start_detd "$T/detd.json"
sleep 0.4
stop_detd
sleep 0.1
! grep -q '^WATCHDOG=1$' "$T/notify.out" || fail "watchdog pinged although WATCHDOG_PID is another process"
ok "WATCHDOG_PID respected"
