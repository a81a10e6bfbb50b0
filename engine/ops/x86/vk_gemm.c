/*
 * vk_gemm.c — u8×s8 GEMM on vpdpbusd with fused bias, row-sum compensation,
 * TFLite fixed-point requantization and activation clamp (vk.h).
 *
 * Built several times from this one source (engine/ops/x86/meson.build):
 * VK_W=512 with -mavx512vnni (vk512_gemm), VK_W=256 with -mavxvnni
 * (vk256_gemm), and in the unit tests both again against SIMDe (VK_SIMDE:
 * vk512s_gemm, vk256s_gemm) so that the same code is checked on machines
 * without the instructions.  VK_PREFIX names the entry points.
 *
 * Blocking: the outer loop walks tiles of 2 vectors of channels (32 channels
 * at 512 bits, 16 at 256), whose packed weights (K4 × 32 bytes) stay in L1/L2
 * while the inner loop walks all rows of the call in tiles of MR rows; each
 * row's 4 bytes are broadcast and multiplied with 16 (8) channels × 4 K
 * bytes per instruction.  The caller keeps m small enough for the rows to
 * stay in L2 (engine/ops/conv_vnni.c).  Pure; any thread.
 */
#include "vk.h"

#include <string.h>

#ifdef VK_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

#if !defined(VK_W) || !defined(VK_PREFIX)
#error "VK_W (256 or 512) and VK_PREFIX must be defined by the build"
#endif
#define VK_CAT_(a, b) a##_##b
#define VK_CAT(a, b) VK_CAT_(a, b)
#define VK_NAME(x) VK_CAT(VK_PREFIX, x)

