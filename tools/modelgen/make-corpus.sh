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
# name seed quant nms ulps (0: bit-exact) [generator flags]
models="u8_s1 1 u8 fast 0
u8_s2 2 u8 fast 0
u8_s3_regular 3 u8 regular 0
i8_s1 1 i8 fast 0
i8_s2 2 i8 fast 0
i8_s4_regular 4 i8 regular 0
f32_s1 1 f32 fast 0
f32_s2_regular 2 f32 regular 0
f32_s1_deep 1 f32 fast 0 --deep"
rm -rf "$out/ref" "$out"/*.tflite
: > "$out/MANIFEST.new"
echo "$models" | while read -r name seed quant nms ulps extra; do
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
