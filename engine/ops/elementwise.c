/*
 * elementwise.c — ADD, MUL (with broadcasting), LOGISTIC, RELU, RELU6,
 * HARD_SWISH, QUANTIZE, DEQUANTIZE: reference kernels.
 *
 * The 8-bit recipes are TFLite's: ADD shifts both inputs left by 20 bits and
 * rescales them to twice the larger input scale before the output rescale;
 * MUL requantizes the product of the centred inputs; LOGISTIC is a 256-entry
 * table filled at prepare from the float sigmoid (what TFLite's reference
 * kernel does for uint8/int8); RELU/RELU6 requantize then clamp.  Multipliers
 * are computed with the same float/double mix as the reference, because the
 * last bit of a multiplier can change outputs.  Inference worker thread.
 */
#include <math.h>

#include "kernels.h"
#include "simd.h"
#include "x86/vk.h"

/* ---- broadcasting ------------------------------------------------------ */

struct bcast {
	int nd;
	int dims[ENG_MAX_DIMS];
	size_t s1[ENG_MAX_DIMS], s2[ENG_MAX_DIMS];
	size_t total;
	bool same; /* no broadcast: index i for both inputs */
};

static int bcast_init(struct bcast *b, const struct eng_tensor *a, const struct eng_tensor *c,
		      const struct eng_tensor *out, char *err, size_t errlen)
{
	int nd = a->ndim > c->ndim ? a->ndim : c->ndim;
	memset(b, 0, sizeof(*b));
	b->nd = nd;
	size_t sa = 1, sc = 1;
	b->total = 1;
	b->same = a->ndim == c->ndim;
	for (int i = nd - 1; i >= 0; i--) {
		int ia = i - (nd - a->ndim), ic = i - (nd - c->ndim);
		int da = ia >= 0 ? a->dims[ia] : 1, dc = ic >= 0 ? c->dims[ic] : 1;
		if (da != dc && da != 1 && dc != 1) {
			KERR(err, errlen, "shapes cannot be broadcast (dim %d: %d vs %d)", i, da, dc);
			return -EINVAL;
		}
		if (da != dc)
			b->same = false;
		int d = da > dc ? da : dc;
		b->dims[i] = d;
		b->s1[i] = da == 1 ? 0 : sa;
		b->s2[i] = dc == 1 ? 0 : sc;
		sa *= (size_t)da;
		sc *= (size_t)dc;
		b->total *= (size_t)d;
	}
	if (t_numel(out) != b->total) {
		KERR(err, errlen, "output has %zu elements, broadcast gives %zu", t_numel(out),
		     b->total);
		return -EINVAL;
	}
	return 0;
}

/* Calls f(ctx, out_index, in1_index, in2_index) over the broadcast. */
#define BCAST_LOOP(b, BODY)                                                      \
	do {                                                                     \
		if ((b)->same) {                                                 \
			for (size_t o_ = 0; o_ < (b)->total; o_++) {             \
				size_t i1_ = o_, i2_ = o_;                       \
				BODY;                                            \
			}                                                        \
		} else {                                                         \
			int idx_[ENG_MAX_DIMS] = {0};                            \
			size_t i1_ = 0, i2_ = 0;                                 \
			for (size_t o_ = 0; o_ < (b)->total; o_++) {             \
				BODY;                                            \
				for (int d_ = (b)->nd - 1; d_ >= 0; d_--) {      \
					i1_ += (b)->s1[d_];                      \
					i2_ += (b)->s2[d_];                      \
					if (++idx_[d_] < (b)->dims[d_])          \
						break;                           \
					i1_ -= (b)->s1[d_] * (size_t)(b)->dims[d_]; \
					i2_ -= (b)->s2[d_] * (size_t)(b)->dims[d_]; \
					idx_[d_] = 0;                            \
				}                                                \
			}                                                        \
		}                                                                \
	} while (0)

struct arith_prep {
	struct bcast bc;
	enum eng_dtype t;
	int32_t zp1, zp2, out_zp;
	int32_t m1, m2, mo;
	int s1, s2, so;
	int32_t lo, hi;
	float flo, fhi;
	/* fast paths (8-bit, AVX2): which operand repeats, and its period */
	enum { SIMD_NONE, SIMD_SAME, SIMD_B_REPEATS, SIMD_A_REPEATS } simd;
	size_t period; /* elements of the repeating operand (1: scalar, C: per channel) */
	/* ADD of same-shape 8-bit tensors on a VNNI kernel set (x86/vk.h), or NULL */
	struct vk_add *vk;
	vk_add_fn vkfn;
};

