/*
 * conv_fast.c — CONV_2D and DEPTHWISE_CONV_2D for 8-bit tensors with AVX2.
 *
 * Same results as conv.c, byte for byte (tests/unit/test_ops.c checks it on
 * random tensors and for every thread count).  The reference accumulator is
 * rewritten so that the inner loop is a plain int16 dot product (vpmaddwd,
 * exact: no saturation):
 *
 *   sum_k (w_k - wzp)(x_k - xzp) + bias = dot(x, w - wzp) + [bias - xzp·sum_k(w_k - wzp)]
 *
 * where the bracket is per output channel and computed at prepare.  Padding
 * taps hold x = xzp, i.e. x - xzp = 0, which is exactly the reference's
 * "skip the tap".  Everything is int32 arithmetic modulo 2^32, so whenever
 * the reference accumulator fits in int32 the results are identical.
 *
 * CONV_2D: weights packed at prepare as int16 pairs along K for groups of 8
 * output channels; im2col rows (int16) go to the per-context scratch in
 * blocks of CONV_MB pixels (one block per compute thread); an out-of-line
 * micro-kernel computes CONV_MR pixels × 16 channels.  DEPTHWISE_CONV_2D: all
 * taps of a pixel, out-of-image taps reading a row of zero points, two taps
 * per vpmaddwd, 16 channels per step.  Requantization runs 8 lanes at a time
 * with the exact fixed-point recipe (simd.h).  Large ops are split over
 * eng_exec.threads (ops_parallel_for).  Without AVX2 the node keeps the
 * reference path.  Every non-reference kernel set runs conv_vnni.c first
 * (the avx2 set on its vpmaddwd build, kset.h); these kernels take the shapes
 * it declines.  Inference worker thread, plus the context's pool.
 */
#include "conv.h"

#include "simd.h"

#define CONV_MR 4 /* rows of the micro-kernel (MK_STEP is unrolled for 4) */
#define CONV_MB 40

/* Add the output zero point, clamp, narrow to bytes and store n (<= 8) of them. */
TGT static inline void store8(const struct conv_prep *p, void *dst, __m256i v, int n)
{
	simd_store8(dst, v, p->out_zp, p->act_lo, p->act_hi, p->type == ENG_DT_I8, n);
}

/*
 * C[MR][16] = A[MR][Kp] · B[Kp][8*nr], int16 pairs along K (nr = 1: only the
 * first 8 columns).  Kept out of line with named accumulators so that the
 * compiler keeps all of them in registers whatever the caller looks like.
 */
#define MK_STEP(r)                                                                        \
	do {                                                                              \
		int32_t a32_;                                                             \
		memcpy(&a32_, A + (size_t)(r) * Kp + (size_t)k2 * 2, 4);                  \
		__m256i a_ = _mm256_set1_epi32(a32_);                                     \
		c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(a_, b0));          \
		if (nr == 2)                                                              \
			c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(a_, b1));  \
	} while (0)

__attribute__((noinline)) TGT static void microkernel(const int16_t *A, int Kp, const int16_t *B,
						      size_t bstride, int nr, int32_t *C)
{
	__m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00;
	__m256i c20 = c00, c21 = c00, c30 = c00, c31 = c00;
	const int k2n = Kp / 2;
	if (nr == 2) {
		for (int k2 = 0; k2 < k2n; k2++) {
			__m256i b0 = _mm256_loadu_si256((const __m256i *)(B + (size_t)k2 * 16));
			__m256i b1 = _mm256_loadu_si256((const __m256i *)(B + bstride + (size_t)k2 * 16));
			MK_STEP(0);
			MK_STEP(1);
			MK_STEP(2);
			MK_STEP(3);
		}
	} else {
		for (int k2 = 0; k2 < k2n; k2++) {
			__m256i b0 = _mm256_loadu_si256((const __m256i *)(B + (size_t)k2 * 16));
			__m256i b1 = b0;
			(void)b1;
			MK_STEP(0);
			MK_STEP(1);
			MK_STEP(2);
			MK_STEP(3);
		}
	}
	__m256i *out = (__m256i *)C;
	_mm256_storeu_si256(out + 0, c00);
	_mm256_storeu_si256(out + 1, c01);
	_mm256_storeu_si256(out + 2, c10);
	_mm256_storeu_si256(out + 3, c11);
	_mm256_storeu_si256(out + 4, c20);
	_mm256_storeu_si256(out + 5, c21);
	_mm256_storeu_si256(out + 6, c30);
	_mm256_storeu_si256(out + 7, c31);
}

