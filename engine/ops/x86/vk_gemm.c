/*
 * vk_gemm.c — u8×s8 GEMM on vpdpbusd with fused bias, row-sum compensation,
 * TFLite fixed-point requantization and activation clamp (vk.h).
 *
 * Built several times from this one source (engine/ops/x86/meson.build):
 * VK_W=512 with -mavx512vnni (vk512_gemm), VK_W=256 with -mavxvnni
 * (vk256_gemm), VK_W=256 with VK_EMU_DP and -mavx2 -mfma (vk2_gemm: the avx2
 * set, each vpdpbusd emulated exactly by two vpmaddwd), and in the unit tests
 * all three again against SIMDe (VK_SIMDE: vk512s_gemm, vk256s_gemm,
 * vk2s_gemm) so that the same code is checked on machines without the
 * instructions.  VK_PREFIX names the entry points.
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

/* Forced inlining keeps accumulators and constants in registers in the
 * native builds; the SIMDe builds (tests) leave it to the compiler, which
 * otherwise spends minutes per file on SIMDe's emulated intrinsics. */
#ifdef VK_SIMDE
#define INLINE static inline
#else
#define INLINE static inline __attribute__((always_inline))
#endif

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
#define V_OR(a, b) _mm512_or_si512(a, b)
#define V_ADD64(a, b) _mm512_add_epi64(a, b)
#define V_SUB(a, b) _mm512_sub_epi32(a, b)
#define V_SAD(a, b) _mm512_sad_epu8(a, b)
#define V_SLLI(a, n) _mm512_slli_epi32(a, n)
#define V_SRLI(a, n) _mm512_srli_epi32(a, n)
#define V_SHUFB(a, c) _mm512_shuffle_epi8(a, c)
#define V_STORE(p, v) _mm512_storeu_si512((void *)(p), v)
#ifdef VK_SIMDE /* SIMDe has no 512-bit vpmovzxbd/vpmovsxbd: two 256-bit halves */
#define V_WIDEN_2(b, f)                                                                   \
	_mm512_inserti64x4(_mm512_castsi256_si512(f(b)), f(_mm_srli_si128(b, 8)), 1)
#define V_WIDEN(b) V_WIDEN_2(b, _mm256_cvtepu8_epi32)
#define V_WIDEN_S(b) V_WIDEN_2(b, _mm256_cvtepi8_epi32)
#else
#define V_WIDEN(b) _mm512_cvtepu8_epi32(b)
#define V_WIDEN_S(b) _mm512_cvtepi8_epi32(b)
#endif
#elif VK_W == 256
typedef __m256i vec;
#define VL 8
#ifdef VK_EMU_DP /* 16 registers: the accumulators, weights, broadcasts, products */
#define MR 5
#define ROWS(X) X(0) X(1) X(2) X(3) X(4)
#else
#define MR 6
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#endif
#define V_ZERO() _mm256_setzero_si256()
#define V_LOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define V_SET1(x) _mm256_set1_epi32(x)
#define V_ADD(a, b) _mm256_add_epi32(a, b)
#define V_MULLO(a, b) _mm256_mullo_epi32(a, b)
#ifdef VK_EMU_DP
/*
 * AVX2 has no vpdpbusd: the same sum from two vpmaddwd, one on the even bytes
 * of each 16-bit pair (u zero-extended, w sign-extended) and one on the odd
 * ones.  Every product is at most 255·128 in size, so the pairs' int32 sums
 * are exact and acc wraps modulo 2^32 as vpdpbusd's does.  Splitting w costs
 * three instructions and u two; the tile shares them over its rows and
 * vectors (the compiler sees the same values and computes each split once).
 */
INLINE __m256i dp_emu(__m256i acc, __m256i u, __m256i w)
{
	const __m256i ue = _mm256_and_si256(u, _mm256_set1_epi16(0xff));
	const __m256i uo = _mm256_srli_epi16(u, 8);
	const __m256i we = _mm256_srai_epi16(_mm256_slli_epi16(w, 8), 8);
	const __m256i wo = _mm256_srai_epi16(w, 8);
	return _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(ue, we),
						      _mm256_madd_epi16(uo, wo)));
}
#define V_DP(acc, u, w) dp_emu(acc, u, w)
#elif defined(VK_SIMDE)
#define V_DP(acc, u, w) _mm256_dpbusd_epi32(acc, u, w) /* SIMDe: the AVX512VL spelling */
#else
#define V_DP(acc, u, w) _mm256_dpbusd_avx_epi32(acc, u, w)
#endif
#define V_OR(a, b) _mm256_or_si256(a, b)
#define V_ADD64(a, b) _mm256_add_epi64(a, b)
#define V_SUB(a, b) _mm256_sub_epi32(a, b)
#define V_SAD(a, b) _mm256_sad_epu8(a, b)
#define V_SLLI(a, n) _mm256_slli_epi32(a, n)
#define V_SRLI(a, n) _mm256_srli_epi32(a, n)
#define V_SHUFB(a, c) _mm256_shuffle_epi8(a, c)
#define V_STORE(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), v)
#define V_WIDEN(b) _mm256_cvtepu8_epi32(b)
#define V_WIDEN_S(b) _mm256_cvtepi8_epi32(b)
#else
#error "VK_W must be 256 or 512"
#endif

#define TN (2 * VL) /* channels per tile */

/*
 * The GEMM's groups.  With vpdpbusd a group is 4 bytes of a row times 4 bytes
 * of weights per lane.  The avx2 set's GEMM (VK_EMU_DP) runs on vpmaddwd
 * instead: each call widens its rows to int16 once (gemm_body), and each tile
 * its panel of weights, so that a group is a pair of int16 and costs one
 * vpmaddwd and one add, the pair broadcast already widened (dp_emu would
 * split every broadcast again for every tile: about a fifth more
 * instructions).  The windows read in place (gemm_rows) keep dp_emu.
 */
#ifdef VK_EMU_DP
#define PAIRS_OK 1
#define DP_PAIR(acc, u, w) _mm256_add_epi32(acc, _mm256_madd_epi16(u, w))
#else
#define PAIRS_OK 0
#define DP_PAIR(acc, u, w) V_DP(acc, u, w) /* never used */
#endif

/* A tile's second vector at half width (hvec, 8 lanes) where only 8 channels
 * are left for it: a 256-bit vpdpbusd costs half a 512-bit one. */
#if VK_W == 512
typedef __m256i hvec;
#define H_LO(v) _mm512_castsi512_si256(v)
#define H_WIDEN(h) _mm512_inserti64x4(_mm512_setzero_si512(), h, 0)
#define H_LOAD(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define H_DP(acc, u, w) _mm256_dpbusd_epi32(acc, u, w)
#define HALF_OK 1
#else /* no half tiles: the names only keep the code compiling */
typedef vec hvec;
#define H_LO(v) (v)
#define H_WIDEN(h) (h)
#define H_LOAD(p) V_LOAD(p)
#define H_DP(acc, u, w) V_DP(acc, u, w)
#define HALF_OK 0
#endif

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

