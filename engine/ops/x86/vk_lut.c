/*
 * vk_lut.c — y[i] = lut[x[i]] on AVX-512 VBMI: two vpermi2b look 64 bytes up
 * in each half of the 256-entry table, the index's top bit picks the half.
 * The 8-bit LOGISTIC, activation and requantizing CONCATENATION tables
 * (ops_lut8(), engine/ops/util.c), which the byte loop runs at ~1.3 cycles a
 * byte.  Built natively with -mavx512vbmi (vk512_lut) and, for the unit
 * tests, against SIMDe (vk512s_lut).  Pure; any thread.
 */
#include "vk.h"

#include <string.h>

#ifdef VK_SIMDE
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

#ifndef VK_PREFIX
#error "VK_PREFIX must be defined by the build"
#endif
#define VK_CAT_(a, b) a##_##b
#define VK_CAT(a, b) VK_CAT_(a, b)

void VK_CAT(VK_PREFIX, lut)(const uint8_t *lut, const uint8_t *x, uint8_t *y, size_t n)
{
	const __m512i t0 = _mm512_loadu_si512((const void *)lut);
	const __m512i t1 = _mm512_loadu_si512((const void *)(lut + 64));
	const __m512i t2 = _mm512_loadu_si512((const void *)(lut + 128));
	const __m512i t3 = _mm512_loadu_si512((const void *)(lut + 192));
	for (size_t i = 0; i < n; i += 64) {
		/* the tail through a copy: never past x + n, y + n */
		uint8_t tmp[64];
		const size_t cnt = n - i < 64 ? n - i : 64;
		const uint8_t *src = x + i;
		if (cnt < 64) {
			memset(tmp, 0, sizeof(tmp));
			memcpy(tmp, src, cnt);
			src = tmp;
		}
		__m512i v = _mm512_loadu_si512((const void *)src);
		/* index bits 0-5 pick the byte, bit 6 the table of the pair */
		__m512i lo = _mm512_permutex2var_epi8(t0, v, t1);
		__m512i hi = _mm512_permutex2var_epi8(t2, v, t3);
		__m512i r = _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi);
		if (cnt == 64) {
			_mm512_storeu_si512((void *)(y + i), r);
		} else {
			_mm512_storeu_si512((void *)tmp, r);
			memcpy(y + i, tmp, cnt);
		}
	}
}
