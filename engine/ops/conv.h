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
	int16_t *wpack;  /* [OCp/8][Kp/2][8][2]: weights minus zero point */
	int32_t *cterm;  /* per output channel: bias and zero-point terms */
	int16_t *wdw;    /* depthwise: [OCp/8][taps/2][8][2] weights minus zero point, taps paired */
	uint8_t *zrow;   /* depthwise: OCp bytes of the input zero point (padding taps read it) */
	int ntp;         /* depthwise: taps rounded up to even */
};

int conv_prepare_common(struct eng_node *n, bool dw, char *err, size_t errlen);
int conv_eval_ref(const struct eng_node *n, const struct eng_exec *x);
void conv_release(struct eng_node *n);

#endif
