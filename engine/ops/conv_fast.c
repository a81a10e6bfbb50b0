/*
 * conv_fast.c — CONV_2D and DEPTHWISE_CONV_2D for 8-bit tensors with AVX2.
 *
 * Same results as conv.c, byte for byte (tests/unit/test_ops.c checks it on
 * random tensors).  The reference accumulator is rewritten so that the inner
 * loop is a plain int16 dot product (vpmaddwd, exact: no saturation):
 *
 *   sum_k (w_k - wzp)(x_k - xzp) + bias = dot(x, w - wzp) + [bias - xzp·sum_k(w_k - wzp)]
 *
 * where the bracket is per output channel and computed at prepare.  Padding
 * taps hold x = xzp, i.e. x - xzp = 0, which is exactly the reference's
 * "skip the tap".  Everything is int32 arithmetic modulo 2^32, so whenever
 * the reference accumulator fits in int32 the results are identical.
 *
 * Weights are packed at prepare (load time) as int16 pairs along K for groups
 * of 8 output channels; im2col rows (int16) go to the per-context scratch in
 * blocks of CONV_MB pixels; the micro-kernel computes CONV_MR pixels × 16
 * channels.  Requantization runs 8 lanes at a time with the exact
 * fixed-point recipe.  Without AVX2 the node keeps the reference path.
 * (An AVX-512 VNNI variant belongs here too, behind the same kernel entry.)
 * Inference worker thread.
 */
#include "conv.h"

#include <immintrin.h>

#define CONV_MR 6
#define CONV_MB 60

#define TGT __attribute__((target("avx2")))

static bool cpu_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}

/* q_mul_by_qm() on 8 lanes (see quant.h for the semantics reproduced). */
TGT static inline __m256i requant8(__m256i acc, __m256i mult, __m256i shift)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i left = _mm256_max_epi32(shift, zero);
	__m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
	__m256i xs = _mm256_sllv_epi32(acc, _mm256_and_si256(left, _mm256_set1_epi32(31)));

	const __m256i pos_nudge = _mm256_set1_epi64x(1 << 30);
	const __m256i neg_nudge = _mm256_set1_epi64x(1 - (1 << 30));
	const __m256i bias31 = _mm256_set1_epi64x(((int64_t)1 << 31) - 1);
	__m256i pe = _mm256_mul_epi32(xs, mult);
	__m256i po = _mm256_mul_epi32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(mult, 32));
	pe = _mm256_add_epi64(pe, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, pe)));
	po = _mm256_add_epi64(po, _mm256_blendv_epi8(pos_nudge, neg_nudge, _mm256_cmpgt_epi64(zero, po)));
	/* Division by 2^31 truncating toward zero; the quotient fits in 32 bits,
	 * so a logical shift gives the right low word. */
	pe = _mm256_add_epi64(pe, _mm256_and_si256(_mm256_cmpgt_epi64(zero, pe), bias31));
	po = _mm256_add_epi64(po, _mm256_and_si256(_mm256_cmpgt_epi64(zero, po), bias31));
	pe = _mm256_srli_epi64(pe, 31);
	po = _mm256_srli_epi64(po, 31);
	__m256i r = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
	const __m256i imin = _mm256_set1_epi32(INT32_MIN);
	__m256i ovf = _mm256_and_si256(_mm256_cmpeq_epi32(xs, imin), _mm256_cmpeq_epi32(mult, imin));
	r = _mm256_blendv_epi8(r, _mm256_set1_epi32(INT32_MAX), ovf);

	const __m256i one = _mm256_set1_epi32(1);
	__m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
	__m256i rem = _mm256_and_si256(r, mask);
	__m256i thr = _mm256_srai_epi32(mask, 1);
	thr = _mm256_sub_epi32(thr, _mm256_cmpgt_epi32(zero, r)); /* +1 where r < 0 */
	__m256i q = _mm256_srav_epi32(r, right);
	return _mm256_sub_epi32(q, _mm256_cmpgt_epi32(rem, thr)); /* +1 where rem > thr */
}

