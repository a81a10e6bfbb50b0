#!/usr/bin/env bash
# Socket activation: systemd-socket-activate passes a listening socket named
# "http"; detd serves on it instead of binding its configured port.
. "$(dirname "$0")/lib.sh"
command -v systemd-socket-activate >/dev/null || { echo "systemd-socket-activate missing"; exit 77; }

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

write_config "$T/detd.json"
for attempt in 1 2 3; do
	APORT=$(free_port)
	systemd-socket-activate -l "127.0.0.1:$APORT" --fdname=http \
		"$DETD" --config "$T/detd.json" --port-file "$T/port" >>"$T/detd.log" 2>&1 &
	DETD_PID=$!
	sleep 0.3
	kill -0 "$DETD_PID" 2>/dev/null && break
	wait "$DETD_PID" || true
	DETD_PID=""
done
[ -n "$DETD_PID" ] || fail "systemd-socket-activate did not start"

# The first connection makes systemd-socket-activate exec detd with the socket.
body=$(curl -sf --max-time 5 "http://127.0.0.1:$APORT/status") || fail "no answer on the activated socket"
[ "$(json_get "$body" 'd["http_port"]')" = "$APORT" ] || fail "served on the wrong port: $body"
grep -q 'inherited socket fd 3 named "http"' "$T/detd.log" || fail "inherited fd not logged"
grep -q "listening on 127.0.0.1:$APORT (socket activation)" "$T/detd.log" || fail "not using the inherited fd"
[ "$(cat "$T/port")" = "$APORT" ] || fail "port file: $(cat "$T/port")"
curl -sf "http://127.0.0.1:$APORT/healthz" >/dev/null || fail "/healthz on the activated socket"
ok "served on the inherited socket"
stop_detd
ok "stopped"
