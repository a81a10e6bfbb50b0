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
		 * double; ab = acc · mult < -2^30 exactly when acc < -floor(2^30 / mult) */
		q->fast = q->fast && (c >= n || (sh < 0 && left[c] == 0));
		double zq = (double)out_zp - (s8 ? 0 : 128);
		double beta = 0.5 + ldexp(1.0, -(rn + 1)) + zq + VK_RQ_EPS;
		fr[c] = (float)ldexp((double)m, -(31 + rn));
		fc[c] = (float)beta;
		fcn[c] = (float)(beta - (corr ? ldexp(1.0, -rn) : 0.0));
		fthr[c] = m > 0 ? -(int32_t)(((int64_t)1 << 30) / m) : INT32_MIN;
		q->fneg = q->fneg || (c < n && corr);
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
