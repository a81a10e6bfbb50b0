/*
 * pool.c — AVERAGE_POOL_2D, MAX_POOL_2D and MEAN: reference kernels.
 *
 * Pooling windows exclude padding (the average divides by the number of
 * taps inside the image, rounding half away from zero, as TFLite does).
 * 8-bit MEAN follows the three paths of TFLite's builtin MEAN:
 *  - 4-D input, axes {1,2}, keep_dims (squeeze-excite): the "Mean4D" recipe —
 *    raw sum, one multiplier s_in/(count·s_out) computed in float, plus a
 *    bias out_zp − round(in_zp·s_in/s_out) also computed in float;
 *  - same input and output parameters: sum / count, truncated (C division);
 *  - otherwise QuantizedMeanOrSum: sum, centre by zp·count, one
 *    requantization with 1/count folded into the multiplier.
 * Inference worker thread.
 */
#include <math.h>

#include "kernels.h"

static void release_prep(struct eng_node *n)
{
	free(n->prep);
	n->prep = NULL;
}

struct pool_prep {
	enum eng_dtype t;
	int nb, ih, iw, c, oh, ow, fh, fw, sh, sw, pt, pl;
	int32_t lo, hi;
	float flo, fhi;
};

static int pool_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 1, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *out = n->out[0];
	const struct eng_pool_opts *o = &n->opts.pool;
	if (in->ndim != 4 || out->ndim != 4 || in->type != out->type) {
		KERR(err, errlen, "pooling needs 4-D input and output of one type");
		return -EINVAL;
	}
	if (!dt_is_q8(in->type) && in->type != ENG_DT_F32) {
		KERR(err, errlen, "unsupported type %d", in->type);
		return -ENOTSUP;
	}
	if ((rc = ops_check_q8(in, "input", err, errlen)) || (rc = ops_check_q8(out, "output", err, errlen)))
		return rc;
	struct pool_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->t = in->type;
	p->nb = in->dims[0];
	p->ih = in->dims[1];
	p->iw = in->dims[2];
	p->c = in->dims[3];
	p->fh = o->filter_h;
	p->fw = o->filter_w;
	p->sh = o->stride_h > 0 ? o->stride_h : 1;
	p->sw = o->stride_w > 0 ? o->stride_w : 1;
	if (p->fh <= 0 || p->fw <= 0) {
		KERR(err, errlen, "filter size %dx%d", p->fh, p->fw);
		free(p);
		return -EINVAL;
	}
	p->oh = ops_out_size(o->padding, p->ih, p->fh, p->sh, 1);
	p->ow = ops_out_size(o->padding, p->iw, p->fw, p->sw, 1);
	if (out->dims[0] != p->nb || out->dims[1] != p->oh || out->dims[2] != p->ow ||
	    out->dims[3] != p->c) {
		KERR(err, errlen, "output shape does not match the pooling geometry");
		free(p);
		return -EINVAL;
	}
	if (o->padding == ENG_PAD_SAME) {
		p->pt = ops_pad_before(p->ih, p->oh, p->fh, p->sh, 1);
		p->pl = ops_pad_before(p->iw, p->ow, p->fw, p->sw, 1);
	}
	if (p->t == ENG_DT_F32)
		q_act_range_f32(o->act, &p->flo, &p->fhi);
	else
		q_act_range(o->act, p->t, t_scale(out), t_zp(out), &p->lo, &p->hi);
	n->macs = (int64_t)p->nb * p->oh * p->ow * p->c * p->fh * p->fw;
	n->prep = p;
	return 0;
}

