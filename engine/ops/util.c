/*
 * util.c — helpers shared by the kernels (kernels.h): TFLite's output-size and
 * padding rule, node arity and quantization checks done at prepare.  Pure
 * functions; any thread.
 */
#include <math.h>

#include "kernels.h"

int ops_out_size(enum eng_padding pad, int in, int k, int stride, int dilation)
{
	int eff = (k - 1) * dilation + 1;
	if (pad == ENG_PAD_SAME)
		return (in + stride - 1) / stride;
	return (in + stride - eff) / stride;
}

int ops_pad_before(int in, int out, int k, int stride, int dilation)
{
	int eff = (k - 1) * dilation + 1;
	/* floor(total/2) before; the odd extra row/column goes after. */
	int p = ((out - 1) * stride + eff - in) / 2;
	return p > 0 ? p : 0;
}

int ops_check_q8(const struct eng_tensor *t, const char *what, char *err, size_t errlen)
{
	if (!t || !dt_is_q8(t->type))
		return 0;
	if (!t->has_quant || t->q.n < 1 || !t->q.scale || !t->q.zero_point) {
		KERR(err, errlen, "%s is 8-bit without quantization parameters", what);
		return -EINVAL;
	}
	int32_t lo, hi;
	q_type_range(t->type, &lo, &hi);
	for (int i = 0; i < t->q.n; i++) {
		float s = t->q.scale[i];
		int64_t z = t->q.zero_point[i];
		if (!(s > 0.0f) || !isfinite(s) || z < lo || z > hi) {
			KERR(err, errlen, "%s has scale %g / zero point %lld", what, (double)s,
			     (long long)z);
			return -EINVAL;
		}
	}
	return 0;
}

int ops_check_io(const struct eng_node *n, int min_in, int min_out, char *err, size_t errlen)
{
	if (n->n_in < min_in || n->n_out < min_out) {
		KERR(err, errlen, "expects at least %d inputs and %d outputs, has %d and %d",
		     min_in, min_out, n->n_in, n->n_out);
		return -EINVAL;
	}
	for (int i = 0; i < min_in; i++)
		if (!n->in[i]) {
			KERR(err, errlen, "input %d is missing", i);
			return -EINVAL;
		}
	for (int i = 0; i < min_out; i++)
		if (!n->out[i]) {
			KERR(err, errlen, "output %d is missing", i);
			return -EINVAL;
		}
	return 0;
}
