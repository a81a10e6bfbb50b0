/*
 * test_ops.c — kernels (engine/ops, engine/postprocess) with hand-computed
 * vectors, and the fast kernels against the reference ones on random tensors.
 *
 * Tensors here are all "constant" (data pointers, no arena): eng_tdata()
 * returns const_data, which the tests own and the kernels may write.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"
#include "simd.h"
#include "postprocess/postprocess.h"
#include "testutil.h"

/* ---- helpers -------------------------------------------------------------- */

#define MAXT 16
struct tslot {
	struct eng_tensor t;
	float scale[512];
	int64_t zp[512];
};
static struct tslot slots[MAXT];
static int nslots;

static void reset(void)
{
	memset(slots, 0, sizeof(slots));
	nslots = 0;
}

static struct eng_tensor *mk(enum eng_dtype type, int ndim, const int *dims, float scale,
			     int64_t zp, void *data)
{
	ck_assert_int_lt(nslots, MAXT);
	struct tslot *s = &slots[nslots++];
	struct eng_tensor *t = &s->t;
	t->index = nslots - 1;
	t->type = type;
	t->ndim = ndim;
	size_t n = 1;
	for (int i = 0; i < ndim; i++) {
		t->dims[i] = dims[i];
		n *= (size_t)dims[i];
	}
	size_t es = type == ENG_DT_F32 || type == ENG_DT_I32 ? 4 : 1;
	t->bytes = n * es;
	t->is_const = true;
	t->const_data = data;
	if (scale > 0.0f) {
		t->has_quant = true;
		s->scale[0] = scale;
		s->zp[0] = zp;
		t->q.n = 1;
		t->q.scale = s->scale;
		t->q.zero_point = s->zp;
	}
	return t;
}

/* Per-channel scales (axis 0) for an int8 filter. */
static void per_channel(struct eng_tensor *t, int n, const float *scales, int axis)
{
	struct tslot *s = (struct tslot *)t;
	for (int i = 0; i < n; i++) {
		s->scale[i] = scales[i];
		s->zp[i] = 0;
	}
	t->has_quant = true;
	t->q.n = n;
	t->q.axis = axis;
	t->q.scale = s->scale;
	t->q.zero_point = s->zp;
}

static int g_threads = 1; /* eng_exec.threads for run() */

/* the arena run() gives kernels: tensors that are not constant live there */
static uint8_t *g_arena;

static int run(const struct eng_kernel *k, struct eng_node *n)
{
	char err[256] = "";
	int rc = k->prepare(n, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "prepare: %s\n", err);
		return rc;
	}
	void *scratch = NULL;
	if (n->scratch_bytes)
		scratch = aligned_alloc(64, (n->scratch_bytes + 63) & ~(size_t)63);
	struct eng_exec x = {.arena = g_arena, .scratch = scratch, .threads = g_threads};
	rc = k->eval(n, &x);
	k->release(n);
	free(scratch);
	return rc;
}

static struct eng_node node(enum eng_op_type type, int n_in, struct eng_tensor **in, int n_out,
			    struct eng_tensor **out)
{
	struct eng_node n = {.type = type, .n_in = n_in, .n_out = n_out, .in = in, .out = out};
	return n;
}

/* ---- fixed-point arithmetic -------------------------------------------------- */

START_TEST(srdhm_cases)
{
	ck_assert_int_eq(q_srdhm(INT32_MIN, INT32_MIN), INT32_MAX); /* the one overflow */
	ck_assert_int_eq(q_srdhm(INT32_MIN, INT32_MAX), -INT32_MAX);
	ck_assert_int_eq(q_srdhm(1 << 30, 1 << 30), 1 << 29);
	/* x * 0.5: 1.5 -> 2, -1.5 -> -1 (the nudge rounds ties upward) */
	ck_assert_int_eq(q_srdhm(3, 1 << 30), 2);
	ck_assert_int_eq(q_srdhm(-3, 1 << 30), -1);
	ck_assert_int_eq(q_srdhm(-5, 1 << 30), -2);
	ck_assert_int_eq(q_srdhm(0, INT32_MIN), 0);
}
END_TEST

START_TEST(rdbpot_ties)
{
	ck_assert_int_eq(q_rdbpot(5, 1), 3);   /* 2.5 -> 3 */
	ck_assert_int_eq(q_rdbpot(-5, 1), -3); /* -2.5 -> -3: away from zero */
	ck_assert_int_eq(q_rdbpot(6, 2), 2);   /* 1.5 -> 2 */
	ck_assert_int_eq(q_rdbpot(-6, 2), -2); /* -1.5 -> -2 */
	ck_assert_int_eq(q_rdbpot(-5, 2), -1); /* -1.25 -> -1 */
	ck_assert_int_eq(q_rdbpot(-7, 2), -2); /* -1.75 -> -2 */
	ck_assert_int_eq(q_rdbpot(7, 0), 7);
	ck_assert_int_eq(q_rdbpot(INT32_MAX, 31), 1);
	ck_assert_int_eq(q_rdbpot(INT32_MIN, 31), -1);
}
END_TEST

START_TEST(quantize_multiplier_edges)
{
	int32_t m;
	int s;
	q_quantize_multiplier(0.0, &m, &s);
	ck_assert_int_eq(m, 0);
	ck_assert_int_eq(s, 0);
	q_quantize_multiplier(0.5, &m, &s);
	ck_assert_int_eq(m, 1 << 30);
	ck_assert_int_eq(s, 0);
	q_quantize_multiplier(1.0, &m, &s);
	ck_assert_int_eq(m, 1 << 30);
	ck_assert_int_eq(s, 1);
	q_quantize_multiplier(0.75, &m, &s);
	ck_assert_int_eq(m, 1610612736);
	ck_assert_int_eq(s, 0);
	/* q rounds up to exactly 1.0: renormalized to 0.5 with the next exponent */
	q_quantize_multiplier(1.0 - ldexp(1.0, -40), &m, &s);
	ck_assert_int_eq(m, 1 << 30);
	ck_assert_int_eq(s, 1);
	/* below 2^-32 everything would be shifted out: flushed to zero */
	q_quantize_multiplier(ldexp(1.0, -40), &m, &s);
	ck_assert_int_eq(m, 0);
	ck_assert_int_eq(s, 0);
	q_quantize_multiplier(3.0e10, &m, &s);
	ck_assert_int_eq(s, 35); /* large multipliers keep their exponent (no saturation) */
}
END_TEST

START_TEST(mul_by_qm_double_rounding)
{
	/* 3 * 0.25: SRDHM by 0.5 gives 2 (1.5 rounds up), then /2 gives 1: TFLite's double rounding */
	ck_assert_int_eq(q_mul_by_qm(3, 1 << 30, -1), 1);
	ck_assert_int_eq(q_mul_by_qm(100, 1 << 30, 1), 100); /* x1.0 via a left shift */
	ck_assert_int_eq(q_mul_by_qm(-100, 1610612736, 2), -300);
	ck_assert_int_eq(q_mul_by_qm(1000, 1 << 30, -40 + 31), 1); /* 1000/1024 -> 1 */
	/* -3 * 0.25: SRDHM gives -1 (-1.5 rounds up), then -1/2 = -0.5: TFLite's
	 * reference rounds away from zero (-1), its int8 CONV_2D GEMM half up (0) */
	ck_assert_int_eq(q_mul_by_qm(-3, 1 << 30, -1), -1);
	ck_assert_int_eq(q_mul_by_qm_up(-3, 1 << 30, -1), 0);
	ck_assert_int_eq(q_mul_by_qm_up(3, 1 << 30, -1), 1);
	ck_assert_int_eq(q_mul_by_qm_up(-100, 1610612736, 2), -300);
}
END_TEST

START_TEST(activation_ranges)
{
	int32_t lo, hi;
	q_act_range(ENG_ACT_RELU6, ENG_DT_U8, 6.0f / 255.0f, 0, &lo, &hi);
	ck_assert_int_eq(lo, 0);
	ck_assert_int_eq(hi, 255);
	q_act_range(ENG_ACT_RELU6, ENG_DT_U8, 0.1f, 10, &lo, &hi);
	ck_assert_int_eq(lo, 10);
	ck_assert_int_eq(hi, 70);
	q_act_range(ENG_ACT_RELU6, ENG_DT_U8, 0.01f, 200, &lo, &hi);
	ck_assert_int_eq(lo, 200);
	ck_assert_int_eq(hi, 255); /* 200 + 600 clipped to the type */
	q_act_range(ENG_ACT_RELU, ENG_DT_I8, 0.5f, -20, &lo, &hi);
	ck_assert_int_eq(lo, -20);
	ck_assert_int_eq(hi, 127);
	q_act_range(ENG_ACT_NONE, ENG_DT_I8, 0.5f, -20, &lo, &hi);
	ck_assert_int_eq(lo, -128);
}
END_TEST

/* A corrupt model's scales (0, denormal: finite, so the reader accepts them)
 * must give saturated, defined ranges: under UBSan an unguarded float→int
 * conversion here is a failure (the fuzzer found one in LOGISTIC's table). */