static int pool_eval(const struct eng_node *n, const struct eng_exec *x, bool avg)
{
	const struct pool_prep *p = n->prep;
	const void *src = eng_tdata(x, n->in[0]);
	void *dst = eng_tdata(x, n->out[0]);
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
				int fy0 = iy0 < 0 ? -iy0 : 0, fx0 = ix0 < 0 ? -ix0 : 0;
				int fy1 = p->ih - iy0 < p->fh ? p->ih - iy0 : p->fh;
				int fx1 = p->iw - ix0 < p->fw ? p->iw - ix0 : p->fw;
				for (int c = 0; c < p->c; c++) {
					int32_t acc = avg ? 0 : INT32_MIN;
					float facc = avg ? 0.0f : -INFINITY;
					int count = 0;
					for (int fy = fy0; fy < fy1; fy++)
						for (int fx = fx0; fx < fx1; fx++) {
							size_t i = (((size_t)b * p->ih + iy0 + fy) * p->iw + ix0 + fx) * p->c + c;
							if (p->t == ENG_DT_F32) {
								float v = ((const float *)src)[i];
								facc = avg ? facc + v : fmaxf(facc, v);
							} else {
								int32_t v = q8_get(p->t, src, i);
								acc = avg ? acc + v : (v > acc ? v : acc);
							}
							count++;
						}
					size_t o = (((size_t)b * p->oh + oy) * p->ow + ox) * p->c + c;
					if (count == 0) {
						/* window entirely in padding: nothing to pool */
						acc = 0;
						facc = 0.0f;
						count = 1;
					}
					if (p->t == ENG_DT_F32) {
						float v = avg ? facc / (float)count : facc;
						((float *)dst)[o] = fminf(fmaxf(v, p->flo), p->fhi);
					} else {
						if (avg)
							acc = acc > 0 ? (acc + count / 2) / count
								      : (acc - count / 2) / count;
						q8_put(p->t, dst, o, clamp_i32(acc, p->lo, p->hi));
					}
				}
			}
	return 0;
}

static int avgpool_eval(const struct eng_node *n, const struct eng_exec *x)
{
	return pool_eval(n, x, true);
}

static int maxpool_eval(const struct eng_node *n, const struct eng_exec *x)
{
	return pool_eval(n, x, false);
}

/* ---- MEAN ---------------------------------------------------------------- */

struct mean_prep {
	enum eng_dtype t;
	int ndim;
	int dims[ENG_MAX_DIMS];
	bool reduce[ENG_MAX_DIMS];
	size_t out_count, per_out;
	int32_t m, in_zp, out_zp;
	int s;
	enum { MEAN_GENERAL, MEAN_SAME_PARAMS, MEAN_4D } path;
	int32_t bias; /* MEAN_4D */
};

static int mean_prepare(struct eng_node *n, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 2, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *ax = n->in[1], *out = n->out[0];
	if (!ax->is_const || ax->type != ENG_DT_I32 || !ax->const_data) {
		KERR(err, errlen, "MEAN axes must be a constant int32 tensor");
		return -ENOTSUP;
	}
	if (in->type != out->type || (!dt_is_q8(in->type) && in->type != ENG_DT_F32)) {
		KERR(err, errlen, "unsupported MEAN types %d -> %d", in->type, out->type);
		return -ENOTSUP;
	}
	if ((rc = ops_check_q8(in, "input", err, errlen)) || (rc = ops_check_q8(out, "output", err, errlen)))
		return rc;
	struct mean_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->t = in->type;
	p->ndim = in->ndim;
	memcpy(p->dims, in->dims, sizeof(p->dims));
	const int32_t *axes = ax->const_data;
	for (size_t i = 0; i < t_numel(ax); i++) {
		int a = axes[i] < 0 ? axes[i] + in->ndim : axes[i];
		if (a < 0 || a >= in->ndim) {
			KERR(err, errlen, "MEAN axis %d out of range", axes[i]);
			free(p);
			return -EINVAL;
		}
		p->reduce[a] = true;
	}
	p->out_count = 1;
	p->per_out = 1;
	for (int d = 0; d < in->ndim; d++) {
		if (p->reduce[d])
			p->per_out *= (size_t)in->dims[d];
		else
			p->out_count *= (size_t)in->dims[d];
	}
	if (t_numel(out) != p->out_count || p->per_out == 0 || p->per_out > INT32_MAX) {
		KERR(err, errlen, "MEAN output has %zu elements, expected %zu", t_numel(out),
		     p->out_count);
		free(p);
		return -EINVAL;
	}
	int n_axes = (int)t_numel(ax);
	bool hw = in->ndim == 4 && n_axes == 2 &&
		  ((axes[0] == 1 && axes[1] == 2) || (axes[0] == 2 && axes[1] == 1));
	if (dt_is_q8(p->t) && hw && n->opts.mean.keep_dims) {
		/* float arithmetic where TFLite's Mean4D uses float, to get its rounding */
		float s_in = t_scale(in), s_out = t_scale(out);
		float temp = (float)t_zp(in) * s_in / s_out;
		temp = temp > 0 ? temp + 0.5f : temp - 0.5f;
		p->path = MEAN_4D;
		p->bias = t_zp(out) - (int32_t)temp;
		float real = s_in / ((float)(in->dims[1] * in->dims[2]) * s_out);
		q_quantize_multiplier((double)real, &p->m, &p->s);
	} else if (dt_is_q8(p->t) && t_zp(in) == t_zp(out) && t_scale(in) == t_scale(out)) {
		p->path = MEAN_SAME_PARAMS;
	} else if (dt_is_q8(p->t)) {
		/* TFLite's integer mean: the s_in/s_out multiplier absorbs 1/count, keeping
		 * up to 32 extra bits (and shift >= -31) before the division. */
		p->in_zp = t_zp(in);
		p->out_zp = t_zp(out);
		int32_t m;
		int s;
		q_quantize_multiplier((double)t_scale(in) / (double)t_scale(out), &m, &s);
		int64_t cnt = (int64_t)p->per_out;
		int sh = 63 - __builtin_clzll((unsigned long long)cnt);
		if (sh > 32)
			sh = 32;
		if (sh > 31 + s)
			sh = 31 + s;
		p->m = (int32_t)(((int64_t)m << sh) / cnt);
		p->s = s - sh;
	}
	n->macs = (int64_t)t_numel(in);
	n->scratch_bytes = p->out_count * 8; /* int64 or float sums */
	n->prep = p;
	return 0;
}