/* Add the output zero point, clamp, narrow to bytes and store n (<= 8) of them. */
TGT static inline void store8(const struct conv_prep *p, void *dst, __m256i v, int n)
{
	v = _mm256_add_epi32(v, _mm256_set1_epi32(p->out_zp));
	v = _mm256_max_epi32(v, _mm256_set1_epi32(p->act_lo));
	v = _mm256_min_epi32(v, _mm256_set1_epi32(p->act_hi));
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	__m128i b = p->type == ENG_DT_I8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
	if (n >= 8) {
		_mm_storel_epi64((__m128i *)dst, b);
	} else {
		uint8_t tmp[16];
		_mm_storeu_si128((__m128i *)tmp, b);
		memcpy(dst, tmp, (size_t)n);
	}
}

/* C[MR][8*nr] = A[MR][Kp] · B[Kp][8*nr], int16 pairs along K. */
TGT static inline void microkernel(const int16_t *A, int Kp, const int16_t *B, size_t bstride,
				   int nr, __m256i c[CONV_MR][2])
{
	for (int r = 0; r < CONV_MR; r++)
		c[r][0] = c[r][1] = _mm256_setzero_si256();
	const int k2n = Kp / 2;
	if (nr == 2) {
		for (int k2 = 0; k2 < k2n; k2++) {
			__m256i b0 = _mm256_loadu_si256((const __m256i *)(B + (size_t)k2 * 16));
			__m256i b1 = _mm256_loadu_si256((const __m256i *)(B + bstride + (size_t)k2 * 16));
#pragma GCC unroll 6
			for (int r = 0; r < CONV_MR; r++) {
				int32_t a32;
				memcpy(&a32, A + (size_t)r * Kp + (size_t)k2 * 2, 4);
				__m256i a = _mm256_set1_epi32(a32);
				c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(a, b0));
				c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(a, b1));
			}
		}
	} else {
		for (int k2 = 0; k2 < k2n; k2++) {
			__m256i b0 = _mm256_loadu_si256((const __m256i *)(B + (size_t)k2 * 16));
#pragma GCC unroll 6
			for (int r = 0; r < CONV_MR; r++) {
				int32_t a32;
				memcpy(&a32, A + (size_t)r * Kp + (size_t)k2 * 2, 4);
				c[r][0] = _mm256_add_epi32(c[r][0],
							   _mm256_madd_epi16(_mm256_set1_epi32(a32), b0));
			}
		}
	}
}

/* One im2col row: the K input values of output pixel m as int16, padded to Kp. */
static void im2col_row(const struct conv_prep *p, const uint8_t *x, size_t m, int16_t *row)
{
	int ohw = p->oh * p->ow;
	int b = (int)(m / (size_t)ohw), rem = (int)(m % (size_t)ohw);
	int oy = rem / p->ow, ox = rem % p->ow;
	int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
	const bool s8 = p->type == ENG_DT_I8;
	int16_t *d = row;
	for (int ky = 0; ky < p->kh; ky++) {
		int iy = iy0 + p->dh * ky;
		for (int kx = 0; kx < p->kw; kx++) {
			int ix = ix0 + p->dwl * kx;
			if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) {
				for (int c = 0; c < p->ic; c++)
					d[c] = (int16_t)p->in_zp;
			} else {
				const uint8_t *src = x + (((size_t)b * p->ih + iy) * p->iw + ix) * p->ic;
				if (s8)
					for (int c = 0; c < p->ic; c++)
						d[c] = (int8_t)src[c];
				else
					for (int c = 0; c < p->ic; c++)
						d[c] = src[c];
			}
			d += p->ic;
		}
	}
	if (p->Kp > p->K)
		row[p->K] = 0;
}

