/*
 * conv.c — CONV_2D and DEPTHWISE_CONV_2D, reference kernels.
 *
 * Owns the prepared data of convolution nodes (struct conv_prep, shared with
 * the fast variants in conv_fast.c).  The reference loops follow TFLite's
 * reference kernels literally: same accumulation order, padding taps skipped,
 * bias added, then the fixed-point requantization of quant.h.  Runs on the
 * inference worker thread; prepare at model load.
 */
#include "conv.h"

#include <math.h>

void conv_release(struct eng_node *n)
{
	struct conv_prep *p = n->prep;
	if (!p)
		return;
	free(p->mult);
	free(p->shift);
	free(p->wpack);
	free(p->cterm);
	free(p->wdw);
	free(p->zrow);
	free(p->rq);
	free(p->wdw16);
	free(p->wf);
	free(p->bf);
	free(p);
	n->prep = NULL;
}

int conv_prepare_common(struct eng_node *n, bool dw, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 2, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *f = n->in[1], *out = n->out[0];
	const struct eng_tensor *b = n->n_in > 2 ? n->in[2] : NULL;
	const struct eng_conv_opts *o = &n->opts.conv;
	if (in->ndim != 4 || f->ndim != 4 || out->ndim != 4) {
		KERR(err, errlen, "input, filter and output must be 4-D");
		return -EINVAL;
	}
	enum eng_dtype t = in->type;
	if (t != ENG_DT_U8 && t != ENG_DT_I8 && t != ENG_DT_F32) {
		KERR(err, errlen, "unsupported input type %d", t);
		return -ENOTSUP;
	}
	if (out->type != t || f->type != t) {
		KERR(err, errlen, "input, filter and output types differ (%d, %d, %d)", t, f->type,
		     out->type);
		return -ENOTSUP;
	}
	struct conv_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->type = t;
	p->dw = dw;
	p->nb = in->dims[0];
	p->ih = in->dims[1];
	p->iw = in->dims[2];
	p->ic = in->dims[3];
	if (dw) {
		p->kh = f->dims[1];
		p->kw = f->dims[2];
		p->oc = f->dims[3];
		p->dm = o->depth_multiplier > 0 ? o->depth_multiplier : 1;
		if (f->dims[0] != 1 || p->ic <= 0 || p->oc != p->ic * p->dm) {
			/* Some converters write depth_multiplier 0/1 loosely: derive it. */
			if (f->dims[0] == 1 && p->ic > 0 && p->oc % p->ic == 0) {
				p->dm = p->oc / p->ic;
			} else {
				KERR(err, errlen, "filter [1,%d,%d,%d] does not match %d input channels",
				     p->kh, p->kw, p->oc, p->ic);
				goto fail;
			}
		}
	} else {
		p->oc = f->dims[0];
		p->kh = f->dims[1];
		p->kw = f->dims[2];
		p->dm = 1;
		if (f->dims[3] != p->ic) {
			KERR(err, errlen, "filter depth %d != input depth %d", f->dims[3], p->ic);
			goto fail;
		}
	}
	p->sh = o->stride_h > 0 ? o->stride_h : 1;
	p->sw = o->stride_w > 0 ? o->stride_w : 1;
	p->dh = o->dilation_h > 0 ? o->dilation_h : 1;
	p->dwl = o->dilation_w > 0 ? o->dilation_w : 1;
	if (p->kh <= 0 || p->kw <= 0 || p->oc <= 0 || p->ih <= 0 || p->iw <= 0 || p->nb <= 0) {
		KERR(err, errlen, "empty dimension");
		goto fail;
	}
	p->oh = ops_out_size(o->padding, p->ih, p->kh, p->sh, p->dh);
	p->ow = ops_out_size(o->padding, p->iw, p->kw, p->sw, p->dwl);
	if (out->dims[0] != p->nb || out->dims[1] != p->oh || out->dims[2] != p->ow ||
	    out->dims[3] != p->oc) {
		KERR(err, errlen, "output shape [%d,%d,%d,%d], expected [%d,%d,%d,%d]", out->dims[0],
		     out->dims[1], out->dims[2], out->dims[3], p->nb, p->oh, p->ow, p->oc);
		goto fail;
	}
	if (o->padding == ENG_PAD_SAME) {
		p->pt = ops_pad_before(p->ih, p->oh, p->kh, p->sh, p->dh);
		p->pl = ops_pad_before(p->iw, p->ow, p->kw, p->sw, p->dwl);
	}
	if (b) {
		if (t_numel(b) != (size_t)p->oc ||
		    b->type != (t == ENG_DT_F32 ? ENG_DT_F32 : ENG_DT_I32)) {
			KERR(err, errlen, "bias must be %d elements of %s", p->oc,
			     t == ENG_DT_F32 ? "float32" : "int32");
			goto fail;
		}
	}
	if (t == ENG_DT_F32) {
		q_act_range_f32(o->act, &p->f_lo, &p->f_hi);
	} else {
		if (ops_check_q8(in, "input", err, errlen) || ops_check_q8(out, "output", err, errlen) ||
		    ops_check_q8(f, "filter", err, errlen))
			goto fail;
		if (f->q.n != 1 && f->q.n != p->oc) {
			KERR(err, errlen, "filter has %d scales for %d channels", f->q.n, p->oc);
			goto fail;
		}
		p->in_zp = t_zp(in);
		p->out_zp = t_zp(out);
		/* int8 kernels take filters as symmetric (zero point ignored), like TFLite. */
		p->w_zp = t == ENG_DT_U8 ? t_zp(f) : 0;
		p->mult = calloc((size_t)p->oc, sizeof(*p->mult));
		p->shift = calloc((size_t)p->oc, sizeof(*p->shift));
		if (!p->mult || !p->shift) {
			rc = -ENOMEM;
			goto fail_rc;
		}
		float s_in = t_scale(in), s_out = t_scale(out);
		for (int c = 0; c < p->oc; c++) {
			float s_w = f->q.scale[f->q.n == 1 ? 0 : c];
			double m;
			if (t == ENG_DT_U8 && f->q.n == 1)
				/* The legacy uint8 path multiplies the scales in float first. */
				m = (double)(s_in * s_w) / (double)s_out;
			else
				m = (double)s_in * (double)s_w / (double)s_out;
			q_quantize_multiplier(m, &p->mult[c], &p->shift[c]);
		}
		q_act_range(o->act, t, s_out, p->out_zp, &p->act_lo, &p->act_hi);
		p->round_up = t == ENG_DT_I8 && !dw;
	}
	n->macs = (int64_t)p->nb * p->oh * p->ow * p->oc * p->kh * p->kw * (dw ? 1 : p->ic);
	n->prep = p;
	return 0;
fail:
	rc = -EINVAL;
fail_rc:
	n->prep = p;
	conv_release(n);
	return rc;
}