static int mean_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct mean_prep *p = n->prep;
	const void *src = eng_tdata(x, n->in[0]);
	void *dst = eng_tdata(x, n->out[0]);
	/* Walk input indices; map each to its output index (kept dims in order). */
	size_t total = p->out_count * p->per_out;
	int64_t *isum = NULL;
	/* float: float sums in input order, then / count, as TFLite's reference */
	float *fsum = NULL;
	if (p->t == ENG_DT_F32) {
		fsum = x->scratch;
		for (size_t o = 0; o < p->out_count; o++)
			fsum[o] = 0.0f;
	} else {
		isum = x->scratch;
		memset(isum, 0, p->out_count * sizeof(*isum));
	}
	int idx[ENG_MAX_DIMS] = {0};
	for (size_t i = 0; i < total; i++) {
		size_t o = 0;
		for (int d = 0; d < p->ndim; d++)
			if (!p->reduce[d])
				o = o * (size_t)p->dims[d] + (size_t)idx[d];
		if (fsum)
			fsum[o] += ((const float *)src)[i];
		else
			isum[o] += q8_get(p->t, src, i);
		for (int d = p->ndim - 1; d >= 0; d--) {
			if (++idx[d] < p->dims[d])
				break;
			idx[d] = 0;
		}
	}
	int32_t lo, hi;
	q_type_range(p->t, &lo, &hi);
	for (size_t o = 0; o < p->out_count; o++) {
		if (fsum) {
			((float *)dst)[o] = fsum[o] / (float)p->per_out;
		} else if (p->path == MEAN_4D) {
			int32_t v = q_mul_by_qm((int32_t)isum[o], p->m, p->s) + p->bias;
			q8_put(p->t, dst, o, clamp_i32(v, lo, hi));
		} else if (p->path == MEAN_SAME_PARAMS) {
			int32_t v = (int32_t)(isum[o] / (int64_t)p->per_out);
			q8_put(p->t, dst, o, clamp_i32(v, lo, hi));
		} else {
			/* int32 as in the reference (sums of 8-bit values over the axes) */
			int32_t centred = (int32_t)(isum[o] - (int64_t)p->in_zp * (int64_t)p->per_out);
			int32_t v = q_mul_by_qm(centred, p->m, p->s) + p->out_zp;
			q8_put(p->t, dst, o, clamp_i32(v, lo, hi));
		}
	}
	return 0;
}

const struct eng_kernel eng_k_avgpool = {"AVERAGE_POOL_2D", pool_prepare, avgpool_eval,
					 release_prep};
const struct eng_kernel eng_k_maxpool = {"MAX_POOL_2D", pool_prepare, maxpool_eval, release_prep};
const struct eng_kernel eng_k_mean = {"MEAN", mean_prepare, mean_eval, release_prep};
