/*
 * quant.c — multiplier computation and activation ranges (see quant.h).
 * Pure functions; any thread.
 */
#include "quant.h"

#include <math.h>

void q_quantize_multiplier(double m, int32_t *qm, int *shift)
{
	if (m == 0.0) {
		*qm = 0;
		*shift = 0;
		return;
	}
	if (!isfinite(m)) {
		/* a ratio of finite scales with a zero divisor: the largest multiplier
		 * (saturates), not an undefined conversion of inf or NaN */
		*qm = INT32_MAX;
		*shift = 31;
		return;
	}
	int e = 0;
	double q = frexp(m, &e);
	int64_t q_fixed = (int64_t)round(q * (double)((int64_t)1 << 31));
	if (q_fixed == ((int64_t)1 << 31)) {
		/* q rounded up to 1.0: renormalize to 0.5 and bump the exponent. */
		q_fixed /= 2;
		++e;
	}
	if (e < -31) {
		/* Everything would be shifted out: flush to zero like the reference. */
		e = 0;
		q_fixed = 0;
	}
	*qm = (int32_t)q_fixed;
	*shift = e;
}

void q_type_range(enum eng_dtype type, int32_t *lo, int32_t *hi)
{
	switch (type) {
	case ENG_DT_I8:
		*lo = -128;
		*hi = 127;
		break;
	case ENG_DT_I16:
		*lo = -32768;
		*hi = 32767;
		break;
	case ENG_DT_I32:
		*lo = INT32_MIN;
		*hi = INT32_MAX;
		break;
	default:
		*lo = 0;
		*hi = 255;
		break;
	}
}

int32_t q_quantize_sat(float f, float scale, int32_t zp, int32_t lo, int32_t hi)
{
	/* in int64: zp plus a saturated int32 cannot overflow */
	int64_t v = (int64_t)zp + q_sat_i32(roundf(f / scale), INT32_MIN, INT32_MAX);
	return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

void q_act_range(enum eng_act act, enum eng_dtype type, float scale, int32_t zp, int32_t *lo,
		 int32_t *hi)
{
	int32_t qmin, qmax;
	q_type_range(type, &qmin, &qmax);
	*lo = qmin;
	*hi = qmax;
	switch (act) {
	/* lo = max(quantized bound, qmin), hi = min(…, qmax), as the reference */
	case ENG_ACT_RELU:
		*lo = q_quantize_sat(0.0f, scale, zp, qmin, INT32_MAX);
		break;
	case ENG_ACT_RELU6: {
		*lo = q_quantize_sat(0.0f, scale, zp, qmin, INT32_MAX);
		*hi = q_quantize_sat(6.0f, scale, zp, INT32_MIN, qmax);
		break;
	}
	case ENG_ACT_RELU_N1_TO_1: {
		*lo = q_quantize_sat(-1.0f, scale, zp, qmin, INT32_MAX);
		*hi = q_quantize_sat(1.0f, scale, zp, INT32_MIN, qmax);
		break;
	}
	default:
		break;
	}
}

void q_act_range_f32(enum eng_act act, float *lo, float *hi)
{
	*lo = -INFINITY;
	*hi = INFINITY;
	if (act == ENG_ACT_RELU) {
		*lo = 0.0f;
	} else if (act == ENG_ACT_RELU6) {
		*lo = 0.0f;
		*hi = 6.0f;
	} else if (act == ENG_ACT_RELU_N1_TO_1) {
		*lo = -1.0f;
		*hi = 1.0f;
	}
}

int16_t q_srdhm16(int16_t a, int16_t b)
{
	if (a == INT16_MIN && b == INT16_MIN)
		return INT16_MAX;
	int32_t ab = (int32_t)a * (int32_t)b;
	int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
	return (int16_t)((ab + nudge) / (1 << 15));
}

int16_t q_sdhm16(int16_t a, int16_t b)
{
	if (a == INT16_MIN && b == INT16_MIN)
		return INT16_MAX;
	int32_t ab = (int32_t)a * (int32_t)b;
	return (int16_t)(ab / (1 << 15));
}

int16_t q_rdbpot16(int16_t x, int exponent)
{
	int16_t mask = (int16_t)((1 << exponent) - 1);
	int16_t remainder = (int16_t)(x & mask);
	int16_t threshold = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
	return (int16_t)((x >> exponent) + (remainder > threshold ? 1 : 0));
}

int16_t q_sat_lshift16(int16_t x, int shift)
{
	int32_t v = (int32_t)x * (1 << shift);
	if (v > INT16_MAX)
		return INT16_MAX;
	if (v < INT16_MIN)
		return INT16_MIN;
	return (int16_t)v;
}

int16_t q_downscale_mult16(int32_t m)
{
	const int32_t round = 1 << 15;
	if (m >= INT32_MAX - round)
		return INT16_MAX;
	return (int16_t)((m + round) >> 16);
}
