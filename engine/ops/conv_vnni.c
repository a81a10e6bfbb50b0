/*
 * conv_vnni.c — CONV_2D for 8-bit tensors on the VNNI kernel sets
 * (avxvnni, avx512vnni, and avx2 with vpdpbusd emulated): a GEMM with M =
 * batch × output pixels, N = output channels, K = kh·kw·ic, run by the u8×s8
 * vpdpbusd kernels of x86/vk_gemm.c.
 *
 * Exactness.  The reference accumulates Σ (w − zw)(x − xzp) + bias over the
 * taps inside the image.  vpdpbusd multiplies unsigned by signed bytes, so
 * the activations go in as u = x + ox (ox = 0 for uint8, 128 for int8: the
 * sign bit flipped) and the weights as v = w − zw − d, where d = 0 when every
 * w − zw of the channel fits in int8, else d = 128 − zw (uint8 weights,
 * v = w − 128) or −zw (int8 weights, v = w).  With x − xzp = u − ox − xzp:
 *
 *   Σ (v + d)(u − ox − xzp) + bias
 *     = dot(u, v) + d · Σu + [bias − (ox + xzp) · Σ (w − zw)]
 *
 * The bracket is per channel (cterm, at prepare); Σu is per output pixel
 * (the GEMM computes it only for channels with d ≠ 0).  A padding tap is
 * written as u = xzp + ox, i.e. x − xzp = 0: the reference's skipped tap.
 * All int32 modulo 2^32, like the reference accumulator.
 *
 * Layout.  1×1 stride-1 convs on uint8 with ic % 4 == 0 read the NHWC input
 * directly (each pixel is a GEMM row); others build im2col rows of K4 bytes
 * (K rounded up to 4, zero-filled) per block of rows in the per-thread
 * scratch.  Weights are packed once at load.  Blocks of rows are split over
 * eng_exec.threads.  Inference worker thread; prepare at model load.
 */
#include "conv.h"

#include <emmintrin.h>

#define IM2COL_SLACK 16
#define CONV_VNNI_NX_MAX 4 /* extra K groups; more outlying weights: the row-sum term */
#define CONV_VNNI_COLS 4   /* column slices, for layers with fewer row blocks than threads */

struct conv_vnni {
	struct vk_gemm g;
	vk_gemm_fn fn;
	bool direct;  /* rows are the input pixels */
	/* gather: rows read in place (vk_gemm_rows_fn): each kernel row's span of
	 * kw·ic bytes padded to span4 (the extra bytes belong to the next pixels
	 * and meet zero weights), kernel rows ks bytes apart as in the input;
	 * windows that cross the image's edge (or would read past the tensor) are
	 * copied into pad slots laid out the same way */
	bool gather;
	vk_gemm_rows_fn rows_fn;
	int span, span4;
	size_t ks;
	int32_t *koff;     /* [K4 / 4] */
	size_t read_end;   /* bytes a window reads from its first: koff's and the sums' */
	int pad_slots;     /* windows per pad region */
	size_t region_bytes;
	size_t off_rows, off_rsum, off_pad; /* in the thread's scratch slot */
	/* the weights whose w - zw leaves int8 (a real layer has one to three):
	 * clamped into int8, the rest added by an extra K group that reads the
	 * same 4 row bytes again (vk_gemm.nx); xgrp: those groups in the row */
	int nx;
	int xgrp[CONV_VNNI_NX_MAX];
	int32_t xoff[CONV_VNNI_NX_MAX];
	bool flip;    /* int8 input: u = x ^ 0x80 */
	uint8_t pad_u;
	int K, mb;    /* real K; rows per block */
	size_t slot_bytes;
	int8_t *w;
	int32_t *cterm, *dwc;
	uint8_t *dvec; /* depthwise: vk_dw.dvec */
	struct vk_rq rq;
	/* the GEMM as ncols slices of whole 32-channel tiles (cols[i] from channel
	 * col_n0[i]), so that a layer of few rows still splits over threads */
	int ncols;
	struct vk_gemm cols[CONV_VNNI_COLS];
	int col_n0[CONV_VNNI_COLS];
	/* depthwise */
	struct vk_dw d;
	vk_dw_fn dwfn;
};