START_TEST(saturating_conversions)
{
	ck_assert_int_eq(q_sat_i32(NAN, -128, 127), -128);
	ck_assert_int_eq(q_sat_i32(INFINITY, -128, 127), 127);
	ck_assert_int_eq(q_sat_i32(-INFINITY, 0, 255), 0);
	ck_assert_int_eq(q_sat_i32(4.3e33, INT32_MIN, INT32_MAX), INT32_MAX);
	ck_assert_int_eq(q_sat_i32(-3e9, INT32_MIN, INT32_MAX), INT32_MIN);
	/* inside the range: C's truncation, as the reference's expressions */
	ck_assert_int_eq(q_sat_i32(-127.5, -128, 127), -127);
	ck_assert_int_eq(q_sat_i32(126.9f, -128, 127), 126);
	ck_assert_int_eq(q_sat_i32(-0.5, 0, 255), 0);

	int32_t lo, hi;
	q_act_range(ENG_ACT_RELU6, ENG_DT_U8, 1e-40f, 3, &lo, &hi); /* 6 / 1e-40 = inf */
	ck_assert_int_eq(lo, 3);
	ck_assert_int_eq(hi, 255);
	q_act_range(ENG_ACT_RELU_N1_TO_1, ENG_DT_I8, 0.0f, 0, &lo, &hi); /* ±1/0 = ±inf */
	ck_assert_int_eq(lo, -128);
	ck_assert_int_eq(hi, 127);
	q_act_range(ENG_ACT_RELU, ENG_DT_U8, 0.0f, 7, &lo, &hi); /* 0/0 = NaN */
	ck_assert_int_eq(lo, 0);
	ck_assert_int_eq(hi, 255);
	ck_assert_int_eq(q_quantize_sat(1.0f, 1e-40f, 100, INT32_MIN, INT32_MAX), INT32_MAX);
	ck_assert_int_eq(q_quantize_sat(-1.0f, 1e-40f, -100, INT32_MIN, INT32_MAX), INT32_MIN);

	int32_t m;
	int s;
	q_quantize_multiplier(INFINITY, &m, &s);
	ck_assert_int_eq(m, INT32_MAX);
	ck_assert_int_eq(s, 31);
	q_quantize_multiplier(NAN, &m, &s);
	ck_assert_int_eq(m, INT32_MAX);

	/* LOGISTIC with an output scale that puts the table's values beyond int32 */
	reset();
	uint8_t x[3] = {0, 128, 255}, y[3];
	struct eng_tensor *in[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f / 16, 128, x)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1e-38f, 0, y)};
	struct eng_node n = node(ENG_OP_LOGISTIC, 1, in, 1, out);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_LOGISTIC), &n), 0);
	ck_assert_int_eq(y[0], 255);
	ck_assert_int_eq(y[2], 255);
}
END_TEST

TGT static void requant8_lanes(const int32_t *acc, const int32_t *m, const int32_t *sh,
			       int32_t *out)
{
	__m256i r = simd_requant8(_mm256_loadu_si256((const __m256i *)acc),
				  _mm256_loadu_si256((const __m256i *)m),
				  _mm256_loadu_si256((const __m256i *)sh));
	_mm256_storeu_si256((__m256i *)out, r);
}

TGT static void requant8_rq_lanes(const int32_t *acc, const int32_t *m, const int32_t *sh,
				  int32_t *out)
{
	struct simd_rq8 q = simd_rq8_make(_mm256_loadu_si256((const __m256i *)m),
					  _mm256_loadu_si256((const __m256i *)sh));
	_mm256_storeu_si256((__m256i *)out,
			    simd_requant8_rq(_mm256_loadu_si256((const __m256i *)acc), &q));
}

/* The same with the half-up final shift of int8 CONV_2D (q_mul_by_qm_up). */
TGT static void requant8_rq_up_lanes(const int32_t *acc, const int32_t *m, const int32_t *sh,
				     int32_t *out)
{
	struct simd_rq8 q = simd_rq8_make(_mm256_loadu_si256((const __m256i *)m),
					  _mm256_loadu_si256((const __m256i *)sh));
	q.away = _mm256_setzero_si256();
	_mm256_storeu_si256((__m256i *)out,
			    simd_requant8_rq(_mm256_loadu_si256((const __m256i *)acc), &q));
}

START_TEST(simd_requant_matches_scalar)
{
	ck_assert(simd_have_avx2()); /* the "avx2" suite runs only where it is */
	/* edge values: ties of both signs, INT32_MIN·INT32_MIN, left shifts that wrap */
	const int32_t edge_acc[] = {0, 1, -1, 3, -3, 5, -5, INT32_MIN, INT32_MAX, 1 << 30,
				    -(1 << 30), 12345, -12345, 6, -6, 7};
	const int32_t edge_m[] = {1 << 30, INT32_MIN, INT32_MAX, 1610612736, 1 << 30, 1 << 30,
				  1 << 30, INT32_MIN, INT32_MAX, 1 << 30, 1 << 30, 1518500250,
				  1518500250, 1 << 30, 1 << 30, 0};
	const int32_t edge_s[] = {0, 0, -31, 2, -1, -1, -1, 0, 0, 1, 1, -7, -7, -2, -2, 5};
	int32_t acc[8], m[8], sh[8], got[8];
	srand(11);
	for (int it = 0; it < 20000; it++) {
		for (int l = 0; l < 8; l++) {
			int e = (it * 8 + l) % 16;
			if (it < 64) {
				acc[l] = edge_acc[e];
				m[l] = edge_m[(e + it) % 16];
				sh[l] = edge_s[(e + 3 * it) % 16];
			} else {
				acc[l] = (int32_t)((uint32_t)rand() << 1 ^ (uint32_t)rand());
				if (it % 3 == 0)
					acc[l] >>= rand() % 31;
				m[l] = (int32_t)(((uint32_t)rand() << 1) | (1u << 30)) & INT32_MAX;
				sh[l] = rand() % 39 - 31; /* QuantizeMultiplier keeps shift >= -31 */
			}
		}
		requant8_lanes(acc, m, sh, got);
		for (int l = 0; l < 8; l++)
			ck_assert_msg(got[l] == q_mul_by_qm(acc[l], m[l], sh[l]),
				      "acc %d m %d shift %d: simd %d scalar %d", acc[l], m[l], sh[l],
				      got[l], q_mul_by_qm(acc[l], m[l], sh[l]));
		/* the precomputed variant, for multipliers q_quantize_multiplier can produce */
		bool ok = true;
		for (int l = 0; l < 8; l++)
			ok = ok && m[l] != INT32_MIN;
		if (ok) {
			requant8_rq_lanes(acc, m, sh, got);
			for (int l = 0; l < 8; l++)
				ck_assert_msg(got[l] == q_mul_by_qm(acc[l], m[l], sh[l]),
					      "rq: acc %d m %d shift %d: simd %d scalar %d", acc[l], m[l],
					      sh[l], got[l], q_mul_by_qm(acc[l], m[l], sh[l]));
			requant8_rq_up_lanes(acc, m, sh, got);
			for (int l = 0; l < 8; l++)
				ck_assert_msg(got[l] == q_mul_by_qm_up(acc[l], m[l], sh[l]),
					      "rq up: acc %d m %d shift %d: simd %d scalar %d", acc[l],
					      m[l], sh[l], got[l], q_mul_by_qm_up(acc[l], m[l], sh[l]));
		}
	}
}
END_TEST

/* ---- convolution ------------------------------------------------------------ */

static void conv_same_stride2(const struct eng_kernel *k)
{
	reset();
	uint8_t x[16], w[9], y[4];
	int32_t b = 0;
	for (int i = 0; i < 16; i++)
		x[i] = (uint8_t)(i + 1);
	memset(w, 1, sizeof(w));
	struct eng_tensor *in[3] = {
		mk(ENG_DT_U8, 4, (int[]){1, 4, 4, 1}, 1.0f, 0, x),
		mk(ENG_DT_U8, 4, (int[]){1, 3, 3, 1}, 1.0f, 0, w),
		mk(ENG_DT_I32, 1, (int[]){1}, 1.0f, 0, &b),
	};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_CONV_2D, 3, in, 1, out);
	n.opts.conv = (struct eng_conv_opts){.padding = ENG_PAD_SAME, .stride_w = 2, .stride_h = 2,
					     .dilation_w = 1, .dilation_h = 1};
	ck_assert_int_eq(run(k, &n), 0);
	/* total padding 1 goes bottom/right: the first window is rows/cols 0..2 */
	ck_assert_int_eq(y[0], 1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11);
	ck_assert_int_eq(y[1], 3 + 4 + 7 + 8 + 11 + 12);
	ck_assert_int_eq(y[2], 9 + 10 + 11 + 13 + 14 + 15);
	ck_assert_int_eq(y[3], 11 + 12 + 15 + 16);
}

START_TEST(conv_same_padding_asymmetry)
{
	conv_same_stride2(eng_kernel_get_ref(ENG_OP_CONV_2D));
	conv_same_stride2(eng_kernel_get(ENG_OP_CONV_2D));
}
END_TEST

START_TEST(conv_uint8_weight_zero_point)
{
	const struct eng_kernel *ks[2] = {eng_kernel_get_ref(ENG_OP_CONV_2D),
					  eng_kernel_get(ENG_OP_CONV_2D)};
	for (int v = 0; v < 2; v++) {
		reset();
		uint8_t x[2] = {130, 120}, w[2] = {140, 100}, y[1];
		int32_t b = 10;
		struct eng_tensor *in[3] = {
			mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 0.5f, 128, x),
			mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 0.25f, 128, w),
			mk(ENG_DT_I32, 1, (int[]){1}, 0.125f, 0, &b),
		};
		struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 0.5f, 100, y)};
		struct eng_node n = node(ENG_OP_CONV_2D, 3, in, 1, out);
		n.opts.conv = (struct eng_conv_opts){.padding = ENG_PAD_VALID, .stride_w = 1,
						     .stride_h = 1};
		ck_assert_int_eq(run(ks[v], &n), 0);
		/* (12·2 + (−28)(−8) + 10) · 0.25 = 64.5 -> 65 (ties away), + 100 */
		ck_assert_int_eq(y[0], 165);
	}
}
END_TEST

START_TEST(conv_saturation)
{
	reset();
	uint8_t x[2] = {255, 255}, w[2] = {255, 255}, y[1];
	struct eng_tensor *in[2] = {
		mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, x),
		mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, w),
	};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_CONV_2D, 2, in, 1, out);
	n.opts.conv.padding = ENG_PAD_VALID;
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_CONV_2D), &n), 0);
	ck_assert_int_eq(y[0], 255);
	w[0] = w[1] = 0;
	struct tslot *ws = (struct tslot *)in[1];
	ws->zp[0] = 255; /* weights of −255: saturate at 0 */
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_CONV_2D), &n), 0);
	ck_assert_int_eq(y[0], 0);
}
END_TEST

