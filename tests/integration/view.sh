#!/usr/bin/env bash
# The live view with the real daemon on the sample video: snapshots (a valid
# JPEG of the source size, boxes drawn where the published objects are, the
# frame the engine saw), ETag/304, the MJPEG stream, a viewer that never
# reads (frames dropped and counted, then cut; no growth), the viewer cap,
# detctl snapshot, and the web page in headless Chromium.
. "$(dirname "$0")/lib.sh"

for c in curl jq gst-launch-1.0; do
	command -v "$c" >/dev/null || { echo "SKIP: $c not installed"; exit 77; }
done
VIDEO="$SHARED/traffic/traffic_frames.mp4"
[ -f "$MODEL" ] && [ -f "$VIDEO" ] || { echo "SKIP: no model/video in $SHARED"; exit 77; }

# still0 plays the 20-frame video once: its last result stays the latest,
# so every request below is about one and the same frame.  live0 loops.
write_config "$T/d.json"
mkcfg() {
	jq --arg v "$VIDEO" --argjson fps "$1" '.http.max_viewers = 3 | .http.max_viewer_fps = 10 |
	   .ipc.slow_client_timeout_s = 2 | .engine.min_score = 0.3 |
	   .streams = [{"id":"still0","uri":$v,"fps":$fps},{"id":"live0","uri":$v,"loop":true,"fps":10}]' \
		"$T/d.json" >"$T/d2.json"
}
mkcfg 10
start_detd "$T/d2.json"

# Nobody has looked yet: frames carry no pictures (still0 ends without one).
for _ in $(seq 1 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/streams/live0/snapshot.jpg")
	[ "$code" = 404 ] || break
	sleep 0.1
done
# The first request asks for pictures and waits for the next result that
# has one; then still0 is played again (a changed stream restarts on SIGHUP).
[ "$code" = 200 ] || [ "$code" = 503 ] || fail "first snapshot of live0: $code"
mkcfg 9
kill -HUP "$DETD_PID"
for _ in $(seq 1 100); do
	code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/streams/live0/snapshot.jpg")
	[ "$code" = 200 ] && break
	sleep 0.1
done
[ "$code" = 200 ] || fail "no snapshot of live0 after asking ($code)"
ok "the first snapshot request starts keeping pictures; the next frame has one"
sleep 1

# wait until the reload has made a new still0, its play has ended and the
# batcher holds none of its frames (under a sanitizer the last results trail
# the pipeline's end by a second or more), then until no new result comes for
# a second
played_again() {
	[ "$(curl -sf "$URL/status" | jq '.reloads.ok')" -ge 1 ] &&
		curl -sf "$URL/streams/still0" | jq -e '.pipeline.state == "ended" and
		   .batcher.waiting == 0 and (.batcher.in_flight | not) and
		   .batcher.submitted == .batcher.results + ([.batcher.drops[]] | add)' >/dev/null
}
for _ in $(seq 1 300); do
	played_again && break
	sleep 0.2
done
played_again || fail "still0 did not play again to its end ($(curl -sf "$URL/streams/still0" | jq -c '.pipeline.state, .batcher'))"
last=-1
for _ in $(seq 1 100); do
	seq=$(curl -sf "$URL/detections/latest?stream=still0" | jq -r .seq 2>/dev/null || echo -1)
	[ "$seq" = "$last" ] && [ "$seq" != -1 ] && break
	last=$seq
	sleep 1
done
[ "$seq" = "$last" ] && [ "$seq" != -1 ] || fail "still0 did not finish"
curl -sf "$URL/detections/latest?stream=still0" >"$T/latest.json"
jq -e '.objects | length > 0' "$T/latest.json" >/dev/null || fail "no objects in still0's last frame"

# ---- snapshot ------------------------------------------------------------------
curl -sf -D "$T/h1" -o "$T/boxes.jpg" "$URL/streams/still0/snapshot.jpg" || fail "snapshot"
curl -sf -o "$T/bare.jpg" "$URL/streams/still0/snapshot.jpg?boxes=0" || fail "bare snapshot"
grep -qi '^content-type: image/jpeg' "$T/h1" || fail "content type"
grep -qi '^cache-control: no-store' "$T/h1" || fail "cache-control"
grep -qi '^last-modified: ' "$T/h1" || fail "last-modified"
etag=$(grep -i '^etag: ' "$T/h1" | cut -d' ' -f2- | tr -d '\r')
[ "$(grep -i '^x-detd-seq: ' "$T/h1" | cut -d' ' -f2 | tr -d '\r')" = "$seq" ] ||
	fail "the snapshot is not of the latest result's frame ($seq)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$URL/streams/still0/snapshot.jpg")