static void release_prep(struct eng_node *n)
{
	free(n->prep);
	n->prep = NULL;
}

static int arith_prepare(struct eng_node *n, bool is_add, char *err, size_t errlen)
{
	int rc = ops_check_io(n, 2, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *a = n->in[0], *b = n->in[1], *out = n->out[0];
	if (a->type != b->type || a->type != out->type) {
		KERR(err, errlen, "input and output types differ (%d, %d, %d)", a->type, b->type,
		     out->type);
		return -ENOTSUP;
	}
	if (a->type != ENG_DT_U8 && a->type != ENG_DT_I8 && a->type != ENG_DT_F32) {
		KERR(err, errlen, "unsupported type %d", a->type);
		return -ENOTSUP;
	}
	struct arith_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	rc = bcast_init(&p->bc, a, b, out, err, errlen);
	if (rc) {
		free(p);
		return rc;
	}
	p->t = a->type;
	enum eng_act act = n->opts.act.act;
	if (p->t == ENG_DT_F32) {
		q_act_range_f32(act, &p->flo, &p->fhi);
	} else {
		if (ops_check_q8(a, "input 0", err, errlen) || ops_check_q8(b, "input 1", err, errlen) ||
		    ops_check_q8(out, "output", err, errlen)) {
			free(p);
			return -EINVAL;
		}
		float sa = t_scale(a), sb = t_scale(b), so = t_scale(out);
		p->zp1 = t_zp(a);
		p->zp2 = t_zp(b);
		p->out_zp = t_zp(out);
		if (is_add) {
			/* float max, doubled in float (exact), then double divisions */
			double twice = (double)(2.0f * (sa > sb ? sa : sb));
			q_quantize_multiplier((double)sa / twice, &p->m1, &p->s1);
			q_quantize_multiplier((double)sb / twice, &p->m2, &p->s2);
			q_quantize_multiplier(twice / (double)((float)(1 << 20) * so), &p->mo, &p->so);
		} else {
			/* the reference computes s1*s2/s_out in float */
			float m = sa * sb / so;
			q_quantize_multiplier((double)m, &p->mo, &p->so);
		}
		q_act_range(act, p->t, so, p->out_zp, &p->lo, &p->hi);
	}
	p->simd = SIMD_NONE;
	if (dt_is_q8(p->t) && simd_have_avx2()) {
		size_t na = t_numel(a), nb = t_numel(b);
		int last = out->ndim > 0 ? out->dims[out->ndim - 1] : 1;
		if (p->bc.same) {
			p->simd = SIMD_SAME;
		} else if (nb == 1 || (nb == (size_t)last && b->ndim > 0 && b->dims[b->ndim - 1] == last &&
				       na == p->bc.total)) {
			/* b is a scalar or one value per channel of the last axis */
			p->simd = SIMD_B_REPEATS;
			p->period = nb;
		} else if (na == 1 || (na == (size_t)last && a->ndim > 0 && a->dims[a->ndim - 1] == last &&
				       nb == p->bc.total)) {
			p->simd = SIMD_A_REPEATS;
			p->period = na;
		}
	}
	n->macs = (int64_t)p->bc.total;
	n->prep = p;
	return 0;
}

static int add_prepare(struct eng_node *n, char *err, size_t errlen)
{
	return arith_prepare(n, true, err, errlen);
}

static int mul_prepare(struct eng_node *n, char *err, size_t errlen)
{
	return arith_prepare(n, false, err, errlen);
}

static int add_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct arith_prep *p = n->prep;
	const void *a = eng_tdata(x, n->in[0]), *b = eng_tdata(x, n->in[1]);
	void *y = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_F32) {
		const float *fa = a, *fb = b;
		float *fy = y;
		BCAST_LOOP(&p->bc, {
			float v = fa[i1_] + fb[i2_];
			fy[o_] = fminf(fmaxf(v, p->flo), p->fhi);
		});
		return 0;
	}
	const enum eng_dtype t = p->t;
	BCAST_LOOP(&p->bc, {
		int32_t v1 = (q8_get(t, a, i1_) - p->zp1) * (1 << 20);
		int32_t v2 = (q8_get(t, b, i2_) - p->zp2) * (1 << 20);
		int32_t s = q_mul_by_qm(v1, p->m1, p->s1) + q_mul_by_qm(v2, p->m2, p->s2);
		int32_t r = q_mul_by_qm(s, p->mo, p->so) + p->out_zp;
		q8_put(t, y, o_, clamp_i32(r, p->lo, p->hi));
	});
	return 0;
}

