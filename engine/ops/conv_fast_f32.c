/*
 * conv_fast_f32.c — CONV_2D and DEPTHWISE_CONV_2D for float32 with AVX2.
 *
 * Byte-identical to the reference loops of conv.c: every output keeps the
 * reference's summation order (taps in ky, kx order, input channels inner),
 * products and sums are separate roundings (mul then add, never FMA), taps
 * outside the image are skipped rather than multiplied by zero (that would
 * turn a -0.0 sum into +0.0), and the bias is added last, only if present
 * (depthwise: the sum starts from the bias, as in TFLite's float kernel).
 * Vectorization runs across output channels, 8 per register.  Weights are
 * packed at prepare.  Inference worker thread.
 */
#include <math.h>

#include "conv.h"
#include "simd.h"

#define F32_MAX_TAPS 64

int conv_prepare_f32_fast(const struct eng_node *n, struct conv_prep *p)
{
	const int taps = p->kh * p->kw;
	const int ic = p->dw ? 1 : p->ic;
	p->OCp = (p->oc + 7) & ~7;
	p->wf = calloc((size_t)taps * ic * p->OCp, sizeof(*p->wf));
	if (!p->wf)
		return -ENOMEM;
	const float *w = n->in[1]->const_data;
	for (int o = 0; o < p->oc; o++)
		for (int t = 0; t < taps; t++)
			for (int c = 0; c < ic; c++) {
				/* conv filter [oc][kh][kw][ic]; depthwise [1][kh][kw][oc] */
				float v = p->dw ? w[(size_t)t * p->oc + o]
						: w[((size_t)o * taps + t) * p->ic + c];
				p->wf[((size_t)t * ic + c) * p->OCp + o] = v;
			}
	const float *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	if (bias) {
		p->bf = calloc((size_t)p->OCp, sizeof(*p->bf));
		if (!p->bf)
			return -ENOMEM;
		memcpy(p->bf, bias, (size_t)p->oc * sizeof(*p->bf));
	}
	p->wsrc = w;
	p->fast = true;
	return 0;
}

TGT void conv_eval_f32_fast(const struct conv_prep *p, const float *x, float *y)
{
	const int ic = p->dw ? 1 : p->ic, groups = p->OCp / 8;
	const __m256i tailmask[9] = {
		_mm256_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0),       _mm256_setr_epi32(-1, 0, 0, 0, 0, 0, 0, 0),
		_mm256_setr_epi32(-1, -1, 0, 0, 0, 0, 0, 0),     _mm256_setr_epi32(-1, -1, -1, 0, 0, 0, 0, 0),
		_mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0),   _mm256_setr_epi32(-1, -1, -1, -1, -1, 0, 0, 0),
		_mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0), _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0),
		_mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, -1),
	};
	const __m256 lo = _mm256_set1_ps(p->f_lo), hi = _mm256_set1_ps(p->f_hi);
	const float *tx[F32_MAX_TAPS];
	const float *tw[F32_MAX_TAPS];
	for (int b = 0; b < p->nb; b++)
		for (int oy = 0; oy < p->oh; oy++)
			for (int ox = 0; ox < p->ow; ox++) {
				int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
				int nt = 0;
				for (int ky = 0; ky < p->kh; ky++) {
					int iy = iy0 + p->dh * ky;
					if (iy < 0 || iy >= p->ih)
						continue;
					for (int kx = 0; kx < p->kw; kx++) {
						int ix = ix0 + p->dwl * kx;
						if (ix < 0 || ix >= p->iw)
							continue;
						tx[nt] = x + (((size_t)b * p->ih + iy) * p->iw + ix) * p->ic;
						tw[nt] = p->wf + (size_t)(ky * p->kw + kx) * ic * p->OCp;
						nt++;
					}
				}
				float *dst = y + (((size_t)b * p->oh + oy) * p->ow + ox) * p->oc;
				for (int g = 0; g < groups; g++) {
					int c0 = g * 8, cnt = p->oc - c0 < 8 ? p->oc - c0 : 8;
					__m256 acc = p->dw && p->bf ? _mm256_loadu_ps(p->bf + c0)
								    : _mm256_setzero_ps();
					for (int t = 0; t < nt; t++) {
						const float *wt = tw[t] + c0;
						if (p->dw) {
							/* input channel = output channel (depth multiplier 1) */
							__m256 xv = _mm256_maskload_ps(tx[t] + c0, tailmask[cnt]);
							acc = _mm256_add_ps(acc, _mm256_mul_ps(xv, _mm256_loadu_ps(wt)));
						} else {
							for (int c = 0; c < ic; c++)
								acc = _mm256_add_ps(
									acc, _mm256_mul_ps(_mm256_set1_ps(tx[t][c]),
											   _mm256_loadu_ps(wt + (size_t)c * p->OCp)));
						}
					}
					if (p->bf && !p->dw)
						acc = _mm256_add_ps(acc, _mm256_loadu_ps(p->bf + c0));
					/* fmaxf/fminf as glibc has them: x on ties (keeps -0.0), the
					 * bound when x is NaN */
					acc = _mm256_blendv_ps(lo, acc, _mm256_cmp_ps(acc, lo, _CMP_GE_OQ));
					acc = _mm256_blendv_ps(hi, acc, _mm256_cmp_ps(acc, hi, _CMP_LE_OQ));
					_mm256_maskstore_ps(dst + c0, tailmask[cnt], acc);
				}
				/* channels TFLite's GEMM sums in another order (conv.c) */
				for (int o = p->dw ? p->oc : conv_f32_first_reordered(p); o < p->oc; o++) {
					if (!conv_f32_split_sum(p, b, oy, ox, o))
						continue;
					float v = conv_f32_sum_split(p, x, p->wsrc, b, oy, ox, o);
					if (p->bf)
						v += p->bf[o];
					dst[o] = fminf(fmaxf(v, p->f_lo), p->f_hi);
				}
			}
}
