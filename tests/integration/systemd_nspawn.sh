#!/usr/bin/env bash
# detd under a real systemd: boots a minimal Debian 12 container with
# systemd-nspawn, installs this build into it (meson install), and checks what
# an operator does: systemctl start → READY and STATUS=, curl /healthz,
# detctl subscribe, reload, stop, socket activation by the first request, and
# the watchdog: an inference worker stuck longer than WatchdogSec= makes detd
# stop its pings and systemd restart the service.
#
# The root filesystem comes from nspawn_rootfs.sh (cached; built once with
# the network).  Each run boots an overlay of it with a private network, in
# a private mount namespace, so nothing is left behind on the host; the
# container is driven from outside with nsenter.  Skips (77) where the host
# cannot run it: not root, no debootstrap/systemd-nspawn/nsenter, no network
# for the first root filesystem, a sanitizer build.
set -euo pipefail

DETD=${DETD:?DETD must point at the detd binary}
BUILD=${DETD_BUILD_ROOT:?}
SRC=${DETD_SOURCE_ROOT:?}
SHARED=$(realpath "${DETD_SHARED_DATA:-$SRC/../shared/data}")
HERE=$(cd "$(dirname "$0")" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root"
for c in systemd-nspawn nsenter unshare debootstrap; do
	command -v "$c" >/dev/null || skip "$c missing (scripts/deps --test)"
done
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null ||
	skip "no overlayfs for the per-run copy of the root filesystem"
[ -f "$SHARED/traffic/traffic_model.tflite" ] || skip "no test model in $SHARED/traffic"
# The ASan/UBSan build links its runtime and needs its own environment; the
# plain build of the same code runs this test.
ldd "$DETD" | grep -E 'lib(asan|tsan)' >/dev/null && skip "sanitizer build (the plain build runs this test)"
DETCTL=$(find "$BUILD/tools" -maxdepth 1 -name detctl -type f -perm -u+x | head -n 1)
[ -n "$DETCTL" ] || { echo "FAIL: detctl not built" >&2; exit 1; }

rc=0
ROOTFS=$(bash "$HERE/nspawn_rootfs.sh" "$DETD" "$DETCTL") || rc=$?
[ "$rc" -eq 0 ] || exit "$rc"

T=$(mktemp -d "${TMPDIR:-/tmp}/detd-nspawn.XXXXXX")
NSPAWN_PID=""
CPID=""
cleanup() {
	if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
		# SIGTERM: nspawn asks the container's systemd to power off.
		kill -TERM "$NSPAWN_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$NSPAWN_PID" 2>/dev/null || break
			sleep 0.1
		done
		# Killing the container's PID 1 ends everything in it.
		[ -z "$CPID" ] || kill -KILL "$CPID" 2>/dev/null || true
		kill -KILL "$NSPAWN_PID" 2>/dev/null || true
		wait "$NSPAWN_PID" 2>/dev/null || true
	fi
	# The overlay lived in the namespace that just ended: only plain files remain.
	rm -rf "$T"
}
trap cleanup EXIT
# meson's timeout sends SIGTERM: leave through the EXIT trap, container and all.
trap 'exit 143' TERM INT

fail() {
	echo "FAIL: $*" >&2
	if [ -n "$CPID" ] && kill -0 "$CPID" 2>/dev/null; then
		echo "--- systemctl status detd:" >&2
		C systemctl --no-pager status detd >&2 2>&1 || true
		echo "--- journal (detd, last 60 lines):" >&2
		C journalctl --no-pager -n 60 -u detd -u detd.socket -u detd-ipc.socket >&2 || true
	fi
	echo "--- container console (last 30 lines):" >&2
	tail -n 30 "$T/console.log" >&2 2>/dev/null || true
	exit 1
}
ok() { echo "ok: $*"; }
# Run a command inside the container (all its namespaces, its root).
C() { nsenter -t "$CPID" -a -- "$@"; }
prop() { C systemctl show -P "$1" "${2:-detd.service}"; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
	local n=$(($1 * 10))
	shift
	for _ in $(seq 1 "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# ---- the container's files: this build, the models, written into the
# overlay's upper layer before it is mounted.
mkdir -p "$T/upper" "$T/work" "$T/root"
meson install -C "$BUILD" --no-rebuild --quiet --destdir "$T/upper" >"$T/install.log" 2>&1 ||
	{ cat "$T/install.log" >&2; fail "meson install"; }
unit=$(find "$T/upper" -path '*/systemd/system/detd.service' | head -n 1)
[ -n "$unit" ] || fail "meson install put no detd.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
conf=$(echo "$exec_start" | sed -nE 's/.*--config ([^ ]+).*/\1/p')
bin=$(echo "$exec_start" | cut -d' ' -f1)
[ -x "$T/upper$bin" ] || fail "ExecStart binary $bin not installed"
[ -f "$T/upper$conf" ] || fail "config $conf not installed"
modeldir=$(dirname "$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["path"])' "$T/upper$conf")")
"$SRC/scripts/fetch-models" --offline --mirror "$SHARED" --dest "$T/upper$modeldir" \
	>"$T/fetch.log" 2>&1 || { cat "$T/fetch.log" >&2; fail "fetch-models"; }
detctl_in=$(cd "$T/upper" && find . -path '*/bin/detctl' | head -n 1 | sed 's|^\.||')
[ -n "$detctl_in" ] || fail "detctl not installed"

# ---- boot.  The tmpfs on /run/systemd/nspawn is what nspawn needs when the
# host's PID 1 is not systemd; it and the overlay exist in this mount
# namespace only.
t_boot=$(date +%s)
unshare --mount --propagation private bash -c '
	set -e
	mkdir -p /run/systemd/nspawn
	mount -t tmpfs tmpfs /run/systemd/nspawn
	mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root"
	exec systemd-nspawn -q -D "$2/root" --register=no --keep-unit --private-network \
		--machine="detd-test-$$" --console=read-only -b
	' _ "$ROOTFS" "$T" >"$T/console.log" 2>&1 </dev/null &
NSPAWN_PID=$!
# The container's PID 1 (systemd) is the child of nspawn.
find_cpid() {
	local p
	for p in $(pgrep -P "$NSPAWN_PID"); do
		if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ]; then
			CPID=$p
			return 0
		fi
	done
	return 1
}
wait_for 30 find_cpid || fail "the container's systemd did not start"
# systemctl needs the manager's private bus socket, which comes a moment later.
bus_up() { [ -S "/proc/$CPID/root/run/systemd/private" ]; }
wait_for 60 bus_up || fail "the container's systemd never opened its bus"
state=$(timeout 90 nsenter -t "$CPID" -a -- systemctl is-system-running --wait 2>&1 || true)
case "$state" in
running) ;;
degraded) echo "note: container degraded: $(C systemctl --failed --no-legend --plain | cut -d' ' -f1 | tr '\n' ' ')" ;;
*) fail "container did not boot (state: $state)" ;;
esac
ok "container booted in $(($(date +%s) - t_boot)) s ($state)"