#if VK_W == 512
typedef __m512i vec;
#define VL 16
#define MR 8
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define V_ZERO() _mm512_setzero_si512()
#define V_LOAD(p) _mm512_loadu_si512((const void *)(p))
#define V_SET1(x) _mm512_set1_epi32(x)
#define V_ADD(a, b) _mm512_add_epi32(a, b)
#define V_MULLO(a, b) _mm512_mullo_epi32(a, b)
#define V_DP(acc, u, w) _mm512_dpbusd_epi32(acc, u, w)
#define V_XOR(a, b) _mm512_xor_si512(a, b)
#define V_UNLO8(a, b) _mm512_unpacklo_epi8(a, b)
#define V_UNHI8(a, b) _mm512_unpackhi_epi8(a, b)
#define V_UNLO16(a, b) _mm512_unpacklo_epi16(a, b)
#define V_UNHI16(a, b) _mm512_unpackhi_epi16(a, b)
/* a[j] lane L*4+i holds channel L*16+4j+i; afterwards a[j] holds channels 16j.. in order */
static inline void chan_order(__m512i a[4])
{
	__m512i t0 = _mm512_shuffle_i32x4(a[0], a[1], 0x44), t1 = _mm512_shuffle_i32x4(a[0], a[1], 0xEE);
	__m512i t2 = _mm512_shuffle_i32x4(a[2], a[3], 0x44), t3 = _mm512_shuffle_i32x4(a[2], a[3], 0xEE);
	a[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
	a[1] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
	a[2] = _mm512_shuffle_i32x4(t1, t3, 0x88);
	a[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}
#elif VK_W == 256
typedef __m256i vec;
#define VL 8
#define MR 6
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define V_ZERO() _mm256_setzero_si256()
#define V_LOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define V_SET1(x) _mm256_set1_epi32(x)
#define V_ADD(a, b) _mm256_add_epi32(a, b)
#define V_MULLO(a, b) _mm256_mullo_epi32(a, b)
#ifdef VK_SIMDE
#define V_DP(acc, u, w) _mm256_dpbusd_epi32(acc, u, w) /* SIMDe: the AVX512VL spelling */
#else
#define V_DP(acc, u, w) _mm256_dpbusd_avx_epi32(acc, u, w)
#endif
#define V_XOR(a, b) _mm256_xor_si256(a, b)
#define V_UNLO8(a, b) _mm256_unpacklo_epi8(a, b)
#define V_UNHI8(a, b) _mm256_unpackhi_epi8(a, b)
#define V_UNLO16(a, b) _mm256_unpacklo_epi16(a, b)
#define V_UNHI16(a, b) _mm256_unpackhi_epi16(a, b)
/* a[j] lane L*4+i holds channel L*16+4j+i; afterwards a[j] holds channels 8j.. in order */
static inline void chan_order(__m256i a[4])
{
	__m256i o0 = _mm256_permute2x128_si256(a[0], a[1], 0x20);
	__m256i o1 = _mm256_permute2x128_si256(a[2], a[3], 0x20);
	__m256i o2 = _mm256_permute2x128_si256(a[0], a[1], 0x31);
	__m256i o3 = _mm256_permute2x128_si256(a[2], a[3], 0x31);
	a[0] = o0;
	a[1] = o1;
	a[2] = o2;
	a[3] = o3;
}
#else
#error "VK_W must be 256 or 512"
#endif

#define TN (2 * VL) /* channels per tile */

/*
 * Requantization, q_mul_by_qm() (quant.h) bit for bit, with both roundings in
 * one 64-bit step.  With ab = (acc << left) · mult (exact in 64 bits) and n
 * the right shift:
 *
 *   SRDHM(a, m)  = floor((ab + 2^30) / 2^31)        (gemmlowp's nudge, both signs)
 *   RDBPOT(s, n) = floor((s + 2^(n-1) - [s < 0]) / 2^n)   for n >= 1, s for n = 0
 *
 * and nested floors of positive divisors compose, so the result is
 *
 *   floor((ab + 2^30 + 2^(n+30) - [n >= 1 and ab < -2^30] · 2^31) / 2^(31+n)).
 *
 * 2^62 is added so that the 64-bit shift can be logical (no 64-bit
 * arithmetic shift in AVX2): |ab| < 2^62 keeps the sum in [0, 2^64), and the
 * 2^(31-n) it adds to the quotient is taken back in zadd, together with the
 * output zero point and, for uint8, the -128 that lets both types narrow
 * through int8 (struct vk_rq, filled by vk_rq_fill()).  The multiplier is
 * never INT32_MIN (q_quantize_multiplier), so SRDHM cannot saturate.
 */
#define RQ_NEG_T (-((int64_t)1 << 30))

#if VK_W == 512
#ifdef VK_SIMDE
typedef simde__mmask8 mask8;
#else
typedef __mmask8 mask8;
#endif

static inline __m512i rq_half(__m512i ab, __m512i b, __m512i sh, __m512i c)
{
	mask8 neg = _mm512_cmpgt_epi64_mask(_mm512_set1_epi64(RQ_NEG_T), ab);
	__m512i t = _mm512_add_epi64(ab, b);
	t = _mm512_mask_sub_epi64(t, neg, t, c);
	return _mm512_srlv_epi64(t, sh);
}

/* Requantize 16 lanes of channels n0.., add zadd, clamp, narrow, store cnt bytes. */
static inline void rq_store(const struct vk_rq *q, vec acc, int n0, uint8_t *dst, int cnt)
{
	__m512i ae, ao, re, ro, zadd;
	if (q->uniform) { /* constants in registers */
		if (q->any_left)
			acc = _mm512_sllv_epi32(acc, _mm512_set1_epi32(q->u_left));
		const __m512i m = _mm512_set1_epi32(q->u_mult), b = _mm512_set1_epi64(q->u_b);
		const __m512i sh = _mm512_set1_epi64(q->u_s), c = _mm512_set1_epi64(q->u_c);
		ae = _mm512_mul_epi32(acc, m);
		ao = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), m);
		re = rq_half(ae, b, sh, c);
		ro = rq_half(ao, b, sh, c);
		zadd = _mm512_set1_epi32(q->u_zadd);
	} else {
		if (q->any_left)
			acc = _mm512_sllv_epi32(acc, V_LOAD(q->left + n0));
		ae = _mm512_mul_epi32(acc, V_LOAD(q->mult + n0));
		ao = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), V_LOAD(q->mult_odd + n0));
		re = rq_half(ae, V_LOAD(q->b_even + n0 / 2), V_LOAD(q->s_even + n0 / 2),
			     V_LOAD(q->c_even + n0 / 2));
		ro = rq_half(ao, V_LOAD(q->b_odd + n0 / 2), V_LOAD(q->s_odd + n0 / 2),
			     V_LOAD(q->c_odd + n0 / 2));
		zadd = V_LOAD(q->zadd + n0);
	}
	/* the low dwords of re and ro, interleaved */
	const __m512i idx = _mm512_set_epi32(30, 14, 28, 12, 26, 10, 24, 8, 22, 6, 20, 4, 18, 2, 16, 0);
	__m512i r = _mm512_permutex2var_epi32(re, idx, ro);
	r = _mm512_add_epi32(r, zadd);
	r = _mm512_max_epi32(r, _mm512_set1_epi32(q->lo));
	r = _mm512_min_epi32(r, _mm512_set1_epi32(q->hi));
	__m128i bytes = _mm512_cvtsepi32_epi8(r); /* in int8 range after the clamp */
	if (!q->s8out)
		bytes = _mm_xor_si128(bytes, _mm_set1_epi8((char)0x80));
	if (cnt >= 16) {
		_mm_storeu_si128((__m128i *)(void *)dst, bytes);
	} else {
		uint8_t tmp[16];
		_mm_storeu_si128((__m128i *)(void *)tmp, bytes);
		memcpy(dst, tmp, (size_t)cnt);
	}
}