/* Random conv/depthwise: reference and fast kernels must agree byte for byte. */
static void random_conv(unsigned seed, bool dw)
{
	srand(seed);
	reset();
	bool s8 = rand() % 2;
	enum eng_dtype t = s8 ? ENG_DT_I8 : ENG_DT_U8;
	int ih = 1 + rand() % 13, iw = 1 + rand() % 13, ic = 1 + rand() % 40;
	int k = (int[]){1, 1, 3, 3, 5}[rand() % 5], kw = rand() % 4 == 0 ? 1 : k;
	int stride = 1 + rand() % 2, dil = rand() % 4 == 0 ? 2 : 1;
	enum eng_padding pad = rand() % 3 == 0 ? ENG_PAD_VALID : ENG_PAD_SAME;
	int oc = dw ? ic : 1 + rand() % 40;
	int eff_h = (k - 1) * dil + 1, eff_w = (kw - 1) * dil + 1;
	if (pad == ENG_PAD_VALID && (ih < eff_h || iw < eff_w))
		pad = ENG_PAD_SAME;
	int oh = pad == ENG_PAD_SAME ? (ih + stride - 1) / stride : (ih - eff_h) / stride + 1;
	int ow = pad == ENG_PAD_SAME ? (iw + stride - 1) / stride : (iw - eff_w) / stride + 1;
	size_t nx = (size_t)ih * iw * ic, nw = (size_t)oc * k * kw * (dw ? 1 : ic),
	       ny = (size_t)oh * ow * oc;
	uint8_t *x = malloc(nx), *w = malloc(nw), *y1 = malloc(ny), *y2 = malloc(ny);
	int32_t *b = malloc((size_t)oc * sizeof(*b));
	for (size_t i = 0; i < nx; i++)
		x[i] = (uint8_t)rand();
	for (size_t i = 0; i < nw; i++)
		w[i] = (uint8_t)rand();
	for (int i = 0; i < oc; i++)
		b[i] = rand() % 20001 - 10000;
	float sx = 0.01f + (float)(rand() % 100) / 1000.0f;
	/* output scales from tiny (left shifts) to large */
	float sy = (rand() % 4 == 0) ? 0.0005f : 0.05f + (float)(rand() % 100) / 100.0f;
	int64_t zx = s8 ? rand() % 256 - 128 : rand() % 256, zy = s8 ? rand() % 256 - 128 : rand() % 256;
	struct eng_tensor *in[3];
	int wdims[4] = {dw ? 1 : oc, k, kw, dw ? oc : ic};
	in[0] = mk(t, 4, (int[]){1, ih, iw, ic}, sx, zx, x);
	in[1] = mk(t, 4, wdims, 0.02f, s8 ? 0 : rand() % 256, w);
	in[2] = mk(ENG_DT_I32, 1, (int[]){oc}, sx * 0.02f, 0, b);
	if (s8) {
		float sc[512];
		for (int i = 0; i < oc; i++)
			sc[i] = 0.001f + (float)(rand() % 100) / 2000.0f;
		per_channel(in[1], oc, sc, dw ? 3 : 0);
	}
	struct eng_tensor *out1[1] = {mk(t, 4, (int[]){1, oh, ow, oc}, sy, zy, y1)};
	struct eng_tensor *out2[1] = {mk(t, 4, (int[]){1, oh, ow, oc}, sy, zy, y2)};
	enum eng_op_type op = dw ? ENG_OP_DEPTHWISE_CONV_2D : ENG_OP_CONV_2D;
	struct eng_conv_opts o = {.padding = pad, .stride_w = stride, .stride_h = stride,
				  .dilation_w = dil, .dilation_h = dil, .depth_multiplier = 1,
				  .act = rand() % 2 ? ENG_ACT_RELU6 : ENG_ACT_NONE};
	struct eng_node n1 = node(op, 3, in, 1, out1), n2 = node(op, 3, in, 1, out2);
	n1.opts.conv = o;
	n2.opts.conv = o;
	ck_assert_int_eq(run(eng_kernel_get_ref(op), &n1), 0);
	ck_assert_int_eq(run(eng_kernel_get(op), &n2), 0);
	for (size_t i = 0; i < ny; i++)
		if (y1[i] != y2[i])
			ck_abort_msg("seed %u dw %d: byte %zu ref %u fast %u (%dx%dx%d k%dx%d s%d d%d oc%d)",
				     seed, dw, i, y1[i], y2[i], ih, iw, ic, k, kw, stride, dil, oc);
	free(x);
	free(w);
	free(y1);
	free(y2);
	free(b);
}

START_TEST(conv_fast_matches_reference)
{
	for (unsigned s = 1; s <= 150; s++)
		random_conv(s, false);
}
END_TEST

START_TEST(dwconv_fast_matches_reference)
{
	for (unsigned s = 1; s <= 150; s++)
		random_conv(s, true);
}
END_TEST

/* Float: fast and reference must agree byte for byte (same summation order). */
static void random_conv_f32(unsigned seed, bool dw)
{
	srand(seed);
	reset();
	int ih = 1 + rand() % 11, iw = 1 + rand() % 11, ic = 1 + rand() % 20;
	int k = (int[]){1, 3, 3, 5}[rand() % 4], stride = 1 + rand() % 2, dil = rand() % 4 == 0 ? 2 : 1;
	int oc = dw ? ic : 1 + rand() % 20;
	int oh = (ih + stride - 1) / stride, ow = (iw + stride - 1) / stride;
	size_t nx = (size_t)ih * iw * ic, nw = (size_t)oc * k * k * (dw ? 1 : ic), ny = (size_t)oh * ow * oc;
	float *x = malloc(nx * 4), *w = malloc(nw * 4), *b = malloc((size_t)oc * 4);
	float *y1 = malloc(ny * 4), *y2 = malloc(ny * 4);
	for (size_t i = 0; i < nx; i++)
		x[i] = (float)(rand() % 2001 - 1000) / 97.0f;
	for (size_t i = 0; i < nw; i++)
		w[i] = (float)(rand() % 2001 - 1000) / 113.0f;
	for (int i = 0; i < oc; i++)
		b[i] = (float)(rand() % 201 - 100) / 7.0f;
	bool with_bias = rand() % 2;
	struct eng_tensor *in[3] = {mk(ENG_DT_F32, 4, (int[]){1, ih, iw, ic}, 0, 0, x),
				    mk(ENG_DT_F32, 4, (int[]){dw ? 1 : oc, k, k, dw ? oc : ic}, 0, 0, w),
				    mk(ENG_DT_F32, 1, (int[]){oc}, 0, 0, b)};
	struct eng_tensor *o1[1] = {mk(ENG_DT_F32, 4, (int[]){1, oh, ow, oc}, 0, 0, y1)};
	struct eng_tensor *o2[1] = {mk(ENG_DT_F32, 4, (int[]){1, oh, ow, oc}, 0, 0, y2)};
	enum eng_op_type op = dw ? ENG_OP_DEPTHWISE_CONV_2D : ENG_OP_CONV_2D;
	struct eng_conv_opts o = {.padding = ENG_PAD_SAME, .stride_w = stride, .stride_h = stride,
				  .dilation_w = dil, .dilation_h = dil, .depth_multiplier = 1,
				  .act = (enum eng_act[]){ENG_ACT_NONE, ENG_ACT_RELU, ENG_ACT_RELU6}[rand() % 3]};
	struct eng_node n1 = node(op, with_bias ? 3 : 2, in, 1, o1), n2 = node(op, with_bias ? 3 : 2, in, 1, o2);
	n1.opts.conv = o;
	n2.opts.conv = o;
	ck_assert_int_eq(run(eng_kernel_get_ref(op), &n1), 0);
	ck_assert_int_eq(run(eng_kernel_get(op), &n2), 0);
	if (memcmp(y1, y2, ny * 4))
		ck_abort_msg("float seed %u dw %d differs", seed, dw);
	free(x);
	free(w);
	free(b);
	free(y1);
	free(y2);
}

START_TEST(conv_f32_fast_matches_reference)
{
	for (unsigned s = 1; s <= 60; s++) {
		random_conv_f32(s, false);
		random_conv_f32(s, true);
	}
}
END_TEST

/* Big enough to be split across threads: every thread count gives the same bytes. */
START_TEST(conv_threads_match_reference)
{
	for (int dw = 0; dw < 2; dw++) {
		reset();
		/* both above OPS_PARALLEL_MIN_MACS: conv 2.5M, depthwise 3.4M */
		const int ih = dw ? 130 : 37, iw = dw ? 120 : 29, ic = 24, oc = dw ? 24 : 40, k = 3;
		const int st = dw ? 1 : 2;
		const int oh = (ih + st - 1) / st, ow = (iw + st - 1) / st;
		size_t nx = (size_t)ih * iw * ic, nw = (size_t)oc * k * k * (dw ? 1 : ic), ny = (size_t)oh * ow * oc;
		uint8_t *x = malloc(nx), *w = malloc(nw), *y0 = malloc(ny), *y1 = malloc(ny);
		int32_t *b = malloc((size_t)oc * sizeof(*b));
		srand(21);
		for (size_t i = 0; i < nx; i++)
			x[i] = (uint8_t)rand();
		for (size_t i = 0; i < nw; i++)
			w[i] = (uint8_t)rand();
		for (int i = 0; i < oc; i++)
			b[i] = rand() % 2001 - 1000;
		struct eng_tensor *in[3] = {
			mk(ENG_DT_U8, 4, (int[]){1, ih, iw, ic}, 0.02f, 120, x),
			mk(ENG_DT_U8, 4, (int[]){dw ? 1 : oc, k, k, dw ? oc : ic}, 0.01f, 131, w),
			mk(ENG_DT_I32, 1, (int[]){oc}, 0.0002f, 0, b)};
		struct eng_tensor *o0[1] = {mk(ENG_DT_U8, 4, (int[]){1, oh, ow, oc}, 0.05f, 7, y0)};
		struct eng_tensor *o1[1] = {mk(ENG_DT_U8, 4, (int[]){1, oh, ow, oc}, 0.05f, 7, y1)};
		enum eng_op_type op = dw ? ENG_OP_DEPTHWISE_CONV_2D : ENG_OP_CONV_2D;
		struct eng_conv_opts o = {.padding = ENG_PAD_SAME, .stride_w = st, .stride_h = st,
					  .depth_multiplier = 1};
		struct eng_node n0 = node(op, 3, in, 1, o0);
		n0.opts.conv = o;
		ck_assert_int_eq(run(eng_kernel_get_ref(op), &n0), 0);
		for (int t = 1; t <= 5; t++) {
			g_threads = t;
			memset(y1, 0xAA, ny);
			struct eng_node n1 = node(op, 3, in, 1, o1);
			n1.opts.conv = o;
			ck_assert_int_eq(run(eng_kernel_get(op), &n1), 0);
			if (memcmp(y0, y1, ny))
				ck_abort_msg("dw %d threads %d differs", dw, t);
		}
		g_threads = 1;
		free(x);
		free(w);
		free(y0);
		free(y1);
		free(b);
	}
}
END_TEST

