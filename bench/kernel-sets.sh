#!/usr/bin/env bash
# Side-by-side engine measurements for bench/README.md: every usable kernel
# set (DETD_KERNELS), 1 and 2 threads, batch 1/2/4, traffic model.  Prints one
# summary line per configuration plus the per-op-type table of each 1-thread
# run.  Usage: bench/kernel-sets.sh [BUILD_DIR] [RUNS]   (from the source root)
set -euo pipefail
B=${1:-build}
RUNS=${2:-30}
DATA=${DETD_SHARED_DATA:-../shared/data}
M=$DATA/traffic/traffic_model.tflite
I=$DATA/traffic/reference/inputs
echo "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512dq|avx512vl|avx512_vnni|avx_vnni)$' | tr '\n' ' ')"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # kset threads batch
	DETD_KERNELS=$1 "$B/tools/detd-bench" engine --model "$M" --inputs "$I" \
		--threads "$2" --batch "$3" --runs "$RUNS" 2>/dev/null
}
for ks in avx2 avxvnni avx512vnni; do
	if ! out=$(run "$ks" 1 1); then
		echo "SKIP $ks: not usable here"
		continue
	fi
	echo "== $ks, 1 thread, batch 1"
	sed -n '/^op type/,/^$/p' <<<"$out"
	for tb in "1 1" "2 1" "2 2" "2 4"; do
		set -- $tb
		o=$(run "$ks" "$1" "$2")
		printf '%-11s threads %s batch %s: %s; %s\n' "$ks" "$1" "$2" \
			"$(grep '^per frame' <<<"$o")" "$(grep '^frames/s' <<<"$o")"
	done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