void conv_vnni_free(struct conv_prep *p)
{
	struct conv_vnni *v = p ? p->vnni : NULL;
	if (!v)
		return;
	free(v->w);
	free(v->koff);
	free(v->cterm);
	free(v->dwc);
	free(v->dvec);
	vk_rq_free(&v->rq);
	free(v);
	p->vnni = NULL;
}

/* Where K index k (kh·kw·ic order) sits in a row: in place, each kernel row's
 * span bytes padded to span4 (gather); else k itself. */
static int row_k(bool gather, int k, int span, int span4)
{
	return gather ? k / span * span4 + k % span : k;
}

/* v->cols: up to CONV_VNNI_COLS slices of v->g, whole VK_NALIGN-channel tiles each. */
static void column_slices(struct conv_vnni *v)
{
	const int tiles = (v->g.N + VK_NALIGN - 1) / VK_NALIGN;
	v->ncols = tiles < CONV_VNNI_COLS ? tiles : CONV_VNNI_COLS;
	for (int i = 0; i < v->ncols; i++) {
		const int n0 = tiles * i / v->ncols * VK_NALIGN;
		int n1 = tiles * (i + 1) / v->ncols * VK_NALIGN;
		n1 = n1 < v->g.N ? n1 : v->g.N;
		struct vk_gemm *c = &v->cols[i];
		*c = v->g;
		c->N = n1 - n0;
		c->NP = (c->N + VK_NALIGN - 1) / VK_NALIGN * VK_NALIGN;
		c->w = v->g.w + (size_t)(n0 / VK_PANEL) * (size_t)v->g.K4 * VK_PANEL;
		c->cterm = v->g.cterm + n0;
		c->dwc = v->g.dwc ? v->g.dwc + n0 : NULL;
		vk_rq_slice(&v->g.rq, n0, &c->rq);
		v->col_n0[i] = n0;
	}
}

/* Rows per block: about 96 KiB of rows stays in L2 next to the weights (whole
 * tiles of 8 and of 6 rows; the avx2 set's 5-row tiles end a block with a
 * short one). */
static int rows_per_block(int K4)
{
	int mb = (96 * 1024 / K4) / 24 * 24;
	return mb < 24 ? 24 : mb > 240 ? 240 : mb;
}

/* The gather layout's pad slots per region, and bytes per region and in all. */
static int pad_slots(int kh, int span4, size_t ks, int mb)
{
	return kh == 1 ? mb : (int)(ks / (size_t)span4);
}
static size_t region_bytes(int kh, int span4, size_t ks, int mb)
{
	return kh == 1 ? (size_t)mb * (size_t)span4 : (size_t)kh * ks;
}
static size_t pad_regions(int kh, int span4, size_t ks)
{
	int mb = rows_per_block(kh * span4), slots = pad_slots(kh, span4, ks, mb);
	return ((size_t)mb + (size_t)slots - 1) / (size_t)slots * region_bytes(kh, span4, ks, mb);
}

/* The gather layout's offsets and the per-thread slot: row pointers, row
 * sums and the pad regions (their 16-byte sums may read 16 bytes past). */
static int gather_prepare(struct eng_node *n, const struct conv_prep *p, struct conv_vnni *v,
			  vk_gemm_rows_fn rows_fn, int span, int span4, size_t ks)
{
	const int K4 = v->g.K4 - 4 * v->nx, groups = span4 / 4; /* the rows' own groups */
	v->rows_fn = rows_fn;
	v->span = span;
	v->span4 = span4;
	v->ks = ks;
	v->koff = malloc((size_t)(K4 / 4) * sizeof(int32_t));
	if (!v->koff)
		return -ENOMEM;
	for (int kk = 0; kk < K4 / 4; kk++)
		v->koff[kk] = (int32_t)((size_t)(kk / groups) * ks + (size_t)(kk % groups) * 4);
	for (int e = 0; e < v->nx; e++) /* the extra groups read their group in place */
		v->xoff[e] = v->koff[v->xgrp[e]];
	size_t span16 = ((size_t)span + 15) & ~(size_t)15;
	v->read_end = (size_t)(p->kh - 1) * ks + (span16 > (size_t)span4 ? span16 : (size_t)span4);
	v->pad_slots = pad_slots(p->kh, span4, ks, v->mb);
	v->region_bytes = region_bytes(p->kh, span4, ks, v->mb);
	const size_t rows_n = (size_t)v->mb + VK_MR_MAX;
	v->off_rows = 0;
	v->off_rsum = rows_n * sizeof(const uint8_t *);
	v->off_pad = (v->off_rsum + rows_n * sizeof(int32_t) + 63) & ~(size_t)63;
	size_t slot = v->off_pad + pad_regions(p->kh, span4, ks) + 16;
	v->slot_bytes = (slot + 63) & ~(size_t)63;
	n->scratch_bytes = (size_t)OPS_MAX_THREADS * v->slot_bytes;
	return 0;
}

