/*
 * conv_fast.c — CONV_2D and DEPTHWISE_CONV_2D for 8-bit tensors on AVX-512 VNNI.
 *
 * Same results as conv.c, byte for byte (tests/unit/test_ops.c checks it on
 * random tensors): the integer accumulator is rewritten so that the inner
 * loop is a plain u8×s8 dot product (vpdpbusd), and the per-channel
 * zero-point terms are precomputed at prepare:
 *
 *   sum_k (w_k - wzp)(x_k - xzp) + bias
 *     = dot(u, w8) + (wbias - wzp)·sum(u) + bias - (ubias + xzp)·(sum(w) - K·wzp)
 *
 * with u = x + ubias as uint8 (ubias 128 for int8 inputs) and w8 = w - wbias
 * as int8 (wbias 128 for uint8 weights).  Padding taps hold u = xzp + ubias,
 * i.e. x - xzp = 0, which is exactly the reference's "skip the tap".  All of
 * it is int32 arithmetic modulo 2^32, so whenever the reference accumulator
 * fits in int32 the results are identical.
 *
 * Weights are packed at prepare (load time); im2col rows go to the per-context
 * scratch in blocks of CONV_MB pixels.  Without VNNI the node keeps the
 * reference path.  Inference worker thread.
 */
#include "conv.h"

#include <immintrin.h>

#define CONV_MR 8
#define CONV_MB 64

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

static bool cpu_vnni(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* q_mul_by_qm() on 16 lanes (see quant.h for the semantics reproduced). */
TGT static inline __m512i requant16(__m512i acc, __m512i mult, __m512i shift)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i left = _mm512_max_epi32(shift, zero);
	__m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
	__m512i xs = _mm512_sllv_epi32(acc, _mm512_and_si512(left, _mm512_set1_epi32(31)));

	const __m512i pos_nudge = _mm512_set1_epi64(1 << 30);
	const __m512i neg_nudge = _mm512_set1_epi64(1 - (1 << 30));
	const __m512i bias31 = _mm512_set1_epi64(((int64_t)1 << 31) - 1);
	__m512i pe = _mm512_mul_epi32(xs, mult);
	__m512i po = _mm512_mul_epi32(_mm512_srli_epi64(xs, 32), _mm512_srli_epi64(mult, 32));
	pe = _mm512_add_epi64(pe, _mm512_mask_blend_epi64(_mm512_cmplt_epi64_mask(pe, zero),
							   pos_nudge, neg_nudge));
	po = _mm512_add_epi64(po, _mm512_mask_blend_epi64(_mm512_cmplt_epi64_mask(po, zero),
							   pos_nudge, neg_nudge));
	/* Division by 2^31 truncating toward zero. */
	pe = _mm512_mask_add_epi64(pe, _mm512_cmplt_epi64_mask(pe, zero), pe, bias31);
	po = _mm512_mask_add_epi64(po, _mm512_cmplt_epi64_mask(po, zero), po, bias31);
	pe = _mm512_srai_epi64(pe, 31);
	po = _mm512_srai_epi64(po, 31);
	__m512i r = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
	const __m512i imin = _mm512_set1_epi32(INT32_MIN);
	__mmask16 ovf = _mm512_cmpeq_epi32_mask(xs, imin) & _mm512_cmpeq_epi32_mask(mult, imin);
	r = _mm512_mask_mov_epi32(r, ovf, _mm512_set1_epi32(INT32_MAX));

	const __m512i one = _mm512_set1_epi32(1);
	__m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
	__m512i rem = _mm512_and_si512(r, mask);
	__m512i thr = _mm512_srai_epi32(mask, 1);
	thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(r, zero), thr, one);
	__m512i q = _mm512_srav_epi32(r, right);
	return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

TGT static inline void store16(const struct conv_prep *p, void *dst, __m512i v, __mmask16 m)
{
	v = _mm512_add_epi32(v, _mm512_set1_epi32(p->out_zp));
	v = _mm512_max_epi32(v, _mm512_set1_epi32(p->act_lo));
	v = _mm512_min_epi32(v, _mm512_set1_epi32(p->act_hi));
	_mm_mask_storeu_epi8(dst, m, _mm512_cvtepi32_epi8(v));
}

