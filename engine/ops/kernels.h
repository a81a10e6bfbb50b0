/*
 * kernels.h — shared helpers and the per-op kernel entries (internal to engine/ops).
 *
 * Each ops/<family>.c file defines `const struct eng_kernel` entries; the
 * table in ops/table.c picks, per op type, the reference entry or a faster
 * one verified to give the same bytes.  Nothing here has state.
 */
#ifndef DETD_ENGINE_OPS_KERNELS_H
#define DETD_ENGINE_OPS_KERNELS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quant.h"

#define KERR(err, errlen, ...)                                                   \
	do {                                                                     \
		if ((err) && (errlen))                                           \
			snprintf((err), (errlen), __VA_ARGS__);                  \
	} while (0)

static inline float t_scale(const struct eng_tensor *t)
{
	return (t && t->has_quant && t->q.n > 0 && t->q.scale) ? t->q.scale[0] : 0.0f;
}

static inline int32_t t_zp(const struct eng_tensor *t)
{
	return (t && t->has_quant && t->q.n > 0 && t->q.zero_point) ? (int32_t)t->q.zero_point[0]
								     : 0;
}

static inline size_t t_numel(const struct eng_tensor *t)
{
	size_t n = 1;
	for (int i = 0; i < t->ndim; i++)
		n *= (size_t)(t->dims[i] > 0 ? t->dims[i] : 0);
	return n;
}

static inline size_t dt_size(enum eng_dtype t)
{
	switch (t) {
	case ENG_DT_F32:
	case ENG_DT_I32:
		return 4;
	case ENG_DT_I64:
		return 8;
	case ENG_DT_F16:
	case ENG_DT_I16:
		return 2;
	default:
		return 1;
	}
}

static inline bool dt_is_q8(enum eng_dtype t)
{
	return t == ENG_DT_U8 || t == ENG_DT_I8;
}

/* Read element i of an 8-bit quantized tensor as int32. */
static inline int32_t q8_get(enum eng_dtype t, const void *p, size_t i)
{
	return t == ENG_DT_I8 ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline void q8_put(enum eng_dtype t, void *p, size_t i, int32_t v)
{
	if (t == ENG_DT_I8)
		((int8_t *)p)[i] = (int8_t)v;
	else
		((uint8_t *)p)[i] = (uint8_t)v;
}

static inline int32_t clamp_i32(int32_t v, int32_t lo, int32_t hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

/*
 * An 8-bit tensor's quantization must be usable: finite positive scales and
 * zero points inside the type (a hostile file must not reach a float-to-int
 * conversion of infinity).  Non-8-bit tensors pass.  0 or -EINVAL with err.
 */
int ops_check_q8(const struct eng_tensor *t, const char *what, char *err, size_t errlen);

/* TFLite's output size and leading padding for one spatial dimension. */
int ops_out_size(enum eng_padding pad, int in, int k, int stride, int dilation);
int ops_pad_before(int in, int out, int k, int stride, int dilation);

/* y[i] = lut[x[i]] for i < n (y may be x): vpermi2b (x86/vk_lut.c) with vbmi,
 * which the caller takes from eng_exec.lut_vbmi (eng_kset_has_vbmi), else the
 * byte loop. */
void ops_lut8(uint8_t *y, const uint8_t *x, size_t n, const uint8_t *lut, bool vbmi);

/* Common input checks: n_in/n_out and non-NULL tensors. */
int ops_check_io(const struct eng_node *n, int min_in, int min_out, char *err, size_t errlen);

/*
 * Split [0, n) into up to min(threads, OPS_MAX_THREADS) contiguous slices and
 * run fn on each, slice 0 on the calling thread, the others on the context's
 * persistent threads (x->pool, engine/pool.h).  Without a pool (kernels
 * called directly, e.g. by unit tests) the other slices run on short-lived
 * threads joined before returning.  slot (0..OPS_MAX_THREADS-1) selects
 * per-thread scratch.  Kernels use it only for large ops.
 */
#define OPS_MAX_THREADS 4
#define OPS_PARALLEL_MIN_MACS 2000000
typedef void (*ops_range_fn)(void *ctx, size_t begin, size_t end, int slot);
void ops_parallel_for(const struct eng_exec *x, int threads, size_t n, ops_range_fn fn, void *ctx);

extern const struct eng_kernel eng_k_conv_ref, eng_k_conv_fast;
extern const struct eng_kernel eng_k_conv_avxvnni, eng_k_conv_avx512vnni;
extern const struct eng_kernel eng_k_dwconv_avxvnni, eng_k_dwconv_avx512vnni;
extern const struct eng_kernel eng_k_conv_vk_avx2, eng_k_dwconv_vk_avx2;
extern const struct eng_kernel eng_k_dwconv_ref, eng_k_dwconv_fast;
extern const struct eng_kernel eng_k_add, eng_k_add_fast, eng_k_mul, eng_k_mul_fast;
extern const struct eng_kernel eng_k_add_avxvnni, eng_k_add_avx512vnni, eng_k_add_vk_avx2;
/* eng_k_add_*vnni's prepare with the given vk_add_fn (x86/vk.h; tests run the
 * SIMDe builds through it); eval and release are those of eng_k_add_avx512vnni. */
struct vk_add;
int add_vnni_prepare(struct eng_node *n,
		     void (*fn)(const struct vk_add *, const uint8_t *, const uint8_t *, uint8_t *, size_t),
		     char *err, size_t errlen);
extern const struct eng_kernel eng_k_concat, eng_k_split, eng_k_reshape;
extern const struct eng_kernel eng_k_logistic, eng_k_relu, eng_k_relu6, eng_k_hard_swish;
extern const struct eng_kernel eng_k_avgpool, eng_k_maxpool, eng_k_mean;
extern const struct eng_kernel eng_k_resize_nn, eng_k_resize_bilinear;
extern const struct eng_kernel eng_k_quantize, eng_k_dequantize;
extern const struct eng_kernel eng_k_relu_lut, eng_k_relu6_lut, eng_k_hard_swish_lut, eng_k_quantize_lut;
extern const struct eng_kernel eng_k_postprocess, eng_k_postprocess_fast;

#endif
