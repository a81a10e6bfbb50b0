#!/usr/bin/env bash
# detd --check-config: exit codes 0/78, every error with its path; a bad config stops start-up.
. "$(dirname "$0")/lib.sh"
SRC=${DETD_SOURCE_ROOT:?}

"$DETD" --check-config "$SRC/config/detd.json" >"$T/out" 2>&1 || fail "shipped config rejected: $(cat "$T/out")"
"$DETD" --config "$SRC/config/detd.json" --check-config >/dev/null 2>&1 || fail "--config + --check-config"
for f in "$SRC"/config/examples/*.json; do
	"$DETD" --check-config "$f" >"$T/out" 2>&1 || fail "$f rejected: $(cat "$T/out")"
done
ok "shipped configs valid (exit 0)"

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