/* Widen n bytes to int16 (sign- or zero-extended). */
TGT static inline void widen(const uint8_t *src, int16_t *d, int n, bool s8)
{
	int c = 0;
	for (; c + 16 <= n; c += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(src + c));
		__m256i w = s8 ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
		_mm256_storeu_si256((__m256i *)(d + c), w);
	}
	for (; c < n; c++)
		d[c] = s8 ? (int16_t)(int8_t)src[c] : (int16_t)src[c];
}

TGT static inline void fill16(int16_t *d, int n, int16_t v)
{
	int c = 0;
	__m256i vv = _mm256_set1_epi16(v);
	for (; c + 16 <= n; c += 16)
		_mm256_storeu_si256((__m256i *)(d + c), vv);
	for (; c < n; c++)
		d[c] = v;
}

/* One im2col row: the K input values of output pixel m as int16, padded to Kp. */
TGT static void im2col_row(const struct conv_prep *p, const uint8_t *x, size_t m, int16_t *row)
{
	const int ohw = p->oh * p->ow, ic = p->ic;
	int b = (int)(m / (size_t)ohw), rem = (int)(m % (size_t)ohw);
	int oy = rem / p->ow, ox = rem % p->ow;
	int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
	const bool s8 = p->type == ENG_DT_I8;
	int16_t *d = row;
	for (int ky = 0; ky < p->kh; ky++) {
		int iy = iy0 + p->dh * ky;
		for (int kx = 0; kx < p->kw; kx++) {
			int ix = ix0 + p->dwl * kx;
			if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw)
				fill16(d, ic, (int16_t)p->in_zp);
			else
				widen(x + (((size_t)b * p->ih + iy) * p->iw + ix) * ic, d, ic, s8);
			d += ic;
		}
	}
	if (p->Kp > p->K)
		row[p->K] = 0;
}

/* Output pixels [mbeg, mend) (multiples of CONV_MB but the last), im2col in A. */
TGT static void conv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y,
			     int16_t *A, size_t mbeg, size_t mend)
{
	const size_t M = mend;
	const size_t bstride = (size_t)(p->Kp / 2) * 16;
	const int groups = p->OCp / 8;
	int32_t c[CONV_MR * 16] __attribute__((aligned(32)));

	for (size_t m0 = mbeg; m0 < M; m0 += CONV_MB) {
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
					const struct simd_rq8 *rq = &p->rq[oc0 / 8];
					__m256i ct = _mm256_loadu_si256((const __m256i *)(p->cterm + oc0));
					for (int r = 0; r < CONV_MR && r0 + r < mb; r++) {
						__m256i acc = _mm256_add_epi32(
							_mm256_load_si256((const __m256i *)(c + r * 16 + j * 8)), ct);
						store8(p, y + (m0 + (size_t)r0 + (size_t)r) * p->oc + oc0,
						       simd_requant8_rq(acc, rq), cnt);
					}
				}
			}
		}
	}
}

#define DW_MAX_TAPS 64

/*
 * Depthwise: every pixel uses all taps; a tap outside the image reads a row of
 * input zero points (x - xzp = 0, the reference's skipped tap), so the
 * zero-point term is a per-channel constant folded into cterm at prepare.
 * Taps are taken in pairs so one vpmaddwd does 2 taps × 8 channels.
 */
