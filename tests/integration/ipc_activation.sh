#!/usr/bin/env bash
# Socket activation of the subscriber socket: systemd-socket-activate passes a
# listening Unix socket named "ipc"; detd serves protocol 1 on it instead of
# creating ipc.path, and leaves the file alone when it stops.
. "$(dirname "$0")/lib.sh"
command -v systemd-socket-activate >/dev/null || { echo "systemd-socket-activate missing"; exit 77; }
DETCTL=${DETCTL:?}

write_config "$T/detd.json"
systemd-socket-activate -l "$T/activated.sock" --fdname=ipc \
	"$DETD" --config "$T/detd.json" --port-file "$T/port" >>"$T/detd.log" 2>&1 &
DETD_PID=$!
for _ in $(seq 1 100); do [ -S "$T/activated.sock" ] && break; sleep 0.05; done
[ -S "$T/activated.sock" ] || fail "systemd-socket-activate did not listen"

# the first connection starts detd, which greets it on the inherited socket
out=$(timeout 10 "$DETCTL" --socket "$T/activated.sock" status) || fail "no answer on the activated socket"
echo "$out" | grep -q '^detd .*protocol 1' || fail "status: $out"
grep -q 'listening on the inherited socket' "$T/detd.log" || fail "inherited fd not used"
[ ! -e "$T/detd.sock" ] || fail "created ipc.path although a socket was passed"
ok "protocol 1 on the inherited socket"
stop_detd
[ -S "$T/activated.sock" ] || fail "removed the socket file it does not own"
ok "stopped; the activated socket file is left to its owner"