/* Σ of n bytes. */
static inline int32_t row_sum(const uint8_t *p, int n)
{
	__m512i s = _mm512_setzero_si512();
	int k = 0;
	for (; k + 64 <= n; k += 64)
		s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_loadu_si512((const void *)(p + k)),
							_mm512_setzero_si512()));
	if (k < n) { /* the tail through a zeroed copy: never read past the row */
		uint8_t tmp[64] = {0};
		memcpy(tmp, p + k, (size_t)(n - k));
		s = _mm512_add_epi64(s, _mm512_sad_epu8(_mm512_loadu_si512((const void *)tmp),
							_mm512_setzero_si512()));
	}
	int64_t l[8];
	_mm512_storeu_si512((void *)l, s);
	return (int32_t)(l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7]);
}
#else
static inline __m256i rq_half(__m256i ab, __m256i b, __m256i sh, __m256i c)
{
	__m256i neg = _mm256_cmpgt_epi64(_mm256_set1_epi64x(RQ_NEG_T), ab);
	__m256i t = _mm256_add_epi64(ab, b);
	t = _mm256_sub_epi64(t, _mm256_and_si256(neg, c));
	return _mm256_srlv_epi64(t, sh);
}

static inline void rq_store(const struct vk_rq *q, vec acc, int n0, uint8_t *dst, int cnt)
{
	__m256i ae, ao, re, ro, zadd;
	if (q->uniform) { /* constants in registers */
		if (q->any_left)
			acc = _mm256_sllv_epi32(acc, _mm256_set1_epi32(q->u_left));
		const __m256i m = _mm256_set1_epi32(q->u_mult), b = _mm256_set1_epi64x(q->u_b);
		const __m256i sh = _mm256_set1_epi64x(q->u_s), c = _mm256_set1_epi64x(q->u_c);
		ae = _mm256_mul_epi32(acc, m);
		ao = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), m);
		re = rq_half(ae, b, sh, c);
		ro = rq_half(ao, b, sh, c);
		zadd = _mm256_set1_epi32(q->u_zadd);
	} else {
		if (q->any_left)
			acc = _mm256_sllv_epi32(acc, V_LOAD(q->left + n0));
		ae = _mm256_mul_epi32(acc, V_LOAD(q->mult + n0));
		ao = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), V_LOAD(q->mult_odd + n0));
		re = rq_half(ae, V_LOAD(q->b_even + n0 / 2), V_LOAD(q->s_even + n0 / 2),
			     V_LOAD(q->c_even + n0 / 2));
		ro = rq_half(ao, V_LOAD(q->b_odd + n0 / 2), V_LOAD(q->s_odd + n0 / 2),
			     V_LOAD(q->c_odd + n0 / 2));
		zadd = V_LOAD(q->zadd + n0);
	}
	__m256i r = _mm256_blend_epi32(re, _mm256_slli_epi64(ro, 32), 0xAA);
	r = _mm256_add_epi32(r, zadd);
	r = _mm256_max_epi32(r, _mm256_set1_epi32(q->lo));
	r = _mm256_min_epi32(r, _mm256_set1_epi32(q->hi));
	/* in int8 range after the clamp, so the saturating packs are plain narrowing */
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
	__m128i bytes = _mm_packs_epi16(w, w);
	if (!q->s8out)
		bytes = _mm_xor_si128(bytes, _mm_set1_epi8((char)0x80));
	if (cnt >= 8) {
		_mm_storel_epi64((__m128i *)(void *)dst, bytes);
	} else {
		uint8_t tmp[16];
		_mm_storeu_si128((__m128i *)(void *)tmp, bytes);
		memcpy(dst, tmp, (size_t)cnt);
	}
}

