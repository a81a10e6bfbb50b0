#!/bin/sh
# bisect.sh SEED QUANT [NMS] — find the first tensor where detd departs from
# TFLite: for every activation of the generated model, build a probe model
# that ends in that tensor (modelgen.py --probe), run it through the oracle
# (tfl_bench, builtin kernels) and through detd-infer, and compare the bytes.
# Needs ../shared/tools/tflite-oracle and a build in ./build.  Developer tool:
# tests never run it.
set -eu
seed=$1 quant=$2 nms=${3:-fast}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
oracle=${TFL_ORACLE:-$root/../shared/tools/tflite-oracle/tfl_bench}
infer=${DETD_INFER:-$root/build/tools/detd-infer}
inputs=${MODELGEN_INPUTS:-$root/tests/data/modelgen/inputs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" --list |
while read -r name op shape; do
	n=$(echo "$shape" | tr x '\n' | awk 'BEGIN{p=1}{p*=$1}END{print p}')
	[ $((n % 4)) -eq 0 ] || { echo "$name $op $shape: size not a multiple of 4, skipped"; continue; }
	m=$tmp/p.tflite
	/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" --probe "$name" -o "$m"
	rm -rf "$tmp/ref"
	"$oracle" --model "$m" --inputs "$inputs" --xnnpack 0 --runs 0 --dump-dir "$tmp/ref" --quiet >/dev/null 2>&1 ||
		{ echo "$name $op: oracle failed"; continue; }
	first=$(ls "$tmp/ref" | grep pp_box | head -1)
	idx=${first##*.t}; idx=${idx%.bin}; stem=${first%%.pp_box*}
	rm -f "$tmp/out"
	"$infer" --model "$m" ${DETD_INFER_ARGS:-} --dump-tensor "$idx:$tmp/out" "$inputs/$stem.rgb" >/dev/null
	d=$(cmp -l "$tmp/out" "$tmp/ref/$first" 2>/dev/null | wc -l)
	echo "$name $op $shape: $d of $(stat -c %s "$tmp/ref/$first") bytes differ"
done
