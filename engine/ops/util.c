/*
 * util.c — helpers shared by the kernels (kernels.h): TFLite's output-size and
 * padding rule, node arity and quantization checks done at prepare, and the
 * fork-join helper the big kernels use when a context has several threads.
 * Any thread.
 */
#include <math.h>
#include <pthread.h>

#include "kernels.h"
#include "pool.h"
#include "x86/vk.h"

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

void ops_lut8(uint8_t *y, const uint8_t *x, size_t n, const uint8_t *lut, bool vbmi)
{
	if (vbmi && n >= 64) { /* the same bytes either way */
		vk512_lut(lut, x, y, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		y[i] = lut[x[i]];
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

struct ops_slice {
	ops_range_fn fn;
	void *ctx;
	size_t begin, end;
	int slot;
};

static void *ops_slice_main(void *arg)
{
	struct ops_slice *s = arg;
	s->fn(s->ctx, s->begin, s->end, s->slot);
	return NULL;
}

void ops_parallel_for(const struct eng_exec *x, int threads, size_t n, ops_range_fn fn, void *ctx)
{
	int t = threads < OPS_MAX_THREADS ? threads : OPS_MAX_THREADS;
	if (x && x->pool) {
		eng_pool_run(x->pool, t, n, fn, ctx);
		return;
	}
	if ((size_t)t > n)
		t = (int)n;
	if (t <= 1) {
		fn(ctx, 0, n, 0);
		return;
	}
	struct ops_slice sl[OPS_MAX_THREADS];
	pthread_t tid[OPS_MAX_THREADS];
	bool started[OPS_MAX_THREADS] = {false};
	for (int i = 0; i < t; i++)
		sl[i] = (struct ops_slice){fn, ctx, n * (size_t)i / (size_t)t,
					   n * (size_t)(i + 1) / (size_t)t, i};
	for (int i = 1; i < t; i++)
		started[i] = pthread_create(&tid[i], NULL, ops_slice_main, &sl[i]) == 0;
	fn(ctx, sl[0].begin, sl[0].end, 0);
	for (int i = 1; i < t; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			fn(ctx, sl[i].begin, sl[i].end, i); /* no thread: do it here */
	}
}