START_TEST(dwconv_depth_multiplier)
{
	reset();
	uint8_t x[2] = {3, 5}, w[4] = {1, 2, 3, 4}, y[4];
	struct eng_tensor *in[2] = {
		mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, x),
		mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 4}, 1.0f, 0, w),
	};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 4}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_DEPTHWISE_CONV_2D, 2, in, 1, out);
	n.opts.conv = (struct eng_conv_opts){.padding = ENG_PAD_VALID, .depth_multiplier = 2};
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_DEPTHWISE_CONV_2D), &n), 0);
	/* output channel ic*2+m uses input channel ic */
	ck_assert_int_eq(y[0], 3);
	ck_assert_int_eq(y[1], 6);
	ck_assert_int_eq(y[2], 15);
	ck_assert_int_eq(y[3], 20);
}
END_TEST

START_TEST(conv_float)
{
	reset();
	float x[4] = {1, 2, 3, 4}, w[4] = {0.5f, -1, 2, 1}, b[2] = {0.25f, 10}, y[4];
	/* 1x1 conv, 2 in / 2 out channels, 2 pixels, RELU6 */
	struct eng_tensor *in[3] = {mk(ENG_DT_F32, 4, (int[]){1, 1, 2, 2}, 0, 0, x),
				    mk(ENG_DT_F32, 4, (int[]){2, 1, 1, 2}, 0, 0, w),
				    mk(ENG_DT_F32, 1, (int[]){2}, 0, 0, b)};
	struct eng_tensor *out[1] = {mk(ENG_DT_F32, 4, (int[]){1, 1, 2, 2}, 0, 0, y)};
	struct eng_node n = node(ENG_OP_CONV_2D, 3, in, 1, out);
	n.opts.conv = (struct eng_conv_opts){.padding = ENG_PAD_VALID, .act = ENG_ACT_RELU6};
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_CONV_2D), &n), 0);
	ck_assert_float_eq(y[0], 0.0f);  /* 0.5 - 2 + 0.25 = -1.25 -> 0 */
	ck_assert_float_eq(y[1], 6.0f);  /* 2 + 2 + 10 = 14 -> 6 */
	ck_assert_float_eq(y[2], 0.0f);  /* 1.5 - 4 + 0.25 */
	ck_assert_float_eq(y[3], 6.0f);

	reset();
	float dx[2] = {2, 3}, dwt[2] = {1.5f, -1}, dy[2];
	struct eng_tensor *din[2] = {mk(ENG_DT_F32, 4, (int[]){1, 1, 1, 2}, 0, 0, dx),
				     mk(ENG_DT_F32, 4, (int[]){1, 1, 1, 2}, 0, 0, dwt)};
	struct eng_tensor *dout[1] = {mk(ENG_DT_F32, 4, (int[]){1, 1, 1, 2}, 0, 0, dy)};
	struct eng_node dn = node(ENG_OP_DEPTHWISE_CONV_2D, 2, din, 1, dout);
	dn.opts.conv = (struct eng_conv_opts){.padding = ENG_PAD_SAME, .depth_multiplier = 1};
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_DEPTHWISE_CONV_2D), &dn), 0);
	ck_assert_float_eq(dy[0], 3.0f);
	ck_assert_float_eq(dy[1], -3.0f);
}
END_TEST

START_TEST(prepare_rejects_bad_shapes)
{
	reset();
	uint8_t x[4], w[4], y[4];
	struct eng_tensor *in[2] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, x),
				    mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, w)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_CONV_2D, 2, in, 1, out);
	char err[128] = "";
	/* filter depth 2 vs input depth 1 */
	ck_assert_int_ne(eng_kernel_get(ENG_OP_CONV_2D)->prepare(&n, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "depth"));
	ck_assert_ptr_null(n.prep);
	/* ADD of shapes that do not broadcast */
	struct eng_tensor *a2[2] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f, 0, x),
				    mk(ENG_DT_U8, 1, (int[]){2}, 1.0f, 0, w)};
	struct eng_tensor *o2[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f, 0, y)};
	struct eng_node an = node(ENG_OP_ADD, 2, a2, 1, o2);
	ck_assert_int_ne(eng_kernel_get(ENG_OP_ADD)->prepare(&an, err, sizeof(err)), 0);
	/* unusable quantization: zero / NaN scale, zero point outside the type */
	uint8_t x1[1], w1[1], y1[1];
	struct eng_tensor *q_in[2] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 1.0f, 0, x1),
				      mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 1.0f, 0, w1)};
	struct eng_tensor *q_out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 1.0f, 0, y1)};
	struct eng_node qn = node(ENG_OP_CONV_2D, 2, q_in, 1, q_out);
	struct tslot *os = (struct tslot *)q_out[0];
	os->scale[0] = 0.0f;
	ck_assert_int_ne(eng_kernel_get(ENG_OP_CONV_2D)->prepare(&qn, err, sizeof(err)), 0);
	os->scale[0] = NAN;
	ck_assert_int_ne(eng_kernel_get(ENG_OP_CONV_2D)->prepare(&qn, err, sizeof(err)), 0);
	os->scale[0] = 1.0f;
	os->zp[0] = 300;
	ck_assert_int_ne(eng_kernel_get(ENG_OP_CONV_2D)->prepare(&qn, err, sizeof(err)), 0);
	os->zp[0] = 0;
	ck_assert_int_eq(eng_kernel_get(ENG_OP_CONV_2D)->prepare(&qn, err, sizeof(err)), 0);
	eng_kernel_get(ENG_OP_CONV_2D)->release(&qn);
	/* missing input */
	struct eng_tensor *none[2] = {NULL, NULL};
	struct eng_node mn = node(ENG_OP_MUL, 2, none, 1, o2);
	ck_assert_int_ne(eng_kernel_get(ENG_OP_MUL)->prepare(&mn, err, sizeof(err)), 0);
}
END_TEST

/* ---- elementwise ----------------------------------------------------------- */

START_TEST(add_different_scales)
{
	const struct eng_kernel *ks[2] = {eng_kernel_get_ref(ENG_OP_ADD), eng_kernel_get(ENG_OP_ADD)};
	for (int v = 0; v < 2; v++) {
		reset();
		uint8_t a[3] = {10, 0, 255}, b[3] = {10, 0, 255}, y[3];
		struct eng_tensor *in[2] = {mk(ENG_DT_U8, 1, (int[]){3}, 0.5f, 0, a),
					    mk(ENG_DT_U8, 1, (int[]){3}, 0.25f, 0, b)};
		struct eng_tensor *out[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f, 0, y)};
		struct eng_node n = node(ENG_OP_ADD, 2, in, 1, out);
		ck_assert_int_eq(run(ks[v], &n), 0);
		ck_assert_int_eq(y[0], 8); /* 5.0 + 2.5 = 7.5 -> 8 */
		ck_assert_int_eq(y[1], 0);
		ck_assert_int_eq(y[2], 191); /* 127.5 + 63.75 = 191.25 */
	}
}
END_TEST

START_TEST(add_scalar_broadcast_and_saturation)
{
	reset();
	uint8_t a[4] = {0, 100, 200, 255}, c = 250, y[4];
	struct eng_tensor *in[2] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, a),
				    mk(ENG_DT_U8, 1, (int[]){1}, 1.0f, 0, &c)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_ADD, 2, in, 1, out);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_ADD), &n), 0);
	ck_assert_int_eq(y[0], 250);
	ck_assert_int_eq(y[1], 255); /* saturated */
	ck_assert_int_eq(y[3], 255);
}
END_TEST

START_TEST(add_fast_matches_reference)
{
	srand(7);
	for (int it = 0; it < 50; it++) {
		reset();
		int len = 1 + rand() % 300;
		uint8_t *a = malloc((size_t)len), *b = malloc((size_t)len), *y1 = malloc((size_t)len),
			*y2 = malloc((size_t)len);
		for (int i = 0; i < len; i++) {
			a[i] = (uint8_t)rand();
			b[i] = (uint8_t)rand();
		}
		float s1 = 0.001f + (float)(rand() % 1000) / 1000.0f, s2 = 0.001f + (float)(rand() % 1000) / 500.0f;
		float so = 0.005f + (float)(rand() % 1000) / 300.0f;
		enum eng_dtype t = rand() % 2 ? ENG_DT_U8 : ENG_DT_I8;
		int64_t z1 = rand() % 256, z2 = rand() % 256, zo = rand() % 256;
		if (t == ENG_DT_I8) {
			z1 -= 128;
			z2 -= 128;
			zo -= 128;
		}
		struct eng_tensor *in[2] = {mk(t, 1, &len, s1, z1, a), mk(t, 1, &len, s2, z2, b)};
		struct eng_tensor *o1[1] = {mk(t, 1, &len, so, zo, y1)}, *o2[1] = {mk(t, 1, &len, so, zo, y2)};
		struct eng_node n1 = node(ENG_OP_ADD, 2, in, 1, o1), n2 = node(ENG_OP_ADD, 2, in, 1, o2);
		n1.opts.act.act = n2.opts.act.act = it % 3 == 0 ? ENG_ACT_RELU6 : ENG_ACT_NONE;
		ck_assert_int_eq(run(eng_kernel_get_ref(ENG_OP_ADD), &n1), 0);
		ck_assert_int_eq(run(eng_kernel_get(ENG_OP_ADD), &n2), 0);
		ck_assert_mem_eq(y1, y2, (size_t)len);
		free(a);
		free(b);
		free(y1);
		free(y2);
	}
}
END_TEST

