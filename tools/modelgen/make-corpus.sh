#!/bin/sh
# make-corpus.sh — regenerate tests/data/modelgen: the generated models, and
# the oracle's outputs for them (TFLite builtin kernels, no delegate) over
# tests/data/modelgen/inputs/*.rgb.  Developer tool: the tests read the
# committed outputs and never run the oracle.
#
#   tools/modelgen/make-corpus.sh [path/to/tfl_bench]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
oracle=${1:-$root/../shared/tools/tflite-oracle/tfl_bench}
out=$root/tests/data/modelgen
rm -rf "$out/ref" "$out"/*.tflite
: > "$out/MANIFEST.new"
grep -v '^#' "$here/corpus.list" | while read -r name seed quant nms ulps _tensors extra; do
	# shellcheck disable=SC2086 # extra: zero or more generator flags
	/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" $extra \
		-o "$out/$name.tflite"
	mkdir -p "$out/ref/$name"
	"$oracle" --model "$out/$name.tflite" --inputs "$out/inputs" --xnnpack 0 --runs 0 \
		--dump-dir "$out/ref/$name" --quiet > /dev/null
	box=$(ls "$out/ref/$name" | sed -n 's/.*\.pp_box\.t\([0-9]*\)\.bin/\1/p' | head -1)
	cls=$(ls "$out/ref/$name" | sed -n 's/.*\.pp_class\.t\([0-9]*\)\.bin/\1/p' | head -1)
	echo "$name $box $cls $ulps" >> "$out/MANIFEST.new"
done
mv "$out/MANIFEST.new" "$out/MANIFEST"
cat "$out/MANIFEST"
# ref/ was wiped above: the per-tensor values of the models marked for them
"$here/make-tensors.sh" "$oracle"
