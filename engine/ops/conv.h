/*
 * conv.h — prepared data shared by the reference (conv.c) and fast
 * (conv_fast.c) convolution kernels.  Internal to engine/ops.
 */
#ifndef DETD_ENGINE_OPS_CONV_H
#define DETD_ENGINE_OPS_CONV_H

#include "kernels.h"

struct conv_prep {
	enum eng_dtype type;
	bool dw;
	int nb, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dwl, pt, pl, dm;
	int32_t in_zp, w_zp, out_zp, act_lo, act_hi;
	float f_lo, f_hi;
	int32_t *mult; /* per output channel */
	int *shift;
	/* fast path (conv_fast.c) */
	bool fast;
	int K, Kp, OCp;
	int8_t *wpack;   /* [OCp/16][Kp/4][16][4]: weights shifted to int8 */
	int32_t *cterm;  /* per output channel: bias and zero-point terms */
	int32_t xcoef;   /* coefficient of the per-pixel input sum */
	int32_t *wdw;    /* depthwise: [kh*kw][OCp] weights minus zero point */
};

int conv_prepare_common(struct eng_node *n, bool dw, char *err, size_t errlen);
int conv_eval_ref(const struct eng_node *n, const struct eng_exec *x);
void conv_release(struct eng_node *n);

#endif