/*
 * Requantization in float, for the narrowing stores.  The exact result above
 * is floor(x) with x = acc·r + β + zq - γ·[neg], r = mult/2^(31+n), β = 1/2 +
 * 2^-(n+1), γ = 2^-n (0 when rounding half up), zq the output zero point (less
 * 128 for uint8: |zq| ≤ 128) and neg = [acc < fthr] (vk_rq.c).  One FMA gives
 *
 *   g = fl(fl(acc)·fl(r) + C),  C = fl(M + β + zq + ε - γ·[neg]),  M = VK_RQ_MAGIC = 768,
 *
 * ε = VK_RQ_EPS = 2^-13.  Where g is in [512, 1024) its float has the unit in
 * the last place 2^-14, so its bits are 0x44000000 + (g - 512)·2^14: f = g - M
 * as a fixed-point number with 14 fraction bits, and, for every g (bits of
 * positive floats increase with them; a negative g has a negative int32),
 *
 *   y = (bits(g) >> 14) - (bits(M) >> 14)     (arithmetic shift)
 *
 * is floor(f) inside that range, above 255 above it and below -256 below it:
 * the saturating narrow gives the same byte as sat8(floor(f)).  Only x in
 * [-129, 128) needs floor(f) = floor(x) exactly: there |C - M| < 130 and
 * |acc·r| < 258, so the error e = f - (x + ε) is at most 258·2^-23 (acc, r)
 * + 2^-15 (C) + 2^-15 (the FMA) < 2^-13.4 < ε: 0 < ε + e < 2ε, and where
 * f's fraction is at least 2ε (bits(g) & 0x3ffc ≠ 0), floor(f) = floor(x).
 * Where not, the lane may be one off and the whole store is redone on the
 * 64-bit path (rq_lanes).  A lane is redone with probability about 2ε, and
 * always at an exact tie (x an integer).
 *
 * Per vector: a conversion and an FMA in the floating-point pipes, then a
 * shift, a subtraction and a test in the integer ones (the former version,
 * floor by vcvtps2dq and the fraction by vreduceps and vcmpps, ran all five
 * in the floating-point pipes and was ~6% slower per frame).
 */
#define RQ_MAGIC_HI 0x11100 /* bits(VK_RQ_MAGIC = 768.0f) >> 14 */
#define RQ_FRAC_MASK 0x3ffc /* fraction bits at or above 2ε = 2^-12 */

/* Narrowed bytes clamped to [lo8, hi8] (the same as clamping the int32 lanes
 * before a saturating narrow: vk_rq_fill) and flipped to uint8 if need be. */
INLINE __m128i clamp_bytes(const struct vk_rq *q, __m128i b)
{
	if (q->clamp8) {
		b = _mm_max_epi8(b, _mm_set1_epi8(q->lo8));
		b = _mm_min_epi8(b, _mm_set1_epi8(q->hi8));
	}
	return _mm_xor_si128(b, _mm_set1_epi32(q->flip8)); /* branch-free: uint8 out */
}

/* The first cnt of the full (8 or 16) bytes of b. */
INLINE void store_bytes(uint8_t *dst, __m128i b, int cnt, const int full)
{
	if (cnt >= full && full == 16) {
		_mm_storeu_si128((__m128i *)(void *)dst, b);
	} else if (cnt >= full) {
		_mm_storel_epi64((__m128i *)(void *)dst, b);
	} else {
#if VK_W == 512 && !defined(VK_SIMDE) /* one masked store, not a call to memcpy */
		_mm_mask_storeu_epi8((void *)dst, (__mmask16)((1u << cnt) - 1), b);
#else
		uint8_t tmp[16];
		_mm_storeu_si128((__m128i *)(void *)tmp, b);
		memcpy(dst, tmp, (size_t)cnt);
#endif
	}
}

#if VK_W == 512
#ifdef VK_SIMDE
typedef simde__mmask8 mask8;
typedef simde__mmask16 mask16;
#else
typedef __mmask8 mask8;
typedef __mmask16 mask16;
#endif

INLINE __m512i rq_half(__m512i ab, __m512i b, __m512i sh, __m512i c)
{
	mask8 neg = _mm512_cmpgt_epi64_mask(_mm512_set1_epi64(RQ_NEG_T), ab);
	__m512i t = _mm512_add_epi64(ab, b);
	t = _mm512_mask_sub_epi64(t, neg, t, c);
	return _mm512_srlv_epi64(t, sh);
}

/* Requantize 16 lanes of channels n0.. and add zadd. */
INLINE __m512i rq_lanes(const struct vk_rq *q, vec acc, int n0)
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
	return _mm512_add_epi32(_mm512_permutex2var_epi32(re, idx, ro), zadd);
}

/* floor(f) as int32, and f - floor(f).  SIMDe has neither vcvtps2dq with a
 * rounding override nor vreduceps: round to an integral float first (imm 0x01
 * alone: SIMDe 0.7 reads bit 3, "suppress exceptions", as a fraction bit).  Nor
 * the 512-bit int32 <-> float conversions: two 256-bit halves. */
#ifdef VK_SIMDE
INLINE __m512 cvt_i2f(__m512i a)
{
	__m256 lo = _mm256_cvtepi32_ps(_mm512_castsi512_si256(a));
	__m256 hi = _mm256_cvtepi32_ps(_mm512_extracti64x4_epi64(a, 1));
	return _mm512_castsi512_ps(_mm512_inserti64x4(
		_mm512_castsi256_si512(_mm256_castps_si256(lo)), _mm256_castps_si256(hi), 1));
}
INLINE __m512i cvt_f2i(__m512 f)
{
	__m512i a = _mm512_castps_si512(f);
	__m256i lo = _mm256_cvtps_epi32(_mm256_castsi256_ps(_mm512_castsi512_si256(a)));
	__m256i hi = _mm256_cvtps_epi32(_mm256_castsi256_ps(_mm512_extracti64x4_epi64(a, 1)));
	return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
#define FLOOR_SPLIT(f, y, fr)                                                             \
	do {                                                                              \
		__m512 fl_ = _mm512_roundscale_ps(f, SIMDE_MM_FROUND_TO_NEG_INF);  \
		y = cvt_f2i(fl_);                                                         \
		fr = _mm512_sub_ps(f, fl_);                                               \
	} while (0)
#else
#define cvt_i2f _mm512_cvtepi32_ps
#define FLOOR_SPLIT(f, y, fr)                                                             \
	do {                                                                              \
		y = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); \
		fr = _mm512_reduce_ps(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);       \
	} while (0)
#endif

typedef mask16 rq_bad; /* lanes the float path may have wrong */

/* floor(f) as int32; *bad: the lanes whose fraction is below frac_min. */
INLINE __m512i floor_flag(__m512 f, float frac_min, rq_bad *bad)
{
	__m512i y;
	__m512 fr;
	FLOOR_SPLIT(f, y, fr);
	*bad = _mm512_cmp_ps_mask(fr, _mm512_set1_ps(frac_min), _CMP_LT_OQ);
	return y;
}

/* floor(g - VK_RQ_MAGIC) from g's bits ("Requantization in float"); *bad: the
 * lanes whose fraction is below 2ε. */
