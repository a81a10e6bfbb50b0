#!/usr/bin/env bash
# detd --check-config: exit codes 0/78, every error with its path; a bad config stops start-up.
. "$(dirname "$0")/lib.sh"
SRC=${DETD_SOURCE_ROOT:?}
need_model

# The check loads the model as a start does, and the shipped configs point at
# models that are fetched or installed later: check copies of them with the
# model and labels replaced by the shared test model (everything else as shipped).
mkdir -p "$T/shipped/examples"
for f in "$SRC"/config/detd.json "$SRC"/config/examples/*.json; do
	c="$T/shipped/${f#"$SRC"/config/}"
	sed -E -e "s#\"[^\"]*\.tflite\"#\"$MODEL\"#" \
		-e "s#\"[^\"]*(labels\.txt|label_map\.pbtxt)\"#\"$LABELS\"#" "$f" >"$c"
	grep -q "$MODEL" "$c" || fail "$f: no model path found to replace"
	"$DETD" --check-config "$c" >"$T/out" 2>&1 || fail "$f rejected: $(cat "$T/out")"
done
"$DETD" --config "$T/shipped/detd.json" --check-config >/dev/null 2>&1 || fail "--config + --check-config"
ok "shipped configs valid (exit 0)"

# check_bad NAME EXPECTED_ERROR_REGEX: --check-config $T/NAME.json must exit 78
# naming the key, and so must a start with it (systemd: RestartPreventExitStatus=78).
check_bad() {
	local name=$1 want=$2 rc=0
	"$DETD" --check-config "$T/$name.json" >"$T/out" 2>&1 || rc=$?
	[ "$rc" = 78 ] || fail "$name: --check-config exit $rc, want 78: $(cat "$T/out")"
	grep -qE "$want" "$T/out" || fail "$name: want /$want/ in: $(cat "$T/out")"
	rc=0
	timeout 20 "$DETD" --config "$T/$name.json" >"$T/out" 2>&1 || rc=$?
	[ "$rc" = 78 ] || fail "$name: start exit $rc, want 78: $(cat "$T/out")"
	grep -qE "$want" "$T/out" || fail "$name: start did not log /$want/: $(cat "$T/out")"
}
# model_config NAME MODEL_PATH LABELS_PATH [HTTP_ADDRESS]
model_config() {
	cat >"$T/$1.json" <<JSON
{ "model": { "path": "$2", "labels": "$3" },
  "http": { "address": "${4:-127.0.0.1}", "port": 0 }, "ipc": { "path": "$T/detd.sock" },
  "streams": [] }
JSON
}
model_config missing "$T/nope.tflite" "$LABELS"
check_bad missing 'model\.path: .*nope\.tflite: No such file'
mkdir "$T/dir.tflite"
model_config directory "$T/dir.tflite" "$LABELS"
check_bad directory 'model\.path: .*dir\.tflite: not a regular file'
printf 'this is not a model\n' >"$T/text.tflite"
model_config notmodel "$T/text.tflite" "$LABELS"
check_bad notmodel 'model\.path: .*unknown format'
head -c 4096 "$MODEL" >"$T/cut.tflite"
model_config truncated "$T/cut.tflite" "$LABELS"
check_bad truncated 'model\.path: '
model_config nolabels "$MODEL" "$T/nope.pbtxt"
check_bad nolabels 'model\.labels: .*nope\.pbtxt: No such file'
model_config badaddr "$MODEL" "$LABELS" not-an-ip
check_bad badaddr 'http\.address: "not-an-ip" is not an IPv4 or IPv6 address literal'
model_config v6addr "$MODEL" "$LABELS" ::1
"$DETD" --check-config "$T/v6addr.json" >"$T/out" 2>&1 || fail "::1 rejected: $(cat "$T/out")"
ok "model, labels and http.address checked as deeply as a start (exit 78 both ways)"

cat >"$T/bad.json" <<JSON
{
  "model": { "path": "$MODEL", "colour": "red" },
  "engine": { "workers": 0 },
  "streams": [ { "id": "a", "uri": "rtsp://x/" }, { "id": "b", "uri": "b.mp4", "fps": 500 } ]
}
JSON
rc=0
"$DETD" --check-config "$T/bad.json" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "bad config exit $rc, want 78: $(cat "$T/out")"
grep -q 'model.colour: unknown key' "$T/out" || fail "missing unknown key error: $(cat "$T/out")"
grep -q 'engine.workers: must be an integer in \[1, 16\]' "$T/out" || fail "missing workers error"
grep -q 'streams\[1\].fps: must be a number in (0, 120]' "$T/out" || fail "missing fps error"
grep -q '3 errors' "$T/out" || fail "error count: $(cat "$T/out")"
ok "three errors at once, exit 78"

rc=0
"$DETD" --check-config "$T/missing.json" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "missing file exit $rc"
ok "missing file -> 78"

rc=0
"$DETD" --config "$T/bad.json" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "start with bad config exit $rc"
grep -q 'engine.workers' "$T/out" || fail "start-up did not log the errors"
ok "start with a bad config -> 78"

rc=0
cat >"$T/backend.json" <<JSON
{ "model": { "path": "$MODEL" }, "engine": { "backend": "gpu", "xrt": { "device": 99 } } }
JSON
"$DETD" --check-config "$T/backend.json" >"$T/out" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "unknown backend exit $rc, want 78"
grep -q 'engine.backend: unknown backend "gpu"' "$T/out" || fail "backend error: $(cat "$T/out")"
grep -q 'engine.xrt.device: must be an integer in \[0, 63\]' "$T/out" || fail "engine.xrt error"
ok "unknown backend and a bad engine.xrt key -> 78 with their paths"

rc=0
"$DETD" --bogus >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "bad option exit $rc"
"$DETD" --help | grep -q -- '--check-config' || fail "--help"
"$DETD" --version | grep -qE '^detd [0-9]+\.[0-9]+' || fail "--version"
ok "usage, --help, --version"