/* NHWC element offsets of input pixel (b, iy, ix) and output pixel (b, oy, ox). */
static inline size_t in_at(const struct conv_prep *p, int b, int iy, int ix)
{
	return (((size_t)b * p->ih + iy) * p->iw + ix) * p->ic;
}

static inline size_t out_at(const struct conv_prep *p, int b, int oy, int ox)
{
	return (((size_t)b * p->oh + oy) * p->ow + ox) * p->oc;
}

static void conv_ref_q8(const struct conv_prep *p, const void *x, const void *w,
			const int32_t *bias, void *y)
{
	enum eng_dtype t = p->type;
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				for (int o = 0; o < p->oc; o++) {
					int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
					int32_t acc = 0;
					for (int ky = 0; ky < p->kh; ky++) {
						int iy = iy0 + p->dh * ky;
						if (iy < 0 || iy >= p->ih)
							continue;
						for (int kx = 0; kx < p->kw; kx++) {
							int ix = ix0 + p->dwl * kx;
							if (ix < 0 || ix >= p->iw)
								continue;
							size_t xi = in_at(p, b, iy, ix);
							size_t wi = (((size_t)o * p->kh + ky) * p->kw + kx) * p->ic;
							for (int c = 0; c < p->ic; c++)
								acc += (q8_get(t, w, wi + c) - p->w_zp) *
								       (q8_get(t, x, xi + c) - p->in_zp);
						}
					}
					if (bias)
						acc += bias[o];
					acc = (p->round_up ? q_mul_by_qm_up : q_mul_by_qm)(acc, p->mult[o], p->shift[o]) + p->out_zp;
					size_t yi = out_at(p, b, oy, ox) + o;
					q8_put(t, y, yi, clamp_i32(acc, p->act_lo, p->act_hi));
				}
}