static inline int32_t row_sum(const uint8_t *p, int n)
{
	__m256i s = _mm256_setzero_si256();
	int k = 0;
	for (; k + 32 <= n; k += 32)
		s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(const void *)(p + k)),
							_mm256_setzero_si256()));
	if (k < n) { /* the tail through a zeroed copy: never read past the row */
		uint8_t tmp[32] = {0};
		memcpy(tmp, p + k, (size_t)(n - k));
		s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(const void *)tmp),
							_mm256_setzero_si256()));
	}
	int64_t l[4];
	_mm256_storeu_si256((__m256i *)(void *)l, s);
	return (int32_t)(l[0] + l[1] + l[2] + l[3]);
}
#endif

/* Bias, row-sum term, requantization and store of one vector of channels n0..
 * (G: struct vk_gemm or struct vk_dw, which share the names). */
#define FINISH(G, acc_, n0_, rsv_, dst_, cnt_)                                             \
	do {                                                                              \
		vec f_ = V_ADD((acc_), V_LOAD((G)->cterm + (n0_)));                        \
		if ((G)->dwc)                                                             \
			f_ = V_ADD(f_, V_MULLO(V_LOAD((G)->dwc + (n0_)), (rsv_)));          \
		rq_store(&(G)->rq, f_, (n0_), (dst_), (cnt_));                            \
	} while (0)

static inline void finish(const struct vk_gemm *g, vec acc, int n0, int32_t rs, uint8_t *dst)
{
	int cnt = g->N - n0;
	if (g->dwc_uniform) { /* the row-sum term is already in acc (tile) */
		acc = V_ADD(acc, V_LOAD(g->cterm + n0));
		rq_store(&g->rq, acc, n0, dst, cnt < VL ? cnt : VL);
		return;
	}
	FINISH(g, acc, n0, V_SET1(rs), dst, cnt < VL ? cnt : VL);
}

/*
 * MR rows × TN channels.  b0/b1: the packed weights of the tile's two vectors
 * (consecutive K groups 64 bytes apart).  Always computes MR rows (a holds
 * them), stores the first mr.  Inlined so the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void tile(const struct vk_gemm *g, const uint8_t *a,
							size_t lda, const int8_t *b0,
							const int8_t *b1, int n0, const int32_t *rs,
							uint8_t *y, size_t ldy, int mr,
							const bool two)
{
	/* named accumulators and row pointers: arrays made gcc spill */
	/* a uniform row-sum term starts the accumulators (int32 wrap-around, like the rest) */
	const bool u0 = g->dwc_uniform;
