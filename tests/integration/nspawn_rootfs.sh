#!/usr/bin/env bash
# nspawn_rootfs.sh — the cached Debian 12 root filesystem that
# systemd_nspawn.sh boots: debootstrap --variant=minbase plus systemd, dbus,
# curl and detd's runtime packages.  Prints the directory on stdout.
#
#   nspawn_rootfs.sh BINARY...
#
# The runtime packages are a fixed list (GStreamer plugins the default config
# needs, tools the test runs) plus the Debian packages owning every library
# that `ldd BINARY` shows, so a build that links something new (XRT, MQTT,
# ASan) gets a root filesystem that can run it.  The directory is
# $DETD_ROOTFS_CACHE (default /var/cache/detd-test)/rootfs-<hash of that
# list>; it is built once (a few minutes, needs the network) and then only
# read: every test run boots an overlay of it.
# The Debian mirror is the one apt uses here ($DETD_ROOTFS_MIRROR overrides).
# Exit 77 when it cannot be built here (no debootstrap, not root, no network).
set -euo pipefail

CACHE=${DETD_ROOTFS_CACHE:-/var/cache/detd-test}
SUITE=bookworm
RECIPE=1 # bump when the steps below change: a new hash, a new rootfs
FIXED=(systemd dbus curl ca-certificates gstreamer1.0-plugins-base gstreamer1.0-plugins-good
	gstreamer1.0-libav)

skip() { echo "SKIP: $*" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "not root"
command -v debootstrap >/dev/null || skip "debootstrap missing (scripts/deps --test)"
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn missing (scripts/deps --test)"

# The packages owning the libraries the binaries load, in one dpkg call
# (each call reads the whole database); usrmerge means dpkg may know a
# library under /lib or /usr/lib.
libs=()
for bin in "$@"; do
	[ -x "$bin" ] || { echo "nspawn_rootfs: $bin is not an executable" >&2; exit 2; }
	while read -r lib; do
		case "$lib" in
		/usr/*) libs+=("$lib" "${lib#/usr}") ;;
		*) libs+=("$lib" "/usr$lib") ;;
		esac
	done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
done
pkgs=("${FIXED[@]}")
if [ ${#libs[@]} -gt 0 ]; then
	while read -r p; do pkgs+=("$p"); done < <(dpkg -S "${libs[@]}" 2>/dev/null |
		sed -E 's/^([^:,]+).*/\1/')
fi
list=$(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')
hash=$(printf 'recipe %s suite %s: %s' "$RECIPE" "$SUITE" "$list" | sha256sum | cut -c1-16)
ROOT="$CACHE/rootfs-$hash"
if [ -f "$ROOT/.detd-rootfs-ok" ]; then
	echo "$ROOT"
	exit 0
fi

# The same Debian mirror apt uses on this host.
mirror=$(grep -rhsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
	grep -m1 -E 'debian/?( |$)' | grep -oE 'https?://[^ ]+' || true)
mirror=${DETD_ROOTFS_MIRROR:-${mirror:-http://deb.debian.org/debian}}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # another run may be building the same rootfs
if [ -f "$ROOT/.detd-rootfs-ok" ]; then
	echo "$ROOT"
	exit 0
fi
tmp="$ROOT.tmp"
rm -rf "$tmp"
log="$CACHE/rootfs-$hash.log"
echo "nspawn_rootfs: building $ROOT from $mirror (once; log in $log)" >&2
echo "nspawn_rootfs: packages: $list" >&2
# debootstrap resolves --include poorly for big dependency trees: only the
# base and systemd here, the rest with apt inside the new root.
if ! debootstrap --variant=minbase --include=systemd,dbus "$SUITE" "$tmp" "$mirror" >"$log" 2>&1; then
	tail -n 5 "$log" >&2
	rm -rf "$tmp"
	# No network is a property of the host, not a failure of detd.
	if ! curl -sfI --max-time 20 "$mirror/dists/$SUITE/Release" >/dev/null 2>&1; then
		skip "cannot reach $mirror to build the container root filesystem"
	fi
	echo "nspawn_rootfs: debootstrap failed (see $log)" >&2
	exit 1
fi
# apt inside the root through nspawn (proc, dev, the host's network); a
# private mount namespace keeps the tmpfs nspawn needs off the host.
# shellcheck disable=SC2086
if ! unshare --mount --propagation private bash -c '
	mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn &&
	systemd-nspawn -q -D "$1" --register=no --keep-unit --setenv=DEBIAN_FRONTEND=noninteractive \
		bash -c "apt-get update -q && apt-get install -y -q --no-install-recommends $2 && apt-get clean && rm -rf /var/lib/apt/lists/*"
	' _ "$tmp" "$list" >>"$log" 2>&1; then
	tail -n 20 "$log" >&2
	rm -rf "$tmp"
	echo "nspawn_rootfs: installing the runtime packages failed (see $log)" >&2
	exit 1
fi
echo detd-test >"$tmp/etc/hostname"
# Nothing logs in: no getty on the container console.
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
echo "$list" >"$tmp/.detd-rootfs-ok"
mv "$tmp" "$ROOT"
echo "$ROOT"
