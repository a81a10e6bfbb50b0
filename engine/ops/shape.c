/*
 * shape.c — CONCATENATION, SPLIT, RESHAPE, RESIZE_NEAREST_NEIGHBOR,
 * RESIZE_BILINEAR: reference kernels.
 *
 * Data movement with one numeric subtlety: a uint8 CONCATENATION input whose
 * scale or zero point differs from the output's is requantized the way TFLite
 * does it, in float: q_out = round(q_in·(s_in/s_out) − zp_in·(s_in/s_out)) + zp_out.
 * Inference worker thread.
 */
#include <math.h>

#include "kernels.h"

static void release_prep(struct eng_node *n)
{
	free(n->prep);
	n->prep = NULL;
}

static int norm_axis(int axis, int ndim)
{
	return axis < 0 ? axis + ndim : axis;
}

/* ---- CONCATENATION ------------------------------------------------------- */

struct concat_prep {
	int axis;
	size_t outer, esize, out_row; /* out_row: bytes of one outer row of the output */
	enum eng_dtype t;
	int32_t out_zp;
	float out_inv;
	/* 8-bit inputs quantized unlike the output: the rescale of every byte value,
	 * computed at prepare with the reference's float expression (exact); else NULL */
	uint8_t (*lut)[256]; /* [n_in] */
};

static int concat_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 1, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *out = n->out[0];
	int axis = norm_axis(n->opts.concat.axis, out->ndim);
	if (axis < 0 || axis >= out->ndim) {
		KERR(err, errlen, "axis %d out of range for %d-D output", n->opts.concat.axis,
		     out->ndim);
		return -EINVAL;
	}
	int sum = 0;
	for (int i = 0; i < n->n_in; i++) {
		const struct eng_tensor *t = n->in[i];
		if (!t || t->ndim != out->ndim || t->type != out->type) {
			KERR(err, errlen, "input %d does not match the output rank/type", i);
			return -EINVAL;
		}
		for (int d = 0; d < out->ndim; d++)
			if (d != axis && t->dims[d] != out->dims[d]) {
				KERR(err, errlen, "input %d dim %d is %d, output has %d", i, d, t->dims[d],
				     out->dims[d]);
				return -EINVAL;
			}
		rc = ops_check_q8(t, "input", err, errlen);
		if (rc)
			return rc;
		sum += t->dims[axis];
	}
	rc = ops_check_q8(out, "output", err, errlen);
	if (rc)
		return rc;
	if (sum != out->dims[axis]) {
		KERR(err, errlen, "inputs sum to %d along axis %d, output has %d", sum, axis,
		     out->dims[axis]);
		return -EINVAL;
	}
	struct concat_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->axis = axis;
	p->outer = 1;
	for (int d = 0; d < axis; d++)
		p->outer *= (size_t)out->dims[d];
	p->esize = dt_size(out->type);
	p->out_row = t_numel(out) / (p->outer ? p->outer : 1) * p->esize;
	p->t = out->type;
	p->out_zp = t_zp(out);
	p->out_inv = dt_is_q8(out->type) ? 1.0f / t_scale(out) : 0.0f;
	n->prep = p;
	if (!dt_is_q8(p->t))
		return 0;
	p->lut = calloc((size_t)n->n_in, sizeof(*p->lut));
	if (!p->lut) {
		free(p);
		n->prep = NULL;
		KERR(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int32_t lo, hi;
	q_type_range(p->t, &lo, &hi);
	for (int i = 0; i < n->n_in; i++) {
		const struct eng_tensor *t = n->in[i];
		float scale = t_scale(t) * p->out_inv;
		float bias = (float)(-t_zp(t)) * scale;
		for (int b = 0; b < 256; b++) {
			uint8_t byte = (uint8_t)b;
			float r = roundf((float)q8_get(p->t, &byte, 0) * scale + bias);
			/* clamp((int32_t)r + zp), the reference's expression, saturated */
			int32_t v = q_sat_i32(r, lo - p->out_zp, hi - p->out_zp) + p->out_zp;
			q8_put(p->t, &p->lut[i][b], 0, v);
		}
	}
	return 0;
}

static void concat_release(struct eng_node *n)
{
	struct concat_prep *p = n->prep;
	if (p)
		free(p->lut);
	free(p);
	n->prep = NULL;
}

static int concat_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct concat_prep *p = n->prep;
	const struct eng_tensor *out = n->out[0];
	uint8_t *y = eng_tdata(x, out);
	size_t col = 0;
	for (int i = 0; i < n->n_in; i++) {
		const struct eng_tensor *t = n->in[i];
		const uint8_t *src = eng_tdata(x, t);
		size_t row = t_numel(t) / (p->outer ? p->outer : 1) * p->esize;
		bool requant = dt_is_q8(p->t) &&
			       (t_zp(t) != p->out_zp || t_scale(t) != t_scale(out));
		const uint8_t *lut = requant ? p->lut[i] : NULL;
		for (size_t o = 0; o < p->outer; o++) {
			uint8_t *dst = y + o * p->out_row + col;
			const uint8_t *s = src + o * row;
			if (!lut) {
				memcpy(dst, s, row);
				continue;
			}
			ops_lut8(dst, s, row, lut, x->lut_vbmi);
		}
		col += row;
	}
	return 0;
}