#define DECL(r)                                                                           \
	vec c0_##r = u0 ? V_SET1((int32_t)((uint32_t)g->dwc_u * (uint32_t)rs[r])) : V_ZERO();    \
	vec c1_##r = c0_##r;                                                              \
	const uint8_t *a_##r = a + (size_t)(r) * lda;
	ROWS(DECL)
#undef DECL
	const int k4n = g->K4 / 4;
	for (int kk = 0; kk < k4n; kk++) {
		vec w0 = V_LOAD(b0 + (size_t)kk * 64), w1 = two ? V_LOAD(b1 + (size_t)kk * 64) : w0;
#define STEP(r)                                                                           \
	{                                                                                 \
		int32_t av;                                                               \
		memcpy(&av, a_##r + (size_t)kk * 4, 4);                                   \
		vec u = V_SET1(av);                                                       \
		c0_##r = V_DP(c0_##r, u, w0);                                             \
		if (two)                                                                  \
			c1_##r = V_DP(c1_##r, u, w1);                                     \
	}
		ROWS(STEP)
#undef STEP
	}
#define FIN(r)                                                                            \
	if ((r) < mr) {                                                                   \
		uint8_t *d = y + (size_t)(r) * ldy + n0;                                  \
		finish(g, c0_##r, n0, rs[r], d);                                          \
		if (two)                                                                  \
			finish(g, c1_##r, n0 + VL, rs[r], d + VL);                        \
	}
	ROWS(FIN)
#undef FIN
}

void VK_NAME(gemm)(const struct vk_gemm *gp, const uint8_t *a, size_t lda, int m, uint8_t *y,
		   size_t ldy, uint8_t *scratch)
{
	/* a local copy: stores through uint8_t * may alias *gp and would force reloads */
	const struct vk_gemm gl = *gp, *g = &gl;
	int32_t rs[VK_M_MAX + VK_MR_MAX];
	memset(rs, 0, sizeof(rs));
	if (g->dwc)
		for (int r = 0; r < m; r++)
			rs[r] = row_sum(a + (size_t)r * lda, g->K4);
	/* the last partial tile of rows, zero-padded to MR rows */
	const int mfull = m / MR * MR, mtail = m - mfull;
	if (mtail) {
		memset(scratch, 0, (size_t)MR * (size_t)g->K4);
		for (int r = 0; r < mtail; r++)
			memcpy(scratch + (size_t)r * g->K4, a + (size_t)(mfull + r) * lda, (size_t)g->K4);
	}
	const size_t panel = (size_t)g->K4 * VK_PANEL; /* bytes per packed panel of 16 channels */
	for (int n0 = 0; n0 < g->N; n0 += TN) {
		const int8_t *b0 = g->w + (size_t)(n0 / VK_PANEL) * panel;
#if VK_W == 512
		const int8_t *b1 = b0 + panel; /* the next panel */
#else
		const int8_t *b1 = b0 + 32; /* the upper 8 channels of the same panel */
#endif
		if (n0 + VL < g->N) {
			for (int m0 = 0; m0 < mfull; m0 += MR)
				tile(g, a + (size_t)m0 * lda, lda, b0, b1, n0, rs + m0,
				     y + (size_t)m0 * ldy, ldy, MR, true);
			if (mtail)
				tile(g, scratch, (size_t)g->K4, b0, b1, n0, rs + mfull,
				     y + (size_t)mfull * ldy, ldy, mtail, true);
		} else { /* the last VL channels or fewer: one vector per row */
			for (int m0 = 0; m0 < mfull; m0 += MR)
				tile(g, a + (size_t)m0 * lda, lda, b0, b1, n0, rs + m0,
				     y + (size_t)m0 * ldy, ldy, MR, false);
			if (mtail)
				tile(g, scratch, (size_t)g->K4, b0, b1, n0, rs + mfull,
				     y + (size_t)mfull * ldy, ldy, mtail, false);
		}
	}
}

/* 4·VL bytes at p, or the n < 4·VL that exist (the rest zero). */
static inline vec load_chunk(const uint8_t *p, bool whole, int n)
{
	if (whole)
		return V_LOAD(p);
	uint8_t tmp[4 * VL] = {0};
	memcpy(tmp, p, (size_t)n);
	return V_LOAD(tmp);
}

void VK_NAME(dw)(const struct vk_dw *dp, const uint8_t *x, uint8_t *y, size_t r0, size_t r1)
{
	const struct vk_dw dl = *dp, *d = &dl; /* see VK_NAME(gemm) */
	enum { CHUNK = 4 * VL };
	const int C = d->C, nq = d->nq;
	const size_t xbytes = (size_t)d->ih * d->iw * (size_t)C; /* one image */
	const vec ones = V_SET1(0x01010101), flipv = V_SET1((int32_t)0x80808080u);
	const uint8_t *tp[64];
	bool inside[64]; /* tp[t] points into the image (else at a CP-byte padding row) */
	for (size_t row = r0; row < r1; row++) {
		const int b = (int)(row / (size_t)d->oh), oy = (int)(row % (size_t)d->oh);
		const uint8_t *img = x + (size_t)b * xbytes, *img_end = img + xbytes;
		for (int ox = 0; ox < d->ow; ox++) {
			const int iy0 = oy * d->sh - d->pt, ix0 = ox * d->sw - d->pl;
			int t = 0;
			for (int ky = 0; ky < d->kh; ky++) {
				const int iy = iy0 + d->dh * ky;
				for (int kx = 0; kx < d->kw; kx++, t++) {
					const int ix = ix0 + d->dw * kx;
					inside[t] = iy >= 0 && iy < d->ih && ix >= 0 && ix < d->iw;
					tp[t] = inside[t] ? img + ((size_t)iy * d->iw + ix) * C : d->zrow;
				}
			}
			for (; t < nq * 4; t++) {
				tp[t] = d->zero;
				inside[t] = false;
			}
			uint8_t *dst = y + (((size_t)b * d->oh + oy) * d->ow + ox) * C;
			for (int c0 = 0; c0 < C; c0 += CHUNK) {
				const int n = C - c0 < CHUNK ? C - c0 : CHUNK;
				const int8_t *wq = d->w + (size_t)(c0 / CHUNK) * (size_t)nq * CHUNK * 4;
				vec acc[4] = {V_ZERO(), V_ZERO(), V_ZERO(), V_ZERO()};
				vec rs[4] = {V_ZERO(), V_ZERO(), V_ZERO(), V_ZERO()};
				for (int q = 0; q < nq; q++) {
					vec tv[4];
					for (int i = 0; i < 4; i++) {
						const uint8_t *p = tp[4 * q + i] + c0;
						/* the padding rows hold CP bytes; the image may end early */
						bool whole = n == CHUNK || !inside[4 * q + i] ||
							     (size_t)(img_end - p) >= CHUNK;
						tv[i] = load_chunk(p, whole, n);
						if (d->flip)
							tv[i] = V_XOR(tv[i], flipv);
					}
					vec l01 = V_UNLO8(tv[0], tv[1]), h01 = V_UNHI8(tv[0], tv[1]);
					vec l23 = V_UNLO8(tv[2], tv[3]), h23 = V_UNHI8(tv[2], tv[3]);
					vec u[4] = {V_UNLO16(l01, l23), V_UNHI16(l01, l23), V_UNLO16(h01, h23),
						    V_UNHI16(h01, h23)};
					const int8_t *wv = wq + (size_t)q * CHUNK * 4;
					for (int j = 0; j < 4; j++) {
						acc[j] = V_DP(acc[j], u[j], V_LOAD(wv + (size_t)j * VL * 4));
						if (d->dwc)
							rs[j] = V_DP(rs[j], u[j], ones);
					}
				}
				chan_order(acc);
				if (d->dwc)
					chan_order(rs);
				for (int j = 0; j < 4 && j * VL < n; j++) {
					const int c = c0 + j * VL, cnt = n - j * VL;
					FINISH(d, acc[j], c, rs[j], dst + c, cnt < VL ? cnt : VL);
				}
			}
		}
	}
}