TGT static void conv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y,
			     int16_t *A)
{
	const size_t M = (size_t)p->nb * p->oh * p->ow;
	const size_t bstride = (size_t)(p->Kp / 2) * 16;
	const int groups = p->OCp / 8;
	__m256i c[CONV_MR][2];

	for (size_t m0 = 0; m0 < M; m0 += CONV_MB) {
		int mb = (int)(M - m0 < CONV_MB ? M - m0 : CONV_MB);
		int mbp = (mb + CONV_MR - 1) / CONV_MR * CONV_MR;
		for (int r = 0; r < mb; r++)
			im2col_row(p, x, m0 + (size_t)r, A + (size_t)r * p->Kp);
		for (int r = mb; r < mbp; r++)
			memset(A + (size_t)r * p->Kp, 0, (size_t)p->Kp * sizeof(*A));
		for (int r0 = 0; r0 < mbp; r0 += CONV_MR) {
			for (int g = 0; g < groups; g += 2) {
				int nr = g + 1 < groups ? 2 : 1;
				microkernel(A + (size_t)r0 * p->Kp, p->Kp, p->wpack + (size_t)g * bstride,
					    bstride, nr, c);
				for (int j = 0; j < nr; j++) {
					int oc0 = (g + j) * 8;
					int cnt = p->oc - oc0 < 8 ? p->oc - oc0 : 8;
					__m256i mult = _mm256_loadu_si256((const __m256i *)(p->mult + oc0));
					__m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + oc0));
					__m256i ct = _mm256_loadu_si256((const __m256i *)(p->cterm + oc0));
					for (int r = 0; r < CONV_MR && r0 + r < mb; r++) {
						__m256i acc = _mm256_add_epi32(c[r][j], ct);
						store8(p, y + (m0 + (size_t)r0 + (size_t)r) * p->oc + oc0,
						       requant8(acc, mult, shift), cnt);
					}
				}
			}
		}
	}
}

TGT static void dwconv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y)
{
	const int groups = p->OCp / 8;
	const __m256i xzp = _mm256_set1_epi32(p->in_zp);
	const bool s8 = p->type == ENG_DT_I8;
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
				uint8_t *dst = y + (((size_t)b * p->oh + oy) * p->ow + ox) * p->oc;
				for (int g = 0; g < groups; g++) {
					int c0 = g * 8;
					int cnt = p->oc - c0 < 8 ? p->oc - c0 : 8;
					__m256i acc = _mm256_loadu_si256((const __m256i *)(p->cterm + c0));
					for (int ky = 0; ky < p->kh; ky++) {
						int iy = iy0 + p->dh * ky;
						if (iy < 0 || iy >= p->ih)
							continue;
						for (int kx = 0; kx < p->kw; kx++) {
							int ix = ix0 + p->dwl * kx;
							if (ix < 0 || ix >= p->iw)
								continue;
							const uint8_t *src =
								x + (((size_t)b * p->ih + iy) * p->iw + ix) * p->ic + c0;
							int64_t raw = 0;
							/* never read past the tensor: partial groups copy */
							memcpy(&raw, src, (size_t)cnt);
							__m128i r8 = _mm_cvtsi64_si128(raw);
							__m256i xv = s8 ? _mm256_cvtepi8_epi32(r8)
									: _mm256_cvtepu8_epi32(r8);
							xv = _mm256_sub_epi32(xv, xzp);
							__m256i wv = _mm256_loadu_si256(
								(const __m256i *)(p->wdw +
										  ((size_t)ky * p->kw + kx) * p->OCp + c0));
							acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(xv, wv));
						}
					}
					__m256i mult = _mm256_loadu_si256((const __m256i *)(p->mult + c0));
					__m256i shift = _mm256_loadu_si256((const __m256i *)(p->shift + c0));
					store8(p, dst + c0, requant8(acc, mult, shift), cnt);
				}
			}
}

/* Grow the per-channel multiplier arrays to OCp lanes (zeros in the padding). */
static int pad_channels(struct conv_prep *p)
{
	int32_t *m = calloc((size_t)p->OCp, sizeof(*m));
	int *s = calloc((size_t)p->OCp, sizeof(*s));
	p->cterm = calloc((size_t)p->OCp, sizeof(*p->cterm));
	if (!m || !s || !p->cterm) {
		free(m);
		free(s);
		return -ENOMEM;
	}
	memcpy(m, p->mult, (size_t)p->oc * sizeof(*m));
	memcpy(s, p->shift, (size_t)p->oc * sizeof(*s));
	free(p->mult);
	free(p->shift);
	p->mult = m;
	p->shift = s;
	return 0;
}