static inline __mmask16 tail_mask(int n)
{
	return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* C[MR][16*nr] = A[MR][Kp] · B[Kp][16*nr] with A u8 and B s8 packed by 4 along K. */
TGT static inline void microkernel(const uint8_t *A, int Kp, const int8_t *B, size_t bstride,
				   int nr, __m512i c[CONV_MR][2])
{
	for (int r = 0; r < CONV_MR; r++)
		c[r][0] = c[r][1] = _mm512_setzero_si512();
	const int k4n = Kp / 4;
	if (nr == 2) {
		for (int k4 = 0; k4 < k4n; k4++) {
			__m512i b0 = _mm512_load_si512((const void *)(B + (size_t)k4 * 64));
			__m512i b1 = _mm512_load_si512((const void *)(B + bstride + (size_t)k4 * 64));
#pragma GCC unroll 8
			for (int r = 0; r < CONV_MR; r++) {
				int32_t a32;
				memcpy(&a32, A + (size_t)r * Kp + (size_t)k4 * 4, 4);
				__m512i a = _mm512_set1_epi32(a32);
				c[r][0] = _mm512_dpbusd_epi32(c[r][0], a, b0);
				c[r][1] = _mm512_dpbusd_epi32(c[r][1], a, b1);
			}
		}
	} else {
		for (int k4 = 0; k4 < k4n; k4++) {
			__m512i b0 = _mm512_load_si512((const void *)(B + (size_t)k4 * 64));
#pragma GCC unroll 8
			for (int r = 0; r < CONV_MR; r++) {
				int32_t a32;
				memcpy(&a32, A + (size_t)r * Kp + (size_t)k4 * 4, 4);
				c[r][0] = _mm512_dpbusd_epi32(c[r][0], _mm512_set1_epi32(a32), b0);
			}
		}
	}
}

/* One im2col row: the K input values of output pixel m as uint8, padded to Kp. */
static int32_t im2col_row(const struct conv_prep *p, const uint8_t *x, size_t m, uint8_t flip,
			  uint8_t padv, uint8_t *row)
{
	int ohw = p->oh * p->ow;
	int b = (int)(m / (size_t)ohw), rem = (int)(m % (size_t)ohw);
	int oy = rem / p->ow, ox = rem % p->ow;
	int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
	int32_t s = 0;
	uint8_t *d = row;
	for (int ky = 0; ky < p->kh; ky++) {
		int iy = iy0 + p->dh * ky;
		for (int kx = 0; kx < p->kw; kx++) {
			int ix = ix0 + p->dwl * kx;
			if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) {
				memset(d, padv, (size_t)p->ic);
				s += (int32_t)padv * p->ic;
			} else {
				const uint8_t *src = x + (((size_t)b * p->ih + iy) * p->iw + ix) * p->ic;
				for (int c = 0; c < p->ic; c++) {
					uint8_t v = src[c] ^ flip;
					d[c] = v;
					s += v;
				}
			}
			d += p->ic;
		}
	}
	memset(d, 0, (size_t)(p->Kp - p->K));
	return s;
}