/* Output rows [rbeg, rend) of all images (row r = image r / oh, y = r % oh). */
TGT static void dwconv_fast_q8(const struct conv_prep *p, const uint8_t *x, uint8_t *y,
			       size_t rbeg, size_t rend)
{
	/* locals, so that stores through y do not force reloads of *p */
	const int ih = p->ih, iw = p->iw, ic = p->ic, oh = p->oh, ow = p->ow;
	const int oc = p->oc, kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, dh = p->dh,
		  dwl = p->dwl, pt = p->pt, pl = p->pl, ntp = p->ntp;
	const int groups = p->OCp / 8, npairs = ntp / 2;
	const bool s8 = p->type == ENG_DT_I8;
	const int16_t *wdw = p->wdw;
	const int32_t *cterm = p->cterm;
	const uint8_t *tx[DW_MAX_TAPS];
	for (size_t row = rbeg; row < rend; row++) {
		const int b = (int)(row / (size_t)oh), oy = (int)(row % (size_t)oh);
		for (int ox = 0; ox < ow; ox++) {
			int iy0 = oy * sh - pt, ix0 = ox * sw - pl;
			uint8_t *dst = y + (((size_t)b * oh + oy) * ow + ox) * oc;
			int t = 0;
			for (int ky = 0; ky < kh; ky++) {
				int iy = iy0 + dh * ky;
				for (int kx = 0; kx < kw; kx++, t++) {
					int ix = ix0 + dwl * kx;
					tx[t] = (iy < 0 || iy >= ih || ix < 0 || ix >= iw)
							? p->zrow
							: x + (((size_t)b * ih + iy) * iw + ix) * ic;
				}
			}
			for (; t < ntp; t++)
				tx[t] = p->zrow; /* the odd tap's partner, weight 0 */
			/* 16 channels at a time: one 256-bit widening per tap, two vpmaddwd */
			const int g16 = oc / 16;
			for (int G = 0; G < g16; G++) {
				const int c0 = G * 16;
				const int16_t *wg = p->wdw16 + (size_t)G * npairs * 32;
				__m256i ct0 = _mm256_loadu_si256((const __m256i *)(cterm + c0));
				__m256i ct1 = _mm256_loadu_si256((const __m256i *)(cterm + c0 + 8));
				__m256i lo = _mm256_permute2x128_si256(ct0, ct1, 0x20);
				__m256i hi = _mm256_permute2x128_si256(ct0, ct1, 0x31);
				for (int q = 0; q < npairs; q++) {
					__m128i ra = _mm_loadu_si128((const __m128i *)(tx[2 * q] + c0));
					__m128i rb = _mm_loadu_si128((const __m128i *)(tx[2 * q + 1] + c0));
					__m256i xa = s8 ? _mm256_cvtepi8_epi16(ra) : _mm256_cvtepu8_epi16(ra);
					__m256i xb = s8 ? _mm256_cvtepi8_epi16(rb) : _mm256_cvtepu8_epi16(rb);
					const __m256i *w2 = (const __m256i *)(wg + (size_t)q * 32);
					lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb),
										    _mm256_loadu_si256(w2)));
					hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb),
										    _mm256_loadu_si256(w2 + 1)));
				}
				__m256i acc0 = _mm256_permute2x128_si256(lo, hi, 0x20);
				__m256i acc1 = _mm256_permute2x128_si256(lo, hi, 0x31);
				store8(p, dst + c0, simd_requant8_rq(acc0, &p->rq[c0 / 8]), 8);
				store8(p, dst + c0 + 8, simd_requant8_rq(acc1, &p->rq[c0 / 8 + 1]), 8);
			}
			for (int g = 2 * g16; g < groups; g++) {
				int c0 = g * 8;
				int cnt = oc - c0 < 8 ? oc - c0 : 8;
				const int16_t *wg = wdw + (size_t)g * npairs * 16;
				__m256i acc = _mm256_loadu_si256((const __m256i *)(cterm + c0));
				for (int q = 0; q < npairs; q++) {
					__m128i ra, rb;
					const uint8_t *pa = tx[2 * q] + c0, *pb = tx[2 * q + 1] + c0;
					if (cnt == 8) {
						ra = _mm_loadl_epi64((const __m128i *)pa);
						rb = _mm_loadl_epi64((const __m128i *)pb);
					} else {
						/* never read past the tensor: partial groups copy */
						int64_t a64 = 0, b64 = 0;
						memcpy(&a64, pa, (size_t)cnt);
						memcpy(&b64, pb, (size_t)cnt);
						ra = _mm_cvtsi64_si128(a64);
						rb = _mm_cvtsi64_si128(b64);
					}
					__m128i xa = s8 ? _mm_cvtepi8_epi16(ra) : _mm_cvtepu8_epi16(ra);
					__m128i xb = s8 ? _mm_cvtepi8_epi16(rb) : _mm_cvtepu8_epi16(rb);
					__m256i v = _mm256_set_m128i(_mm_unpackhi_epi16(xa, xb),
								     _mm_unpacklo_epi16(xa, xb));
					__m256i wv = _mm256_loadu_si256((const __m256i *)(wg + (size_t)q * 16));
					acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, wv));
				}
				store8(p, dst + c0, simd_requant8_rq(acc, &p->rq[g]), cnt);
			}
		}
	}
}