INLINE __m512i fixed_floor(__m512 g, rq_bad *bad)
{
	__m512i b = _mm512_castps_si512(g), hi;
	const __m512i m = _mm512_set1_epi32(RQ_FRAC_MASK);
#ifdef VK_SIMDE /* SIMDe 0.7 has neither vptestnmd nor the 512-bit vpsrad */
	*bad = _mm512_cmpeq_epi32_mask(_mm512_and_si512(b, m), _mm512_setzero_si512());
	hi = _mm512_inserti64x4(
		_mm512_castsi256_si512(_mm256_srai_epi32(_mm512_castsi512_si256(b), 14)),
		_mm256_srai_epi32(_mm512_extracti64x4_epi64(b, 1), 14), 1);
#else
	*bad = _mm512_testn_epi32_mask(b, m);
	hi = _mm512_srai_epi32(b, 14);
#endif
	return _mm512_sub_epi32(hi, _mm512_set1_epi32(RQ_MAGIC_HI));
}

/* float lanes: the float path's operations (one rq_fast, add_fast for both widths) */
typedef __m512 vecf;
#define VF_SET1(x) _mm512_set1_ps(x)
#define VF_LOAD(p) _mm512_loadu_ps(p)
#define VF_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VF_CVT(a) cvt_i2f(a)
/* b where acc < thr, else a */
#define VF_PICK_LT(acc, thr, a, b) _mm512_mask_blend_ps(_mm512_cmpgt_epi32_mask(thr, acc), a, b)

#else
INLINE __m256i rq_half(__m256i ab, __m256i b, __m256i sh, __m256i c)
{
	__m256i neg = _mm256_cmpgt_epi64(_mm256_set1_epi64x(RQ_NEG_T), ab);
	__m256i t = _mm256_add_epi64(ab, b);
	t = _mm256_sub_epi64(t, _mm256_and_si256(neg, c));
	return _mm256_srlv_epi64(t, sh);
}

INLINE __m256i rq_lanes(const struct vk_rq *q, vec acc, int n0)
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
	return _mm256_add_epi32(_mm256_blend_epi32(re, _mm256_slli_epi64(ro, 32), 0xAA), zadd);
}

typedef int rq_bad; /* lanes the float path may have wrong (a movemask) */

/* floor(f) as int32; *bad: the lanes whose fraction is below frac_min. */
INLINE __m256i floor_flag(__m256 f, float frac_min, rq_bad *bad)
{
	__m256 fl = _mm256_floor_ps(f);
	*bad = _mm256_movemask_ps(
		_mm256_cmp_ps(_mm256_sub_ps(f, fl), _mm256_set1_ps(frac_min), _CMP_LT_OQ));
	return _mm256_cvtps_epi32(fl); /* integral already */
}

/* fixed_floor of the 512-bit build on 8 lanes. */
INLINE __m256i fixed_floor(__m256 g, rq_bad *bad)
{
	__m256i b = _mm256_castps_si256(g);
	__m256i frac = _mm256_and_si256(b, _mm256_set1_epi32(RQ_FRAC_MASK));
	*bad = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(frac, _mm256_setzero_si256())));
	return _mm256_sub_epi32(_mm256_srai_epi32(b, 14), _mm256_set1_epi32(RQ_MAGIC_HI));
}

typedef __m256 vecf;
#define VF_SET1(x) _mm256_set1_ps(x)
#define VF_LOAD(p) _mm256_loadu_ps(p)
#define VF_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VF_CVT(a) _mm256_cvtepi32_ps(a)
#define VF_PICK_LT(acc, thr, a, b)                                                        \
	_mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_cmpgt_epi32(thr, acc)))
#endif

/* rq_lanes through float ("Requantization in float"); *bad: the lanes to redo. */
INLINE vec rq_fast(const struct vk_rq *q, vec acc, int n0, rq_bad *bad)
{
	vecf r, c;
	if (q->uniform) {
		r = VF_SET1(q->u_fr);
		c = VF_SET1(q->u_fc);
		if (q->fneg)
			c = VF_PICK_LT(acc, V_SET1(q->u_fthr), c, VF_SET1(q->u_fcn));
	} else {
		r = VF_LOAD(q->fr + n0);
		c = VF_LOAD(q->fc + n0);
		if (q->fneg)
			c = VF_PICK_LT(acc, V_LOAD(q->fthr + n0), c, VF_LOAD(q->fcn + n0));
	}
	return fixed_floor(VF_FMA(VF_CVT(acc), r, c), bad);
}

/* VK_NAME(add)'s float path (vk_add_fill_fast): x·k1 + r·k2 + c, floored. */
INLINE vec add_fast(const struct vk_add *a, vec x, vec r, rq_bad *bad)
{
	vecf f = VF_FMA(VF_CVT(x), VF_SET1(a->k1), VF_FMA(VF_CVT(r), VF_SET1(a->k2), VF_SET1(a->c)));
	return floor_flag(f, a->frac_min, bad);
}

/* The requantized int32 lanes of a narrowing store: rq_fast, or rq_lanes where
 * it may be off (rare; the branch is laid out for the common case). */
INLINE vec rq_narrow_lanes(const struct vk_rq *q, vec acc, int n0)
{
	if (q->fast) {
		rq_bad bad;
		vec y = rq_fast(q, acc, n0, &bad);
		if (__builtin_expect(bad == 0, 1))
			return y;
	}
	return rq_lanes(q, acc, n0);
}

/* rq_narrow_lanes of two vectors (channels n0.. and n0+VL..), redone together. */
INLINE void rq_pair(const struct vk_rq *q, vec a0, vec a1, int n0, vec *r0, vec *r1)
{
	rq_bad bad0 = 1, bad1 = 1;
	if (q->fast) {
		*r0 = rq_fast(q, a0, n0, &bad0);
		*r1 = rq_fast(q, a1, n0 + VL, &bad1);
	}
	if (__builtin_expect((bad0 | bad1) != 0, 0)) {
		*r0 = rq_lanes(q, a0, n0);
		*r1 = rq_lanes(q, a1, n0 + VL);
	}
}

#if VK_W == 512
/* Requantized lanes narrowed (with saturation, then clamped as bytes), cnt stored. */
INLINE void narrow_store(const struct vk_rq *q, vec lanes, uint8_t *dst, int cnt)
{
	store_bytes(dst, clamp_bytes(q, _mm512_cvtsepi32_epi8(lanes)), cnt, 16);
}

/* rq_lanes, clamp, narrow, store cnt bytes. */
INLINE void rq_store(const struct vk_rq *q, vec acc, int n0, uint8_t *dst, int cnt)
{
	narrow_store(q, rq_narrow_lanes(q, acc, n0), dst, cnt);
}

/*
 * Two vectors (channels n0.. and n0+16..) at once: narrowed with saturating
 * packs before the clamp, which then works on 32 bytes in one instruction
 * (vk_rq_fill: the same result as clamping the int32 lanes).  packs work per
 * 128-bit lane, so lane L holds r0[4L..4L+3], r1[4L..4L+3]; one dword
 * permutation puts them in channel order.
 */
