#!/usr/bin/env bash
# run.sh EXE NAME — run one libFuzzer target for a bounded time on its seed
# corpus; fail on any crash, leak, timeout or sanitizer report.
#   FUZZ_SECONDS (default 12)  total time of the run
#   FUZZ_JOBS    (default 1)   parallel fuzzing jobs (long runs)
# New inputs go to a temporary directory (the committed corpus is only read);
# a crashing input is kept as $FUZZ_ARTIFACTS/NAME-crash-* (default: build dir).
set -euo pipefail
exe=$1 name=$2
root=${DETD_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
seeds=$root/tests/fuzz/corpus/$name
[ -d "$seeds" ] || { echo "run.sh: no seed corpus $seeds" >&2; exit 1; }
art=${FUZZ_ARTIFACTS:-$PWD}
mkdir -p "$art"
work=$(mktemp -d "${TMPDIR:-/tmp}/detd-fuzz-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
extra=()
# FUZZ_SHARED=1 (long runs): the real detector from ../shared/data as an
# extra seed (3 MB: slow per input, so not in the bounded CI run)
shared=${DETD_SHARED_DATA:-$root/../shared/data}
if [ "${FUZZ_SHARED:-0}" = 1 ] && [ "$name" = tflite ] && [ -f "$shared/traffic/traffic_model.tflite" ]; then
	mkdir "$work/shared"
	cp "$shared/traffic/traffic_model.tflite" "$work/shared/"
	extra+=("$work/shared")
	opts_extra=(-max_len=4000000)
fi
# -error_exitcode / -timeout_exitcode: libFuzzer's default for a finding is 77,
# which meson reads as SKIP; a finding must fail the test
opts=(-max_total_time="${FUZZ_SECONDS:-12}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -error_exitcode=1 -timeout_exitcode=1
      -artifact_prefix="$art/$name-")
if [ -f "$root/tests/fuzz/$name.dict" ]; then opts+=(-dict="$root/tests/fuzz/$name.dict"); fi
opts+=("${opts_extra[@]+"${opts_extra[@]}"}")
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then opts+=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/tests/lsan.supp}
"$exe" "${opts[@]}" "$work" "$seeds" "${extra[@]+"${extra[@]}"}"
