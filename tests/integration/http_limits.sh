#!/usr/bin/env bash
# Issue 15 #1: the HTTP connection policy against a descriptor flood and a
# trickling client.  The real daemon runs under RLIMIT_NOFILE 128 with a
# live test stream; a client opens more connections (TCP and Unix socket)
# than the daemon has descriptors and keeps them idle.  The daemon must not
# abort or spin on accept() errors, must cut the idle ones at
# http.idle_timeout_s, answer /healthz afterwards, and cut a client that
# sends one header byte every 300 ms at the absolute header_timeout_s.
source "$(dirname "$0")/lib.sh"
command -v prlimit >/dev/null || { echo "SKIP: prlimit (util-linux) missing"; exit 77; }

write_config "$T/detd.json"
jq '.http.max_connections = 1000 | .http.max_connections_per_ip = 1000
    | .http.header_timeout_s = 2 | .http.idle_timeout_s = 2
    | .ipc.max_clients = 4096
    | .streams = [{"id":"cam0","type":"test","fps":2}]' "$T/detd.json" >"$T/c.json"
REAL_DETD=$DETD
cat >"$T/detd-lowfd" <<SH
#!/bin/sh
exec prlimit --nofile=128:128 "$REAL_DETD" "\$@"
SH
chmod +x "$T/detd-lowfd"
DETD="$T/detd-lowfd" start_detd "$T/c.json"
wait_log 'stream .cam0.: starting → live' 200
grep -q 'http.max_connections 1000 is over half the descriptor limit' "$T/detd.log" ||
	fail "the connection cap was not clamped to the descriptor limit"

/usr/bin/python3 - "$PORT" "$T/detd.sock" "$T/flood.json" <<'PY' || fail "flood client failed"
import json, resource, socket, sys, time
port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
unix, tcp = [], []
# non-blocking connects: once the daemon stops accepting, its backlog fills
for _ in range(150):   # Unix-socket clients eat the daemon's descriptors...
    s = socket.socket(socket.AF_UNIX); s.setblocking(False)
    if s.connect_ex(path) == 0:
        unix.append(s)
    else:
        s.close()
for _ in range(400):   # ...and then idle HTTP connections, far more than it has
    s = socket.socket(); s.setblocking(False)
    s.connect_ex(("127.0.0.1", port)); tcp.append(s)
t0 = time.monotonic()
time.sleep(1.0)
for s in unix:
    s.close()
def connected(s):
    try:
        s.getpeername()
        return True
    except OSError:
        return False
pending = [s for s in tcp if not connected(s)]   # never got past the SYN backlog
for s in pending:
    s.close()
tcp = [s for s in tcp if s not in pending]
# every idle connection must be closed by the server (idle timeout 2 s, or refused)
closed = set()
while time.monotonic() - t0 < 20 and len(closed) < len(tcp):
    for i, s in enumerate(tcp):
        if i in closed:
            continue
        try:
            if s.recv(4096) == b"":
                closed.add(i)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(i)
    time.sleep(0.05)
json.dump({"unix": len(unix), "tcp": len(tcp), "closed_by_server": len(closed),
           "seconds": round(time.monotonic() - t0, 2)}, open(out, "w"))
PY
kill -0 "$DETD_PID" 2>/dev/null || fail "detd died under the descriptor flood"
echo "flood: $(cat "$T/flood.json")"
jq -e '.closed_by_server == .tcp' "$T/flood.json" >/dev/null ||
	fail "idle connections left open: $(cat "$T/flood.json") $(curl -s --max-time 5 "$URL/status" | jq -c .http)"
code=$(curl -s -o "$T/out" -w '%{http_code}' --max-time 5 "$URL/healthz" || true)
[ "$code" = 200 ] || fail "/healthz after the flood -> $code"
# libevent logs every failed accept() unless someone handles it: the old
# daemon wrote ~65,000 lines a second here
n=$(grep -c -i 'accept' "$T/detd.log" || true)
[ "$n" -lt 50 ] || fail "$n accept() error lines: the listener spins"
curl -s "$URL/status" >"$T/status"
jq -e '.http.refused + .http.timed_out > 0' "$T/status" >/dev/null ||
	fail "no refused or timed-out connections counted: $(jq -c .http "$T/status")"
ok "flood of 550 idle connections under RLIMIT_NOFILE 128: alive, idle ones cut, /healthz ok ($(jq -c .http "$T/status"))"

# a trickle: the first bytes of a request, then one header byte every 300 ms
/usr/bin/python3 - "$PORT" "$T/trickle.json" <<'PY' || fail "trickle client failed"
import json, socket, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.settimeout(0.3)
t0 = time.monotonic()
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
cut = None
while time.monotonic() - t0 < 10:
    try:
        s.sendall(b"X")
        if s.recv(4096) == b"":
            cut = time.monotonic() - t0
            break
    except socket.timeout:
        pass
    except OSError:
        cut = time.monotonic() - t0
        break
json.dump({"cut_after_s": cut}, open(out, "w"))
PY
echo "trickle: $(cat "$T/trickle.json")"
jq -e '.cut_after_s != null and .cut_after_s >= 1.5 and .cut_after_s < 4.5' "$T/trickle.json" \
	>/dev/null || fail "trickle client not cut at the 2 s header deadline: $(cat "$T/trickle.json")"
ok "a trickling client is cut at the absolute header deadline"
stop_detd