INLINE void rq_store2(const struct vk_rq *q, vec a0, vec a1, int n0, uint8_t *dst, int cnt)
{
	__m512i r0, r1;
	rq_pair(q, a0, a1, n0, &r0, &r1);
	__m512i b = _mm512_packs_epi16(_mm512_packs_epi32(r0, r1), _mm512_setzero_si512());
	const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 13, 9, 5, 1, 12, 8, 4, 0);
	__m256i y = _mm512_castsi512_si256(_mm512_permutexvar_epi32(idx, b));
	if (q->clamp8) {
		y = _mm256_max_epi8(y, _mm256_set1_epi8(q->lo8));
		y = _mm256_min_epi8(y, _mm256_set1_epi8(q->hi8));
	}
	y = _mm256_xor_si256(y, _mm256_set1_epi32(q->flip8));
	if (cnt >= 2 * VL) {
		_mm256_storeu_si256((__m256i *)(void *)dst, y);
	} else {
#ifndef VK_SIMDE /* one masked store, not a call to memcpy */
		_mm256_mask_storeu_epi8((void *)dst, (__mmask32)((1u << cnt) - 1), y);
#else
		uint8_t tmp[32];
		_mm256_storeu_si256((__m256i *)(void *)tmp, y);
		memcpy(dst, tmp, (size_t)cnt);
#endif
	}
}

/* The two 64-bit halves of a 512-bit sum of sad lanes, added into 128 bits. */
static inline __m128i sum_to_128(__m512i v)
{
	__m256i h = _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
	return _mm_add_epi64(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
#else
/* Requantized lanes narrowed (with saturation, then clamped as bytes), cnt stored. */
INLINE void narrow_store(const struct vk_rq *q, vec r, uint8_t *dst, int cnt)
{
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
	store_bytes(dst, clamp_bytes(q, _mm_packs_epi16(w, w)), cnt, 8);
}

INLINE void rq_store(const struct vk_rq *q, vec acc, int n0, uint8_t *dst, int cnt)
{
	narrow_store(q, rq_narrow_lanes(q, acc, n0), dst, cnt);
}

/* rq_store2 of the 512-bit build on 8-lane vectors: 16 bytes. */
INLINE void rq_store2(const struct vk_rq *q, vec a0, vec a1, int n0, uint8_t *dst, int cnt)
{
	__m256i r0, r1;
	rq_pair(q, a0, a1, n0, &r0, &r1);
	__m256i b = _mm256_packs_epi16(_mm256_packs_epi32(r0, r1), _mm256_setzero_si256());
	const __m256i idx = _mm256_set_epi32(0, 0, 0, 0, 5, 1, 4, 0);
	__m128i y = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(b, idx));
	store_bytes(dst, clamp_bytes(q, y), cnt, 16);
}

static inline __m128i sum_to_128(__m256i v)
{
	return _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}
#endif

/*
 * Σ of n bytes (n a multiple of 4), never reading past them: whole vectors,
 * then 16-, 8- and 4-byte loads (a zeroed copy for the tail would cost a
 * store-forwarding stall per row).
 */
static inline int32_t row_sum(const uint8_t *p, int n)
{
	vec s = V_ZERO();
	int k = 0;
	for (; k + 4 * VL <= n; k += 4 * VL)
		s = V_ADD64(s, V_SAD(V_LOAD(p + k), V_ZERO()));
	__m128i t = sum_to_128(s);
	const __m128i z = _mm_setzero_si128();
	for (; k + 16 <= n; k += 16)
		t = _mm_add_epi64(t, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(p + k)), z));
	if (k + 8 <= n) {
		t = _mm_add_epi64(t, _mm_sad_epu8(_mm_loadl_epi64((const __m128i *)(const void *)(p + k)), z));
		k += 8;
	}
	if (k < n) {
		int32_t v;
		memcpy(&v, p + k, 4);
		t = _mm_add_epi64(t, _mm_sad_epu8(_mm_cvtsi32_si128(v), z));
	}
	return (int32_t)(_mm_cvtsi128_si64(t) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(t, t)));
}

/*
 * What rq_lanes takes: the accumulator of channels n_.. (started at the bias
 * term cterm) plus, with_dwc, the zero-point term dwc·Σu (G: struct vk_gemm or
 * struct vk_dw, which share the names).  A macro, not a function: one returning a
 * 256-bit vector out of line trips -Wpsabi in the SIMDe builds, which have
 * no -mavx and no forced inlining.
 */
#define WITH_TERMS(G, acc_, n_, rsv_, with_dwc_)                                          \
	((with_dwc_) ? V_ADD((acc_), V_MULLO(V_LOAD((G)->dwc + (n_)), (rsv_))) : (acc_))
/* the GEMM: a uniform zero-point term is already in acc (tile) */
#define GEMM_TERMS(g_, acc_, n_, rs_)                                                     \
	WITH_TERMS(g_, acc_, n_, V_SET1(rs_), !(g_)->dwc_uniform && (g_)->dwc)

/* One vector of a tile row, channels n0.. (fewer at the end). */
INLINE void finish(const struct vk_gemm *g, vec acc, int n0, int32_t rs, uint8_t *dst)
{
	int cnt = g->N - n0;
	rq_store(&g->rq, GEMM_TERMS(g, acc, n0, rs), n0, dst, cnt < VL ? cnt : VL);
}

/* Both vectors of a tile row, channels n0..n0+2·VL (fewer at the end). */
INLINE void finish2(const struct vk_gemm *g, vec a0, vec a1, int n0, int32_t rs, uint8_t *dst)
{
	int cnt = g->N - n0;
	rq_store2(&g->rq, GEMM_TERMS(g, a0, n0, rs), GEMM_TERMS(g, a1, n0 + VL, rs), n0, dst,
		  cnt < 2 * VL ? cnt : 2 * VL);
}

/* Raw accumulators of channels n0.., cterm included (no row-sum term: vk_gemm_acc). */
INLINE void store_acc(const struct vk_gemm *g, vec acc, int n0, int32_t *dst)
{
	int cnt = g->N - n0;
	if (cnt >= VL) {
		V_STORE(dst, acc);
	} else {
		int32_t tmp[VL];
		V_STORE(tmp, acc);
		memcpy(dst, tmp, (size_t)cnt * sizeof(int32_t));
	}
}

/*
 * MR rows × TN channels.  b0/b1: the packed weights of the tile's two vectors
 * (consecutive K groups 64 bytes apart).  Always computes MR rows (a holds
 * them), stores the first mr.  Inlined so the accumulators stay in registers.
 */