TGT static int make_rq(struct conv_prep *p)
{
	p->rq = aligned_alloc(32, (size_t)(p->OCp / 8) * sizeof(*p->rq));
	if (!p->rq)
		return -ENOMEM;
	for (int g = 0; g < p->OCp / 8; g++)
	{
		p->rq[g] = simd_rq8_make(_mm256_loadu_si256((const __m256i *)(p->mult + g * 8)),
					 _mm256_loadu_si256((const __m256i *)(p->shift + g * 8)));
		if (p->round_up)
			p->rq[g].away = _mm256_setzero_si256();
	}
	return 0;
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
	for (int c = 0; c < p->oc; c++)
		if (m[c] == INT32_MIN)
			return -EINVAL; /* impossible from q_quantize_multiplier(); simd_rq8 relies on it */
	return make_rq(p);
}

static bool fast_ok(const struct eng_node *n, const struct conv_prep *p)
{
	return dt_is_q8(p->type) && n->in[1]->is_const &&
	       (n->n_in < 3 || !n->in[2] || n->in[2]->is_const) && simd_have_avx2();
}

static bool fast_f32_ok(const struct eng_node *n, const struct conv_prep *p)
{
	return p->type == ENG_DT_F32 && n->in[1]->is_const &&
	       (n->n_in < 3 || !n->in[2] || n->in[2]->is_const) && p->dm == 1 &&
	       p->kh * p->kw <= DW_MAX_TAPS && simd_have_avx2();
}