/*
 * x holds the full-size operand, r the repeating one (period elements; the
 * same size as x for SIMD_SAME).  For ADD the per-input multipliers follow
 * the operands, so a caller with a repeating first input swaps them.
 */
struct arith_lanes {
	__m256i zx, zr, mx, sx, mr, sr;
};

TGT static inline __m256i add8(const struct arith_prep *p, const struct arith_lanes *l,
			       __m256i vx, __m256i vr)
{
	vx = _mm256_slli_epi32(_mm256_sub_epi32(vx, l->zx), 20);
	vr = _mm256_slli_epi32(_mm256_sub_epi32(vr, l->zr), 20);
	__m256i sum = _mm256_add_epi32(simd_requant8(vx, l->mx, l->sx), simd_requant8(vr, l->mr, l->sr));
	return simd_requant8(sum, _mm256_set1_epi32(p->mo), _mm256_set1_epi32(p->so));
}

TGT static inline __m256i mul8(const struct arith_prep *p, const struct arith_lanes *l,
			       __m256i vx, __m256i vr)
{
	__m256i prod = _mm256_mullo_epi32(_mm256_sub_epi32(vx, l->zx), _mm256_sub_epi32(vr, l->zr));
	return simd_requant8(prod, _mm256_set1_epi32(p->mo), _mm256_set1_epi32(p->so));
}

TGT static void arith_q8_avx2(const struct arith_prep *p, bool is_add, const uint8_t *a,
			      const uint8_t *b, uint8_t *y)
{
	const bool s8 = p->t == ENG_DT_I8;
	const bool swap = p->simd == SIMD_A_REPEATS;
	const uint8_t *xs = swap ? b : a, *rs = swap ? a : b;
	struct arith_lanes l = {
		.zx = _mm256_set1_epi32(swap ? p->zp2 : p->zp1),
		.zr = _mm256_set1_epi32(swap ? p->zp1 : p->zp2),
		.mx = _mm256_set1_epi32(swap ? p->m2 : p->m1),
		.sx = _mm256_set1_epi32(swap ? p->s2 : p->s1),
		.mr = _mm256_set1_epi32(swap ? p->m1 : p->m2),
		.sr = _mm256_set1_epi32(swap ? p->s1 : p->s2),
	};
	const size_t total = p->bc.total;
	const size_t period = p->simd == SIMD_SAME ? total : p->period;
	if (period == 1) {
		__m256i vr = _mm256_set1_epi32(q8_get(p->t, rs, 0));
		for (size_t i = 0; i < total; i += 8) {
			int cnt = total - i < 8 ? (int)(total - i) : 8;
			__m256i vx = simd_load8(xs + i, s8, cnt);
			__m256i r = is_add ? add8(p, &l, vx, vr) : mul8(p, &l, vx, vr);
			simd_store8(y + i, r, p->out_zp, p->lo, p->hi, s8, cnt);
		}
		return;
	}
	for (size_t row = 0; row < total; row += period)
		for (size_t j = 0; j < period; j += 8) {
			int cnt = period - j < 8 ? (int)(period - j) : 8;
			__m256i vx = simd_load8(xs + row + j, s8, cnt);
			__m256i vr = simd_load8(rs + (p->simd == SIMD_SAME ? row : 0) + j, s8, cnt);
			__m256i r = is_add ? add8(p, &l, vx, vr) : mul8(p, &l, vx, vr);
			simd_store8(y + row + j, r, p->out_zp, p->lo, p->hi, s8, cnt);
		}
}

static int add_eval_fast(const struct eng_node *n, const struct eng_exec *x)
{
	const struct arith_prep *p = n->prep;
	if (p->simd == SIMD_NONE)
		return add_eval(n, x);
	arith_q8_avx2(p, true, eng_tdata(x, n->in[0]), eng_tdata(x, n->in[1]),
		      eng_tdata(x, n->out[0]));
	return 0;
}

static int mul_eval(const struct eng_node *n, const struct eng_exec *x);

static int mul_eval_fast(const struct eng_node *n, const struct eng_exec *x)
{
	const struct arith_prep *p = n->prep;
	if (p->simd == SIMD_NONE)
		return mul_eval(n, x);
	arith_q8_avx2(p, false, eng_tdata(x, n->in[0]), eng_tdata(x, n->in[1]),
		      eng_tdata(x, n->out[0]));
	return 0;
}