START_TEST(arith_broadcast_fast_matches_reference)
{
	srand(9);
	for (int it = 0; it < 120; it++) {
		reset();
		enum eng_op_type op = it % 2 ? ENG_OP_MUL : ENG_OP_ADD;
		enum eng_dtype t = (it / 2) % 2 ? ENG_DT_U8 : ENG_DT_I8;
		int h = 1 + rand() % 5, w = 1 + rand() % 5, c = 1 + rand() % 21;
		int full[4] = {1, h, w, c};
		size_t nf = (size_t)h * w * c;
		int kind = rand() % 5; /* 0 same, 1 [1,1,1,c], 2 [c], 3 [1], 4 first operand is [1,1,1,c] */
		int small4[4] = {1, 1, 1, c}, small1[1] = {c}, one[1] = {1};
		uint8_t *a = malloc(nf), *b = malloc(nf), *y1 = malloc(nf), *y2 = malloc(nf);
		for (size_t i = 0; i < nf; i++) {
			a[i] = (uint8_t)rand();
			b[i] = (uint8_t)rand();
		}
		float sa = 0.01f + (float)(rand() % 100) / 100.0f, sb = 0.01f + (float)(rand() % 100) / 50.0f;
		float so = 0.01f + (float)(rand() % 100) / 20.0f;
		int64_t off = t == ENG_DT_I8 ? 128 : 0;
		int64_t za = rand() % 256 - off, zb = rand() % 256 - off, zo = rand() % 256 - off;
		struct eng_tensor *ta, *tb;
		if (kind == 4) {
			ta = mk(t, 4, small4, sa, za, a);
			tb = mk(t, 4, full, sb, zb, b);
		} else {
			ta = mk(t, 4, full, sa, za, a);
			tb = kind == 0   ? mk(t, 4, full, sb, zb, b)
			     : kind == 1 ? mk(t, 4, small4, sb, zb, b)
			     : kind == 2 ? mk(t, 1, small1, sb, zb, b)
					 : mk(t, 1, one, sb, zb, b);
		}
		struct eng_tensor *in[2] = {ta, tb};
		struct eng_tensor *o1[1] = {mk(t, 4, full, so, zo, y1)}, *o2[1] = {mk(t, 4, full, so, zo, y2)};
		struct eng_node n1 = node(op, 2, in, 1, o1), n2 = node(op, 2, in, 1, o2);
		n1.opts.act.act = n2.opts.act.act = it % 3 == 0 ? ENG_ACT_RELU : ENG_ACT_NONE;
		ck_assert_int_eq(run(eng_kernel_get_ref(op), &n1), 0);
		ck_assert_int_eq(run(eng_kernel_get(op), &n2), 0);
		if (memcmp(y1, y2, nf))
			ck_abort_msg("it %d op %d kind %d differs", it, op, kind);
		free(a);
		free(b);
		free(y1);
		free(y2);
	}
}
END_TEST

START_TEST(mul_quantized)
{
	reset();
	uint8_t a[2] = {138, 118}, b[2] = {148, 148}, y[2];
	struct eng_tensor *in[2] = {mk(ENG_DT_U8, 1, (int[]){2}, 0.1f, 128, a),
				    mk(ENG_DT_U8, 1, (int[]){2}, 0.05f, 128, b)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 1, (int[]){2}, 0.01f, 128, y)};
	struct eng_node n = node(ENG_OP_MUL, 2, in, 1, out);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_MUL), &n), 0);
	ck_assert_int_eq(y[0], 128 + 100); /* 1.0 · 1.0 */
	ck_assert_int_eq(y[1], 128 - 100);
}
END_TEST

START_TEST(logistic_and_relu6)
{
	reset();
	uint8_t x[3] = {128, 255, 0}, y[3];
	struct eng_tensor *in[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f / 16, 128, x)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 1, (int[]){3}, 1.0f / 256, 0, y)};
	struct eng_node n = node(ENG_OP_LOGISTIC, 1, in, 1, out);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_LOGISTIC), &n), 0);
	ck_assert_int_eq(y[0], 128); /* sigmoid(0) = 0.5 */
	ck_assert_int_eq(y[1], 255); /* 0.99964·256 rounds to 256, clamped */
	ck_assert_int_eq(y[2], 0);

	reset();
	uint8_t r[4] = {0, 50, 100, 255}, ry[4];
	struct eng_tensor *rin[1] = {mk(ENG_DT_U8, 1, (int[]){4}, 0.1f, 50, r)};
	struct eng_tensor *rout[1] = {mk(ENG_DT_U8, 1, (int[]){4}, 0.05f, 0, ry)};
	struct eng_node rn = node(ENG_OP_RELU6, 1, rin, 1, rout);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_RELU6), &rn), 0);
	ck_assert_int_eq(ry[0], 0);
	ck_assert_int_eq(ry[1], 0);
	ck_assert_int_eq(ry[2], 100); /* 5.0 */
	ck_assert_int_eq(ry[3], 120); /* 20.5 clamped to 6.0 */
}
END_TEST

START_TEST(unary_tables_match_reference)
{
	const enum eng_op_type ops[4] = {ENG_OP_RELU, ENG_OP_RELU6, ENG_OP_HARD_SWISH, ENG_OP_QUANTIZE};
	srand(5);
	for (int it = 0; it < 200; it++) {
		reset();
		enum eng_op_type op = ops[it % 4];
		enum eng_dtype ti = rand() % 2 ? ENG_DT_U8 : ENG_DT_I8;
		enum eng_dtype to = op == ENG_OP_QUANTIZE && rand() % 2 ? ENG_DT_U8 : ti;
		uint8_t x[256], y1[256], y2[256];
		for (int i = 0; i < 256; i++)
			x[i] = (uint8_t)i;
		float si = 0.005f + (float)(rand() % 1000) / 2000.0f;
		float so = 0.005f + (float)(rand() % 1000) / 2000.0f;
		if (op == ENG_OP_HARD_SWISH && so < si / 128.0f)
			so = si; /* the op requires a non-positive output exponent */
		int64_t zi = rand() % 256 - (ti == ENG_DT_I8 ? 128 : 0);
		int64_t zo = rand() % 256 - (to == ENG_DT_I8 ? 128 : 0);
		struct eng_tensor *in[1] = {mk(ti, 1, (int[]){256}, si, zi, x)};
		struct eng_tensor *o1[1] = {mk(to, 1, (int[]){256}, so, zo, y1)};
		struct eng_tensor *o2[1] = {mk(to, 1, (int[]){256}, so, zo, y2)};
		struct eng_node n1 = node(op, 1, in, 1, o1), n2 = node(op, 1, in, 1, o2);
		ck_assert_int_eq(run(eng_kernel_get_ref(op), &n1), 0);
		ck_assert_int_eq(run(eng_kernel_get(op), &n2), 0);
		ck_assert_mem_eq(y1, y2, 256);
	}
}
END_TEST

START_TEST(concat_requantizes)
{
	reset();
	uint8_t a[2] = {10, 20}, b[2] = {30, 11}, y[4];
	struct eng_tensor *in[2] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, a),
				    mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 0.5f, 10, b)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 4}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_CONCATENATION, 2, in, 1, out);
	n.opts.concat.axis = -1;
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_CONCATENATION), &n), 0);
	ck_assert_int_eq(y[0], 10);
	ck_assert_int_eq(y[1], 20);
	ck_assert_int_eq(y[2], 10); /* (30-10)·0.5 */
	ck_assert_int_eq(y[3], 1);  /* 0.5 rounds away from zero */

	reset();
	uint8_t c[4] = {1, 2, 3, 4}, d[2] = {5, 6}, z[6];
	struct eng_tensor *in2[2] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 1, 2}, 1.0f, 0, c),
				     mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 1.0f, 0, d)};
	struct eng_tensor *out2[1] = {mk(ENG_DT_U8, 4, (int[]){1, 3, 1, 2}, 1.0f, 0, z)};
	struct eng_node n2 = node(ENG_OP_CONCATENATION, 2, in2, 1, out2);
	n2.opts.concat.axis = 1;
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_CONCATENATION), &n2), 0);
	ck_assert_mem_eq(z, ((uint8_t[]){1, 2, 3, 4, 5, 6}), 6);
}
END_TEST

START_TEST(split_reshape_resize)
{
	reset();
	int32_t axis = 3;
	uint8_t x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y0[4], y1[4];
	struct eng_tensor *in[2] = {mk(ENG_DT_I32, 1, (int[]){1}, 0, 0, &axis),
				    mk(ENG_DT_U8, 4, (int[]){1, 1, 2, 4}, 1.0f, 0, x)};
	struct eng_tensor *out[2] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 2, 2}, 1.0f, 0, y0),
				     mk(ENG_DT_U8, 4, (int[]){1, 1, 2, 2}, 1.0f, 0, y1)};
	struct eng_node n = node(ENG_OP_SPLIT, 2, in, 2, out);
	n.opts.split.num_splits = 2;
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_SPLIT), &n), 0);
	ck_assert_mem_eq(y0, ((uint8_t[]){1, 2, 5, 6}), 4);
	ck_assert_mem_eq(y1, ((uint8_t[]){3, 4, 7, 8}), 4);

	reset();
	uint8_t r[4] = {1, 2, 3, 4}, ry[16];
	struct eng_tensor *rin[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, r)};
	struct eng_tensor *rout[1] = {mk(ENG_DT_U8, 4, (int[]){1, 4, 4, 1}, 1.0f, 0, ry)};
	struct eng_node rn = node(ENG_OP_RESIZE_NEAREST_NEIGHBOR, 1, rin, 1, rout);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_RESIZE_NEAREST_NEIGHBOR), &rn), 0);
	ck_assert_mem_eq(ry, ((uint8_t[]){1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}), 16);

	/* bilinear 2x: row 0 is 10, 15, 20, 20 (1.5·... + 0.5 rounding for uint8) */
	reset();
	uint8_t bsrc[4] = {10, 20, 30, 40}, bdst[16];
	struct eng_tensor *bin[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, bsrc)};
	struct eng_tensor *bout[1] = {mk(ENG_DT_U8, 4, (int[]){1, 4, 4, 1}, 1.0f, 0, bdst)};
	struct eng_node bn = node(ENG_OP_RESIZE_BILINEAR, 1, bin, 1, bout);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_RESIZE_BILINEAR), &bn), 0);
	ck_assert_mem_eq(bdst, ((uint8_t[]){10, 15, 20, 20, 20, 25, 30, 30, 30, 35, 40, 40, 30, 35, 40, 40}), 16);

	int8_t isrc[4] = {10, 20, 30, 40}, idst[16];
	reset();
	struct eng_tensor *iin[1] = {mk(ENG_DT_I8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, isrc)};
	struct eng_tensor *iout[1] = {mk(ENG_DT_I8, 4, (int[]){1, 4, 4, 1}, 1.0f, 0, idst)};
	struct eng_node in8 = node(ENG_OP_RESIZE_BILINEAR, 1, iin, 1, iout);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_RESIZE_BILINEAR), &in8), 0);
	ck_assert_mem_eq(idst, bdst, 16); /* the integer path agrees here */
}
END_TEST