int conv_vnni_prepare(struct eng_node *n, struct conv_prep *p, vk_gemm_fn fn,
		      vk_gemm_rows_fn rows_fn)
{
	if (p->dw || !dt_is_q8(p->type) || !n->in[1]->is_const ||
	    (n->n_in > 2 && n->in[2] && !n->in[2]->is_const))
		return 0;
	for (int o = 0; o < p->oc; o++)
		if (p->mult[o] == INT32_MIN)
			return 0; /* impossible from q_quantize_multiplier(); the kernel relies on it */
	struct conv_vnni *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->vnni = v;
	const bool s8 = p->type == ENG_DT_I8;
	const int K = p->kh * p->kw * p->ic;
	const int span = p->kw * p->ic, span4 = (span + 3) & ~3;
	const size_t ks = (size_t)p->dh * p->iw * p->ic;
	v->direct = !s8 && p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && p->ic % 4 == 0;
	v->gather = rows_fn && !s8 && !v->direct && p->dwl == 1 &&
		    (p->kh == 1 || ks >= (size_t)span4) &&
		    pad_regions(p->kh, span4, ks) <= ((size_t)4 << 20); /* else im2col */
	const int K4m = v->gather ? p->kh * span4 : (K + 3) & ~3; /* a row's own bytes */
	const int NP = (p->oc + VK_NALIGN - 1) / VK_NALIGN * VK_NALIGN;
	const void *w = n->in[1]->const_data;
	/* Weights that leave int8 as w - zw.  A handful: clamp them and add the
	 * rest δ (in int8 too) by extra K groups, so the layer needs no row sums.
	 * Many: one shift d for the whole layer (the zero point is per tensor):
	 * the GEMM then starts each row's accumulators at d · Σu. */
	bool extras = true; /* also when every weight fits: no extra group, d = 0 */
	v->nx = 0;
	for (size_t i = 0; i < (size_t)p->oc * K; i++) {
		int32_t d = q8_get(p->type, w, i) - p->w_zp;
		if (d >= -128 && d <= 127)
			continue;
		int32_t delta = d - (d < -128 ? -128 : 127);
		const int grp = row_k(v->gather, (int)(i % (size_t)K), span, span4) / 4;
		int e = 0;
		while (e < v->nx && v->xgrp[e] != grp)
			e++;
		if (e == v->nx && v->nx < CONV_VNNI_NX_MAX)
			v->xgrp[v->nx++] = grp;
		else if (e == v->nx)
			extras = false;
		extras = extras && delta >= -128 && delta <= 127;
	}
	if (!extras)
		v->nx = 0;
	const int K4 = K4m + 4 * v->nx;
	const int32_t ox = s8 ? 128 : 0;
	v->fn = fn;
	v->K = K;
	v->flip = s8;
	v->pad_u = (uint8_t)(p->in_zp + ox);
	v->w = aligned_alloc(64, (size_t)NP * K4);
	v->cterm = calloc((size_t)NP, sizeof(int32_t));
	v->dwc = calloc((size_t)NP, sizeof(int32_t));
	int rc = v->w && v->cterm && v->dwc ? vk_rq_fill(&v->rq, NP, p->oc, p->mult, p->shift,
							  p->out_zp, p->act_lo, p->act_hi, s8,
							  p->round_up)
					    : -ENOMEM;
	if (rc) {
		conv_vnni_free(p);
		return rc == -ENOMEM ? rc : 0; /* -ERANGE: the node keeps the other kernels */
	}
	memset(v->w, 0, (size_t)NP * K4);
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	const int32_t dshift = extras ? 0 : (s8 ? -p->w_zp : 128 - p->w_zp);
	bool any_d = dshift != 0;
	for (int o = 0; o < p->oc; o++) {
		int64_t wsum = 0;
		for (int k = 0; k < K; k++)
			wsum += q8_get(p->type, w, (size_t)o * K + k) - p->w_zp;
		for (int k = 0; k < K; k++) {
			int32_t d = q8_get(p->type, w, (size_t)o * K + k) - p->w_zp - dshift;
			int kp = row_k(v->gather, k, span, span4);
			if (d < -128 || d > 127) { /* an outlier (extras): the rest in its extra group */
				int32_t c = d < -128 ? -128 : 127, e = 0;
				while (v->xgrp[e] != kp / 4)
					e++;
				v->w[vk_pack_index(K4, K4m + 4 * e + kp % 4, o)] = (int8_t)(d - c);
				d = c;
			}
			v->w[vk_pack_index(K4, kp, o)] = (int8_t)d; /* in range by the choice of dshift */
		}
		int64_t c = (bias ? bias[o] : 0) - (int64_t)(ox + p->in_zp) * wsum;
		v->cterm[o] = (int32_t)(uint32_t)(uint64_t)c;
		v->dwc[o] = dshift;
	}
	v->g = (struct vk_gemm){
		.K4 = K4,
		.N = p->oc,
		.NP = NP,
		.w = v->w,
		.cterm = v->cterm,
		.dwc = any_d ? v->dwc : NULL,
		.dwc_uniform = any_d,
		.dwc_u = dshift,
		.nx = v->nx,
		.xoff = v->xoff,
		.rq = v->rq,
	};
	for (int e = 0; e < v->nx; e++) /* im2col and direct rows: the group's bytes */
		v->xoff[e] = 4 * v->xgrp[e];
	column_slices(v);
	v->mb = rows_per_block(K4);
	if (v->gather)
		return gather_prepare(n, p, v, rows_fn, span, span4, ks);
	/* + IM2COL_SLACK: the 16-byte copies of im2col_block may run past the last row */
	size_t slot = ((vk_scratch_bytes(K4, v->mb) + 63) & ~(size_t)63) +
		      (v->direct ? 0 : (size_t)v->mb * K4 + IM2COL_SLACK);
	v->slot_bytes = (slot + 63) & ~(size_t)63;
	n->scratch_bytes = (size_t)OPS_MAX_THREADS * v->slot_bytes;
	return 0;
}

