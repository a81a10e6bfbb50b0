#!/usr/bin/env bash
# SIGHUP with a valid and with an invalid new config; SIGTERM -> exit 0 within 2 s.
. "$(dirname "$0")/lib.sh"
need_model

write_config "$T/detd.json"
start_detd "$T/detd.json"

# 1. valid reload: a reloadable field (log level) and one that needs a restart
sed -e 's/"level": "info"/"level": "debug"/' -e 's/"port": 0/"port": 1/' "$T/detd.json" >"$T/new.json"
mv "$T/new.json" "$T/detd.json"
kill -HUP "$DETD_PID"
wait_log 'reloaded: 2 changes, 1 need a restart'
grep -q 'http.port changed: needs a restart' "$T/detd.log" || fail "restart-needing field not reported"
grep -q 'log.level changed' "$T/detd.log" || fail "log.level change not reported"
body=$(curl -sf "$URL/status") || fail "/status after reload"
[ "$(json_get "$body" 'd["reloads"]["ok"]')" = 1 ] || fail "reload not counted: $body"
[ "$(json_get "$body" 'd["log_level"]')" = debug ] || fail "log level not applied: $body"
[ "$(json_get "$body" 'd["http_port"]')" = "$PORT" ] || fail "port changed under us: $body"
ok "SIGHUP valid config applied, restart-only field reported"

# 2. invalid reload: three mistakes; detd keeps running on the old config
cat >"$T/detd.json" <<JSON
{ "model": { "path": "$MODEL" }, "engine": { "workers": 0 },
  "http": { "port": 0, "colour": 1 }, "streams": [ { "id": "x", "uri": "a", "fps": 500 } ] }
JSON
kill -HUP "$DETD_PID"
wait_log 'reload failed, still running on the previous configuration'
grep -q 'engine.workers: must be an integer' "$T/detd.log" || fail "workers error not logged"
grep -q 'http.colour: unknown key' "$T/detd.log" || fail "unknown key not logged"
grep -q 'streams\[0\].fps: must be a number in (0, 120]' "$T/detd.log" || fail "fps error not logged"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")
[ "$code" = 200 ] || fail "/healthz after bad reload -> $code"
body=$(curl -sf "$URL/status")
[ "$(json_get "$body" 'd["reloads"]["failed"]')" = 1 ] || fail "failed reload not counted: $body"
[ "$(json_get "$body" 'd["log_level"]')" = debug ] || fail "old config not kept: $body"
json_get "$body" 'd["reloads"]["last_error"]' | grep -q 'must be' || fail "last_error: $body"
ok "SIGHUP invalid config rejected, old one kept"

# 3. broken JSON also keeps it running
echo '{ "model": ' >"$T/detd.json"
kill -HUP "$DETD_PID"
wait_log 'invalid JSON'
curl -sf "$URL/healthz" >/dev/null || fail "/healthz after broken JSON"
ok "SIGHUP with broken JSON rejected"

# 4. a valid file whose model is missing cannot start, so it is a failed reload
write_config "$T/detd.json"
sed -i -e "s#\"path\": \"$MODEL\"#\"path\": \"$T/gone.tflite\"#" "$T/detd.json"
grep -q gone.tflite "$T/detd.json" || fail "test config not rewritten"
kill -HUP "$DETD_PID"
wait_log 'model\.path: .*gone\.tflite'
body=$(curl -sf "$URL/status") || fail "/status after missing-model reload"
[ "$(json_get "$body" 'd["reloads"]["failed"]')" = 3 ] || fail "missing model not a failed reload: $body"
[ "$(json_get "$body" 'd["reloads"]["ok"]')" = 1 ] || fail "missing model counted ok: $body"
json_get "$body" 'd["reloads"]["last_error"]' | grep -q 'model.path' || fail "last_error: $body"
[ "$(json_get "$body" 'd["log_level"]')" = debug ] || fail "old config not kept: $body"
ok "SIGHUP to a missing model rejected, old config kept"

stop_detd
grep -q 'SIGTERM received' "$T/detd.log" || fail "SIGTERM not logged"
ok "SIGTERM -> exit 0 within 2 s"

# SIGINT behaves the same
write_config "$T/detd.json"
start_detd "$T/detd.json"
kill -INT "$DETD_PID"
rc=0
wait "$DETD_PID" || rc=$?
DETD_PID=""
[ "$rc" = 0 ] || fail "SIGINT exit code $rc"
ok "SIGINT -> exit 0"