INLINE void tile(const struct vk_gemm *g, const uint8_t *a, size_t lda,
		 const uint8_t *const *ap, const int32_t *koff, const int8_t *b0,
		 const int8_t *b1, int n0, const int32_t *rs, uint8_t *y, size_t ldy,
		 int32_t *ya, size_t ldya, int mr, const bool two, const bool raw,
		 const bool gather, const bool half, const bool pairs)
{
	/* named accumulators and row pointers: arrays made gcc spill */
	/* the bias term and a uniform row-sum term start the accumulators (int32
	 * wrap-around, like the rest): no adds at the store */
	const bool u0 = g->dwc_uniform;
	const vec ct0 = V_LOAD(g->cterm + n0), ct1 = two ? V_LOAD(g->cterm + n0 + VL) : ct0;
#define DECL(r)                                                                           \
	const vec du_##r = V_SET1((int32_t)((uint32_t)g->dwc_u * (uint32_t)rs[r]));      \
	vec c0_##r = u0 ? V_ADD(ct0, du_##r) : ct0;                                       \
	vec c1_##r = u0 ? V_ADD(ct1, du_##r) : ct1;                                       \
	hvec c1h_##r = H_LO(c1_##r);                                                      \
	const uint8_t *a_##r = gather ? ap[r] : a + (size_t)(r) * lda;
	ROWS(DECL)
#undef DECL
	const int gpb = pairs ? 2 : 1; /* groups per 4 bytes of a row */
	const int k4n = g->K4 / 4 * gpb, kmain = k4n - g->nx * gpb;
	for (int kk = 0; kk < k4n; kk++) {
		vec w0 = V_LOAD(b0 + (size_t)kk * 64);
		vec w1 = two && !half ? V_LOAD(b1 + (size_t)kk * 64) : w0;
		hvec w1h = half ? H_LOAD(b1 + (size_t)kk * 64) : H_LO(w0);
		/* an extra group's bytes; widened (pairs), two groups */
		const ptrdiff_t ko = kk >= kmain ? gpb * g->xoff[(kk - kmain) / gpb] +
							   4 * ((kk - kmain) % gpb)
				     : gather ? koff[kk] : (ptrdiff_t)kk * 4;
#define STEP(r)                                                                           \
	{                                                                                 \
		int32_t av;                                                               \
		memcpy(&av, a_##r + ko, 4);                                               \
		vec u = V_SET1(av);                                                       \
		c0_##r = pairs ? DP_PAIR(c0_##r, u, w0) : V_DP(c0_##r, u, w0);            \
		if (two && half)                                                          \
			c1h_##r = H_DP(c1h_##r, H_LO(u), w1h);                            \
		else if (two)                                                             \
			c1_##r = pairs ? DP_PAIR(c1_##r, u, w1) : V_DP(c1_##r, u, w1);    \
	}
		ROWS(STEP)
#undef STEP
	}
#define FIN(r)                                                                            \
	if ((r) < mr && raw) {                                                            \
		int32_t *d = ya + (size_t)(r) * ldya + n0;                                \
		store_acc(g, c0_##r, n0, d);                                              \
		if (two)                                                                  \
			store_acc(g, c1_##r, n0 + VL, d + VL);                            \
	} else if ((r) < mr) {                                                            \
		uint8_t *d = y + (size_t)(r) * ldy + n0;                                  \
		if (two && half)                                                          \
			finish2(g, c0_##r, H_WIDEN(c1h_##r), n0, rs[r], d);               \
		else if (two)                                                             \
			finish2(g, c0_##r, c1_##r, n0, rs[r], d);                         \
		else                                                                      \
			finish(g, c0_##r, n0, rs[r], d);                                  \
	}
	ROWS(FIN)
#undef FIN
}

/* A tile's channels n0..: two vectors, two with a half-width second (8 channels
 * left for it), or one (VL or fewer left). */
enum tile_shape { T_ONE, T_TWO, T_HALF };
INLINE enum tile_shape tile_shape_at(const struct vk_gemm *g, int n0, bool raw)
{
	if (n0 + VL >= g->N)
		return T_ONE;
	return HALF_OK && !raw && g->N - n0 <= VL + 8 ? T_HALF : T_TWO;
}

/* T(two, half) with the compile-time tile() flags of shape s. */
#define BY_SHAPE(s, T)                                                                    \
	do {                                                                              \
		switch (s) {                                                              \
		case T_HALF:                                                              \
			T(true, true);                                                    \
			break;                                                            \
		case T_TWO:                                                               \
			T(true, false);                                                   \
			break;                                                            \
		case T_ONE:                                                               \
			T(false, false);                                                  \
			break;                                                            \
		}                                                                         \
	} while (0)

/* The packed weights of the tile's second vector, from its first's (b0). */
INLINE const int8_t *second_panel(const int8_t *b0, size_t panel)
{
#if VK_W == 512
	return b0 + panel; /* the next panel */
#else
	(void)panel;
	return b0 + 32; /* the upper 8 channels of the same panel */
#endif
}

#ifdef VK_EMU_DP
/* n (a multiple of 4) bytes at p as n int16 at q, zero-extended. */
static void widen_row(const uint8_t *p, int n, uint8_t *q)
{
	int k = 0;
	for (; k + 16 <= n; k += 16)
		V_STORE(q + 2 * k, _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(p + k))));
	if (k < n) { /* never read past the row */
		uint8_t tmp[16] = {0};
		memcpy(tmp, p + k, (size_t)(n - k));
		__m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)tmp));
		uint8_t out[32];
		V_STORE(out, v);
		memcpy(q + 2 * k, out, (size_t)(n - k) * 2);
	}
}

/*
 * One packed panel (16 channels, K4 bytes each, vk_pack_index() layout) as the
 * pairs groups: group j of lane l holds (w[2j], w[2j+1]) as int16, lanes 0–7
 * then 8–15, 64 bytes per group.
 */
static void widen_panel(const int8_t *b, int K4, uint8_t *q)
{
	const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
	for (int kk = 0; kk < K4 / 4; kk++)
		for (int h = 0; h < 2; h++) { /* lanes 0–7, 8–15: dwords (w0 w1)(w2 w3) per lane */
			const int8_t *src = b + (size_t)kk * 64 + (size_t)h * 32;
			__m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)src));
			__m256i z = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(src + 16)));
			x = _mm256_permutevar8x32_epi32(x, even_odd); /* lanes 0–3: (w0 w1) | (w2 w3) */
			z = _mm256_permutevar8x32_epi32(z, even_odd); /* lanes 4–7 */
			V_STORE(q + (size_t)(2 * kk) * 64 + (size_t)h * 32, _mm256_permute2x128_si256(x, z, 0x20));
			V_STORE(q + (size_t)(2 * kk + 1) * 64 + (size_t)h * 32,
				_mm256_permute2x128_si256(x, z, 0x31));
		}
}
#endif