static int mul_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct arith_prep *p = n->prep;
	const void *a = eng_tdata(x, n->in[0]), *b = eng_tdata(x, n->in[1]);
	void *y = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_F32) {
		const float *fa = a, *fb = b;
		float *fy = y;
		BCAST_LOOP(&p->bc, {
			float v = fa[i1_] * fb[i2_];
			fy[o_] = fminf(fmaxf(v, p->flo), p->fhi);
		});
		return 0;
	}
	const enum eng_dtype t = p->t;
	BCAST_LOOP(&p->bc, {
		int32_t prod = (q8_get(t, a, i1_) - p->zp1) * (q8_get(t, b, i2_) - p->zp2);
		int32_t r = q_mul_by_qm(prod, p->mo, p->so) + p->out_zp;
		q8_put(t, y, o_, clamp_i32(r, p->lo, p->hi));
	});
	return 0;
}

/* ---- unary ops ----------------------------------------------------------- */

struct unary_prep {
	enum eng_dtype t, to;
	size_t count;
	int32_t in_zp, out_zp, m, lo, hi;
	int s;
	float in_scale, out_scale;
	uint8_t lut[256];
	bool use_lut; /* table variants: every 8-bit input maps through lut */
	/* HARD_SWISH */
	int16_t hs_out_m, hs_relu_m;
	int hs_out_e, hs_relu_e;
};

static int unary_common(struct eng_node *n, bool same_type, struct unary_prep **out_p, char *err,
			size_t errlen)
{
	int rc = ops_check_io(n, 1, 1, err, errlen);
	if (rc)
		return rc;
	const struct eng_tensor *in = n->in[0], *out = n->out[0];
	if (t_numel(in) != t_numel(out)) {
		KERR(err, errlen, "input has %zu elements, output %zu", t_numel(in), t_numel(out));
		return -EINVAL;
	}
	if (same_type && in->type != out->type) {
		KERR(err, errlen, "input type %d != output type %d", in->type, out->type);
		return -ENOTSUP;
	}
	struct unary_prep *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->t = in->type;
	p->to = out->type;
	p->count = t_numel(in);
	p->in_zp = t_zp(in);
	p->out_zp = t_zp(out);
	p->in_scale = t_scale(in);
	p->out_scale = t_scale(out);
	if (ops_check_q8(in, "input", err, errlen) || ops_check_q8(out, "output", err, errlen)) {
		free(p);
		return -EINVAL;
	}
	if (!dt_is_q8(in->type) && in->type != ENG_DT_F32) {
		KERR(err, errlen, "unsupported type %d", in->type);
		free(p);
		return -ENOTSUP;
	}
	n->macs = (int64_t)p->count;
	*out_p = p;
	return 0;
}

/* Plain sigmoid: the table for 8-bit types is filled from it, as TFLite does. */
static float sigmoidf(float v)
{
	return 1.0f / (1.0f + expf(-v));
}

/*
 * TFLite's builtin float LOGISTIC is Eigen's logistic: e / (1 + e) with
 * e = exp(min(x, 16.6355324)).  Over whole 4-float SSE packets e comes from
 * a polynomial (Eigen's documented scheme: halve x, split x/2 = m·ln2 + r with
 * the two-part Cephes constant, a degree-5 minimax polynomial for exp(r),
 * scale by 2^m, square); the last count % 4 elements use libm's expf.  Both
 * are reproduced here, each operation rounded separately (no FMA), to get
 * TFLite's bits.
 */
static float logistic_f32_packet(float x)
{
	if (x < -104.0f)
		return 0.0f;
	x = fminf(x, 16.6355324f) * 0.5f;
	float m = floorf(x * 1.44269504088896341f + 0.5f);
	float r = m * -0.693359375f + x;
	r = m * 2.12194440e-4f + r;
	float r2 = r * r;
	float p_even = r2 * 4.1898667812347412109375e-2f + 0.49999141693115234375f;
	float p_odd = r2 * 8.33471305668354034423828125e-3f + 0.16666877269744873046875f;
	float p = r * p_odd + p_even;
	p = r2 * p + (r + 1.0f);
	float e = p * ldexpf(1.0f, (int)m); /* 2^m is exact: m in [-75, 13] */
	e = e * e;
	return e / (1.0f + e);
}

