#!/usr/bin/env bash
# infer.sh — detd-infer end to end: reference inputs in order (state carried),
# JSON lines equal to detections.json, --dump-tensor bytes equal to the
# reference post-process inputs, --min-score filtering, PNG input, and clean
# non-zero exits with a message for a bad model or a wrong-size input.
set -euo pipefail
INFER=${DETD_INFER:?DETD_INFER must point at detd-infer}
SHARED=${DETD_SHARED_DATA:?}
TR="$SHARED/traffic"
T=$(mktemp -d "${TMPDIR:-/tmp}/detd-infer.XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$INFER" --model "$TR/traffic_model.tflite" --labels "$TR/traffic_label_map.pbtxt" \
	--dump-tensor "421:$T/box.u8" --dump-tensor "423:$T/scores.u8" \
	"$TR"/reference/inputs/000{1,2,3}.rgb >"$T/out.jsonl" || fail "detd-infer exited $?"
[ "$(wc -l <"$T/out.jsonl")" -eq 3 ] || fail "expected 3 JSON lines"
cat "$TR"/reference/raw/000{1,2,3}_box_encodings.u8 | cmp - "$T/box.u8" || fail "box encodings differ"
cat "$TR"/reference/raw/000{1,2,3}_scores.u8 | cmp - "$T/scores.u8" || fail "scores differ"

python3 - "$T/out.jsonl" "$TR/reference/detections.json" <<'PY' || fail "detections differ"
import json, struct, sys
f32 = lambda x: struct.unpack('f', struct.pack('f', x))[0]
ref = json.load(open(sys.argv[2]))
lines = [json.loads(l) for l in open(sys.argv[1])]
for i, got in enumerate(lines):
    want = ref['frames'][i]['detections']
    assert got['input'].endswith('%04d.rgb' % (i + 1)), got['input']
    assert len(got['detections']) == len(want) == 40
    for g, w in zip(got['detections'], want):
        assert g['class_id'] == w['class_id'], (g, w)
        assert g['label'] == ref['labels'][w['class_id']], g
        assert f32(g['score']) == f32(w['score']), (g, w)
        for k, key in enumerate(('ymin', 'xmin', 'ymax', 'xmax')):
            assert abs(g['box'][k] - w[key]) <= 1e-5, (g, w)
PY

# --min-score filters; a PNG is stretched to the input size.
"$INFER" --model "$TR/traffic_model.tflite" --min-score 0.3 "$TR/frames/0001.png" >"$T/png.jsonl" \
	|| fail "PNG input"
python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert 0 < len(d["detections"]) < 40 and all(x["score"] >= 0.3 for x in d["detections"]), d
assert d["detections"][0]["label"] in ("0", "1", "2"), d' "$T/png.jsonl" || fail "min-score/PNG output"

# JPEG (when gst-launch can make one): decodes; a truncated one is an error.
if command -v gst-launch-1.0 >/dev/null &&
	gst-launch-1.0 -q filesrc location="$TR/frames/0001.png" ! pngdec ! videoconvert ! jpegenc \
		! filesink location="$T/f1.jpg" 2>/dev/null; then
	"$INFER" --model "$TR/traffic_model.tflite" "$T/f1.jpg" >"$T/jpg.jsonl" || fail "JPEG input"
	python3 -c 'import json, sys; assert len(json.loads(open(sys.argv[1]).read())["detections"]) == 40' \
		"$T/jpg.jsonl" || fail "JPEG output"
	head -c 5000 "$T/f1.jpg" >"$T/cut.jpg"
	if "$INFER" --model "$TR/traffic_model.tflite" "$T/cut.jpg" >/dev/null 2>"$T/e"; then
		fail "truncated JPEG accepted"
	fi
	grep -q "JPEG" "$T/e" || fail "no JPEG message: $(cat "$T/e")"
fi

# Errors: message on stderr, non-zero exit, nothing on stdout.
head -c 1000 "$TR/reference/inputs/0001.rgb" >"$T/short.rgb"
if "$INFER" --model "$TR/traffic_model.tflite" "$T/short.rgb" >"$T/o" 2>"$T/e"; then
	fail "wrong-size input accepted"
fi
grep -q "exactly 256x256x3" "$T/e" || fail "no size message: $(cat "$T/e")"
head -c 100000 "$TR/traffic_model.tflite" >"$T/bad.tflite"
if "$INFER" --model "$T/bad.tflite" "$TR/reference/inputs/0001.rgb" >"$T/o" 2>"$T/e"; then
	fail "truncated model accepted"
fi
grep -q "^detd-infer: model: " "$T/e" || fail "no model message: $(cat "$T/e")"
[ ! -s "$T/o" ] || fail "output despite a bad model"
if "$INFER" --model "$T/missing.tflite" "$TR/reference/inputs/0001.rgb" 2>"$T/e"; then
	fail "missing model accepted"
fi
grep -q "No such file" "$T/e" || fail "no message for a missing model"
echo "ok: detd-infer"