/* y (bytes, requantized) or, raw, ya (int32 accumulators + cterm). */
INLINE void gemm_body(const struct vk_gemm *gp, const uint8_t *a, size_t lda, int m, uint8_t *y,
		      size_t ldy, int32_t *ya, size_t ldya, uint8_t *scratch, const bool raw)
{
	/* a local copy: stores through uint8_t * may alias *gp and would force reloads */
	const struct vk_gemm gl = *gp, *g = &gl;
	int32_t rs[VK_M_MAX + VK_MR_MAX];
	memset(rs, 0, sizeof(rs));
	const int own = g->K4 - 4 * g->nx; /* a row's own bytes */
	if (g->dwc)
		for (int r = 0; r < m; r++)
			rs[r] = row_sum(a + (size_t)r * lda, own);
#ifdef VK_EMU_DP
	/* the rows widened, zero rows up to whole tiles (vk_scratch_bytes) */
	const int mpad = (m + MR - 1) / MR * MR;
	const size_t lda16 = (size_t)own * 2;
	uint8_t *a16 = scratch, *w16 = scratch + (((size_t)mpad * lda16 + 31) & ~(size_t)31);
	for (int r = 0; r < m; r++)
		widen_row(a + (size_t)r * lda, own, a16 + (size_t)r * lda16);
	memset(a16 + (size_t)m * lda16, 0, (size_t)(mpad - m) * lda16);
	a = a16;
	lda = lda16;
#endif
	/* the last partial tile of rows, zero-padded to MR rows (a row's own bytes:
	 * the extra groups read them again) */
	const int mfull = m / MR * MR, mtail = m - mfull;
#ifdef VK_EMU_DP
	const uint8_t *atail = a + (size_t)mfull * lda; /* padded by the widening */
	const size_t ldtail = lda;
#else
	const uint8_t *atail = scratch;
	const size_t ldtail = (size_t)g->K4;
	if (mtail) {
		memset(scratch, 0, (size_t)MR * (size_t)g->K4);
		for (int r = 0; r < mtail; r++)
			memcpy(scratch + (size_t)r * g->K4, a + (size_t)(mfull + r) * lda, (size_t)own);
	}
#endif
	const size_t panel = (size_t)g->K4 * VK_PANEL; /* bytes per packed panel of 16 channels */
	for (int n0 = 0; n0 < g->N; n0 += TN) {
		const int8_t *b0 = g->w + (size_t)(n0 / VK_PANEL) * panel, *b1 = second_panel(b0, panel);
#ifdef VK_EMU_DP /* TN is one panel */
		widen_panel(b0, g->K4, w16);
		b0 = (const int8_t *)w16;
		b1 = second_panel(b0, 0);
#endif
#define TILE(m0_, a_, lda_, mr_, two_, half_)                                             \
	tile(g, a_, lda_, NULL, NULL, b0, b1, n0, rs + (m0_),                                 \
	     raw ? NULL : y + (size_t)(m0_) * ldy, ldy, raw ? ya + (size_t)(m0_) * ldya : NULL,  \
	     ldya, mr_, two_, raw, false, half_, PAIRS_OK)
#define TILES(two_, half_)                                                                \
	do {                                                                              \
		for (int m0 = 0; m0 < mfull; m0 += MR)                                    \
			TILE(m0, a + (size_t)m0 * lda, lda, MR, two_, half_);             \
		if (mtail)                                                                \
			TILE(mfull, atail, ldtail, mtail, two_, half_);                   \
	} while (0)
		BY_SHAPE(tile_shape_at(g, n0, raw), TILES);
#undef TILES
#undef TILE
	}
}

void VK_NAME(gemm_rows)(const struct vk_gemm *gp, const uint8_t *const *rows,
			const int32_t *koff, const int32_t *rsum, int m, uint8_t *y, size_t ldy)
{
	const struct vk_gemm gl = *gp, *g = &gl; /* see gemm_body */
	const size_t panel = (size_t)g->K4 * VK_PANEL;
	for (int n0 = 0; n0 < g->N; n0 += TN) {
		const int8_t *b0 = g->w + (size_t)(n0 / VK_PANEL) * panel, *b1 = second_panel(b0, panel);
		const enum tile_shape shape = tile_shape_at(g, n0, false);
		for (int m0 = 0; m0 < m; m0 += MR) {
			const int mr = m - m0 < MR ? m - m0 : MR;
#define TILE(two_, half_)                                                                 \
	tile(g, NULL, 0, rows + m0, koff, b0, b1, n0, rsum + m0, y + (size_t)m0 * ldy, ldy,  \
	     NULL, 0, mr, two_, false, true, half_, false)
			BY_SHAPE(shape, TILE);
#undef TILE
		}
	}
}

void VK_NAME(gemm)(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m, uint8_t *y,
		   size_t ldy, uint8_t *scratch)
{
	gemm_body(g, a, lda, m, y, ldy, NULL, 0, scratch, false);
}

void VK_NAME(gemm_acc)(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m, int32_t *acc,
		       size_t ldacc, uint8_t *scratch)
{
	gemm_body(g, a, lda, m, NULL, 0, acc, ldacc, scratch, true);
}

/* ---- depthwise ------------------------------------------------------------ */

/* The VL bytes of one pixel's channels at p (n of them real; safe: VL bytes may
 * be read at p), the sign bit flipped for int8 (flip). */
static inline __m128i px_load(const uint8_t *p, int n, bool safe, bool flip)
{
	__m128i b;
	if (safe) {
		b = VL == 16 ? _mm_loadu_si128((const __m128i *)(const void *)p)
			     : _mm_loadl_epi64((const __m128i *)(const void *)p);
	} else { /* never read past the tensor */
		uint8_t tmp[16] = {0};
		memcpy(tmp, p, (size_t)n);
		b = _mm_loadu_si128((const __m128i *)(const void *)tmp);
	}
	return flip ? _mm_xor_si128(b, _mm_set1_epi8((char)0x80)) : b;
}

#ifndef VK_EMU_DP /* the byte rows; the avx2 set builds pairs (dw_build_row_pairs) */
/* The u of VL channels of one pixel at p (n of them real: the rest are left
 * out of every store) in every 128-bit lane (the 512-bit build) or 64-bit
 * quarter (256): what px_in() moves into the int32 lanes.  safe: VL bytes may be
 * read at p. */
static inline vec px_bcast(const uint8_t *p, int n, bool safe, bool flip)
{
	__m128i b = px_load(p, n, safe, flip);
#if VK_W == 512
	return _mm512_broadcast_i32x4(b);
#else
	return _mm256_broadcastq_epi64(b);
#endif
}

/* The byte shuffle that puts channel c of px_bcast() into byte pos of int32
 * lane c (the other bytes zero).  In both widths byte i of the vector belongs to
 * lane i / 4, whose channel sits at index i / 4 of its 128-bit lane. */
static inline vec px_ctl(int pos)
{
	int8_t t[4 * VL];
	for (int i = 0; i < 4 * VL; i++)
		t[i] = i % 4 == pos ? (int8_t)(i / 4) : (int8_t)-128;
	return V_LOAD(t);
}

/*
 * Interleave one input row (src: its first pixel) into q: entry xi, channels
 * c0.., lane c = the bytes of pixels x, x+dw, x+2dw, x+3dw (x = xi − pl; the
 * padding value outside the row).  xend: end of the input tensor.  Padding
 * rows are not built: the caller's all-padding row stands for them.
 *
 * Consecutive entries of a residue class of xi mod dw share three pixels: the
 * next entry is this one shifted down a byte with the new pixel in the top
 * byte (one broadcast load, one byte shuffle, a shift and an or per entry,
 * rather than widening and shifting all four).  Stride 2 (dw 1) reads only the
 * even entries: two bytes out, two pixels in.
 */