/*
 * Depthwise: the same algebra per channel over its taps; 4 horizontal taps of
 * a channel share an int32 lane (vk_dw_pack_index for vectors of vl lanes,
 * zero weights past kw).  The kernel interleaves the input rows it needs into
 * the per-thread scratch (x86/vk.h).
 */
#define DW_MAX_SLOT ((size_t)16 << 20) /* per thread; past it the node keeps the AVX2 kernel */

int conv_vnni_dw_prepare(struct eng_node *n, struct conv_prep *p, vk_dw_fn fn, int vl, int gt)
{
	const int taps = p->kh * p->kw;
	if (!p->dw || p->dm != 1 || taps > 64 || !dt_is_q8(p->type) || !n->in[1]->is_const ||
	    (n->n_in > 2 && n->in[2] && !n->in[2]->is_const))
		return 0;
	for (int o = 0; o < p->oc; o++)
		if (p->mult[o] == INT32_MIN)
			return 0;
	const bool s8 = p->type == ENG_DT_I8;
	const int C = p->oc, CP = (C + 15) / 16 * 16, ng = (p->kw + gt - 1) / gt;
	/* the interleaved row's entries, in 64 bits: a model's stride or dilation may be anything */
	int64_t wq = (int64_t)(p->ow - 1) * p->sw + (int64_t)(ng - 1) * gt * p->dwl + 1;
	if (wq < 1 || wq > ((int64_t)1 << 24))
		return 0;
	struct vk_dw d = {
		.C = C, .CP = CP, .gt = gt, .ng = ng,
		.ih = p->ih, .iw = p->iw, .oh = p->oh, .ow = p->ow,
		.kh = p->kh, .kw = p->kw, .sh = p->sh, .sw = p->sw, .dh = p->dh, .dw = p->dwl,
		.pt = p->pt, .pl = p->pl,
		.wq = (int)wq,
		.flip = s8,
		.pad = (uint8_t)((uint8_t)p->in_zp ^ (s8 ? 0x80 : 0)),
	};
	size_t slot = (vk_dw_scratch_bytes(&d) + 63) & ~(size_t)63;
	if (slot > DW_MAX_SLOT)
		return 0;
	struct conv_vnni *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	p->vnni = v;
	const int32_t ox = s8 ? 128 : 0;
	const size_t wbytes = (size_t)CP * p->kh * ng * 4; /* gt bytes or gt / 2 int16 a tap group */
	v->dwfn = fn;
	v->w = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
	v->cterm = calloc((size_t)CP, sizeof(int32_t));
	v->dwc = calloc((size_t)CP, sizeof(int32_t));
	v->dvec = calloc((size_t)CP / (size_t)vl, 1);
	int rc = v->w && v->cterm && v->dwc && v->dvec
			 ? vk_rq_fill(&v->rq, CP, C, p->mult, p->shift, p->out_zp, p->act_lo,
				      p->act_hi, s8, p->round_up)
			 : -ENOMEM;
	if (rc) {
		conv_vnni_free(p);
		return rc == -ENOMEM ? rc : 0; /* -ERANGE: the node keeps the other kernels */
	}
	memset(v->w, 0, wbytes);
	const void *w = n->in[1]->const_data;
	const int32_t *bias = (n->n_in > 2 && n->in[2]) ? n->in[2]->const_data : NULL;
	bool any_d = false;
	for (int c = 0; c < C; c++) {
		bool fits = true;
		int64_t wsum = 0;
		for (int t = 0; t < taps; t++) {
			int32_t dv = q8_get(p->type, w, (size_t)t * C + c) - p->w_zp;
			wsum += dv;
			fits = fits && dv >= -128 && dv <= 127;
		}
		int32_t dshift = fits ? 0 : (s8 ? -p->w_zp : 128 - p->w_zp);
		for (int t = 0; t < taps; t++) {
			const size_t i = vk_dw_pack_index(gt, vl, p->kh, ng, c, t / p->kw, t % p->kw);
			const int32_t wv = q8_get(p->type, w, (size_t)t * C + c) - p->w_zp - dshift;
			if (gt == 2) /* in range of int8 by the choice of dshift */
				((int16_t *)(void *)v->w)[i] = (int16_t)wv;
			else
				v->w[i] = (int8_t)wv;
		}
		int64_t cc = (bias ? bias[c] : 0) - (int64_t)(ox + p->in_zp) * wsum;
		v->cterm[c] = (int32_t)(uint32_t)(uint64_t)cc;
		v->dwc[c] = dshift;
		any_d = any_d || dshift != 0;
		v->dvec[c / vl] |= dshift != 0;
	}
	d.w = v->w;
	d.cterm = v->cterm;
	d.dwc = any_d ? v->dwc : NULL;
	d.dvec = any_d ? v->dvec : NULL;
	d.rq = v->rq;
	v->d = d;
	v->slot_bytes = slot;
	n->scratch_bytes = (size_t)OPS_MAX_THREADS * slot;
	return 0;
}