[ "$code" = 304 ] || fail "If-None-Match gave $code"
ok "snapshot: image/jpeg, no-store, ETag $etag (304 on If-None-Match), frame #$seq"

# decode both (GStreamer's jpegdec): a W×H×3 file proves the size
decode() { gst-launch-1.0 -q filesrc location="$1" ! jpegdec ! videoconvert ! \
	video/x-raw,format=RGB ! filesink location="$2" >/dev/null 2>&1; }
decode "$T/boxes.jpg" "$T/boxes.rgb" || fail "the snapshot is not a JPEG"
decode "$T/bare.jpg" "$T/bare.rgb" || fail "the bare snapshot is not a JPEG"
W=$(jq .width "$T/latest.json")
H=$(jq .height "$T/latest.json")
[ "$(stat -c %s "$T/boxes.rgb")" -eq $((W * H * 3)) ] || fail "snapshot is not ${W}x$H"
ok "snapshot decodes to the source size ${W}x$H"

# Where each published box's left edge is, the boxed picture differs from
# the bare one; far from every box it does not (beyond JPEG noise).
/usr/bin/python3 - "$T/boxes.rgb" "$T/bare.rgb" "$W" "$H" "$T/latest.json" <<'PY' || fail "boxes not where the objects are"
import json, sys
a, b = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
W, H = int(sys.argv[3]), int(sys.argv[4])
objs = json.load(open(sys.argv[5]))['objects']
def diff(x, y):
    i = (y * W + x) * 3
    return sum(abs(a[i + k] - b[i + k]) for k in range(3))
def inside_any(x, y, m):
    return any(o['box'][0] - m <= x <= o['box'][2] + m and o['box'][1] - m - 30 <= y <= o['box'][3] + m for o in objs)
for o in objs:
    x0, y0, x1, y1 = [int(round(v)) for v in o['box']]
    x = min(max(x0 + 1, 0), W - 1)
    ys = range(max(y0 + 4, 0), min(y1 - 4, H))
    hits = sum(1 for y in ys if diff(x, y) > 60)
    if hits < len(ys) * 0.6:
        sys.exit(f"box {o['box']}: left edge differs on {hits}/{len(ys)} rows")
far = [(x, y) for y in range(0, H, 7) for x in range(0, W, 7) if not inside_any(x, y, 12)]
bad = sum(1 for x, y in far if diff(x, y) > 60)
if far and bad > len(far) * 0.01:
    sys.exit(f"{bad}/{len(far)} pixels far from every box changed")
print(f"ok: {len(objs)} boxes drawn on their objects; {len(far)} far pixels unchanged")
PY
curl -sf -o "$T/small.jpg" "$URL/streams/still0/snapshot.jpg?width=320&min_score=0.9" || fail "?width"
decode "$T/small.jpg" "$T/small.rgb" || fail "small snapshot"
[ "$(stat -c %s "$T/small.rgb")" -eq $((320 * (H * 320 / W) * 3)) ] || fail "?width=320 size"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/streams/still0/snapshot.jpg?width=abc")
[ "$code" = 400 ] || fail "bad width gave $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/streams/nope/snapshot.jpg")
[ "$code" = 404 ] || fail "unknown stream gave $code"
ok "?width=320 scales, bad parameters 400, unknown stream 404"

if [ -n "${DETCTL:-}" ]; then
	"$DETCTL" --http "127.0.0.1:$PORT" snapshot still0 -o "$T/ctl.jpg" || fail "detctl snapshot"
	cmp -s "$T/ctl.jpg" "$T/boxes.jpg" || fail "detctl snapshot differs from the HTTP one"
	ok "detctl snapshot still0 -o FILE: the same JPEG (encoded once per result)"