static float logistic_f32_tail(float x)
{
	float e = expf(fminf(x, 16.6355324f));
	return e / (1.0f + e);
}

static int logistic_prepare(struct eng_node *n, char *err, size_t errlen)
{
	struct unary_prep *p;
	int rc = unary_common(n, true, &p, err, errlen);
	if (rc)
		return rc;
	if (dt_is_q8(p->t)) {
		int32_t lo, hi;
		q_type_range(p->t, &lo, &hi);
		const float inv = 1.0f / p->out_scale;
		for (int32_t v = lo; v <= hi; v++) {
			float deq = p->in_scale * (float)(v - p->in_zp);
			float r = roundf(sigmoidf(deq) * inv);
			p->lut[(uint8_t)v] = (uint8_t)q_sat_i32(r + (float)p->out_zp, lo, hi);
		}
	}
	n->prep = p;
	return 0;
}

static int lut_or_float_eval(const struct eng_node *n, const struct eng_exec *x,
			     float (*f)(float))
{
	const struct unary_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]);
	void *out = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_F32) {
		const float *fi = in;
		float *fo = out;
		for (size_t i = 0; i < p->count; i++)
			fo[i] = f(fi[i]);
	} else {
		ops_lut8(out, in, p->count, p->lut, x->lut_vbmi);
	}
	return 0;
}

static int logistic_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct unary_prep *p = n->prep;
	if (p->t != ENG_DT_F32)
		return lut_or_float_eval(n, x, logistic_f32_tail);
	const float *fi = eng_tdata(x, n->in[0]);
	float *fo = eng_tdata(x, n->out[0]);
	size_t whole = p->count & ~(size_t)3;
	for (size_t i = 0; i < whole; i++)
		fo[i] = logistic_f32_packet(fi[i]);
	for (size_t i = whole; i < p->count; i++)
		fo[i] = logistic_f32_tail(fi[i]);
	return 0;
}

static int relux_prepare(struct eng_node *n, float act_hi, char *err, size_t errlen)
{
	struct unary_prep *p;
	int rc = unary_common(n, true, &p, err, errlen);
	if (rc)
		return rc;
	if (dt_is_q8(p->t)) {
		int32_t tlo, thi;
		q_type_range(p->t, &tlo, &thi);
		p->lo = q_quantize_sat(0.0f, p->out_scale, p->out_zp, tlo, INT32_MAX);
		p->hi = thi;
		if (act_hi > 0.0f)
			p->hi = q_quantize_sat(act_hi, p->out_scale, p->out_zp, INT32_MIN, thi);
		float m = p->in_scale / p->out_scale;
		q_quantize_multiplier((double)m, &p->m, &p->s);
	}
	n->prep = p;
	return 0;
}

static int relu_prepare(struct eng_node *n, char *err, size_t errlen)
{
	return relux_prepare(n, -1.0f, err, errlen);
}

static int relu6_prepare(struct eng_node *n, char *err, size_t errlen)
{
	return relux_prepare(n, 6.0f, err, errlen);
}

static int32_t relux_q8(const struct unary_prep *p, int32_t v)
{
	return clamp_i32(p->out_zp + q_mul_by_qm(v - p->in_zp, p->m, p->s), p->lo, p->hi);
}

static int relux_eval(const struct eng_node *n, const struct eng_exec *x, float fhi)
{
	const struct unary_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]);
	void *out = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_F32) {
		const float *fi = in;
		float *fo = out;
		for (size_t i = 0; i < p->count; i++) {
			float v = fmaxf(0.0f, fi[i]);
			fo[i] = fhi > 0.0f ? fminf(v, fhi) : v;
		}
		return 0;
	}
	for (size_t i = 0; i < p->count; i++)
		q8_put(p->t, out, i, relux_q8(p, q8_get(p->t, in, i)));
	return 0;
}

static int relu_eval(const struct eng_node *n, const struct eng_exec *x)
{
	return relux_eval(n, x, -1.0f);
}

static int relu6_eval(const struct eng_node *n, const struct eng_exec *x)
{
	return relux_eval(n, x, 6.0f);
}