START_TEST(pools)
{
	reset();
	uint8_t x[4] = {1, 2, 4, 4}, y[1];
	struct eng_tensor *in[1] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 1}, 1.0f, 0, x)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 1}, 1.0f, 0, y)};
	struct eng_node n = node(ENG_OP_AVERAGE_POOL_2D, 1, in, 1, out);
	n.opts.pool = (struct eng_pool_opts){.padding = ENG_PAD_VALID, .stride_w = 2, .stride_h = 2,
					     .filter_w = 2, .filter_h = 2};
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_AVERAGE_POOL_2D), &n), 0);
	ck_assert_int_eq(y[0], 3); /* 11/4 = 2.75 -> 3 */
	n = node(ENG_OP_MAX_POOL_2D, 1, in, 1, out);
	n.opts.pool = (struct eng_pool_opts){.padding = ENG_PAD_VALID, .stride_w = 2, .stride_h = 2,
					     .filter_w = 2, .filter_h = 2};
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_MAX_POOL_2D), &n), 0);
	ck_assert_int_eq(y[0], 4);
}
END_TEST

START_TEST(mean_spatial)
{
	reset();
	uint8_t x[8] = {1, 10, 2, 20, 3, 30, 5, 41}, y[2];
	int32_t axes[2] = {1, 2};
	struct eng_tensor *in[2] = {mk(ENG_DT_U8, 4, (int[]){1, 2, 2, 2}, 0.5f, 0, x),
				    mk(ENG_DT_I32, 1, (int[]){2}, 0, 0, axes)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 4, (int[]){1, 1, 1, 2}, 0.5f, 0, y)};
	struct eng_node n = node(ENG_OP_MEAN, 2, in, 1, out);
	n.opts.mean.keep_dims = true;
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_MEAN), &n), 0);
	ck_assert_int_eq(y[0], 3);  /* 11/4 = 2.75 */
	/* 101·0.25: SRDHM by 0.5 gives 51 (50.5 up), /2 gives 26: the double rounding */
	ck_assert_int_eq(y[1], 26);

	/* 3 elements, zero point 10: (34 - 30)/3 = 1.33 -> 1; multiplier 2^31/3 */
	reset();
	uint8_t v[3] = {10, 11, 13}, r[1];
	int32_t ax3[1] = {-1};
	struct eng_tensor *in3[2] = {mk(ENG_DT_U8, 2, (int[]){1, 3}, 1.0f, 10, v),
				     mk(ENG_DT_I32, 1, (int[]){1}, 0, 0, ax3)};
	struct eng_tensor *out3[1] = {mk(ENG_DT_U8, 1, (int[]){1}, 1.0f, 0, r)};
	struct eng_node n3 = node(ENG_OP_MEAN, 2, in3, 1, out3);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_MEAN), &n3), 0);
	ck_assert_int_eq(r[0], 1);
}
END_TEST

START_TEST(hard_swish_close_to_float)
{
	reset();
	uint8_t x[256], y[256];
	for (int i = 0; i < 256; i++)
		x[i] = (uint8_t)i;
	const float si = 0.05f, so = 0.04f;
	const int zi = 128, zo = 20;
	struct eng_tensor *in[1] = {mk(ENG_DT_U8, 1, (int[]){256}, si, zi, x)};
	struct eng_tensor *out[1] = {mk(ENG_DT_U8, 1, (int[]){256}, so, zo, y)};
	struct eng_node n = node(ENG_OP_HARD_SWISH, 1, in, 1, out);
	ck_assert_int_eq(run(eng_kernel_get(ENG_OP_HARD_SWISH), &n), 0);
	for (int i = 0; i < 256; i++) {
		float v = si * (float)(i - zi);
		float hs = v * fminf(6.0f, fmaxf(0.0f, v + 3.0f)) / 6.0f;
		float q = fminf(255.0f, fmaxf(0.0f, roundf(hs / so) + (float)zo));
		ck_assert_msg(fabsf(q - (float)y[i]) <= 1.0f, "x=%d: got %d, float says %g", i, y[i],
			      (double)q);
	}
	ck_assert_int_eq(y[zi], zo); /* hard_swish(0) = 0 exactly */
}
END_TEST

/* ---- post-process ------------------------------------------------------------ */

struct pp_case {
	float enc[8][4], scores[8][3], anchors[8][4];
	float boxes[16][4], classes[16], sc[16], num;
};

static int run_pp(struct pp_case *c, int na, int ncls_bg, struct eng_postprocess_opts o)
{
	reset();
	int m = o.use_regular_nms ? o.max_detections : o.max_detections * o.max_classes_per_detection;
	struct eng_tensor *in[3] = {mk(ENG_DT_F32, 3, (int[]){1, na, 4}, 0, 0, c->enc),
				    mk(ENG_DT_F32, 3, (int[]){1, na, ncls_bg}, 0, 0, c->scores),
				    mk(ENG_DT_F32, 2, (int[]){na, 4}, 0, 0, c->anchors)};
	struct eng_tensor *out[4] = {mk(ENG_DT_F32, 3, (int[]){1, m, 4}, 0, 0, c->boxes),
				     mk(ENG_DT_F32, 2, (int[]){1, m}, 0, 0, c->classes),
				     mk(ENG_DT_F32, 2, (int[]){1, m}, 0, 0, c->sc),
				     mk(ENG_DT_F32, 1, (int[]){1}, 0, 0, &c->num)};
	struct eng_node n = node(ENG_OP_DETECTION_POSTPROCESS, 3, in, 4, out);
	n.opts.pp = o;
	return run(eng_kernel_get(ENG_OP_DETECTION_POSTPROCESS), &n);
}

static struct eng_postprocess_opts pp_opts(void)
{
	return (struct eng_postprocess_opts){.max_detections = 4, .max_classes_per_detection = 1,
					     .detections_per_class = 4, .nms_score_threshold = 0.05f,
					     .nms_iou_threshold = 0.5f, .num_classes = 2,
					     .y_scale = 10, .x_scale = 10, .h_scale = 5, .w_scale = 5};
}

START_TEST(nms_ties_keep_anchor_order)
{
	struct pp_case c = {0};
	const float sc[4] = {0.5f, 0.9f, 0.5f, 0.9f};
	for (int i = 0; i < 4; i++) {
		/* disjoint unit boxes at x = 2i: zero encodings decode to the anchors */
		c.anchors[i][0] = 0.5f;
		c.anchors[i][1] = 2.0f * (float)i + 0.5f;
		c.anchors[i][2] = 1.0f;
		c.anchors[i][3] = 1.0f;
		c.scores[i][1] = sc[i];
	}
	ck_assert_int_eq(run_pp(&c, 4, 3, pp_opts()), 0);
	ck_assert_float_eq(c.num, 4.0f);
	/* equal scores keep anchor order: 1, 3, then 0, 2 */
	ck_assert_float_eq(c.boxes[0][1], 2.0f);
	ck_assert_float_eq(c.boxes[1][1], 6.0f);
	ck_assert_float_eq(c.boxes[2][1], 0.0f);
	ck_assert_float_eq(c.boxes[3][1], 4.0f);
	ck_assert_float_eq(c.sc[0], 0.9f);
	ck_assert_float_eq(c.classes[0], 0.0f); /* background column removed */
	ck_assert_float_eq(c.boxes[0][3], 3.0f); /* xmax = xc + w/2 */
}
END_TEST

START_TEST(pp_uint8_inputs)
{
	/* uint8 encodings at their zero point decode to the anchors; uint8 scores q/256 */
	static uint8_t enc[4][4], sc[4][3];
	static float anc[4][4], ob[4][4], ocl[4], os[4], on;
	const uint8_t q[4] = {128, 230, 128, 230};
	for (int i = 0; i < 4; i++) {
		memset(enc[i], 100, 4);
		anc[i][0] = 0.5f;
		anc[i][1] = 2.0f * (float)i + 0.5f;
		anc[i][2] = anc[i][3] = 1.0f;
		sc[i][0] = 255;
		sc[i][1] = q[i];
		sc[i][2] = 3;
	}
	for (int regular = 0; regular < 2; regular++) {
		reset();
		struct eng_tensor *in[3] = {mk(ENG_DT_U8, 3, (int[]){1, 4, 4}, 0.1f, 100, enc),
					    mk(ENG_DT_U8, 3, (int[]){1, 4, 3}, 1.0f / 256, 0, sc),
					    mk(ENG_DT_F32, 2, (int[]){4, 4}, 0, 0, anc)};
		struct eng_tensor *out[4] = {mk(ENG_DT_F32, 3, (int[]){1, 4, 4}, 0, 0, ob),
					     mk(ENG_DT_F32, 2, (int[]){1, 4}, 0, 0, ocl),
					     mk(ENG_DT_F32, 2, (int[]){1, 4}, 0, 0, os),
					     mk(ENG_DT_F32, 1, (int[]){1}, 0, 0, &on)};
		struct eng_node n = node(ENG_OP_DETECTION_POSTPROCESS, 3, in, 4, out);
		n.opts.pp = pp_opts();
		n.opts.pp.use_regular_nms = regular;
		ck_assert_int_eq(run(eng_kernel_get(ENG_OP_DETECTION_POSTPROCESS), &n), 0);
		ck_assert_float_eq(on, 4.0f);
		ck_assert_float_eq(os[0], 230.0f / 256.0f);
		ck_assert_float_eq(ob[0][1], 2.0f); /* anchor 1 before anchor 3 (tie) */
		ck_assert_float_eq(ob[1][1], 6.0f);
		ck_assert_float_eq(os[2], 0.5f);
		ck_assert_float_eq(ocl[2], 0.0f);
	}
}
END_TEST