/* im2col row of output pixel (b, oy, ox): K bytes of u, then zeros up to K4.
 * xbytes: size of the input tensor (the 16-byte copies never read past it). */
static inline void im2col_u8(const struct conv_prep *p, const struct conv_vnni *v, const uint8_t *x,
			     size_t xbytes, int b, int oy, int ox, uint8_t *row)
{
	const int ic = p->ic;
	int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
	uint8_t *d = row;
	if (!v->flip && p->dwl == 1 && iy0 >= 0 && ix0 >= 0 && iy0 + (p->kh - 1) * p->dh < p->ih &&
	    ix0 + p->kw - 1 < p->iw) {
		/* inside the image: a kernel row is kw·ic contiguous input bytes; short
		 * spans (the RGB first layer: 9 bytes) as one 16-byte copy that the
		 * next span, the zero tail or the next row overwrites (IM2COL_SLACK) */
		const size_t span = (size_t)p->kw * ic;
		for (int ky = 0; ky < p->kh; ky++, d += span) {
			size_t at = (((size_t)b * p->ih + iy0 + p->dh * ky) * p->iw + ix0) * ic;
			if (span <= IM2COL_SLACK && at + IM2COL_SLACK <= xbytes)
				memcpy(d, x + at, IM2COL_SLACK);
			else
				memcpy(d, x + at, span);
		}
		memset(row + v->K, 0, (size_t)(v->g.K4 - v->K));
		return;
	}
	for (int ky = 0; ky < p->kh; ky++) {
		int iy = iy0 + p->dh * ky;
		for (int kx = 0; kx < p->kw; kx++, d += ic) {
			int ix = ix0 + p->dwl * kx;
			if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw) {
				memset(d, v->pad_u, (size_t)ic);
				continue;
			}
			const uint8_t *s = x + (((size_t)b * p->ih + iy) * p->iw + ix) * ic;
			if (v->flip)
				for (int c = 0; c < ic; c++)
					d[c] = s[c] ^ 0x80;
			else
				memcpy(d, s, (size_t)ic);
		}
	}
	memset(row + v->K, 0, (size_t)(v->g.K4 - v->K));
}