static int hard_swish_prepare(struct eng_node *n, char *err, size_t errlen)
{
	struct unary_prep *p;
	int rc = unary_common(n, true, &p, err, errlen);
	if (rc)
		return rc;
	if (dt_is_q8(p->t)) {
		const float hires_in = (1.0f / 128.0f) * p->in_scale;
		const float reluish_scale = 3.0f / 32768.0f;
		int32_t m32;
		q_quantize_multiplier((double)(hires_in / p->out_scale), &m32, &p->hs_out_e);
		p->hs_out_m = q_downscale_mult16(m32);
		if (p->hs_out_e > 0) {
			KERR(err, errlen, "output scale too small for HARD_SWISH");
			free(p);
			return -ENOTSUP;
		}
		q_quantize_multiplier((double)(hires_in / reluish_scale), &m32, &p->hs_relu_e);
		p->hs_relu_m = q_downscale_mult16(m32);
	}
	n->prep = p;
	return 0;
}

/* TFLite's 8-bit hard-swish: int16 fixed point, a "reluish" factor in [0, 1]. */
static int32_t hard_swish_q8(const struct unary_prep *p, int32_t x)
{
	int32_t tlo, thi;
	q_type_range(p->t, &tlo, &thi);
	int16_t iv = (int16_t)(x - p->in_zp);
	int16_t hires = (int16_t)(iv * (1 << 7));
	int16_t pre_out = q_srdhm16(hires, p->hs_out_m);
	int16_t reluish = hires;
	if (p->hs_relu_e > 0)
		reluish = q_sat_lshift16(reluish, p->hs_relu_e - 1);
	reluish = q_srdhm16(reluish, p->hs_relu_m);
	if (p->hs_relu_e > 0)
		reluish = q_sat_lshift16(reluish, 1);
	if (p->hs_relu_e < 0)
		reluish = q_rdbpot16(reluish, -p->hs_relu_e);
	reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
	int16_t pre = q_sdhm16(reluish, pre_out);
	int32_t v = q_rdbpot16(pre, -p->hs_out_e) + p->out_zp;
	return clamp_i32(v, tlo, thi);
}

static int hard_swish_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct unary_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]);
	void *out = eng_tdata(x, n->out[0]);
	if (p->t == ENG_DT_F32) {
		const float *fi = in;
		float *fo = out;
		for (size_t i = 0; i < p->count; i++) {
			float v = fi[i];
			/* TFLite's builtin multiplies by the float 1/6 (not / 6): other bytes */
			fo[i] = v * fminf(6.0f, fmaxf(0.0f, v + 3.0f)) * (1.0f / 6.0f);
		}
		return 0;
	}
	for (size_t i = 0; i < p->count; i++)
		q8_put(p->t, out, i, hard_swish_q8(p, q8_get(p->t, in, i)));
	return 0;
}

static int quantize_prepare(struct eng_node *n, char *err, size_t errlen)
{
	struct unary_prep *p;
	int rc = unary_common(n, false, &p, err, errlen);
	if (rc)
		return rc;
	if (!dt_is_q8(p->to)) {
		KERR(err, errlen, "QUANTIZE output must be uint8 or int8");
		free(p);
		return -ENOTSUP;
	}
	if (dt_is_q8(p->t))
		q_quantize_multiplier((double)p->in_scale / (double)p->out_scale, &p->m, &p->s);
	q_type_range(p->to, &p->lo, &p->hi);
	n->prep = p;
	return 0;
}

static int32_t requant_q8(const struct unary_prep *p, int32_t v)
{
	return clamp_i32(q_mul_by_qm(v - p->in_zp, p->m, p->s) + p->out_zp, p->lo, p->hi);
}

static int quantize_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct unary_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]);
	void *out = eng_tdata(x, n->out[0]);
	for (size_t i = 0; i < p->count; i++) {
		int32_t v;
		if (p->t == ENG_DT_F32)
			/* TFLite's AffineQuantize divides in double, rounds half away from 0;
			 * saturated: the input may be any float (inf, NaN) */
			v = q_sat_i32(round((double)((const float *)in)[i] / (double)p->out_scale) +
					      (double)p->out_zp,
				      p->lo, p->hi);
		else
			v = requant_q8(p, q8_get(p->t, in, i));
		q8_put(p->to, out, i, clamp_i32(v, p->lo, p->hi));
	}
	return 0;
}

static int dequantize_prepare(struct eng_node *n, char *err, size_t errlen)
{
	struct unary_prep *p;
	int rc = unary_common(n, false, &p, err, errlen);
	if (rc)
		return rc;
	if (!dt_is_q8(p->t) || p->to != ENG_DT_F32) {
		KERR(err, errlen, "DEQUANTIZE supports uint8/int8 to float32");
		free(p);
		return -ENOTSUP;
	}
	n->prep = p;
	return 0;
}