missing=$(C ldd "$bin" | grep 'not found' || true)
[ -z "$missing" ] || fail "libraries missing in the container: $missing"
C systemd-sysusers >/dev/null
C systemd-tmpfiles --create >/dev/null 2>&1 || true
C getent passwd detd >/dev/null || fail "sysusers did not create the detd user"
C systemctl daemon-reload

# ---- start → READY, STATUS=
C systemctl start detd || fail "systemctl start detd"
[ "$(C systemctl is-active detd)" = active ] || fail "detd not active after start"
status=$(prop StatusText)
echo "$status" | grep -q '^running' || fail "StatusText after start: '$status'"
pid1=$(prop MainPID)
ok "systemctl start: active, StatusText '$status'"

# The hardening as the running manager sees it (it-systemd_units checks offline).
score=$(C systemd-analyze security --no-pager detd.service 2>&1 |
	sed -nE 's/.*Overall exposure level for detd.service: ([0-9.]+).*/\1/p')
[ -n "$score" ] || fail "no exposure score from systemd-analyze security"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score > 2.0"
ok "systemd-analyze security detd (running): $score"

health=$(C curl -sf --max-time 10 http://127.0.0.1:8080/healthz) || fail "curl /healthz"
echo "$health" | grep -q '"ok"' || fail "/healthz said $health"
ok "curl /healthz: $health"

lines=$(C timeout 60 "$detctl_in" subscribe --count 3 --json) || fail "detctl subscribe"
[ "$(echo "$lines" | grep -c '"detections"')" -ge 3 ] || fail "detctl subscribe got: $lines"
ok "detctl subscribe: 3 detection messages over /run/detd/detd.sock"

# ---- reload: SIGHUP through ExecReload, same process, STATUS= says so
C systemctl reload detd || fail "systemctl reload detd"
reloaded() { prop StatusText | grep -q 'reloaded'; }
wait_for 20 reloaded || fail "no '(reloaded)' in StatusText: $(prop StatusText)"
[ "$(prop MainPID)" = "$pid1" ] || fail "reload changed the main PID"
ok "systemctl reload: $(prop StatusText)"

# ---- stop
C systemctl stop detd || fail "systemctl stop detd"
[ "$(C systemctl is-active detd || true)" = inactive ] || fail "detd not inactive after stop"
[ "$(prop Result)" = success ] || fail "stop result: $(prop Result)"
ok "systemctl stop: inactive, result success"

# ---- socket activation: the first request starts the service
C systemctl enable --now detd.socket detd-ipc.socket >/dev/null 2>&1 ||
	fail "systemctl enable --now detd.socket detd-ipc.socket"
[ "$(C systemctl is-active detd || true)" = inactive ] || fail "detd started before any request"
health=$(C curl -sf --max-time 60 http://127.0.0.1:8080/healthz) || fail "curl through detd.socket"
[ "$(C systemctl is-active detd)" = active ] || fail "the request did not start detd"
C journalctl --no-pager -u detd | grep -q 'inherited socket' || fail "detd did not take the sockets"
C timeout 30 "$detctl_in" status >/dev/null || fail "detctl status through detd-ipc.socket"
ok "socket activation: first curl started detd ($health)"
C systemctl disable --now detd.socket detd-ipc.socket >/dev/null 2>&1
C systemctl stop detd

# ---- watchdog: a worker stuck for a minute, WatchdogSec=3 → systemd kills
# and restarts detd (the loop itself stays alive: only the heartbeat knows).
dropin=/proc/$CPID/root/etc/systemd/system/detd.service.d
mkdir -p "$dropin"
printf '[Service]\nWatchdogSec=3\nRestartSec=1\n' >"$dropin/50-test-watchdog.conf"
/usr/bin/python3 - "/proc/$CPID/root$conf" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["engine"]["test_delay_ms"] = 60000
json.dump(c, open(sys.argv[1], "w"))
EOF
C systemctl daemon-reload
restarts0=$(prop NRestarts)
t_wd=$(date +%s)
C systemctl start detd || fail "systemctl start detd (stuck config)"
restarted() { [ "$(prop NRestarts)" -gt "$restarts0" ]; }
wait_for 60 restarted || fail "no restart by the watchdog (NRestarts $(prop NRestarts))"
journal=$(C journalctl --no-pager -u detd)
echo "$journal" | grep -q 'watchdog: inference worker 0 busy' || fail "detd did not log the stall"
echo "$journal" | grep -qi 'watchdog timeout' || fail "systemd did not log a watchdog timeout"
ok "watchdog: stuck worker → 'Watchdog timeout', restarted after $(($(date +%s) - t_wd)) s (NRestarts $(prop NRestarts))"