struct vnni_job {
	const struct conv_prep *p;
	const uint8_t *x;
	uint8_t *y;
	uint8_t *scratch;
	size_t M;
	size_t xbytes; /* of the input tensor */
	int cols;      /* column slices per block of rows: 1 (v->g) or v->ncols */
	size_t blocks; /* blocks of rows */
};

/* Σ of the real bytes of the window at row: kh spans of v->span bytes, ks
 * apart, read as whole 16-byte chunks (the last of each span masked; the
 * caller keeps them readable), one horizontal add at the end. */
static int32_t window_sum(const struct conv_vnni *v, int kh, const uint8_t *row)
{
	static const uint8_t first[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					  0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	const int span = v->span, full = span & ~15;
	const __m128i z = _mm_setzero_si128();
	const __m128i m = _mm_loadu_si128((const __m128i *)(const void *)(first + 16 - (span - full)));
	__m128i acc = z;
	for (int ky = 0; ky < kh; ky++) {
		const uint8_t *p = row + (size_t)ky * v->ks;
		for (int j = 0; j < full; j += 16)
			acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_loadu_si128((const __m128i *)(const void *)(p + j)), z));
		if (full < span) {
			__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + full));
			acc = _mm_add_epi64(acc, _mm_sad_epu8(_mm_and_si128(b, m), z));
		}
	}
	return (int32_t)(_mm_cvtsi128_si64(acc) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(acc, acc)));
}

/* Window (b, iy0, ix0) copied into pad slot q with the in-place layout: the
 * padding value for taps outside the image, zeros past each span. */
static const uint8_t *pad_window(const struct conv_prep *p, const struct conv_vnni *v,
				 const uint8_t *x, int b, int iy0, int ix0, uint8_t *pad, int q)
{
	const int ic = p->ic;
	uint8_t *base = pad + (size_t)(q / v->pad_slots) * v->region_bytes +
			(size_t)(q % v->pad_slots) * (size_t)v->span4;
	for (int ky = 0; ky < p->kh; ky++) {
		uint8_t *d = base + (size_t)ky * v->ks;
		const int iy = iy0 + ky * p->dh;
		for (int kx = 0; kx < p->kw; kx++, d += ic) {
			const int ix = ix0 + kx;
			if (iy < 0 || iy >= p->ih || ix < 0 || ix >= p->iw)
				memset(d, v->pad_u, (size_t)ic);
			else
				memcpy(d, x + (((size_t)b * p->ih + iy) * p->iw + ix) * ic, (size_t)ic);
		}
		memset(d, 0, (size_t)(v->span4 - v->span));
	}
	return base;
}

/* One block of rows on the gather layout: each row's window in place, or its
 * copy in a pad slot (the GEMM: gather_gemm). */
static void gather_block(const struct vnni_job *j, const struct conv_vnni *v, uint8_t *s,
			 size_t m0, int mb)
{
	const struct conv_prep *p = j->p;
	const uint8_t **rows = (const uint8_t **)(void *)(s + v->off_rows);
	int32_t *rsum = (int32_t *)(void *)(s + v->off_rsum);
	uint8_t *pad = s + v->off_pad;
	const size_t ohw = (size_t)p->oh * p->ow;
	int b = (int)(m0 / ohw), oy = (int)(m0 % ohw) / p->ow, ox = (int)(m0 % ohw) % p->ow;
	const int ey = (p->kh - 1) * p->dh; /* the window's last row, from its first */
	int npad = 0;
	for (int r = 0; r < mb; r++) {
		const int iy0 = oy * p->sh - p->pt, ix0 = ox * p->sw - p->pl;
		const uint8_t *row = NULL;
		if (iy0 >= 0 && ix0 >= 0 && iy0 + ey < p->ih && ix0 + p->kw <= p->iw) {
			size_t at = (((size_t)b * p->ih + iy0) * p->iw + ix0) * p->ic;
			if (at + v->read_end <= j->xbytes)
				row = j->x + at;
		}
		if (!row)
			row = pad_window(p, v, j->x, b, iy0, ix0, pad, npad++);
		rows[r] = row;
		rsum[r] = v->g.dwc ? window_sum(v, p->kh, row) : 0;
		if (++ox == p->ow) {
			ox = 0;
			if (++oy == p->oh) {
				oy = 0;
				b++;
			}
		}
	}
	for (int r = mb; r < mb + VK_MR_MAX; r++) { /* the last tile's extra rows */
		rows[r] = rows[0];
		rsum[r] = 0;
	}
}