/*
 * TFLite's float CONV_2D is a GEMM (Eigen's, SSE build; output channels are
 * its rows, output pixels its columns), and a float sum depends on its order.
 * Observed against TFLite and reproduced here:
 *  - one output pixel in all (a matrix-vector product): four lane sums over
 *    the (ky, kx, ic) depth, k mod 4, added as (s0 + s2) + (s1 + s3), the
 *    depth beyond the last multiple of four then added in order;
 *  - otherwise, for the output pixels in whole groups of four:
 *    channels below oc & ~7 are summed in order; when oc % 8 >= 4 the next
 *    four channels sum even and odd k apart over the depth rounded down to
 *    eight, s_even + s_odd, then the rest in order; the last oc % 4 channels
 *    use four lane sums (k mod 4) added as (s0 + s1) + (s2 + s3), then the
 *    rest in order;
 *  - the last npix % 4 output pixels are summed in order.
 * k counts padding taps too (they add nothing).  A depth K above 1016 is cut
 * into blocks of kc (Eigen's rule: kc = 1016 - 8 * ((1015 - K % 1016) /
 * (8 * (K / 1016 + 1))), K = 1152 gives 584 + 568 as measured), each block
 * summed as above from zero and the block sums added in order.  The bias
 * comes last.
 */
#define CONV_F32_MAX_KC 1016
enum conv_f32_order { SUM_SEQ, SUM_GEMV, SUM_EVEN_ODD, SUM_LANES4 };

static enum conv_f32_order conv_f32_order_of(const struct conv_prep *p, int b, int oy, int ox,
					     int o)
{
	long npix = (long)p->nb * p->oh * p->ow;
	if (npix == 1)
		return SUM_GEMV;
	long pix = ((long)b * p->oh + oy) * p->ow + ox;
	if (pix >= (npix & ~3L))
		return SUM_SEQ;
	int oc8 = p->oc & ~7;
	if (o < oc8)
		return SUM_SEQ;
	if (p->oc - oc8 >= 4 && o < oc8 + 4)
		return SUM_EVEN_ODD;
	return o >= (p->oc & ~3) ? SUM_LANES4 : SUM_SEQ;
}

/* Depth block of TFLite's GEMM for a depth K (K itself when it fits one block). */
static int conv_f32_kc(int K)
{
	if (K <= CONV_F32_MAX_KC || K % CONV_F32_MAX_KC == 0)
		return K <= CONV_F32_MAX_KC ? K : CONV_F32_MAX_KC;
	return CONV_F32_MAX_KC - 8 * ((CONV_F32_MAX_KC - 1 - K % CONV_F32_MAX_KC) /
				      (8 * (K / CONV_F32_MAX_KC + 1)));
}

static bool conv_f32_deep(const struct conv_prep *p)
{
	return p->kh * p->kw * p->ic > CONV_F32_MAX_KC && (long)p->nb * p->oh * p->ow != 1;
}

