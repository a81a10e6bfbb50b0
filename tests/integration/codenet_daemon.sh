#!/usr/bin/env bash
# The daemon end to end on a 256² W4A8 CoDeNet model (random weights from the
# Python reference, made at build time): the sample video through the same
# pipeline, batcher, workers and publishers as TFLite models; 2 engine threads,
# so the layers run on the context's pool.
set -euo pipefail
tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

cat >"$tmp/detd.json" <<JSON
{ "model": { "path": "$CDN_FIXTURES/s256_dw_q.json", "format": "codenet" },
  "engine": { "min_score": 0.0, "threads": 2 },
  "http": { "address": "127.0.0.1", "port": 0 },
  "ipc": { "path": "$tmp/detd.sock" },
  "streams": [ { "id": "cam0", "type": "uri",
                 "uri": "file://$DETD_SHARED_DATA/traffic/traffic_frames.mp4", "loop": false } ] }
JSON

"$DETD" --config "$tmp/detd.json" --port-file "$tmp/port" --print-detections=json \
	>"$tmp/out.jsonl" 2>"$tmp/err" &
pid=$!

for _ in $(seq 1 300); do
	[ -s "$tmp/port" ] && break
	sleep 0.1
done
port=$(cat "$tmp/port")
# the 20-frame file plays at its natural rate; wait for a few results
for _ in $(seq 1 200); do
	n=$(grep -c '"stream"' "$tmp/out.jsonl" || true)
	[ "$n" -ge 3 ] && break
	sleep 0.1
done
status=$(curl -fsS "http://127.0.0.1:$port/status")
echo "$status" | grep -q '"codenet"' || { echo "status does not name the codenet model: $status" >&2; exit 1; }
n=$(grep -c '"stream"' "$tmp/out.jsonl" || true)
[ "$n" -ge 1 ] || { echo "no results" >&2; cat "$tmp/err" >&2; exit 1; }
python3 - "$tmp/out.jsonl" <<'PY'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
assert res, "no results"
seqs = [r["seq"] for r in res]
assert seqs == sorted(seqs), "results out of order"
objs = [o for r in res for o in r["objects"]]
assert objs, "no objects at min_score 0"
assert all(0.0 <= o["score"] <= 1.0 for o in objs)
print(f"codenet daemon: {len(res)} results, {len(objs)} objects")
PY
kill -TERM "$pid"
wait "$pid"
pid=""