static void gather_gemm(const struct conv_vnni *v, const struct vk_gemm *g, uint8_t *s, int mb,
			uint8_t *y, size_t ldy)
{
	v->rows_fn(g, (const uint8_t *const *)(void *)(s + v->off_rows), v->koff,
		   (const int32_t *)(void *)(s + v->off_rsum), mb, y, ldy);
}

static void vnni_job_run(void *ctx, size_t begin, size_t end, int slot)
{
	const struct vnni_job *j = ctx;
	const struct conv_prep *p = j->p;
	const struct conv_vnni *v = p->vnni;
	const size_t K4 = (size_t)v->g.K4;
	uint8_t *s = j->scratch + (size_t)slot * v->slot_bytes;
	uint8_t *rows = s + ((vk_scratch_bytes(v->g.K4, v->mb) + 63) & ~(size_t)63);
	size_t built = SIZE_MAX; /* the block whose rows the scratch holds */
	for (size_t job = begin; job < end; job++) {
		/* jobs: column slices × blocks of rows, slice-major (a layer's last
		 * block may be short: the threads split the channels evenly); one
		 * slice: the whole GEMM */
		const size_t blk = job % j->blocks;
		const int c = (int)(job / j->blocks);
		const struct vk_gemm *g = j->cols > 1 ? &v->cols[c] : &v->g;
		size_t m0 = blk * (size_t)v->mb;
		int mb = (int)(j->M - m0 < (size_t)v->mb ? j->M - m0 : (size_t)v->mb);
		uint8_t *y = j->y + m0 * (size_t)p->oc + (j->cols > 1 ? v->col_n0[c] : 0);
		if (v->direct) {
			v->fn(g, j->x + m0 * (size_t)p->ic, (size_t)p->ic, mb, y, (size_t)p->oc, s);
			continue;
		}
		const bool have = built == blk;
		built = blk;
		if (v->gather) {
			if (!have)
				gather_block(j, v, s, m0, mb);
			gather_gemm(v, g, s, mb, y, (size_t)p->oc);
			continue;
		}
		if (have) {
			v->fn(g, rows, K4, mb, y, (size_t)p->oc, s);
			continue;
		}
		/* the block's first pixel, then step along the rows */
		const size_t ohw = (size_t)p->oh * p->ow;
		int b = (int)(m0 / ohw), oy = (int)(m0 % ohw) / p->ow, ox = (int)(m0 % ohw) % p->ow;
		for (int r = 0; r < mb; r++) {
			im2col_u8(p, v, j->x, j->xbytes, b, oy, ox, rows + (size_t)r * K4);
			if (++ox == p->ow) {
				ox = 0;
				if (++oy == p->oh) {
					oy = 0;
					b++;
				}
			}
		}
		v->fn(g, rows, K4, mb, y, (size_t)p->oc, s);
	}
}

static void dw_job_run(void *ctx, size_t begin, size_t end, int slot)
{
	const struct vnni_job *j = ctx;
	const struct conv_vnni *v = j->p->vnni;
	v->dwfn(&v->d, j->x, j->y, begin, end, j->scratch + (size_t)slot * v->slot_bytes);
}