int conv_f32_first_reordered(const struct conv_prep *p)
{
	if ((long)p->nb * p->oh * p->ow == 1 || conv_f32_deep(p))
		return 0;
	return p->oc - (p->oc & ~7) >= 4 ? p->oc & ~7 : p->oc & ~3;
}

bool conv_f32_split_sum(const struct conv_prep *p, int b, int oy, int ox, int o)
{
	return conv_f32_deep(p) || conv_f32_order_of(p, b, oy, ox, o) != SUM_SEQ;
}

/* Product k of the (ky, kx, ic) im2col row of output pixel (b, oy, ox); padding: skipped. */
static bool conv_f32_tap(const struct conv_prep *p, const float *x, const float *w, int b,
			 int oy, int ox, int o, int k, float *v)
{
	int ky = k / (p->kw * p->ic), kx = (k / p->ic) % p->kw, c = k % p->ic;
	int iy = oy * p->sh - p->pt + p->dh * ky, ix = ox * p->sw - p->pl + p->dwl * kx;
	if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw)
		return false;
	*v = x[in_at(p, b, iy, ix) + c] * w[(((size_t)o * p->kh + ky) * p->kw + kx) * p->ic + c];
	return true;
}

float conv_f32_sum_split(const struct conv_prep *p, const float *x, const float *w, int b,
			 int oy, int ox, int o)
{
	enum conv_f32_order ord = conv_f32_order_of(p, b, oy, ox, o);
	int K = p->kh * p->kw * p->ic;
	int kc = ord == SUM_GEMV ? K : conv_f32_kc(K);
	float acc = 0.0f, v;
	for (int k0 = 0; k0 < K; k0 += kc) {
		int len = K - k0 < kc ? K - k0 : kc;
		int split = ord == SUM_EVEN_ODD ? len & ~7 : ord == SUM_SEQ ? 0 : len & ~3;
		float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, blk = 0.0f;
		for (int k = 0; k < split; k++)
			if (conv_f32_tap(p, x, w, b, oy, ox, o, k0 + k, &v))
				s[ord == SUM_EVEN_ODD ? k & 1 : k & 3] += v;
		if (ord == SUM_EVEN_ODD)
			blk = s[0] + s[1];
		else if (ord == SUM_GEMV)
			blk = (s[0] + s[2]) + (s[1] + s[3]);
		else if (ord == SUM_LANES4)
			blk = (s[0] + s[1]) + (s[2] + s[3]);
		for (int k = split; k < len; k++)
			if (conv_f32_tap(p, x, w, b, oy, ox, o, k0 + k, &v))
				blk += v;
		/* one block: the sum itself; more: added to the result block by block */
		acc = k0 == 0 ? blk : acc + blk;
	}
	return acc;
}

static void conv_ref_f32(const struct conv_prep *p, const float *x, const float *w,
			 const float *bias, float *y)
{
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				for (int o = 0; o < p->oc; o++) {
					int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
					float acc = 0.0f;
					if (conv_f32_split_sum(p, b, oy, ox, o)) {
						acc = conv_f32_sum_split(p, x, w, b, oy, ox, o);
						goto biased;
					}
					for (int ky = 0; ky < p->kh; ky++) {
						int iy = iy0 + p->dh * ky;
						if (iy < 0 || iy >= p->ih)
							continue;
						for (int kx = 0; kx < p->kw; kx++) {
							int ix = ix0 + p->dwl * kx;
							if (ix < 0 || ix >= p->iw)
								continue;
							size_t xi = in_at(p, b, iy, ix);
							size_t wi = (((size_t)o * p->kh + ky) * p->kw + kx) * p->ic;
							for (int c = 0; c < p->ic; c++)
								acc += x[xi + c] * w[wi + c];
						}
					}
biased:
					if (bias)
						acc += bias[o];
					acc = fmaxf(acc, p->f_lo);
					acc = fminf(acc, p->f_hi);
					y[out_at(p, b, oy, ox) + o] = acc;
				}
}