static void dw_build_row(const struct vk_dw *d, const uint8_t *src, const uint8_t *xend,
			 uint8_t *q)
{
	const int C = d->C, dw = d->dw, iw = d->iw, pl = d->pl, wq = d->wq;
	const size_t qstride = (size_t)d->CP * 4;
	const vec ctl2 = px_ctl(2), ctl3 = px_ctl(3);
	const vec pad2 = V_SET1((int32_t)((uint32_t)d->pad << 16));
	const vec pad3 = V_SET1((int32_t)((uint32_t)d->pad << 24));
	for (int c0 = 0; c0 < C; c0 += VL) {
		const int n = C - c0 < VL ? C - c0 : VL;
		uint8_t *qc = q + (size_t)c0 * 4;
/* pixel x_ in byte pos_ of the lanes (the padding value outside the row) */
#define PX_IN(x_, ctl_, pad_)                                                         \
	((x_) < 0 || (x_) >= iw                                                       \
		 ? (pad_)                                                             \
		 : V_SHUFB(px_bcast(src + (size_t)(x_) * C + c0, n,                   \
				    n == VL || xend - (src + (size_t)(x_) * C + c0) >= 16, \
				    d->flip),                                         \
			   (ctl_)))
		if (d->sw == 2 && dw == 1) {
			int x = -pl;
			vec v = V_OR(PX_IN(x, ctl2, pad2), PX_IN(x + 1, ctl3, pad3));
			for (int xi = 0; xi < wq; xi += 2, x += 2) {
				v = V_OR(V_SRLI(v, 16),
					 V_OR(PX_IN(x + 2, ctl2, pad2), PX_IN(x + 3, ctl3, pad3)));
				V_STORE(qc + (size_t)xi * qstride, v);
			}
			continue;
		}
		for (int r = 0; r < dw && r < wq; r++) {
			int x = r - pl;
			vec v = V_ZERO();
			for (int k = 0; k < 3; k++)
				v = V_OR(V_SRLI(v, 8), PX_IN(x + k * dw, ctl3, pad3));
			for (int xi = r; xi < wq; xi += dw, x += dw) {
				v = V_OR(V_SRLI(v, 8), PX_IN(x + 3 * dw, ctl3, pad3));
				V_STORE(qc + (size_t)xi * qstride, v);
			}
		}
#undef PX_IN
	}
}
#else
/* The u of VL channels of the pixel at p in the int32 lanes (n real; safe: VL
 * bytes may be read at p). */
static inline vec px_widen(const uint8_t *p, int n, bool safe, bool flip)
{
	return _mm256_cvtepu8_epi32(px_load(p, n, safe, flip));
}

/*
 * dw_build_row for the avx2 set's vpmaddwd (pairs): entry xi, lane c = the u of
 * pixels x and x+dw as two int16 (x = xi − pl).  Each pixel is widened once:
 * it is the high half of one entry and the low half of the next of its
 * residue class; stride 2 (dw 1) builds the even entries only.
 */
static void dw_build_row_pairs(const struct vk_dw *d, const uint8_t *src, const uint8_t *xend,
			       uint8_t *q)
{
	const int C = d->C, dw = d->dw, iw = d->iw, pl = d->pl, wq = d->wq;
	const size_t qstride = (size_t)d->CP * 4;
	const vec pad = V_SET1(d->pad);
	for (int c0 = 0; c0 < C; c0 += VL) {
		const int n = C - c0 < VL ? C - c0 : VL;
		uint8_t *qc = q + (size_t)c0 * 4;
#define PXW(x_)                                                                           \
	((x_) < 0 || (x_) >= iw ? pad                                                     \
				: px_widen(src + (size_t)(x_) * C + c0, n,                \
					   n == VL || xend - (src + (size_t)(x_) * C + c0) >= VL, \
					   d->flip))
		if (d->sw == 2 && dw == 1) {
			for (int xi = 0, x = -pl; xi < wq; xi += 2, x += 2)
				V_STORE(qc + (size_t)xi * qstride, V_OR(PXW(x), V_SLLI(PXW(x + 1), 16)));
			continue;
		}
		for (int r = 0; r < dw && r < wq; r++) {
			int x = r - pl;
			vec a = PXW(x);
			for (int xi = r; xi < wq; xi += dw, x += dw) {
				vec b = PXW(x + dw);
				V_STORE(qc + (size_t)xi * qstride, V_OR(a, V_SLLI(b, 16)));
				a = b;
			}
		}
#undef PXW
	}
}
#endif

/*
 * One output row, channels c0.. (n real): KH, NG compile-time constants for
 * the common shapes (the compiler then keeps the weights in registers), 0 for
 * the generic loop.  qr[ky]: the interleaved row of tap row ky.  pairs: groups
 * of 2 taps as int16 (the avx2 set: dw_build_row_pairs; d->gt 2), else of 4
 * taps as bytes.
 */
INLINE void
dw_row(const struct vk_dw *d, const uint8_t *const *qr, int c0, int n, uint8_t *dst,
       const int KH, const int NG, const bool has_d, const bool two, const bool pairs)
{
	const int kh = KH ? KH : d->kh, ng = NG ? NG : d->ng, gt = pairs ? 2 : 4; /* taps a group */
	const size_t qstride = (size_t)d->CP * 4, xstep = (size_t)d->sw * qstride;
	const size_t gstep = (size_t)gt * d->dw * qstride;
	const int8_t *wc = d->w + (size_t)(c0 / VL) * (size_t)kh * ng * VL * 4;
	/* Σu masks: 1 in the bytes (pairs: int16) of real taps */
	enum { NG_MAX = 3, W_MAX = 15 }; /* the largest specialisation: 5×5 in pairs */
	vec mask[NG_MAX];
#define TAP_MASK(g_)                                                                      \
	(pairs ? V_SET1(d->kw - 2 * (g_) >= 2 ? 0x00010001 : 0x00000001)                  \
	       : V_SET1(d->kw - 4 * (g_) >= 4 ? 0x01010101                                \
					     : (int32_t)(0x01010101u >> (8 * (4 - (d->kw - 4 * (g_)))))))
	for (int g = 0; g < (NG ? NG : 1); g++)
		mask[g] = TAP_MASK(g);
#define DW_DP(acc_, u_, w_) (pairs ? DP_PAIR(acc_, u_, w_) : V_DP(acc_, u_, w_))
	vec wr[W_MAX], wr2[W_MAX];
	const int8_t *wc2 = wc + (size_t)kh * ng * VL * 4; /* the next VL channels (two) */
	if (KH && NG)
		for (int i = 0; i < KH * NG; i++) {
			wr[i] = V_LOAD(wc + (size_t)i * VL * 4);
			if (two)
				wr2[i] = V_LOAD(wc2 + (size_t)i * VL * 4);
		}
	size_t xo = (size_t)c0 * 4;
	const vec ct = V_LOAD(d->cterm + c0), ct2 = two ? V_LOAD(d->cterm + c0 + VL) : ct;
	for (int ox = 0; ox < d->ow; ox++, xo += xstep) {
		vec acc = ct, rs = V_ZERO(), acc2 = ct2, rs2 = V_ZERO();
		for (int ky = 0; ky < kh; ky++) {
			const uint8_t *qp = qr[ky] + xo;
			for (int g = 0; g < ng; g++, qp += gstep) {
				vec u = V_LOAD(qp), u2 = two ? V_LOAD(qp + VL * 4) : u;
				vec wv = KH && NG ? wr[ky * NG + g]
						  : V_LOAD(wc + ((size_t)ky * ng + g) * VL * 4);
				acc = DW_DP(acc, u, wv);
				if (two)
					acc2 = DW_DP(acc2, u2, KH && NG ? wr2[ky * NG + g]
							: V_LOAD(wc2 + ((size_t)ky * ng + g) * VL * 4));
				if (has_d) {
					vec m = NG ? mask[g] : TAP_MASK(g);
					rs = DW_DP(rs, u, m);
					if (two)
						rs2 = DW_DP(rs2, u2, m);
				}
			}
		}
		uint8_t *out = dst + (size_t)ox * d->C + c0;
		if (two)
			rq_store2(&d->rq, WITH_TERMS(d, acc, c0, rs, has_d),
				  WITH_TERMS(d, acc2, c0 + VL, rs2, has_d), c0, out, n);
		else
			rq_store(&d->rq, WITH_TERMS(d, acc, c0, rs, has_d), c0, out, n);
	}
#undef DW_DP
#undef TAP_MASK
}