START_TEST(nms_regular_vs_fast)
{
	struct pp_case c = {0};
	/* two almost identical boxes; anchor 0 is best in both classes */
	for (int i = 0; i < 2; i++) {
		c.anchors[i][0] = 0.5f;
		c.anchors[i][1] = 0.5f + 0.01f * (float)i;
		c.anchors[i][2] = 1.0f;
		c.anchors[i][3] = 1.0f;
	}
	c.scores[0][1] = 0.9f;
	c.scores[0][2] = 0.8f;
	c.scores[1][1] = 0.85f;
	c.scores[1][2] = 0.1f;
	struct eng_postprocess_opts o = pp_opts();
	ck_assert_int_eq(run_pp(&c, 2, 3, o), 0);
	ck_assert_float_eq(c.num, 1.0f); /* fast: anchor 1 suppressed by anchor 0 */
	ck_assert_float_eq(c.classes[0], 0.0f);
	ck_assert_float_eq(c.sc[0], 0.9f);
	ck_assert_float_eq(c.sc[1], 0.0f); /* unused rows are zero */

	o.use_regular_nms = true;
	ck_assert_int_eq(run_pp(&c, 2, 3, o), 0);
	ck_assert_float_eq(c.num, 2.0f); /* regular: anchor 0 once per class */
	ck_assert_float_eq(c.classes[0], 0.0f);
	ck_assert_float_eq(c.sc[0], 0.9f);
	ck_assert_float_eq(c.classes[1], 1.0f);
	ck_assert_float_eq(c.sc[1], 0.8f);
	ck_assert_float_eq(c.boxes[1][1], 0.0f);
}
END_TEST

/* Fast NMS on many random boxes against a direct O(n^2) greedy NMS written here. */
START_TEST(nms_many_boxes_match_direct_greedy)
{
	enum { NA = 300, MD = 25 };
	static float enc[NA][4], sc[NA][2], anc[NA][4], ob[MD][4], ocl[MD], os[MD], on;
	static float box[NA][4];
	static int order[NA], tmp[NA], sel[MD];
	static uint8_t dead[NA];
	srand(17);
	for (int it = 0; it < 20; it++) {
		memset(enc, 0, sizeof(enc));
		for (int i = 0; i < NA; i++) {
			anc[i][0] = (float)(rand() % 100) / 100.0f;
			anc[i][1] = (float)(rand() % 100) / 100.0f;
			anc[i][2] = 0.05f + (float)(rand() % 30) / 100.0f;
			anc[i][3] = 0.05f + (float)(rand() % 30) / 100.0f;
			sc[i][0] = 0.0f;
			sc[i][1] = (float)(rand() % 12) / 12.0f; /* many ties, some below 0.05 */
			box[i][0] = anc[i][0] - 0.5f * anc[i][2];
			box[i][1] = anc[i][1] - 0.5f * anc[i][3];
			box[i][2] = anc[i][0] + 0.5f * anc[i][2];
			box[i][3] = anc[i][1] + 0.5f * anc[i][3];
		}
		reset();
		struct eng_tensor *in[3] = {mk(ENG_DT_F32, 3, (int[]){1, NA, 4}, 0, 0, enc),
					    mk(ENG_DT_F32, 3, (int[]){1, NA, 2}, 0, 0, sc),
					    mk(ENG_DT_F32, 2, (int[]){NA, 4}, 0, 0, anc)};
		struct eng_tensor *out[4] = {mk(ENG_DT_F32, 3, (int[]){1, MD, 4}, 0, 0, ob),
					     mk(ENG_DT_F32, 2, (int[]){1, MD}, 0, 0, ocl),
					     mk(ENG_DT_F32, 2, (int[]){1, MD}, 0, 0, os),
					     mk(ENG_DT_F32, 1, (int[]){1}, 0, 0, &on)};
		struct eng_node n = node(ENG_OP_DETECTION_POSTPROCESS, 3, in, 4, out);
		n.opts.pp = (struct eng_postprocess_opts){.max_detections = MD, .max_classes_per_detection = 1,
							  .detections_per_class = MD, .nms_score_threshold = 0.05f,
							  .nms_iou_threshold = 0.3f, .num_classes = 1,
							  .y_scale = 10, .x_scale = 10, .h_scale = 5, .w_scale = 5};
		ck_assert_int_eq(run(eng_kernel_get(ENG_OP_DETECTION_POSTPROCESS), &n), 0);
		/* direct greedy NMS: stable descending order, suppress IoU > 0.3 */
		float v[NA];
		int nk = 0;
		for (int i = 0; i < NA; i++)
			if (sc[i][1] >= 0.05f) {
				v[nk] = sc[i][1];
				order[nk++] = i;
			}
		int pos[NA];
		for (int i = 0; i < nk; i++)
			pos[i] = i;
		pp_argsort_desc(v, pos, nk, tmp);
		memset(dead, 0, sizeof(dead));
		int ns = 0;
		for (int i = 0; i < nk && ns < MD; i++) {
			int ai = order[pos[i]];
			if (dead[ai])
				continue;
			sel[ns++] = ai;
			for (int j = i + 1; j < nk; j++) {
				int bj = order[pos[j]];
				float *A = box[ai], *B = box[bj];
				float aa = (A[2] - A[0]) * (A[3] - A[1]), ab = (B[2] - B[0]) * (B[3] - B[1]);
				float ih = fminf(A[2], B[2]) - fmaxf(A[0], B[0]);
				float iw = fminf(A[3], B[3]) - fmaxf(A[1], B[1]);
				float inter = fmaxf(ih, 0.0f) * fmaxf(iw, 0.0f);
				if (inter / (aa + ab - inter) > 0.3f)
					dead[bj] = 1;
			}
		}
		ck_assert_float_eq(on, (float)ns);
		for (int k = 0; k < ns; k++) {
			ck_assert_float_eq(os[k], sc[sel[k]][1]);
			ck_assert_float_eq_tol(ob[k][1], box[sel[k]][1], 1e-6f);
			ck_assert_float_eq_tol(ob[k][0], box[sel[k]][0], 1e-6f);
		}
	}
}
END_TEST

/*
 * The selected post-process kernel (counting sort, lazy decoding, early-out
 * NMS) against the reference one, byte for byte, on random inputs: uint8 and
 * float tensors, scores from a handful of values (many ties, -0.0 next to
 * +0.0), every anchor a candidate or a real threshold, 1-3 classes per
 * detection, 3-4 or 36-37 score columns, a background column or not, anchors
 * constant or an input, and now and then a negative anchor height that makes
 * a box inverted (both must reject the call).
 */
START_TEST(pp_fast_matches_reference)
{
	enum { NA = 700, CMAX = 37, MD = 15, MC = 3, M = MD * MC };
	static uint8_t encq[NA][4], scq[NA * CMAX], ancq[NA][4];
	static float encf[NA][4], scf[NA * CMAX], ancf[NA][4];
	static float ob[2][M][4], ocl[2][M], os[2][M], on[2];
	const struct eng_kernel *kern[2] = {eng_kernel_get(ENG_OP_DETECTION_POSTPROCESS),
					    eng_kernel_get_ref(ENG_OP_DETECTION_POSTPROCESS)};
	ck_assert_ptr_ne(kern[0], kern[1]);
	srand(29);
	int rejected = 0, compared = 0;
	for (int it = 0; it < 120; it++) {
		const bool su8 = it & 1, bu8 = it & 2, au8 = it & 4;
		const int na = it % 9 == 0 ? 1 + rand() % 40 : NA;
		const int C = it % 3 == 1 ? CMAX : 4; /* score columns */
		const int nc = it % 5 == 0 ? C : C - 1;
		const bool anchors_in = it & 8; /* an input, not a constant */
		/* clusters: one box repeated, its copies suppressing each other, and
		 * a second, disjoint one on the lowest-scoring anchors, so that the
		 * NMS walks past hundreds of candidates to reach it */
		const bool clusters = it % 7 == 3 && na == NA;
		const int levels = 2 + rand() % 6; /* distinct score values: ties everywhere */
		for (int i = 0; i < na; i++) {
			for (int k = 0; k < 4; k++) {
				encq[i][k] = (uint8_t)(118 + rand() % 21);
				encf[i][k] = (float)(rand() % 200 - 100) / 100.0f;
			}
			ancq[i][0] = (uint8_t)(rand() % 256);
			ancq[i][1] = (uint8_t)(rand() % 256);
			ancq[i][2] = (uint8_t)(130 + rand() % 60);
			ancq[i][3] = (uint8_t)(130 + rand() % 60);
			for (int k = 0; k < 4; k++)
				ancf[i][k] = ((float)ancq[i][k] - 128.0f) / 128.0f;
			for (int c = 0; c < C; c++) {
				/* many columns: mostly zero, so that a row's maximum sits anywhere */
				int l = C < CMAX || rand() % 8 == 0 ? rand() % levels : 0;
				scq[i * C + c] = (uint8_t)(l * 250 / levels);
				scf[i * C + c] = l == 0 ? (rand() & 1 ? -0.0f : 0.0f) : (float)l / (float)levels;
			}
		}
		if (clusters)
			for (int i = 0; i < na; i++) {
				const bool far = i % 9 == 0;
				for (int k = 0; k < 4; k++) {
					encq[i][k] = 128;
					encf[i][k] = 0.0f;
				}
				ancq[i][0] = ancq[i][1] = (uint8_t)(far ? 230 : 160);
				ancq[i][2] = ancq[i][3] = 150;
				for (int k = 0; k < 4; k++)
					ancf[i][k] = ((float)ancq[i][k] - 128.0f) / 128.0f;
				for (int c = 0; c < C; c++) {
					int l = far ? (c == 1) : 2 + rand() % (levels > 2 ? levels - 2 : 1);
					scq[i * C + c] = (uint8_t)(l * 250 / (levels + 2));
					scf[i * C + c] = (float)l / (float)(levels + 2);
				}
			}
		if (it % 13 == 6) { /* one inverted box */
			ancq[na / 2][2] = 100;
			ancf[na / 2][2] = -0.2f;
		}
		struct eng_postprocess_opts o = {
			.max_detections = 1 + rand() % MD, .max_classes_per_detection = 1 + rand() % MC,
			.detections_per_class = 1 + rand() % MD,
			.nms_score_threshold = it % 3 == 0 || clusters ? -20.0f : 0.4f,
			.nms_iou_threshold = (float)(1 + rand() % 9) / 10.0f, .num_classes = nc,
			.y_scale = 10, .x_scale = 10, .h_scale = 5, .w_scale = 5,
			.use_regular_nms = it % 4 == 3};
		int m = o.use_regular_nms ? o.max_detections : o.max_detections * o.max_classes_per_detection;
		int rc[2];
		for (int v = 0; v < 2; v++) {
			reset();
			memset(ob[v], 0x5a, sizeof(ob[v]));
			memset(ocl[v], 0x5a, sizeof(ocl[v]));
			memset(os[v], 0x5a, sizeof(os[v]));
			memset(&on[v], 0x5a, sizeof(on[v]));
			struct eng_tensor *in[3] = {
				bu8 ? mk(ENG_DT_U8, 3, (int[]){1, na, 4}, 0.1f, 128, encq)
				    : mk(ENG_DT_F32, 3, (int[]){1, na, 4}, 0, 0, encf),
				su8 ? mk(ENG_DT_U8, 3, (int[]){1, na, C}, 1.0f / 256, 0, scq)
				    : mk(ENG_DT_F32, 3, (int[]){1, na, C}, 0, 0, scf),
				au8 ? mk(ENG_DT_U8, 2, (int[]){na, 4}, 1.0f / 128, 128, ancq)
				    : mk(ENG_DT_F32, 2, (int[]){na, 4}, 0, 0, ancf)};
			struct eng_tensor *out[4] = {mk(ENG_DT_F32, 3, (int[]){1, m, 4}, 0, 0, ob[v]),
						     mk(ENG_DT_F32, 2, (int[]){1, m}, 0, 0, ocl[v]),
						     mk(ENG_DT_F32, 2, (int[]){1, m}, 0, 0, os[v]),
						     mk(ENG_DT_F32, 1, (int[]){1}, 0, 0, &on[v])};
			if (anchors_in) {
				in[2]->is_const = false;
				in[2]->offset = 0;
				g_arena = au8 ? (uint8_t *)ancq : (uint8_t *)ancf;
			}
			struct eng_node n = node(ENG_OP_DETECTION_POSTPROCESS, 3, in, 4, out);
			n.opts.pp = o;
			rc[v] = run(kern[v], &n);
			g_arena = NULL;
		}
		ck_assert_msg(rc[0] == rc[1], "it %d: fast rc %d, reference rc %d", it, rc[0], rc[1]);
		if (rc[0]) {
			rejected++;
			continue;
		}
		compared++;
		ck_assert_msg(memcmp(&on[0], &on[1], sizeof(on[0])) == 0, "it %d: %g vs %g detections",
			      it, (double)on[0], (double)on[1]);
		ck_assert_msg(memcmp(ob[0], ob[1], sizeof(ob[0])) == 0, "it %d: boxes differ", it);
		ck_assert_msg(memcmp(ocl[0], ocl[1], sizeof(ocl[0])) == 0, "it %d: classes differ", it);
		ck_assert_msg(memcmp(os[0], os[1], sizeof(os[0])) == 0, "it %d: scores differ", it);
	}
	/* both kinds of case were exercised */
	ck_assert_int_gt(rejected, 0);
	ck_assert_int_gt(compared, 100);
}
END_TEST