static void dwconv_ref_q8(const struct conv_prep *p, const void *x, const void *w,
			  const int32_t *bias, void *y)
{
	enum eng_dtype t = p->type;
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				for (int ic = 0; ic < p->ic; ic++)
					for (int m = 0; m < p->dm; m++) {
						int o = ic * p->dm + m;
						int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
						int32_t acc = 0;
						for (int ky = 0; ky < p->kh; ky++) {
							int iy = iy0 + p->dh * ky;
							if (iy < 0 || iy >= p->ih)
								continue;
							for (int kx = 0; kx < p->kw; kx++) {
								int ix = ix0 + p->dwl * kx;
								if (ix < 0 || ix >= p->iw)
									continue;
								size_t xi = in_at(p, b, iy, ix) + ic;
								size_t wi = ((size_t)ky * p->kw + kx) * p->oc + o;
								acc += (q8_get(t, w, wi) - p->w_zp) *
								       (q8_get(t, x, xi) - p->in_zp);
							}
						}
						if (bias)
							acc += bias[o];
						acc = (p->round_up ? q_mul_by_qm_up : q_mul_by_qm)(acc, p->mult[o], p->shift[o]) + p->out_zp;
						size_t yi = out_at(p, b, oy, ox) + o;
						q8_put(t, y, yi, clamp_i32(acc, p->act_lo, p->act_hi));
					}
}

static void dwconv_ref_f32(const struct conv_prep *p, const float *x, const float *w,
			   const float *bias, float *y)
{
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++)
				for (int ic = 0; ic < p->ic; ic++)
					for (int m = 0; m < p->dm; m++) {
						int o = ic * p->dm + m;
						int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
						/* TFLite's float depthwise starts from the bias
						 * and adds the taps to it (its conv adds the bias
						 * last): float sums depend on that order */
						float acc = bias ? bias[o] : 0.0f;
						for (int ky = 0; ky < p->kh; ky++) {
							int iy = iy0 + p->dh * ky;
							if (iy < 0 || iy >= p->ih)
								continue;
							for (int kx = 0; kx < p->kw; kx++) {
								int ix = ix0 + p->dwl * kx;
								if (ix < 0 || ix >= p->iw)
									continue;
								acc += x[in_at(p, b, iy, ix) + ic] *
								       w[((size_t)ky * p->kw + kx) * p->oc + o];
							}
						}
						acc = fmaxf(acc, p->f_lo);
						acc = fminf(acc, p->f_hi);
						y[out_at(p, b, oy, ox) + o] = acc;
					}
}

int conv_eval_ref(const struct eng_node *n, const struct eng_exec *x)
{
	const struct conv_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]), *w = eng_tdata(x, n->in[1]);
	const void *bias = (n->n_in > 2 && n->in[2]) ? eng_tdata(x, n->in[2]) : NULL;
	void *out = eng_tdata(x, n->out[0]);
	if (p->type == ENG_DT_F32) {
		if (p->dw)
			dwconv_ref_f32(p, in, w, bias, out);
		else
			conv_ref_f32(p, in, w, bias, out);
	} else {
		if (p->dw)
			dwconv_ref_q8(p, in, w, bias, out);
		else
			conv_ref_q8(p, in, w, bias, out);
	}
	return 0;
}

static int conv_prepare_ref(struct eng_node *n, char *err, size_t errlen)
{
	return conv_prepare_common(n, false, err, errlen);
}

static int dwconv_prepare_ref(struct eng_node *n, char *err, size_t errlen)
{
	return conv_prepare_common(n, true, err, errlen);
}

const struct eng_kernel eng_k_conv_ref = {"CONV_2D", conv_prepare_ref, conv_eval_ref,
					  conv_release};
const struct eng_kernel eng_k_dwconv_ref = {"DEPTHWISE_CONV_2D", dwconv_prepare_ref, conv_eval_ref,
					    conv_release};