int conv_vnni_eval(const struct eng_node *n, const struct eng_exec *x)
{
	const struct conv_prep *p = n->prep;
	if (p->dw) { /* a depthwise tap costs about what 8 GEMM multiply-adds do */
		int threads = n->macs >= OPS_PARALLEL_MIN_MACS / 8 ? x->threads : 1;
		struct vnni_job j = {p, eng_tdata(x, n->in[0]), eng_tdata(x, n->out[0]), x->scratch,
				     0, 0, 1, 0};
		ops_parallel_for(x, threads, (size_t)p->nb * p->oh, dw_job_run, &j);
		return 0;
	}
	int threads = n->macs >= OPS_PARALLEL_MIN_MACS ? x->threads : 1;
	struct vnni_job j = {p, eng_tdata(x, n->in[0]), eng_tdata(x, n->out[0]), x->scratch,
			     (size_t)p->nb * p->oh * p->ow, n->in[0]->bytes, 1, 0};
	j.blocks = (j.M + (size_t)p->vnni->mb - 1) / (size_t)p->vnni->mb;
	/* too few blocks to keep every thread busy (the late, small layers): split
	 * the channels too */
	if (threads > 1 && j.blocks < 2 * (size_t)threads)
		j.cols = p->vnni->ncols;
	ops_parallel_for(x, threads, j.blocks * (size_t)j.cols, vnni_job_run, &j);
	return 0;
}

/* The kernel entries of each set: other shapes and types keep conv_fast.c's kernels. */
static int prepare_with(struct eng_node *n, vk_gemm_fn fn, vk_gemm_rows_fn rows_fn, char *err,
			size_t errlen)
{
	int rc = conv_prepare_common(n, false, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	rc = conv_vnni_prepare(n, p, fn, rows_fn);
	if (rc) {
		conv_release(n);
		KERR(err, errlen, "out of memory packing weights");
		return rc;
	}
	if (p->vnni)
		return 0;
	conv_release(n);
	return conv_prepare_fast(n, err, errlen);
}

static int prepare_512(struct eng_node *n, char *err, size_t errlen)
{
	return prepare_with(n, vk512_gemm, vk512_gemm_rows, err, errlen);
}

static int prepare_256(struct eng_node *n, char *err, size_t errlen)
{
	return prepare_with(n, vk256_gemm, vk256_gemm_rows, err, errlen);
}

static int prepare_avx2(struct eng_node *n, char *err, size_t errlen)
{
	return prepare_with(n, vk2_gemm, vk2_gemm_rows, err, errlen);
}

static int dw_prepare_with(struct eng_node *n, vk_dw_fn fn, int vl, int gt, char *err,
			   size_t errlen)
{
	int rc = conv_prepare_common(n, true, err, errlen);
	if (rc)
		return rc;
	struct conv_prep *p = n->prep;
	rc = conv_vnni_dw_prepare(n, p, fn, vl, gt);
	if (rc) {
		conv_release(n);
		KERR(err, errlen, "out of memory packing weights");
		return rc;
	}
	if (p->vnni)
		return 0;
	conv_release(n);
	return dwconv_prepare_fast(n, err, errlen);
}

static int dw_prepare_512(struct eng_node *n, char *err, size_t errlen)
{
	return dw_prepare_with(n, vk512_dw, 16, 4, err, errlen);
}

static int dw_prepare_256(struct eng_node *n, char *err, size_t errlen)
{
	return dw_prepare_with(n, vk256_dw, 8, 4, err, errlen);
}

static int dw_prepare_avx2(struct eng_node *n, char *err, size_t errlen)
{
	return dw_prepare_with(n, vk2_dw, 8, 2, err, errlen);
}

static int eval_vnni(const struct eng_node *n, const struct eng_exec *x)
{
	const struct conv_prep *p = n->prep;
	return p->vnni ? conv_vnni_eval(n, x) : conv_eval_fast(n, x);
}

static void release_vnni(struct eng_node *n)
{
	conv_vnni_free(n->prep);
	conv_release(n);
}

const struct eng_kernel eng_k_conv_avx512vnni = {"CONV_2D", prepare_512, eval_vnni, release_vnni};
const struct eng_kernel eng_k_conv_avxvnni = {"CONV_2D", prepare_256, eval_vnni, release_vnni};
const struct eng_kernel eng_k_dwconv_avx512vnni = {"DEPTHWISE_CONV_2D", dw_prepare_512, eval_vnni,
						   release_vnni};
const struct eng_kernel eng_k_dwconv_avxvnni = {"DEPTHWISE_CONV_2D", dw_prepare_256, eval_vnni,
						release_vnni};
/* the avx2 set: the same kernels with vpdpbusd emulated (vk2_*) */
const struct eng_kernel eng_k_conv_vk_avx2 = {"CONV_2D", prepare_avx2, eval_vnni, release_vnni};
const struct eng_kernel eng_k_dwconv_vk_avx2 = {"DEPTHWISE_CONV_2D", dw_prepare_avx2, eval_vnni,
						release_vnni};