/* ---- SPLIT --------------------------------------------------------------- */

struct split_prep {
	size_t outer, in_row, out_row;
};

static int split_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 2, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *at = n->in[0], *in = n->in[1];
	if (!at->is_const || at->type != ENG_DT_I32 || t_numel(at) != 1 || !at->const_data) {
		KERR(err, errlen, "SPLIT axis must be a constant int32 scalar");
		return -ENOTSUP;
	}
	int axis = norm_axis(*(const int32_t *)at->const_data, in->ndim);
	if (axis < 0 || axis >= in->ndim) {
		KERR(err, errlen, "SPLIT axis out of range");
		return -EINVAL;
	}
	int ns = n->n_out;
	if (n->opts.split.num_splits > 0 && n->opts.split.num_splits != ns) {
		KERR(err, errlen, "num_splits %d but %d outputs", n->opts.split.num_splits, ns);
		return -EINVAL;
	}
	if (in->dims[axis] % ns) {
		KERR(err, errlen, "dim %d of size %d does not split in %d", axis, in->dims[axis], ns);
		return -EINVAL;
	}
	struct split_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->outer = 1;
	for (int d = 0; d < axis; d++)
		p->outer *= (size_t)in->dims[d];
	size_t es = dt_size(in->type);
	p->in_row = t_numel(in) / (p->outer ? p->outer : 1) * es;
	p->out_row = p->in_row / (size_t)ns;
	for (int i = 0; i < ns; i++) {
		const struct eng_tensor *o = n->out[i];
		if (o->type != in->type || t_numel(o) * es != p->outer * p->out_row) {
			KERR(err, errlen, "output %d has the wrong type or size", i);
			free(p);
			return -EINVAL;
		}
	}
	n->prep = p;
	return 0;
}

static int split_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct split_prep *p = n->prep;
	const uint8_t *src = eng_tdata(x, n->in[1]);
	for (int i = 0; i < n->n_out; i++) {
		uint8_t *dst = eng_tdata(x, n->out[i]);
		for (size_t o = 0; o < p->outer; o++)
			memcpy(dst + o * p->out_row, src + o * p->in_row + (size_t)i * p->out_row,
			       p->out_row);
	}
	return 0;
}

/* ---- RESHAPE ------------------------------------------------------------- */

static int reshape_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 1, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *out = n->out[0];
	if (in->type != out->type || t_numel(in) != t_numel(out)) {
		KERR(err, errlen, "RESHAPE changes the type or the element count");
		return -EINVAL;
	}
	return 0;
}

static int reshape_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct eng_tensor *in = n->in[0], *out = n->out[0];
	const void *s = eng_tdata(x, in);
	void *d = eng_tdata(x, out);
	if (s != d)
		memmove(d, s, t_numel(out) * dt_size(out->type));
	return 0;
}

static void reshape_release(struct eng_node *n)
{
	(void)n;
}

/* ---- RESIZE -------------------------------------------------------------- */

struct resize_prep {
	int nb, ih, iw, c, oh, ow;
	size_t es;
	enum eng_dtype t;
	bool align, half;
};