fi

# ---- MJPEG -----------------------------------------------------------------------
curl -s --max-time 4 -D "$T/mh" -o "$T/live.mjpeg" "$URL/streams/live0/mjpeg?fps=5" || true
grep -qi 'content-type: multipart/x-mixed-replace; boundary=detdframe' "$T/mh" || fail "mjpeg type"
parts=$(grep -ac -- '^--detdframe' "$T/live.mjpeg" || true)
# a sanitizer build (TSan: 5-15x slower) may make fewer than 5 results a second
min_parts=8
if sanitizer_build; then min_parts=3; fi
[ "$parts" -ge "$min_parts" ] || fail "only $parts MJPEG parts in 4 s at 5 fps"
[ "$parts" -le 26 ] || fail "$parts parts in 4 s: ?fps=5 not applied"
ok "MJPEG: $parts parts in 4 s at ?fps=5"

# ---- a viewer that never reads -------------------------------------------------------
rss() { awk '/VmRSS/ {print $2}' "/proc/$DETD_PID/status"; }
rss0=$(rss)
/usr/bin/python3 - "$PORT" >"$T/slow.txt" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'GET /streams/live0/mjpeg?fps=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
time.sleep(200)  # never reads (the test ends it sooner)
PY
CHILDREN+=($!)
viewers() { curl -sf "$URL/status" | jq .view.viewers; }
drops() { curl -sf "$URL/status" | jq .view.viewer_drops; }
# the socket buffers fill first: seconds at full speed; a sanitizer build
# draws and encodes several times slower (TSan on an AVX2-only host: 47 s)
tries=150
if sanitizer_build; then tries=1200; fi
for _ in $(seq 1 $tries); do [ "$(drops)" -gt 0 ] && break; sleep 0.1; done
[ "$(drops)" -gt 0 ] || fail "the stuck viewer's frames were not dropped"
for _ in $(seq 1 $((tries * 2 / 3))); do [ "$(viewers)" -eq 0 ] && break; sleep 0.1; done
[ "$(viewers)" -eq 0 ] || fail "the stuck viewer was not cut"
rss1=$(rss)
if ! sanitizer_build; then
	[ "$rss1" -lt $((rss0 + 8192)) ] || fail "RSS grew from $rss0 to $rss1 kB"
fi
ok "a viewer that never reads: $(drops) frames dropped, then cut; RSS $rss0 → $rss1 kB"

# ---- at most http.max_viewers ------------------------------------------------------------
for i in 1 2 3; do
	curl -s --max-time 20 -o /dev/null "$URL/streams/live0/mjpeg" &
	CHILDREN+=($!)
done
for _ in $(seq 1 50); do [ "$(viewers)" -eq 3 ] && break; sleep 0.1; done
code=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "$URL/streams/live0/mjpeg")
[ "$code" = 503 ] || fail "a viewer past max_viewers got $code"
ok "http.max_viewers=3: the fourth viewer gets 503"
for p in "${CHILDREN[@]}"; do kill "$p" 2>/dev/null || true; done
for _ in $(seq 1 50); do [ "$(viewers)" -eq 0 ] && break; sleep 0.1; done

# ---- the page in headless Chromium ------------------------------------------------------
code=$(curl -s -o "$T/page.html" -w '%{http_code}' "$URL/")
[ "$code" = 200 ] && grep -q '<title>detd' "$T/page.html" || fail "GET / ($code)"
grep -qE 'https?://' "$T/page.html" && fail "the page refers to an external URL"
if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null; then
	echo "SKIP: the browser part needs /usr/bin/chromium and node (Debian: chromium)"
	exit 77
fi
shot=${DETD_VIEW_SCREENSHOT:-$T/page.png}
node --experimental-websocket --no-warnings "$(dirname "$0")/view_page.mjs" "$URL/" live0 "$W" "$H" \
	"$shot" || fail "the page in Chromium"
ok "headless Chromium shows live0 with its live view and objects (screenshot $shot)"
stop_detd
