#!/usr/bin/env bash
# detd-infer end to end on a random-weight 256² W4A8 CoDeNet model made by the
# Python reference (tools/codenet/make_fixtures.py, at build time): the model
# format is sniffed by eng_model_load, frames are PNGs of the traffic video.
set -euo pipefail
model="$CDN_FIXTURES/s256_dw_q.json"
frames="$DETD_SHARED_DATA/traffic/frames"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$DETD_INFER" --model "$model" --min-score 0 "$frames/0001.png" "$frames/0002.png" >"$tmp/out.jsonl"
python3 - "$tmp/out.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 2, lines
voc = {"aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
       "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
       "train", "tvmonitor"}
for l in lines:
    d = l["detections"]
    assert len(d) == 100, len(d)  # max_detections of the fixture, threshold 0
    assert all(x["label"] in voc for x in d), d[:3]
    s = [x["score"] for x in d]
    assert s == sorted(s, reverse=True), "scores not ranked"
assert lines[0]["detections"] != lines[1]["detections"], "two frames, same output"
print("codenet detd-infer ok")
PY

# a model whose weights file is missing is refused with a message, not a crash
sed 's/s256_dw_q.safetensors/missing.safetensors/' "$model" >"$tmp/bad.json"
if "$DETD_INFER" --model "$tmp/bad.json" "$frames/0001.png" >"$tmp/bad.out" 2>"$tmp/bad.err"; then
	echo "bad model accepted" >&2
	exit 1
fi
grep -q "missing.safetensors" "$tmp/bad.err"
