/*
 * quant.h — TFLite's fixed-point requantization arithmetic (internal to engine/ops).
 *
 * These helpers reproduce, bit for bit, the integer recipe the reference
 * runtime uses (gemmlowp's SaturatingRoundingDoublingHighMul and
 * RoundingDivideByPOT, TFLite's QuantizeMultiplier and
 * MultiplyByQuantizedMultiplier).  Exactness matters more than elegance here:
 * a single LSB of difference in one layer changes the boxes downstream.
 * Pure functions; any thread.
 */
#ifndef DETD_ENGINE_OPS_QUANT_H
#define DETD_ENGINE_OPS_QUANT_H

#include <stdint.h>

#include "ops.h"

/* round(a*b / 2^31) with ties away from zero; INT32_MIN*INT32_MIN saturates. */
static inline int32_t q_srdhm(int32_t a, int32_t b)
{
	if (a == INT32_MIN && b == INT32_MIN)
		return INT32_MAX;
	int64_t ab = (int64_t)a * (int64_t)b;
	int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
	/* C division truncates toward zero, as gemmlowp relies on. */
	return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent <= 31. */
static inline int32_t q_rdbpot(int32_t x, int exponent)
{
	int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
	int32_t remainder = x & mask;
	int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
	return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/*
 * TFLite's MultiplyByQuantizedMultiplier (the double-rounding form): a left
 * shift for shift > 0, SRDHM, then a rounding right shift.  The reference
 * computes x * (1 << left_shift) in int32: the product wraps, and on x86 the
 * shift count is taken modulo 32; we reproduce both so that absurd
 * multipliers (scales of 1e-35 exist in real models) give the same bytes.
 */
static inline int32_t q_mul_by_qm(int32_t x, int32_t qm, int shift)
{
	int left = shift > 0 ? shift : 0;
	int right = shift > 0 ? 0 : -shift;
	int32_t shifted = (int32_t)((uint32_t)x * ((uint32_t)1 << (left & 31)));
	return q_rdbpot(q_srdhm(shifted, qm), right);
}

/*
 * The same multiplier as TFLite's int8 CONV_2D applies it on x86: its GEMM
 * (ruy's AVX2/AVX-512 kernels) rounds the final right shift half up (toward
 * +inf) instead of half away from zero; results differ on negative ties.
 */
static inline int32_t q_mul_by_qm_up(int32_t x, int32_t qm, int shift)
{
	int left = shift > 0 ? shift : 0;
	int right = shift > 0 ? 0 : -shift;
	int32_t shifted = (int32_t)((uint32_t)x * ((uint32_t)1 << (left & 31)));
	int64_t r = q_srdhm(shifted, qm);
	if (right > 0)
		r = (r + ((int64_t)1 << (right - 1))) >> right;
	return (int32_t)r;
}

/* frexp-based Q31 multiplier and power-of-two exponent (TFLite QuantizeMultiplier). */
void q_quantize_multiplier(double m, int32_t *qm, int *shift);

/* (int32_t)x clamped to [lo, hi], defined for every value: a corrupt model's scales
 * can put x outside int32 or make it NaN (gives lo). Inside the range it is C's
 * conversion (truncation), so the reference's expressions stay exact. A float
 * argument converts to double exactly. */
static inline int32_t q_sat_i32(double x, int32_t lo, int32_t hi)
{
	if (!(x > (double)lo))
		return lo;
	if (x >= (double)hi)
		return hi;
	return (int32_t)x;
}

/* clamp(zp + (int32_t)roundf(f / scale), lo, hi) — TFLite's quantization of an
 * activation bound — for any scale (0, denormal or NaN included). */
int32_t q_quantize_sat(float f, float scale, int32_t zp, int32_t lo, int32_t hi);

/* Clamp range of a quantized output for a fused activation (type range ∩ act range). */
void q_act_range(enum eng_act act, enum eng_dtype type, float scale, int32_t zp, int32_t *lo,
		 int32_t *hi);
void q_act_range_f32(enum eng_act act, float *lo, float *hi);

/* Type range of an 8-bit type (uint8 or int8). */
void q_type_range(enum eng_dtype type, int32_t *lo, int32_t *hi);

/* int16 gemmlowp helpers used by HARD_SWISH. */
int16_t q_srdhm16(int16_t a, int16_t b);
int16_t q_sdhm16(int16_t a, int16_t b);
int16_t q_rdbpot16(int16_t x, int exponent);
int16_t q_sat_lshift16(int16_t x, int shift);
int16_t q_downscale_mult16(int32_t m);

#endif