void VK_NAME(dw)(const struct vk_dw *dp, const uint8_t *x, uint8_t *y, size_t r0, size_t r1,
		 uint8_t *scratch)
{
	const struct vk_dw dl = *dp, *d = &dl; /* see VK_NAME(gemm) */
	const int C = d->C, R = (d->kh - 1) * d->dh + 1;
	const size_t rowb = vk_dw_row_bytes(d);
	const size_t xbytes = (size_t)d->ih * d->iw * (size_t)C; /* one image */
	uint8_t *qpad = scratch, *ring = scratch + rowb;
	long *tag = (long *)(void *)(ring + (size_t)R * rowb);
	const uint8_t *xend = x + (size_t)(r1 + d->oh - 1) / (size_t)d->oh * xbytes;
#ifdef VK_EMU_DP /* pairs of taps (d->gt 2: conv_vnni packs the weights so) */
	for (size_t i = 0; i < rowb; i += 4 * VL) /* both taps of every lane: the padding value */
		V_STORE(qpad + i, V_SET1((int32_t)(d->pad | (uint32_t)d->pad << 16)));
#define BUILD_ROW dw_build_row_pairs
#define NG3 2 /* groups of a 3-wide kernel */
#define NG5 3
#else
	memset(qpad, d->pad, rowb); /* all four taps of every lane: the padding value */
#define BUILD_ROW dw_build_row
#define NG3 1
#define NG5 2
#endif
	const bool pairs = PAIRS_OK;
	for (int i = 0; i < R; i++)
		tag[i] = -1;
	const uint8_t *qr[64];
	for (size_t row = r0; row < r1; row++) {
		const int b = (int)(row / (size_t)d->oh), oy = (int)(row % (size_t)d->oh);
		const uint8_t *img = x + (size_t)b * xbytes;
		for (int ky = 0; ky < d->kh; ky++) {
			const int iy = oy * d->sh - d->pt + ky * d->dh;
			if (iy < 0 || iy >= d->ih) {
				qr[ky] = qpad;
				continue;
			}
			const long key = (long)b * d->ih + iy;
			uint8_t *slot = ring + (size_t)(key % R) * rowb;
			if (tag[key % R] != key) {
				BUILD_ROW(d, img + (size_t)iy * d->iw * C, xend, slot);
				tag[key % R] = key;
			}
			qr[ky] = slot;
		}
		uint8_t *dst = y + ((size_t)b * d->oh + oy) * (size_t)d->ow * C;
		for (int c0 = 0; c0 < C;) {
			/* the common shapes with constants: weights in registers, no per-pixel
			 * tests; 3×3 two vectors of channels at a time (one narrowing store).
			 * Σu only for the vectors with a channel that needs it (dvec). */
			bool hd = d->dvec && d->dvec[c0 / VL];
			if (d->kh == 3 && d->ng == NG3 && c0 + VL < C) {
				const int n2 = C - c0 < 2 * VL ? C - c0 : 2 * VL;
				if (hd || (d->dvec && d->dvec[c0 / VL + 1]))
					dw_row(d, qr, c0, n2, dst, 3, NG3, true, true, pairs);
				else
					dw_row(d, qr, c0, n2, dst, 3, NG3, false, true, pairs);
				c0 += 2 * VL;
				continue;
			}
			const int n = C - c0 < VL ? C - c0 : VL;
			if (d->kh == 3 && d->ng == NG3 && hd)
				dw_row(d, qr, c0, n, dst, 3, NG3, true, false, pairs);
			else if (d->kh == 3 && d->ng == NG3)
				dw_row(d, qr, c0, n, dst, 3, NG3, false, false, pairs);
			else if (d->kh == 5 && d->ng == NG5 && hd)
				dw_row(d, qr, c0, n, dst, 5, NG5, true, false, pairs);
			else if (d->kh == 5 && d->ng == NG5)
				dw_row(d, qr, c0, n, dst, 5, NG5, false, false, pairs);
			else
				dw_row(d, qr, c0, n, dst, 0, 0, hd, false, pairs);
			c0 += VL;
		}
	}
#undef BUILD_ROW
#undef NG3
#undef NG5
}

/* ---- ADD ------------------------------------------------------------------ */

/* VL bytes at p as int32 lanes (sign- or zero-extended); n < VL: a copy of n. */
static inline vec load_lanes(const uint8_t *p, int n, bool s8)
{
	__m128i b;
	if (n >= VL) {
		b = VL == 16 ? _mm_loadu_si128((const __m128i *)(const void *)p)
			     : _mm_loadl_epi64((const __m128i *)(const void *)p);
	} else {
		uint8_t tmp[16] = {0};
		memcpy(tmp, p, (size_t)n);
		b = _mm_loadu_si128((const __m128i *)(const void *)tmp);
	}
	return s8 ? V_WIDEN_S(b) : V_WIDEN(b);
}

void VK_NAME(add)(const struct vk_add *ap, const uint8_t *x, const uint8_t *r, uint8_t *y,
		  size_t n)
{
	const struct vk_add al = *ap, *a = &al; /* see VK_NAME(gemm) */
	const vec zx = V_SET1(a->zx), zr = V_SET1(a->zr);
	for (size_t i = 0; i < n; i += VL) {
		const int cnt = n - i < VL ? (int)(n - i) : VL;
		const vec lx = load_lanes(x + i, cnt, a->s8), lr = load_lanes(r + i, cnt, a->s8);
		if (a->fast) {
			rq_bad bad;
			vec yv = add_fast(a, lx, lr, &bad);
			if (__builtin_expect(bad == 0, 1)) {
				narrow_store(&a->qo, yv, y + i, cnt);
				continue;
			}
		}
		vec vx = V_SLLI(V_SUB(lx, zx), 20);
		vec vr = V_SLLI(V_SUB(lr, zr), 20);
		/* q1, q2 carry no offsets: rq_lanes is q_mul_by_qm() exactly */
		vec sum = V_ADD(rq_lanes(&a->q1, vx, 0), rq_lanes(&a->q2, vr, 0));
		rq_store(&a->qo, sum, 0, y + i, cnt);
	}
}