static int dequantize_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct unary_prep *p = n->prep;
	const void *in = eng_tdata(x, n->in[0]);
	float *out = eng_tdata(x, n->out[0]);
	for (size_t i = 0; i < p->count; i++)
		out[i] = (float)((double)p->in_scale * (double)(q8_get(p->t, in, i) - p->in_zp));
	return 0;
}

/* ---- table variants: an 8-bit unary op is a function of 256 inputs ------- */

typedef int32_t (*q8_fn)(const struct unary_prep *p, int32_t v);

/* Fill p->lut from the reference element function (exact by construction). */
static void fill_lut(struct eng_node *n, q8_fn f)
{
	struct unary_prep *p = n->prep;
	if (!p || !dt_is_q8(p->t) || !dt_is_q8(p->to))
		return;
	int32_t lo, hi;
	q_type_range(p->t, &lo, &hi);
	for (int32_t v = lo; v <= hi; v++)
		p->lut[(uint8_t)v] = (uint8_t)f(p, v);
	p->use_lut = true;
}

static int lut_eval(const struct eng_node *n, const struct eng_exec *x,
		    int (*ref)(const struct eng_node *, const struct eng_exec *))
{
	const struct unary_prep *p = n->prep;
	if (!p->use_lut)
		return ref(n, x);
	const uint8_t *in = eng_tdata(x, n->in[0]);
	uint8_t *out = eng_tdata(x, n->out[0]);
	ops_lut8(out, in, p->count, p->lut, x->lut_vbmi);
	return 0;
}

#define LUT_VARIANT(name, prep, ref_eval, fn)                                         \
	static int name##_prepare_lut(struct eng_node *n, char *err, size_t errlen)     \
	{                                                                               \
		int rc_ = prep(n, err, errlen);                                         \
		if (rc_ == 0)                                                           \
			fill_lut(n, fn);                                                \
		return rc_;                                                             \
	}                                                                               \
	static int name##_eval_lut(const struct eng_node *n, const struct eng_exec *x)  \
	{                                                                               \
		return lut_eval(n, x, ref_eval);                                        \
	}

LUT_VARIANT(relu, relu_prepare, relu_eval, relux_q8)
LUT_VARIANT(relu6, relu6_prepare, relu6_eval, relux_q8)
LUT_VARIANT(hard_swish, hard_swish_prepare, hard_swish_eval, hard_swish_q8)
LUT_VARIANT(quantize, quantize_prepare, quantize_eval, requant_q8)

const struct eng_kernel eng_k_relu_lut = {"RELU", relu_prepare_lut, relu_eval_lut, release_prep};
const struct eng_kernel eng_k_relu6_lut = {"RELU6", relu6_prepare_lut, relu6_eval_lut,
					   release_prep};
const struct eng_kernel eng_k_hard_swish_lut = {"HARD_SWISH", hard_swish_prepare_lut,
						hard_swish_eval_lut, release_prep};
const struct eng_kernel eng_k_quantize_lut = {"QUANTIZE", quantize_prepare_lut, quantize_eval_lut,
					      release_prep};

/* ---- ADD on the VNNI kernels' requantization (x86/vk.h) ------------------ */

static void vk_add_free(struct vk_add *a)
{
	if (!a)
		return;
	vk_rq_free(&a->q1);
	vk_rq_free(&a->q2);
	vk_rq_free(&a->qo);
	free(a);
}

static void release_add_vnni(struct eng_node *n)
{
	struct arith_prep *p = n->prep;
	if (p)
		vk_add_free(p->vk);
	release_prep(n);
}

/* Same-shape 8-bit ADDs get fn; others (broadcasts, float, a right shift past
 * 31) keep arith_q8_avx2 or the reference loop. */
