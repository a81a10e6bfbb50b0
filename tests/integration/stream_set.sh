#!/usr/bin/env bash
# Issue 15 #4: one source of truth for streams across HTTP and SIGHUP, with
# the exact sequences of the issue:
#   DELETE a file stream, SIGHUP: it stays deleted (not listed as "starting"
#     with no frames); POST the same id: accepted, and it runs;
#   POST h1, add another h1 to the file, SIGHUP: the reload fails (counted in
#     reloads.failed, last_error set), the HTTP h1 keeps running and
#     /streams/h1 describes it, not the file's;
#   HTTP cannot take the set past 64 streams.
source "$(dirname "$0")/lib.sh"

write_config "$T/detd.json"
jq '.http.allow_mutations = true
    | .streams = [{"id":"c1","type":"test","pattern":"smpte","fps":4}]' "$T/detd.json" >"$T/c.json"
start_detd "$T/c.json"
J='Content-Type: application/json'
post() { curl -s -o "$T/out" -w '%{http_code}' -X POST -H "$J" --data-binary "$1" "$URL/streams" || true; }
del() { curl -s -o "$T/out" -w '%{http_code}' -X DELETE "$URL/streams/$1" || true; }
reloads() { curl -s "$URL/status" | jq -c '.reloads | {ok, failed, last_error}'; }
seq_of() { curl -s "$URL/streams/$1" | jq -r '.last_seq // 0'; }
hup_and_wait() { # SIGHUP, wait until reloads.ok + reloads.failed grows
	local before after
	before=$(curl -s "$URL/status" | jq '.reloads.ok + .reloads.failed')
	kill -HUP "$DETD_PID"
	for _ in $(seq 1 100); do
		after=$(curl -s "$URL/status" | jq '.reloads.ok + .reloads.failed')
		[ "$after" -gt "$before" ] && return 0
		sleep 0.05
	done
	fail "SIGHUP was not processed"
}
frames_flow() { # frames_flow ID: its last_seq grows within 10 s
	local a b
	a=$(seq_of "$1")
	for _ in $(seq 1 100); do
		b=$(seq_of "$1")
		[ "$b" -gt "$a" ] && return 0
		sleep 0.1
	done
	fail "no frames for $1 (last_seq stays $a): $(curl -s "$URL/streams/$1")"
}
frames_flow c1

# --- DELETE c1, SIGHUP, POST c1
[ "$(del c1)" = 200 ] || fail "DELETE c1 -> $(cat "$T/out")"
hup_and_wait
code=$(curl -s -o "$T/out" -w '%{http_code}' "$URL/streams/c1")
[ "$code" = 404 ] || fail "deleted c1 came back after SIGHUP: $code $(cat "$T/out")"
curl -s "$URL/streams" | jq -e 'all(.streams[]; .id != "c1")' >/dev/null ||
	fail "c1 listed after SIGHUP though deleted"
code=$(post '{"id":"c1","type":"test","pattern":"ball","fps":4}')
[ "$code" = 201 ] || fail "POST c1 after DELETE c1 -> $code $(cat "$T/out")"
frames_flow c1
hup_and_wait
curl -s "$URL/streams/c1" | jq -e '.origin == "http" and .source == "ball"' >/dev/null ||
	fail "c1 after SIGHUP: $(curl -s "$URL/streams/c1")"
frames_flow c1
r=$(reloads)
[ "$(jq .failed <<<"$r")" = 0 ] || fail "reloads: $r"
ok "DELETE c1 + SIGHUP keeps it deleted; POST c1 then runs, also across SIGHUP ($r)"

# --- HTTP h1, then a different h1 in the file, SIGHUP
code=$(post '{"id":"h1","type":"test","pattern":"ball","fps":4}')
[ "$code" = 201 ] || fail "POST h1 -> $code $(cat "$T/out")"
jq '.streams += [{"id":"h1","type":"test","pattern":"snow","fps":4}]' "$T/c.json" >"$T/n.json"
mv "$T/n.json" "$T/c.json"
before=$(reloads)
hup_and_wait
after=$(reloads)
[ "$(jq .ok <<<"$after")" = "$(jq .ok <<<"$before")" ] || fail "failed reload counted ok: $before -> $after"
[ "$(jq .failed <<<"$after")" = $(($(jq .failed <<<"$before") + 1)) ] ||
	fail "reloads.failed not incremented: $before -> $after"
jq -e '.last_error | test("h1")' <<<"$after" >/dev/null || fail "last_error: $after"
curl -s "$URL/streams/h1" | jq -e '.origin == "http" and .source == "ball"' >/dev/null ||
	fail "/streams/h1 does not describe the running HTTP stream: $(curl -s "$URL/streams/h1")"
frames_flow h1
# deleting the HTTP h1 lets the file's h1 in at the next reload
[ "$(del h1)" = 200 ] || fail "DELETE h1 -> $(cat "$T/out")"
hup_and_wait
r=$(reloads)
jq -e '.last_error == null' <<<"$r" >/dev/null || fail "reload after DELETE h1: $r"
curl -s "$URL/streams/h1" | jq -e '.origin == "config" and .source == "snow"' >/dev/null ||
	fail "file h1 after reload: $(curl -s "$URL/streams/h1")"
frames_flow h1
ok "HTTP h1 vs file h1: reload fails and counts as failed ($after); after DELETE h1 the file's runs"

# --- the limit holds for HTTP too (disabled streams: nothing to decode)
n=$(curl -s "$URL/streams" | jq '.streams | length')
for i in $(seq "$((n + 1))" 64); do
	code=$(post "{\"id\":\"x$i\",\"type\":\"test\",\"enabled\":false}")
	[ "$code" = 201 ] || fail "POST stream $i -> $code $(cat "$T/out")"
done
code=$(post '{"id":"x65","type":"test","enabled":false}')
[ "$code" = 409 ] || fail "65th stream -> $code $(cat "$T/out")"
[ "$(curl -s "$URL/streams" | jq '.streams | length')" = 64 ] || fail "not 64 streams"
ok "HTTP cannot add a 65th stream (409)"
stop_detd
