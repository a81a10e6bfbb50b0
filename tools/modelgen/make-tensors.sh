#!/bin/sh
# make-tensors.sh — TensorFlow Lite's value of every activation tensor of the
# corpus models on one input (tests/data/modelgen/inputs/in0.rgb), committed
# as tests/data/modelgen/ref/NAME/tensors/in0.t<INDEX>.<TENSOR>.bin, where
# INDEX is the tensor's index in NAME.tflite.  test_models compares each one
# with the engine's tensor, so a mismatch names the first op that departs.
#
# The oracle dumps only post-process inputs, so each tensor is taken from a
# probe model (modelgen.py --probe: the model cut after the op that writes the
# tensor, which feeds the post-process reshaped to [1,N,4]).  int8 tensors
# reach the post-process through a DEQUANTIZE; their int8 bytes are recovered
# from the floats with the tensor's scale and zero point and checked to
# dequantize back to exactly those floats.  A tensor whose size is not a
# multiple of 4 goes in as the class input instead (see modelgen.py).
# Developer tool: the tests read the committed files and never run the oracle.
#
#   tools/modelgen/make-tensors.sh [path/to/tfl_bench]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
oracle=${1:-$root/../shared/tools/tflite-oracle/tfl_bench}
out=$root/tests/data/modelgen
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/in"
cp "$out/inputs/in0.rgb" "$tmp/in/"
grep -v '^#' "$here/corpus.list" | while read -r name seed quant nms _ulps tensors extra; do
	[ "$tensors" = yes ] || continue
	# shellcheck disable=SC2086 # extra: zero or more generator flags
	/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" $extra \
		-o "$tmp/full.tflite"
	cmp -s "$tmp/full.tflite" "$out/$name.tflite" ||
		{ echo "make-tensors: $name.tflite is not what modelgen makes now" >&2; exit 1; }
	dir=$out/ref/$name/tensors
	rm -rf "$dir"
	mkdir -p "$dir"
	done_n=0
	# shellcheck disable=SC2086
	/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" $extra \
		--tensors > "$tmp/list"
	while read -r tname op shape idx scale zp; do
		n=$(echo "$shape" | tr x '\n' | awk 'BEGIN{p=1}{p*=$1}END{print p}')
		which=pp_box
		[ $((n % 4)) -eq 0 ] || which=pp_class
		# shellcheck disable=SC2086
		/usr/bin/python3 "$here/modelgen.py" --seed "$seed" --quant "$quant" --nms "$nms" \
			$extra --probe "$tname" -o "$tmp/p.tflite"
		rm -rf "$tmp/ref"
		"$oracle" --model "$tmp/p.tflite" --inputs "$tmp/in" --xnnpack 0 --runs 0 \
			--dump-dir "$tmp/ref" --quiet > /dev/null
		f=$(ls "$tmp/ref"/in0.$which.t*.bin)
		dst=$dir/in0.t$idx.$tname.bin
		if [ "$quant" = i8 ]; then
			/usr/bin/python3 - "$f" "$dst" "$scale" "$zp" <<'EOF'
import sys
import numpy as np
src, dst, scale, zp = sys.argv[1], sys.argv[2], np.float32(sys.argv[3]), int(sys.argv[4])
f = np.fromfile(src, np.float32)
q = np.round(f.astype(np.float64) / np.float64(scale)).astype(np.int64) + zp
assert q.min() >= -128 and q.max() <= 127, 'not an int8 tensor'
back = (np.float64(scale) * (q - zp).astype(np.float64)).astype(np.float32)
assert np.array_equal(back.view(np.uint32), f.view(np.uint32)), 'does not dequantize back'
q.astype(np.int8).tofile(dst)
EOF
		else
			cp "$f" "$dst"
		fi
		done_n=$((done_n + 1))
	done < "$tmp/list"
	echo "$name: $done_n tensors"
done
