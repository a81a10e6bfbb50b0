/*
 * vk_rq.c — the per-channel requantization constants of the VNNI kernels
 * (struct vk_rq, vk.h).  Baseline x86-64 code, run at model load.
 */
#include "vk.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int32_t clamp32(int64_t v)
{
	return v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

int vk_rq_fill(struct vk_rq *q, int np, int n, const int32_t *mult, const int *shift,
	       int32_t out_zp, int32_t act_lo, int32_t act_hi, bool s8, bool round_up)
{
	memset(q, 0, sizeof(*q));
	for (int c = 0; c < n; c++)
		if (shift[c] < -31)
			return -ERANGE;
	/* one block: 6 int64 arrays of np/2 (+1 for odd np), 5 int32 and 3 float arrays of np */
	const size_t h = (size_t)np / 2 + 1;
	size_t bytes = 6 * h * sizeof(int64_t) + 5 * (size_t)np * sizeof(int32_t) +
		       3 * (size_t)np * sizeof(float);
	uint8_t *mem = calloc(1, bytes);
	if (!mem)
		return -ENOMEM;
	int64_t *i64 = (int64_t *)(void *)mem;
	int64_t *be = i64, *bo = be + h, *se = bo + h, *so = se + h, *ce = so + h, *co = ce + h;
	int32_t *m32 = (int32_t *)(void *)(co + h), *mo = m32 + np, *left = mo + np, *zadd = left + np;
	int32_t *fthr = zadd + np;
	float *fr = (float *)(void *)(fthr + np), *fc = fr + np, *fcn = fc + np;
	q->fast = true;
	/*
	 * The negative-tie correction only touches lanes whose inner product s =
	 * SRDHM(acc, mult) is negative, and there the rounded s / 2^n is <= 0 with or
	 * without it: both outputs are <= out_zp.  An activation clamp at or above
	 * the zero point (RELU, RELU6) maps both to its lower bound, so the float path
	 * may leave the correction (and its per-lane select) out.
	 */
	const bool corr_matters = (int64_t)act_lo < (int64_t)out_zp;
	for (int c = 0; c < np; c++) {
		int32_t m = c < n ? mult[c] : 0;
		int sh = c < n ? shift[c] : 0;
		int rn = sh > 0 ? 0 : -sh; /* right shift n, 0..31 */
		/* floor((ab + 2^62 + 2^30 + 2^(n+30) - corr) / 2^(31+n)) - 2^(31-n): vk_gemm.c */
		uint64_t b = ((uint64_t)1 << 62) + ((uint64_t)1 << 30) +
			     (rn ? (uint64_t)1 << (30 + rn) : 0);
		/* half away from zero takes 2^31 back for negative ties; half up
		 * (q_mul_by_qm_up, TFLite's int8 CONV_2D on x86) does not */
		int64_t corr = rn && !round_up ? (int64_t)1 << 31 : 0;
		uint32_t off = (uint32_t)((uint64_t)1 << (31 - rn));
		m32[c] = m;
		if (c % 2)
			mo[c - 1] = m;
		left[c] = sh > 0 ? (sh & 31) : 0; /* x · 2^(shift mod 32) in int32, as quant.h */
		q->any_left = q->any_left || left[c] != 0;
		zadd[c] = (int32_t)((uint32_t)out_zp - off - (s8 ? 0u : 128u));
		int64_t *bb = c % 2 ? bo : be, *ss = c % 2 ? so : se, *cc = c % 2 ? co : ce;
		bb[c / 2] = (int64_t)b;
		ss[c / 2] = 31 + rn;
		cc[c / 2] = corr;
		/* the float path (vk_gemm.c): x = acc · mult/2^(31+n) + 1/2 + 2^-(n+1) + zq
		 * [- 2^-n where ab < -2^30], each constant rounded once from its exact
		 * double, the offsets with VK_RQ_MAGIC added (its result is then a
		 * fixed-point number); ab = acc · mult < -2^30 exactly when acc <
		 * -floor(2^30 / mult) */
		double zq = (double)out_zp - (s8 ? 0 : 128);
		/* the bound assumes |zq| <= 128: a valid zero point (a corrupt one keeps
		 * the 64-bit path, which matches the reference whatever it is) */
		q->fast = q->fast && (c >= n || (sh < 0 && left[c] == 0)) && zq >= -128 && zq <= 127;
		double beta = VK_RQ_MAGIC + 0.5 + ldexp(1.0, -(rn + 1)) + zq + VK_RQ_EPS;
		fr[c] = (float)ldexp((double)m, -(31 + rn));
		fc[c] = (float)beta;
		fcn[c] = (float)(beta - (corr ? ldexp(1.0, -rn) : 0.0));
		fthr[c] = m > 0 ? -(int32_t)(((int64_t)1 << 30) / m) : INT32_MIN;
		q->fneg = q->fneg || (c < n && corr && corr_matters);
	}
	q->uniform = n > 0;
	for (int c = 1; c < n; c++)
		q->uniform = q->uniform && mult[c] == mult[0] && shift[c] == shift[0];
	if (q->uniform) {
		q->u_mult = m32[0];
		q->u_left = left[0];
		q->u_zadd = zadd[0];
		q->u_b = be[0];
		q->u_s = se[0];
		q->u_c = ce[0];
		q->u_fr = fr[0];
		q->u_fc = fc[0];
		q->u_fcn = fcn[0];
		q->u_fthr = fthr[0];
	}
	q->fr = fr;
	q->fc = fc;
	q->fcn = fcn;
	q->fthr = fthr;
	q->mult = m32;
	q->mult_odd = mo;
	q->left = left;
	q->zadd = zadd;
	q->b_even = be;
	q->b_odd = bo;
	q->s_even = se;
	q->s_odd = so;
	q->c_even = ce;
	q->c_odd = co;
	if (q->uniform) { /* the u_* constants serve every channel: no arrays kept */
		q->fr = q->fc = q->fcn = NULL;
		q->fthr = q->mult = q->mult_odd = q->left = q->zadd = NULL;
		q->b_even = q->b_odd = q->s_even = q->s_odd = q->c_even = q->c_odd = NULL;
		free(mem);
		mem = NULL;
	}
	/* in 64 bits: a corrupt model may carry any activation range */
	q->lo = clamp32((int64_t)act_lo - (s8 ? 0 : 128));
	q->hi = clamp32((int64_t)act_hi - (s8 ? 0 : 128));
	/* saturate∘clamp[lo, hi] = clamp[sat lo, sat hi]∘saturate (both monotone; for
	 * lo > hi both give sat hi), so two-vector stores narrow first, clamp bytes */
	q->lo8 = (int8_t)(q->lo < -128 ? -128 : q->lo > 127 ? 127 : q->lo);
	q->hi8 = (int8_t)(q->hi < -128 ? -128 : q->hi > 127 ? 127 : q->hi);
	q->clamp8 = q->lo8 > -128 || q->hi8 < 127;
	q->s8out = s8;
	q->flip8 = s8 ? 0 : (int32_t)0x80808080u;
	q->mem = mem;
	return 0;
}

void vk_rq_free(struct vk_rq *q)
{
	if (q) {
		free(q->mem);
		q->mem = NULL;
	}
}

/*
 * ADD in float.  TFLite's ADD is a' = q(v1), b' = q(v2), y = qo(a' + b') with
 * v1 = (x - zx)·2^20 and q the fixed-point multiply: a' is within 1 of v1·r1
 * (two roundings of at most 1/2 each; no left shift, so no int32 wrap), and
 * the output's negative-tie correction moves x_out by 2^-no.  So
 *
 *   x_out = (x - zx)·K1 + (r - zr)·K2 + β_o + zq + e_exact,
 *   K1 = 2^20·r1·ro, K2 = 2^20·r2·ro, |e_exact| ≤ 2·ro + 2^-no,
 *
 * and two FMAs on the raw lanes give f = x·k1 + r·k2 + c with c = β_o + zq -
 * zx·K1 - zr·K2 + ε.  Every float rounding is at most 2^-24 of a magnitude
 * below T = 255·(|K1| + |K2|) + |c|: four of them (k1, k2, c, the outer FMA)
 * plus the inner FMA's, so |e_float| ≤ 5·T·2^-24.  With ε the smallest power of
 * two above e_exact + e_float, f - ε is within ε of x_out, and vk_gemm.c's
 * argument ("Requantization in float") applies with 2ε.  The path is used
 * when ε ≤ 2^-8 (a lane redone with probability ~2ε) and every shift is right.
 */
void vk_add_fill_fast(struct vk_add *a, int32_t m1, int s1, int32_t m2, int s2, int32_t mo,
		      int so, int32_t out_zp)
{
	a->fast = false;
	if (s1 > 0 || s2 > 0 || so > -1 || s1 < -31 || s2 < -31 || so < -31)
		return;
	double r1 = ldexp((double)m1, -(31 - s1)), r2 = ldexp((double)m2, -(31 - s2));
	double ro = ldexp((double)mo, -(31 - so));
	double k1 = ldexp(r1 * ro, 20), k2 = ldexp(r2 * ro, 20);
	double zq = (double)out_zp - (a->s8 ? 0 : 128);
	double c = 0.5 + ldexp(1.0, so - 1) + zq - a->zx * k1 - a->zr * k2;
	double t = 255.0 * (fabs(k1) + fabs(k2)) + fabs(c) + 1.0;
	double e = 2.0 * ro + ldexp(1.0, so) + 5.0 * t * ldexp(1.0, -24);
	double eps = ldexp(1.0, -30);
	while (eps <= e)
		eps *= 2.0;
	if (eps > ldexp(1.0, -8) || t > ldexp(1.0, 29))
		return;
	a->k1 = (float)k1;
	a->k2 = (float)k2;
	a->c = (float)(c + eps);
	a->frac_min = (float)(2.0 * eps);
	a->fast = true;
}

void vk_rq_slice(const struct vk_rq *q, int n0, struct vk_rq *out)
{
	*out = *q;
	out->mem = NULL;
	if (q->uniform)
		return; /* no arrays */
	const size_t c = (size_t)n0, h = c / 2; /* per channel; per channel pair */
	out->mult = q->mult + c;
	out->mult_odd = q->mult_odd + c;
	out->left = q->left + c;
	out->zadd = q->zadd + c;
	out->fthr = q->fthr + c;
	out->fr = q->fr + c;
	out->fc = q->fc + c;
	out->fcn = q->fcn + c;
	out->b_even = q->b_even + h;
	out->b_odd = q->b_odd + h;
	out->s_even = q->s_even + h;
	out->s_odd = q->s_odd + h;
	out->c_even = q->c_even + h;
	out->c_odd = q->c_odd + h;
}