static int resize_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 1, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *out = n->out[0];
	if (in->ndim != 4 || out->ndim != 4 || in->type != out->type || in->dims[0] != out->dims[0] ||
	    in->dims[3] != out->dims[3]) {
		KERR(err, errlen, "RESIZE needs 4-D input and output of the same type and depth");
		return -EINVAL;
	}
	for (int d = 0; d < 4; d++)
		if (in->dims[d] <= 0 || out->dims[d] <= 0) {
			KERR(err, errlen, "RESIZE with an empty dimension");
			return -EINVAL;
		}
	struct resize_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nb = in->dims[0];
	p->ih = in->dims[1];
	p->iw = in->dims[2];
	p->c = in->dims[3];
	p->oh = out->dims[1];
	p->ow = out->dims[2];
	p->es = dt_size(in->type);
	p->t = in->type;
	p->align = n->opts.resize.align_corners;
	p->half = n->opts.resize.half_pixel_centers;
	n->prep = p;
	return 0;
}

static float resize_scale(int in, int out, bool align)
{
	return (align && out > 1) ? (float)(in - 1) / (float)(out - 1) : (float)in / (float)out;
}

static int nearest(int v, int in, int out, bool align, bool half)
{
	float scale = resize_scale(in, out, align);
	float off = half ? 0.5f : 0.0f;
	int r = align ? (int)roundf(((float)v + off) * scale) : (int)floorf(((float)v + off) * scale);
	if (r > in - 1)
		r = in - 1;
	if (half && r < 0)
		r = 0;
	return r;
}

static int resize_nn_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct resize_prep *p = n->prep;
	const uint8_t *src = eng_tdata(x, n->in[0]);
	uint8_t *dst = eng_tdata(x, n->out[0]);
	size_t px = (size_t)p->c * p->es;
	for (int b = 0; b < p->nb; b++)
		for (int y = 0; y < p->oh; y++) {
			int iy = nearest(y, p->ih, p->oh, p->align, p->half);
			for (int xx = 0; xx < p->ow; xx++) {
				int ix = nearest(xx, p->iw, p->ow, p->align, p->half);
				memcpy(dst + (((size_t)b * p->oh + y) * p->ow + xx) * px,
				       src + (((size_t)b * p->ih + iy) * p->iw + ix) * px, px);
			}
		}
	return 0;
}

static void interp(float v, float scale, bool half, int size, float *sv, int *lo, int *hi)
{
	*sv = half ? ((v + 0.5f) * scale - 0.5f) : v * scale;
	float fl = floorf(*sv);
	*lo = (int)fl > 0 ? (int)fl : 0;
	int c = (int)ceilf(*sv);
	*hi = c < size - 1 ? c : size - 1;
}

static void interp_int(int v, int32_t scale10, bool half, int size, int32_t *sv, int32_t *lo,
		       int32_t *hi)
{
	*sv = half ? v * scale10 + scale10 / 2 - (1 << 9) : v * scale10;
	*lo = *sv / (1 << 10) > 0 ? *sv / (1 << 10) : 0;
	int32_t u = (*sv + (1 << 10) - 1) / (1 << 10);
	*hi = u < size - 1 ? u : size - 1;
}

static int32_t scale10(int in, int out, bool align)
{
	if (align && out > 1)
		return ((1 << 10) * (in - 1) + (out - 1) / 2) / (out - 1);
	return ((1 << 10) * in + out / 2) / out;
}