START_TEST(pp_rejects_bad_options)
{
	struct pp_case c = {0};
	struct eng_postprocess_opts o = pp_opts();
	o.nms_iou_threshold = 0.0f;
	ck_assert_int_ne(run_pp(&c, 2, 3, o), 0);
	o = pp_opts();
	o.num_classes = 5;
	ck_assert_int_ne(run_pp(&c, 2, 3, o), 0);
}
END_TEST

START_TEST(argsort_is_stable)
{
	float v[6] = {1, 3, 3, 2, 3, 1};
	int idx[6] = {0, 1, 2, 3, 4, 5}, tmp[6];
	pp_argsort_desc(v, idx, 6, tmp);
	ck_assert_mem_eq(idx, ((int[]){1, 2, 4, 3, 0, 5}), sizeof(idx));
}
END_TEST

START_TEST(op_names_and_table)
{
	ck_assert_str_eq(eng_op_name(ENG_OP_CONV_2D), "CONV_2D");
	ck_assert_str_eq(eng_op_name(ENG_OP_DETECTION_POSTPROCESS), "TFLite_Detection_PostProcess");
	ck_assert_str_eq(eng_op_name(ENG_OP__COUNT), "UNKNOWN");
	for (int t = 0; t < ENG_OP__COUNT; t++) {
		ck_assert_ptr_nonnull(eng_kernel_get((enum eng_op_type)t));
		ck_assert_ptr_nonnull(eng_kernel_get_ref((enum eng_op_type)t));
		ck_assert_str_eq(eng_kernel_get((enum eng_op_type)t)->name,
				 eng_op_name((enum eng_op_type)t));
	}
	ck_assert_ptr_null(eng_kernel_get(ENG_OP__COUNT));
}
END_TEST

START_TEST(radix_argsort_matches_stable_sort)
{
	srand(13);
	static float v[3000];
	static int a[3000], b[3000], tmp[3000];
	static uint32_t work[9000];
	for (int it = 0; it < 60; it++) {
		int n = 1 + rand() % 3000;
		for (int i = 0; i < n; i++) {
			int r = rand() % 9;
			/* ties, signed zeros, negatives, tiny and large magnitudes */
			v[i] = r == 0   ? 0.0f
			       : r == 1 ? -0.0f
			       : r == 2 ? (float)(rand() % 5) / 4.0f
			       : r == 3 ? -(float)(rand() % 5)
			       : r == 4 ? 1e-30f * (float)(rand() % 3)
			       : r == 5 ? -3e30f
					: (float)(rand() % 20001 - 10000) / 1000.0f;
			a[i] = i;
		}
		pp_argsort_desc(v, a, n, tmp);
		pp_radix_argsort_desc(v, n, b, work);
		ck_assert_mem_eq(a, b, (size_t)n * sizeof(int));
	}
}
END_TEST

START_TEST(partial_argsort_heap_order)
{
	/* std::partial_sort (libstdc++) of indices by value, descending: a hand trace
	 * of make_heap / heap select / sort_heap puts the later 2.0 first */
	int idx[3];
	pp_partial_argsort_desc((const float[]){1, 2, 2}, 3, 2, idx);
	ck_assert_int_eq(idx[0], 2);
	ck_assert_int_eq(idx[1], 1);
	/* all equal: heap order 0, 1 */
	pp_partial_argsort_desc((const float[]){5, 5, 5}, 3, 2, idx);
	ck_assert_int_eq(idx[0], 0);
	ck_assert_int_eq(idx[1], 1);
	/* k == 1: first maximum */
	pp_partial_argsort_desc((const float[]){1, 3, 3}, 3, 1, idx);
	ck_assert_int_eq(idx[0], 1);
	/* distinct values: a plain descending order */
	int big[6];
	pp_partial_argsort_desc((const float[]){0.1f, 0.9f, 0.4f, 0.7f, 0.2f, 0.8f}, 6, 4, big);
	ck_assert_mem_eq(big, ((int[]){1, 5, 3, 2}), 4 * sizeof(int));
}
END_TEST

static Suite *ops_suite(void)
{
	Suite *s = suite_create("ops");
	TCase *q = tcase_create("quant");
	tcase_add_test(q, srdhm_cases);
	tcase_add_test(q, rdbpot_ties);
	tcase_add_test(q, quantize_multiplier_edges);
	tcase_add_test(q, mul_by_qm_double_rounding);
	tcase_add_test(q, activation_ranges);
	tcase_add_test(q, saturating_conversions);
	suite_add_tcase(s, q);
	TCase *c = tcase_create("conv");
	tcase_add_test(c, conv_same_padding_asymmetry);
	tcase_add_test(c, conv_uint8_weight_zero_point);
	tcase_add_test(c, conv_saturation);
	tcase_add_test(c, conv_fast_matches_reference);
	tcase_add_test(c, dwconv_fast_matches_reference);
	tcase_add_test(c, dwconv_depth_multiplier);
	tcase_add_test(c, conv_threads_match_reference);
	tcase_add_test(c, conv_float);
	tcase_add_test(c, conv_f32_fast_matches_reference);
	tcase_add_test(c, prepare_rejects_bad_shapes);
	suite_add_tcase(s, c);
	TCase *e = tcase_create("elementwise");
	tcase_add_test(e, add_different_scales);
	tcase_add_test(e, add_scalar_broadcast_and_saturation);
	tcase_add_test(e, add_fast_matches_reference);
	tcase_add_test(e, mul_quantized);
	tcase_add_test(e, arith_broadcast_fast_matches_reference);
	tcase_add_test(e, logistic_and_relu6);
	tcase_add_test(e, unary_tables_match_reference);
	tcase_add_test(e, concat_requantizes);
	tcase_add_test(e, split_reshape_resize);
	tcase_add_test(e, pools);
	tcase_add_test(e, mean_spatial);
	tcase_add_test(e, hard_swish_close_to_float);
	tcase_add_test(e, op_names_and_table);
	suite_add_tcase(s, e);
	TCase *p = tcase_create("postprocess");
	tcase_add_test(p, nms_ties_keep_anchor_order);
	tcase_add_test(p, nms_regular_vs_fast);
	tcase_add_test(p, pp_uint8_inputs);
	tcase_add_test(p, nms_many_boxes_match_direct_greedy);
	tcase_add_test(p, pp_fast_matches_reference);
	tcase_add_test(p, pp_rejects_bad_options);
	tcase_add_test(p, argsort_is_stable);
	tcase_add_test(p, partial_argsort_heap_order);
	tcase_add_test(p, radix_argsort_matches_stable_sort);
	suite_add_tcase(s, p);
	return s;
}

/* Cases that need a CPU feature the machine may lack. */
static Suite *avx2_suite(void)
{
	Suite *s = suite_create("ops-avx2");
	TCase *q = tcase_create("simd");
	tcase_add_test(q, simd_requant_matches_scalar);
	suite_add_tcase(s, q);
	return s;
}

static const char *avx2_missing(void)
{
	return simd_have_avx2() ? NULL : "this CPU has no AVX2";
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, ops_suite, NULL},
		{"avx2", avx2_suite, avx2_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
