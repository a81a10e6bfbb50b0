/*
 * simd.h — AVX2 building blocks shared by the fast kernels (internal to engine/ops).
 *
 * simd_requant8() is q_mul_by_qm() (quant.h) on 8 int32 lanes, bit for bit;
 * the fast kernels are tested byte-identical to the reference ones.  Callers
 * must check simd_have_avx2() before using any of it.  Pure functions.
 */
#ifndef DETD_ENGINE_OPS_SIMD_H
#define DETD_ENGINE_OPS_SIMD_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define TGT __attribute__((target("avx2")))

static inline bool simd_have_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}

/* q_mul_by_qm() on 8 lanes (see quant.h for the semantics reproduced). */
TGT static inline __m256i simd_requant8(__m256i acc, __m256i mult, __m256i shift)
{
	const __m256i zero = _mm256_setzero_si256();
	__m256i left = _mm256_max_epi32(shift, zero);
	__m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
	__m256i xs = _mm256_sllv_epi32(acc, _mm256_and_si256(left, _mm256_set1_epi32(31)));

	/* SRDHM: gemmlowp's nudge-then-truncate equals floor((ab + 2^30) / 2^31) for
	 * both signs (for ab < 0: trunc((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31)),
	 * and the quotient fits in 32 bits, so a logical shift gives its low word. */
	const __m256i half = _mm256_set1_epi64x((int64_t)1 << 30);
	__m256i pe = _mm256_mul_epi32(xs, mult);
	__m256i po = _mm256_mul_epi32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(mult, 32));
	pe = _mm256_srli_epi64(_mm256_add_epi64(pe, half), 31);
	po = _mm256_srli_epi64(_mm256_add_epi64(po, half), 31);
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

/*
 * The same requantization with the per-lane shift work done once (a channel
 * group's multipliers and shifts are reused for many pixels).  Multipliers
 * come from q_quantize_multiplier(), which never yields INT32_MIN, so the
 * SRDHM overflow case cannot occur and is not tested here.
 */
struct simd_rq8 {
	__m256i mult, left, right, mask, half;
	__m256i away; /* all ones: round half away from zero; zero: half up (q_mul_by_qm_up) */
};

TGT static inline struct simd_rq8 simd_rq8_make(__m256i mult, __m256i shift)
{
	const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
	struct simd_rq8 q;
	q.mult = mult;
	q.left = _mm256_and_si256(_mm256_max_epi32(shift, zero), _mm256_set1_epi32(31));
	q.right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
	q.mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, q.right), one);
	q.half = _mm256_srai_epi32(q.mask, 1);
	q.away = _mm256_set1_epi32(-1);
	return q;
}

TGT static inline __m256i simd_requant8_rq(__m256i acc, const struct simd_rq8 *q)
{
	const __m256i zero = _mm256_setzero_si256();
	const __m256i half31 = _mm256_set1_epi64x((int64_t)1 << 30);
	__m256i xs = _mm256_sllv_epi32(acc, q->left);
	__m256i pe = _mm256_mul_epi32(xs, q->mult);
	__m256i po = _mm256_mul_epi32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(q->mult, 32));
	pe = _mm256_srli_epi64(_mm256_add_epi64(pe, half31), 31);
	po = _mm256_srli_epi64(_mm256_add_epi64(po, half31), 31);
	__m256i r = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
	__m256i rem = _mm256_and_si256(r, q->mask);
	__m256i thr = _mm256_sub_epi32(q->half, _mm256_and_si256(_mm256_cmpgt_epi32(zero, r), q->away));
	__m256i res = _mm256_srav_epi32(r, q->right);
	return _mm256_sub_epi32(res, _mm256_cmpgt_epi32(rem, thr));
}

/* Add the zero point, clamp to [lo, hi], narrow to bytes and store n (<= 8) of them. */
TGT static inline void simd_store8(void *dst, __m256i v, int32_t zp, int32_t lo, int32_t hi,
				   bool s8, int n)
{
	v = _mm256_add_epi32(v, _mm256_set1_epi32(zp));
	v = _mm256_max_epi32(v, _mm256_set1_epi32(lo));
	v = _mm256_min_epi32(v, _mm256_set1_epi32(hi));
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	__m128i b = s8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
	if (n >= 8) {
		_mm_storel_epi64((__m128i *)dst, b);
	} else {
		uint8_t tmp[16];
		_mm_storeu_si128((__m128i *)tmp, b);
		memcpy(dst, tmp, (size_t)n);
	}
}

/* Load n (<= 8) bytes as int32 lanes, never reading past them. */
TGT static inline __m256i simd_load8(const void *src, bool s8, int n)
{
	__m128i r8;
	if (n >= 8) {
		r8 = _mm_loadl_epi64((const __m128i *)src);
	} else {
		int64_t raw = 0;
		memcpy(&raw, src, (size_t)n);
		r8 = _mm_cvtsi64_si128(raw);
	}
	return s8 ? _mm256_cvtepi8_epi32(r8) : _mm256_cvtepu8_epi32(r8);
}

#endif