int add_vnni_prepare(struct eng_node *n, vk_add_fn fn, char *err, size_t errlen)
{
	int rc = add_prepare(n, err, errlen);
	if (rc)
		return rc;
	struct arith_prep *p = n->prep;
	if (p->simd != SIMD_SAME)
		return 0;
	struct vk_add *a = calloc(1, sizeof(*a));
	if (!a) {
		release_prep(n);
		KERR(err, errlen, "out of memory");
		return -ENOMEM;
	}
	const bool s8 = p->t == ENG_DT_I8;
	*a = (struct vk_add){.zx = p->zp1, .zr = p->zp2, .s8 = s8};
	rc = vk_rq_fill(&a->q1, 1, 1, &p->m1, &p->s1, 0, INT32_MIN, INT32_MAX, true, false);
	if (!rc)
		rc = vk_rq_fill(&a->q2, 1, 1, &p->m2, &p->s2, 0, INT32_MIN, INT32_MAX, true, false);
	if (!rc)
		rc = vk_rq_fill(&a->qo, 1, 1, &p->mo, &p->so, p->out_zp, p->lo, p->hi, s8, false);
	if (rc) {
		vk_add_free(a);
		if (rc != -ENOMEM)
			return 0; /* -ERANGE */
		release_prep(n);
		KERR(err, errlen, "out of memory");
		return -ENOMEM;
	}
	vk_add_fill_fast(a, p->m1, p->s1, p->m2, p->s2, p->mo, p->so, p->out_zp);
	p->vk = a;
	p->vkfn = fn;
	return 0;
}

static int add_prepare_512(struct eng_node *n, char *err, size_t errlen)
{
	return add_vnni_prepare(n, vk512_add, err, errlen);
}

static int add_prepare_256(struct eng_node *n, char *err, size_t errlen)
{
	return add_vnni_prepare(n, vk256_add, err, errlen);
}

static int add_prepare_avx2(struct eng_node *n, char *err, size_t errlen)
{
	return add_vnni_prepare(n, vk2_add, err, errlen);
}

struct add_job {
	const struct arith_prep *p;
	const uint8_t *a, *b;
	uint8_t *y;
};

/* Slices in blocks of 4096 elements (a multiple of every vector width). */
#define ADD_BLOCK 4096
static void add_job_run(void *ctx, size_t begin, size_t end, int slot)
{
	const struct add_job *j = ctx;
	(void)slot;
	size_t i0 = begin * ADD_BLOCK, i1 = end * ADD_BLOCK;
	if (i1 > j->p->bc.total)
		i1 = j->p->bc.total;
	j->p->vkfn(j->p->vk, j->a + i0, j->b + i0, j->y + i0, i1 - i0);
}

static int add_eval_vnni(const struct eng_node *n, const struct eng_exec *x)
{
	const struct arith_prep *p = n->prep;
	if (!p->vk)
		return add_eval_fast(n, x);
	struct add_job j = {p, eng_tdata(x, n->in[0]), eng_tdata(x, n->in[1]), eng_tdata(x, n->out[0])};
	int threads = n->macs >= OPS_PARALLEL_MIN_MACS / 8 ? x->threads : 1;
	ops_parallel_for(x, threads, (p->bc.total + ADD_BLOCK - 1) / ADD_BLOCK, add_job_run, &j);
	return 0;
}

const struct eng_kernel eng_k_add = {"ADD", add_prepare, add_eval, release_prep};
const struct eng_kernel eng_k_add_avx512vnni = {"ADD", add_prepare_512, add_eval_vnni,
						release_add_vnni};
const struct eng_kernel eng_k_add_avxvnni = {"ADD", add_prepare_256, add_eval_vnni,
					     release_add_vnni};
/* the same 64-bit requantization in 256-bit AVX2 (vk2_add), for the avx2 set */
const struct eng_kernel eng_k_add_vk_avx2 = {"ADD", add_prepare_avx2, add_eval_vnni,
					     release_add_vnni};
const struct eng_kernel eng_k_add_fast = {"ADD", add_prepare, add_eval_fast, release_prep};
const struct eng_kernel eng_k_mul = {"MUL", mul_prepare, mul_eval, release_prep};
const struct eng_kernel eng_k_mul_fast = {"MUL", mul_prepare, mul_eval_fast, release_prep};
const struct eng_kernel eng_k_logistic = {"LOGISTIC", logistic_prepare, logistic_eval,
					  release_prep};
const struct eng_kernel eng_k_relu = {"RELU", relu_prepare, relu_eval, release_prep};
const struct eng_kernel eng_k_relu6 = {"RELU6", relu6_prepare, relu6_eval, release_prep};
const struct eng_kernel eng_k_hard_swish = {"HARD_SWISH", hard_swish_prepare, hard_swish_eval,
					    release_prep};
const struct eng_kernel eng_k_quantize = {"QUANTIZE", quantize_prepare, quantize_eval,
					  release_prep};
const struct eng_kernel eng_k_dequantize = {"DEQUANTIZE", dequantize_prepare, dequantize_eval,
					    release_prep};