static bool fast_ok(const struct eng_node *n, const struct conv_prep *p)
{
	return dt_is_q8(p->type) && n->in[1]->is_const &&
	       (n->n_in < 3 || !n->in[2] || n->in[2]->is_const) && cpu_avx2();
}

static int conv_prepare_fast(struct eng_node *n, char *err, size_t errlen)
{
	int rc = conv_prepare_common(n, false, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	if (!fast_ok(n, p))
		return 0;
	p->K = p->kh * p->kw * p->ic;
	p->Kp = (p->K + 1) & ~1;
	p->OCp = (p->oc + 7) & ~7;
	rc = pad_channels(p);
	if (rc)
		goto fail;
	size_t welems = (size_t)p->OCp * p->Kp;
	p->wpack = calloc(welems, sizeof(*p->wpack));
	if (!p->wpack) {
		rc = -ENOMEM;
		goto fail;
	}
	const void *w = n->in[1]->const_data;
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	const int k2n = p->Kp / 2;
	for (int o = 0; o < p->oc; o++) {
		int64_t wsum = 0;
		for (int k = 0; k < p->K; k++) {
			int32_t v = q8_get(p->type, w, (size_t)o * p->K + k) - p->w_zp;
			wsum += v;
			size_t idx = ((((size_t)(o / 8) * k2n) + (size_t)(k / 2)) * 8 + (size_t)(o % 8)) * 2 +
				     (size_t)(k % 2);
			p->wpack[idx] = (int16_t)v;
		}
		int64_t c = bias ? bias[o] : 0;
		c -= (int64_t)p->in_zp * wsum;
		p->cterm[o] = (int32_t)(uint32_t)(uint64_t)c;
	}
	n->scratch_bytes = (size_t)CONV_MB * p->Kp * sizeof(int16_t);
	p->fast = true;
	return 0;
fail:
	conv_release(n);
	KERR(err, errlen, "out of memory packing weights");
	return rc;
}

static int dwconv_prepare_fast(struct eng_node *n, char *err, size_t errlen)
{
	int rc = conv_prepare_common(n, true, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	if (!fast_ok(n, p) || p->dm != 1)
		return 0;
	p->OCp = (p->oc + 7) & ~7;
	rc = pad_channels(p);
	if (rc)
		goto fail;
	size_t taps = (size_t)p->kh * p->kw;
	p->wdw = calloc(taps * p->OCp, sizeof(*p->wdw));
	if (!p->wdw) {
		rc = -ENOMEM;
		goto fail;
	}
	const void *w = n->in[1]->const_data;
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	for (size_t t = 0; t < taps; t++)
		for (int o = 0; o < p->oc; o++)
			p->wdw[t * p->OCp + o] = q8_get(p->type, w, t * p->oc + o) - p->w_zp;
	for (int o = 0; o < p->oc; o++)
		p->cterm[o] = bias ? bias[o] : 0;
	p->fast = true;
	return 0;
fail:
	conv_release(n);
	KERR(err, errlen, "out of memory packing weights");
	return rc;
}

static int conv_eval_fast(const struct eng_node *n, const struct eng_exec *x)
{
	const struct conv_prep *p = n->prep;
	if (!p->fast)
		return conv_eval_ref(n, x);
	const uint8_t *in = eng_tdata(x, n->in[0]);
	uint8_t *out = eng_tdata(x, n->out[0]);
	if (p->dw)
		dwconv_fast_q8(p, in, out);
	else
		conv_fast_q8(p, in, out, x->scratch);
	return 0;
}

const struct eng_kernel eng_k_conv_fast = {"CONV_2D", conv_prepare_fast, conv_eval_fast,
					   conv_release};
const struct eng_kernel eng_k_dwconv_fast = {"DEPTHWISE_CONV_2D", dwconv_prepare_fast,
					     conv_eval_fast, conv_release};
