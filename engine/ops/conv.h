/*
 * conv.h — prepared data shared by the reference (conv.c) and fast
 * (conv_fast.c) convolution kernels.  Internal to engine/ops.
 */
#ifndef DETD_ENGINE_OPS_CONV_H
#define DETD_ENGINE_OPS_CONV_H

#include "kernels.h"

struct simd_rq8;

struct conv_prep {
	enum eng_dtype type;
	bool dw;
	int nb, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dwl, pt, pl, dm;
	int32_t in_zp, w_zp, out_zp, act_lo, act_hi;
	float f_lo, f_hi;
	bool round_up; /* int8 CONV_2D: q_mul_by_qm_up (TFLite's GEMM rounding) */
	int32_t *mult; /* per output channel */
	int *shift;
	/* fast path (conv_fast.c) */
	bool fast;
	int K, Kp, OCp;
	int16_t *wpack;  /* [OCp/8][Kp/2][8][2]: weights minus zero point */
	int32_t *cterm;  /* per output channel: bias and zero-point terms */
	struct simd_rq8 *rq; /* per 8 channels: requantization constants (simd.h) */
	int16_t *wdw;    /* depthwise: [OCp/8][taps/2][8][2] weights minus zero point, taps paired */
	int16_t *wdw16;  /* depthwise: per 16 channels and tap pair, [c0-3|c8-11] then [c4-7|c12-15] */
	uint8_t *zrow;   /* depthwise: OCp bytes of the input zero point (padding taps read it) */
	int ntp;         /* depthwise: taps rounded up to even */
	float *wf;       /* float: conv [taps][ic][OCp], depthwise [taps][OCp] */
	float *bf;       /* float: bias padded to OCp, or NULL (no bias: nothing is added) */
	const float *wsrc; /* float conv: the model's filter, for conv_f32_sum_split() */
	struct conv_vnni *vnni; /* VNNI kernel sets (conv_vnni.c), or NULL */
};

int conv_prepare_common(struct eng_node *n, bool dw, char *err, size_t errlen);
int conv_eval_ref(const struct eng_node *n, const struct eng_exec *x);
void conv_release(struct eng_node *n);
/* float CONV_2D outputs that TFLite's GEMM sums in another order than tap by
 * tap (conv.c); no channel below conv_f32_first_reordered() is one of them */
int conv_f32_first_reordered(const struct conv_prep *p);
bool conv_f32_split_sum(const struct conv_prep *p, int b, int oy, int ox, int o);
float conv_f32_sum_split(const struct conv_prep *p, const float *x, const float *w, int b,
			 int oy, int ox, int o);

/* conv_fast_f32.c: float32 variants (AVX2), same summation order as the reference. */
int conv_prepare_f32_fast(const struct eng_node *n, struct conv_prep *p);
void conv_eval_f32_fast(const struct conv_prep *p, const float *x, float *y);

/* conv_fast.c: the AVX2 kernel set (falls back to the reference loops by itself). */
int conv_prepare_fast(struct eng_node *n, char *err, size_t errlen);
int dwconv_prepare_fast(struct eng_node *n, char *err, size_t errlen);
int conv_eval_fast(const struct eng_node *n, const struct eng_exec *x);

/*
 * conv_vnni.c: CONV_2D on the u8×s8 VNNI GEMM (x86/vk.h).  conv_vnni_prepare()
 * packs the weights of a prepared 8-bit conv node for fn, or for rows_fn (the
 * windows read in place) where the shape allows and rows_fn is not NULL
 * (p->vnni); it leaves
 * p->vnni NULL (returns 0) when the node does not qualify, and returns -ENOMEM
 * on allocation failure.  conv_vnni_eval() runs a node with p->vnni set.
 */
#include "x86/vk.h"
int conv_vnni_prepare(struct eng_node *n, struct conv_prep *p, vk_gemm_fn fn,
		      vk_gemm_rows_fn rows_fn);
/* The same for DEPTHWISE_CONV_2D (depth multiplier 1); vl: int32 lanes of fn's
 * vectors, gt: taps per lane (4, or 2 for vk2_dw: struct vk_dw). */
int conv_vnni_dw_prepare(struct eng_node *n, struct conv_prep *p, vk_dw_fn fn, int vl, int gt);
int conv_vnni_eval(const struct eng_node *n, const struct eng_exec *x);
void conv_vnni_free(struct conv_prep *p);

#endif