/* int8: TFLite's integer-only bilinear (10-bit fixed-point positions). */
static void resize_bilinear_i8(const struct resize_prep *p, const int8_t *src, int8_t *dst)
{
	int32_t hs = scale10(p->ih, p->oh, p->align), ws = scale10(p->iw, p->ow, p->align);
	for (int b = 0; b < p->nb; b++)
		for (int y = 0; y < p->oh; y++) {
			int32_t iy, y0, y1;
			interp_int(y, hs, p->half, p->ih, &iy, &y0, &y1);
			for (int xx = 0; xx < p->ow; xx++) {
				int32_t ix, x0, x1;
				interp_int(xx, ws, p->half, p->iw, &ix, &x0, &x1);
				int64_t fy = iy - (1 << 10) * y0, fx = ix - (1 << 10) * x0;
				for (int c = 0; c < p->c; c++) {
#define AT(yy, xq) (((size_t)b * p->ih + (yy)) * p->iw + (xq)) * p->c + c
					int64_t o = (int64_t)src[AT(y0, x0)] * ((1 << 10) - fy) * ((1 << 10) - fx) +
						    (int64_t)src[AT(y1, x0)] * fy * ((1 << 10) - fx) +
						    (int64_t)src[AT(y0, x1)] * ((1 << 10) - fy) * fx +
						    (int64_t)src[AT(y1, x1)] * fy * fx;
#undef AT
					int64_t round = o > 0 ? (1 << 19) : -(1 << 19);
					dst[(((size_t)b * p->oh + y) * p->ow + xx) * p->c + c] =
						(int8_t)((o + round) / (1 << 20));
				}
			}
		}
}

/* float and uint8: TFLite's float formula; integer outputs add 0.5 and truncate. */
static int resize_bilinear_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct resize_prep *p = n->prep;
	const void *src = eng_tdata(x, n->in[0]);
	void *dst = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_I8) {
		resize_bilinear_i8(p, src, dst);
		return 0;
	}
	float hs = resize_scale(p->ih, p->oh, p->align), ws = resize_scale(p->iw, p->ow, p->align);
	const float round_off = p->t == ENG_DT_F32 ? 0.0f : 0.5f;
	for (int b = 0; b < p->nb; b++)
		for (int y = 0; y < p->oh; y++) {
			float iy;
			int y0, y1;
			interp((float)y, hs, p->half, p->ih, &iy, &y0, &y1);
			for (int xx = 0; xx < p->ow; xx++) {
				float ix;
				int x0, x1;
				interp((float)xx, ws, p->half, p->iw, &ix, &x0, &x1);
				for (int c = 0; c < p->c; c++) {
#define AT(yy, xq) (((size_t)b * p->ih + (yy)) * p->iw + (xq)) * p->c + c
					float v00, v01, v10, v11;
					if (p->t == ENG_DT_F32) {
						const float *f = src;
						v00 = f[AT(y0, x0)], v01 = f[AT(y0, x1)];
						v10 = f[AT(y1, x0)], v11 = f[AT(y1, x1)];
					} else {
						const uint8_t *u = src;
						v00 = (float)u[AT(y0, x0)], v01 = (float)u[AT(y0, x1)];
						v10 = (float)u[AT(y1, x0)], v11 = (float)u[AT(y1, x1)];
					}
#undef AT
					float dy = iy - (float)y0, dx = ix - (float)x0;
					size_t o = (((size_t)b * p->oh + y) * p->ow + xx) * p->c + c;
					if (p->t == ENG_DT_F32) {
						/* TFLite's float kernel: corner weights first, then
						 * accumulated from zero in (y0,x0) (y0,x1) (y1,x0)
						 * (y1,x1) order */
						float v = 0.0f;
						v += ((1 - dy) * (1 - dx)) * v00;
						v += ((1 - dy) * dx) * v01;
						v += (dy * (1 - dx)) * v10;
						v += (dy * dx) * v11;
						((float *)dst)[o] = v;
					} else {
						float v = v00 * (1 - dy) * (1 - dx) + v10 * dy * (1 - dx) +
							  v01 * (1 - dy) * dx + v11 * dy * dx + round_off;
						((uint8_t *)dst)[o] = (uint8_t)v;
					}
				}
			}
		}
	return 0;
}

const struct eng_kernel eng_k_concat = {"CONCATENATION", concat_prepare, concat_eval,
					concat_release};
const struct eng_kernel eng_k_split = {"SPLIT", split_prepare, split_eval, release_prep};
const struct eng_kernel eng_k_reshape = {"RESHAPE", reshape_prepare, reshape_eval,
					 reshape_release};
const struct eng_kernel eng_k_resize_nn = {"RESIZE_NEAREST_NEIGHBOR", resize_prepare,
					   resize_nn_eval, release_prep};
const struct eng_kernel eng_k_resize_bilinear = {"RESIZE_BILINEAR", resize_prepare,
						 resize_bilinear_eval, release_prep};