int conv_prepare_fast(struct eng_node *n, char *err, size_t errlen)
{
	int rc = conv_prepare_common(n, false, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	if (fast_f32_ok(n, p)) {
		rc = conv_prepare_f32_fast(n, p);
		if (rc)
			goto fail;
		return 0;
	}
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
	/* one im2col block per compute thread */
	n->scratch_bytes = (size_t)OPS_MAX_THREADS * CONV_MB * p->Kp * sizeof(int16_t);
	p->fast = true;
	return 0;
fail:
	conv_release(n);
	KERR(err, errlen, "out of memory packing weights");
	return rc;
}

int dwconv_prepare_fast(struct eng_node *n, char *err, size_t errlen)
{
	int rc = conv_prepare_common(n, true, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	if (fast_f32_ok(n, p)) {
		rc = conv_prepare_f32_fast(n, p);
		if (rc)
			goto fail;
		return 0;
	}
	if (!fast_ok(n, p) || p->dm != 1 || p->kh * p->kw > DW_MAX_TAPS)
		return 0;
	p->OCp = (p->oc + 7) & ~7;
	rc = pad_channels(p);
	if (rc)
		goto fail;
	const int taps = p->kh * p->kw;
	p->ntp = (taps + 1) & ~1;
	p->wdw = calloc((size_t)p->OCp * p->ntp, sizeof(*p->wdw));
	p->wdw16 = calloc((size_t)(p->oc / 16 + 1) * 16 * p->ntp, sizeof(*p->wdw16));
	p->zrow = malloc((size_t)p->OCp);
	if (!p->wdw || !p->wdw16 || !p->zrow) {
		rc = -ENOMEM;
		goto fail;
	}
	memset(p->zrow, (uint8_t)p->in_zp, (size_t)p->OCp);
	const void *w = n->in[1]->const_data;
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	const int npairs = p->ntp / 2;
	for (int o = 0; o < p->oc; o++) {
		int64_t wsum = 0;
		for (int t = 0; t < taps; t++) {
			int32_t v = q8_get(p->type, w, (size_t)t * p->oc + o) - p->w_zp;
			wsum += v;
			size_t idx = (((size_t)(o / 8) * npairs + (size_t)(t / 2)) * 8 + (size_t)(o % 8)) * 2 +
				     (size_t)(t % 2);
			p->wdw[idx] = (int16_t)v;
			if (o < p->oc / 16 * 16) {
				/* 16-channel layout: lanes 0-3 / 4-7 of the 128-bit halves */
				int G = o / 16, c = o % 16, half = (c % 8) / 4;
				int lane = (c / 8) * 4 + c % 4; /* pair position within the vector */
				size_t at = (((size_t)G * npairs + (size_t)(t / 2)) * 2 + (size_t)half) * 16 +
					    (size_t)lane * 2 + (size_t)(t % 2);
				p->wdw16[at] = (int16_t)v;
			}
		}
		int64_t c = bias ? bias[o] : 0;
		c -= (int64_t)p->in_zp * wsum;
		p->cterm[o] = (int32_t)(uint32_t)(uint64_t)c;
	}
	p->fast = true;
	return 0;
fail:
	conv_release(n);
	KERR(err, errlen, "out of memory packing weights");
	return rc;
}

struct conv_job {
	const struct conv_prep *p;
	const uint8_t *x;
	uint8_t *y;
	int16_t *scratch;
};

static void conv_job_run(void *ctx, size_t begin, size_t end, int slot)
{
	const struct conv_job *j = ctx;
	const struct conv_prep *p = j->p;
	if (p->dw) {
		dwconv_fast_q8(p, j->x, j->y, begin, end);
	} else {
		/* slices are counted in blocks of CONV_MB pixels */
		size_t M = (size_t)p->nb * p->oh * p->ow;
		size_t mb = begin * CONV_MB, me = end * CONV_MB < M ? end * CONV_MB : M;
		conv_fast_q8(p, j->x, j->y, j->scratch + (size_t)slot * CONV_MB * p->Kp, mb, me);
	}
}

int conv_eval_fast(const struct eng_node *n, const struct eng_exec *x)
{
	const struct conv_prep *p = n->prep;
	if (!p->fast)
		return conv_eval_ref(n, x);
	if (p->type == ENG_DT_F32) {
		conv_eval_f32_fast(p, eng_tdata(x, n->in[0]), eng_tdata(x, n->out[0]));
		return 0;
	}
	struct conv_job j = {p, eng_tdata(x, n->in[0]), eng_tdata(x, n->out[0]), x->scratch};
	size_t M = (size_t)p->nb * p->oh * p->ow;
	size_t items = p->dw ? (size_t)p->nb * p->oh : (M + CONV_MB - 1) / CONV_MB;
	int threads = n->macs >= OPS_PARALLEL_MIN_MACS ? x->threads : 1;
	ops_parallel_for(x, threads, items, conv_job_run, &j);
	return 0;
}

const struct eng_kernel eng_k_conv_fast = {"CONV_2D", conv_prepare_fast, conv_eval_fast,
					   conv_release};
const struct eng_kernel eng_k_dwconv_fast = {"DEPTHWISE_CONV_2D", dwconv_prepare_fast,
					     conv_eval_fast, conv_release};