TGT static void conv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y,
			     uint8_t *scratch)
{
	uint8_t *A = scratch;
	int32_t *usum = (int32_t *)(scratch + (size_t)CONV_MB * p->Kp);
	const uint8_t flip = p->type == ENG_DT_I8 ? 0x80 : 0;
	const uint8_t padv = (uint8_t)((uint8_t)p->in_zp ^ flip);
	const size_t M = (size_t)p->nb * p->oh * p->ow;
	const size_t bstride = (size_t)(p->Kp / 4) * 64;
	const int groups = p->OCp / 16;
	const __m512i xcoef = _mm512_set1_epi32(p->xcoef);
	__m512i c[CONV_MR][2];

	for (size_t m0 = 0; m0 < M; m0 += CONV_MB) {
		int mb = (int)(M - m0 < CONV_MB ? M - m0 : CONV_MB);
		int mbp = (mb + CONV_MR - 1) / CONV_MR * CONV_MR;
		for (int r = 0; r < mb; r++)
			usum[r] = im2col_row(p, x, m0 + (size_t)r, flip, padv, A + (size_t)r * p->Kp);
		for (int r = mb; r < mbp; r++) {
			memset(A + (size_t)r * p->Kp, 0, (size_t)p->Kp);
			usum[r] = 0;
		}
		for (int r0 = 0; r0 < mbp; r0 += CONV_MR) {
			for (int g = 0; g < groups; g += 2) {
				int nr = g + 1 < groups ? 2 : 1;
				microkernel(A + (size_t)r0 * p->Kp, p->Kp, p->wpack + (size_t)g * bstride,
					    bstride, nr, c);
				for (int j = 0; j < nr; j++) {
					int oc0 = (g + j) * 16;
					__mmask16 m = tail_mask(p->oc - oc0);
					__m512i mult = _mm512_loadu_si512((const void *)(p->mult + oc0));
					__m512i shift = _mm512_loadu_si512((const void *)(p->shift + oc0));
					__m512i ct = _mm512_loadu_si512((const void *)(p->cterm + oc0));
					for (int r = 0; r < CONV_MR && r0 + r < mb; r++) {
						__m512i acc = _mm512_add_epi32(c[r][j], ct);
						acc = _mm512_add_epi32(
							acc, _mm512_mullo_epi32(xcoef, _mm512_set1_epi32(usum[r0 + r])));
						acc = requant16(acc, mult, shift);
						store16(p, y + (m0 + (size_t)r0 + (size_t)r) * p->oc + oc0, acc, m);
					}
				}
			}
		}
	}
}

TGT static void dwconv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y)
{
	const int groups = p->OCp / 16;
	const __m512i xzp = _mm512_set1_epi32(p->in_zp);
	const bool s8 = p->type == ENG_DT_I8;
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
				uint8_t *dst = y + (((size_t)b * p->oh + oy) * p->ow + ox) * p->oc;
				for (int g = 0; g < groups; g++) {
					int c0 = g * 16;
					__mmask16 m = tail_mask(p->oc - c0);
					__m512i acc = _mm512_loadu_si512((const void *)(p->cterm + c0));
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
							__m128i raw = _mm_maskz_loadu_epi8(m, src);
							__m512i xv = s8 ? _mm512_cvtepi8_epi32(raw)
									: _mm512_cvtepu8_epi32(raw);
							xv = _mm512_sub_epi32(xv, xzp);
							__m512i wv = _mm512_loadu_si512(
								(const void *)(p->wdw +
									       ((size_t)ky * p->kw + kx) * p->OCp + c0));
							acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xv, wv));
						}
					}
					__m512i mult = _mm512_loadu_si512((const void *)(p->mult + c0));
					__m512i shift = _mm512_loadu_si512((const void *)(p->shift + c0));
					store16(p, dst + c0, requant16(acc, mult, shift), m);
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
	       (n->n_in < 3 || !n->in[2] || n->in[2]->is_const) && cpu_vnni();
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
	p->Kp = (p->K + 3) & ~3;
	p->OCp = (p->oc + 15) & ~15;
	rc = pad_channels(p);
	if (rc)
		goto fail;
	size_t wbytes = (size_t)p->OCp * p->Kp;
	p->wpack = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
	if (!p->wpack) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(p->wpack, 0, wbytes);
	const void *w = n->in[1]->const_data;
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	const bool u8 = p->type == ENG_DT_U8;
	const int32_t ubias = u8 ? 0 : 128, wbias = u8 ? 128 : 0;
	const int k4n = p->Kp / 4;
	for (int o = 0; o < p->oc; o++) {
		int64_t wsum = 0;
		for (int k = 0; k < p->K; k++) {
			int32_t v = q8_get(p->type, w, (size_t)o * p->K + k);
			wsum += v;
			size_t idx = ((((size_t)(o / 16) * k4n) + (size_t)(k / 4)) * 16 + (size_t)(o % 16)) * 4 +
				     (size_t)(k % 4);
			p->wpack[idx] = (int8_t)(v - wbias);
		}
		int64_t c = bias ? bias[o] : 0;
		c -= (int64_t)(ubias + p->in_zp) * (wsum - (int64_t)p->K * p->w_zp);
		p->cterm[o] = (int32_t)(uint32_t)(uint64_t)c;
	}
	p->xcoef = wbias - p->w_zp;
	n->scratch_bytes = (size_t)CONV_MB * p->Kp + (size_t)CONV_MB * sizeof(int32_t);
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
	p->OCp = (p->oc + 15) & ~15;
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
