/*
 * vk.h — the u8×s8 VNNI GEMM with fused requantization (vk_gemm.c), built
 * once per instruction set: vk512_* (AVX-512 VNNI, 512-bit vpdpbusd), vk256_*
 * (AVX-VNNI, 256-bit) and vk2_* (AVX2 and FMA: each vpdpbusd emulated exactly
 * by two vpmaddwd).  The unit tests build the same source again against SIMDe
 * (vk512s_*, vk256s_*, vk2s_*) to check it on machines without the
 * instructions.  Internal to engine/ops.
 *
 * Computes, for rows r < m and channels n < N:
 *
 *   y[r][n] = clamp(rq(dot(a_r, w_n) + cterm[n] + dwc[n]·Σ_k a_r[k], mult[n], shift[n]) + out_zp)
 *
 * (rq: struct vk_rq) *
 * exactly as q_mul_by_qm() (quant.h), int32 arithmetic modulo 2^32 like the
 * reference accumulator.  a_r are K4 unsigned bytes (rows at a constant stride);
 * w is packed by vk_pack_index(): per panel of 16 channels, per 4 consecutive
 * K bytes, 16 lanes × 4 bytes (the vpdpbusd layout).  Callers must check the
 * CPU (kset.h) before calling a native variant.  Pure; any thread.
 */
#ifndef DETD_ENGINE_OPS_X86_VK_H
#define DETD_ENGINE_OPS_X86_VK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VK_PANEL 16  /* channels per packed panel */
#define VK_NALIGN 32 /* N is padded to this (the widest tile) */

/*
 * Requantization constants per channel (vk_rq_fill(); see vk_gemm.c for the
 * arithmetic): arrays of NP entries, the int64 ones per channel pair (even
 * channels in *_even, odd ones in *_odd) — NULL when every channel has the
 * same constants (uniform: the u_* fields).
 */
struct vk_rq {
	const int32_t *mult, *mult_odd, *left, *zadd;
	const int64_t *b_even, *b_odd, *s_even, *s_odd, *c_even, *c_odd;
	int32_t lo, hi;  /* clamp, uint8 minus 128 */
	int8_t lo8, hi8; /* lo, hi saturated to int8: the clamp after a saturating narrow */
	bool clamp8;     /* [lo8, hi8] narrower than int8 (an activation): the stores clamp */
	bool s8out;      /* int8 output (else uint8) */
	int32_t flip8;   /* 0 for int8 output, 0x80808080 for uint8 (the narrowed bytes' xor) */
	bool any_left;   /* some channel shifts left */
	/* every channel has the same constants (per-tensor quantization): these */
	bool uniform;
	int32_t u_mult, u_left, u_zadd;
	int64_t u_b, u_s, u_c;
	/*
	 * The single-precision path of the narrowing stores (vk_gemm.c, "Requantization
	 * in float"), when every channel shifts right and none left (fast): per channel
	 * fr = mult / 2^(31+n), fc = VK_RQ_MAGIC + the rounding offset + output zero
	 * point + ε, fcn = fc less the negative-tie correction, taken where acc < fthr
	 * (fneg: some channel has a correction).  Filled for all channels or none.
	 */
	bool fast, fneg;
	const float *fr, *fc, *fcn;
	const int32_t *fthr;
	float u_fr, u_fc, u_fcn;
	int32_t u_fthr;
	void *mem;       /* owner of the arrays (vk_rq_fill) */
};

/* ε of the float path, and the offset that makes its FMA's result a fixed-point
 * number (vk_gemm.c derives the error bound ε must exceed, and why). */
#define VK_RQ_EPS (1.0 / 8192.0)
#define VK_RQ_MAGIC 768.0

/*
 * Fill q for np channels (n of them real) from TFLite's multipliers and
 * shifts (round_up: the final shift rounds half up as q_mul_by_qm_up, else
 * half away from zero as q_mul_by_qm); 0, -ENOMEM, or -ERANGE if a right shift exceeds 31 (never from
 * q_quantize_multiplier).  vk_rq_free() releases it.  Baseline code (vk_rq.c).
 */
int vk_rq_fill(struct vk_rq *q, int np, int n, const int32_t *mult, const int *shift,
	       int32_t out_zp, int32_t act_lo, int32_t act_hi, bool s8, bool round_up);
void vk_rq_free(struct vk_rq *q);
/* *out = q's constants from channel n0 on (n0 even), sharing q's arrays: out
 * owns nothing (q keeps them; never vk_rq_free(out)). */
void vk_rq_slice(const struct vk_rq *q, int n0, struct vk_rq *out);

struct vk_gemm {
	int K4;               /* bytes per row, a multiple of 4 */
	int N, NP;            /* channels; NP = N rounded up to VK_NALIGN */
	const int8_t *w;      /* NP * K4 bytes, vk_pack_index() layout */
	const int32_t *cterm; /* [NP] added to every accumulator */
	const int32_t *dwc;   /* [NP] coefficient of the row sum, or NULL (all zero) */
	bool dwc_uniform;     /* every dwc[n] is dwc_u: the row's accumulators start at dwc_u·Σa_r */
	int32_t dwc_u;
	/* The last nx of the K4 / 4 groups of 4 bytes are extra: group K4 / 4 - nx + e
	 * reads the row's 4 bytes at byte offset xoff[e] again (with other weights:
	 * conv_vnni.c's corrections for the few weights that leave int8).  A row's
	 * own bytes are the first K4 - 4·nx. */
	int nx;
	const int32_t *xoff;
	struct vk_rq rq;
};

/* Byte offset of weight (k, n) in the packed layout. */
static inline size_t vk_pack_index(int K4, int k, int n)
{
	return (((size_t)(n / VK_PANEL) * (size_t)(K4 / 4) + (size_t)(k / 4)) * VK_PANEL +
		(size_t)(n % VK_PANEL)) * 4 + (size_t)(k % 4);
}

#define VK_MR_MAX 8   /* rows of the tallest micro-kernel */
#define VK_M_MAX 256  /* rows per call */

/* Scratch bytes a call of up to m rows needs, 32-byte aligned: a zero-padded
 * copy of the last, partial row tile; for vk2_*, the rows widened to int16 and
 * one panel of weights widened (vk_gemm.c). */
static inline size_t vk_scratch_bytes(int K4, int m)
{
	size_t k = (size_t)K4;
	return (size_t)VK_MR_MAX * k + (size_t)(m + VK_MR_MAX) * 2 * k + 2 * VK_PANEL * k + 32;
}

/*
 * m (<= VK_M_MAX) rows: row r at a + r * lda (K4 bytes, all readable) → y + r * ldy
 * (N bytes).  scratch: vk_scratch_bytes(K4, m) bytes, 32-byte aligned.
 */
typedef void (*vk_gemm_fn)(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m,
			   uint8_t *y, size_t ldy, uint8_t *scratch);

/*
 * Depthwise (depth multiplier 1) on vpdpbusd, 4 horizontal taps of one
 * channel per int32 lane.  Each input row the call needs is interleaved once
 * into the per-thread scratch: entry xi of the row holds, for every channel,
 * the bytes u of pixels x, x+dw, x+2dw, x+3dw (x = xi − pl; a pixel outside
 * the image is the padding value pad).  An output pixel is then kh·ng plain
 * loads and vpdpbusd per vector of channels — no shuffles in the inner loop —
 * and an interleaved row serves every output row that needs it (a ring of
 * (kh−1)·dh + 1 rows).  Lanes stay in channel order.  Taps past kw in the
 * last group have weight 0 and are left out of Σu.  Weights by
 * vk_dw_pack_index(); cterm/dwc/rq as in vk_gemm, dwc multiplying Σ_taps u.
 */
struct vk_dw {
	int C, CP;            /* channels; CP = C rounded up to 16 (the packing stride) */
	int gt;               /* taps a group: 4 bytes (vpdpbusd), 2 int16 (vk2_dw: vpmaddwd) */
	int ng;               /* horizontal tap groups: ceil(kw / gt) */
	int ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl;
	int wq;               /* interleaved entries per row: (ow−1)·sw + (ng−1)·gt·dw + 1 */
	bool flip;            /* int8 input: u = x ^ 0x80 */
	uint8_t pad;          /* u of a padding tap */
	const int8_t *w;      /* CP · kh · ng · 4 bytes: int8 (gt 4) or int16 (gt 2) weights */
	const int32_t *cterm, *dwc; /* [CP]; dwc may be NULL */
	/* [CP / VL]: 1 where some channel of the VL-lane vector has dwc ≠ 0 (only those
	 * compute Σu: a real layer has one or two such channels); NULL with dwc */
	const uint8_t *dvec;
	struct vk_rq rq;
};

/* Index of the weight of channel c, tap (ky, kx), for vectors of vl int32 lanes of
 * gt taps each (in weights: bytes for gt 4, int16 for gt 2). */
static inline size_t vk_dw_pack_index(int gt, int vl, int kh, int ng, int c, int ky, int kx)
{
	return ((((size_t)(c / vl) * (size_t)kh + (size_t)ky) * (size_t)ng + (size_t)(kx / gt)) *
			(size_t)vl + (size_t)(c % vl)) * (size_t)gt + (size_t)(kx % gt);
}

/* Bytes of one interleaved row, and of the scratch one call needs. */
static inline size_t vk_dw_row_bytes(const struct vk_dw *d)
{
	return ((size_t)d->wq * (size_t)d->CP * 4 + 63) & ~(size_t)63;
}
static inline size_t vk_dw_scratch_bytes(const struct vk_dw *d)
{
	size_t ring = (size_t)(d->kh - 1) * (size_t)d->dh + 1;
	/* the ring, one row of padding, the ring's tags */
	return (ring + 1) * vk_dw_row_bytes(d) + ((ring * sizeof(long) + 63) & ~(size_t)63);
}

/* Output rows [r0, r1) over all images (row r: image r / oh, y = r % oh);
 * scratch: vk_dw_scratch_bytes(d) bytes, 64-byte aligned. */
typedef void (*vk_dw_fn)(const struct vk_dw *d, const uint8_t *x, uint8_t *y, size_t r0,
			 size_t r1, uint8_t *scratch);
#define VK_DECLARE_DW(fn)                                                                 \
	void fn(const struct vk_dw *d, const uint8_t *x, uint8_t *y, size_t r0, size_t r1, \
		uint8_t *scratch)
VK_DECLARE_DW(vk512_dw);
VK_DECLARE_DW(vk256_dw);
VK_DECLARE_DW(vk2_dw);
VK_DECLARE_DW(vk512s_dw);
VK_DECLARE_DW(vk256s_dw);
VK_DECLARE_DW(vk2s_dw);

/*
 * Quantized ADD of two same-shape 8-bit tensors, TFLite's recipe: each input
 * centred and shifted left by 20, requantized by q1 / q2 (uniform, out_zp 0,
 * int8: the exact q_mul_by_qm() value), summed, requantized by qo (the output
 * zero point, activation clamp and type).
 */
struct vk_add {
	int32_t zx, zr;       /* zero points of x and r */
	bool s8;              /* int8 tensors (else uint8) */
	struct vk_rq q1, q2, qo;
	/* the single-precision path (vk_add_fill_fast):
	 * floor(x·k1 + r·k2 + c), redone exactly where its fraction is below frac_min */
	bool fast;
	float k1, k2, c, frac_min;
};

/*
 * The float path of a filled ADD from TFLite's multipliers and shifts (the
 * ones given to vk_rq_fill) and the output zero point: a->fast set where its
 * error bound allows (vk_rq.c).  Baseline code.
 */
void vk_add_fill_fast(struct vk_add *a, int32_t m1, int s1, int32_t m2, int s2, int32_t mo,
		      int so, int32_t out_zp);
typedef void (*vk_add_fn)(const struct vk_add *a, const uint8_t *x, const uint8_t *r,
			  uint8_t *y, size_t n);
#define VK_DECLARE_ADD(fn)                                                                \
	void fn(const struct vk_add *a, const uint8_t *x, const uint8_t *r, uint8_t *y, size_t n)
VK_DECLARE_ADD(vk512_add);
VK_DECLARE_ADD(vk256_add);
VK_DECLARE_ADD(vk2_add);
VK_DECLARE_ADD(vk512s_add);
VK_DECLARE_ADD(vk256s_add);
VK_DECLARE_ADD(vk2s_add);

#define VK_DECLARE(fn)                                                                    \
	void fn(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m, uint8_t *y, \
		size_t ldy, uint8_t *scratch)
VK_DECLARE(vk512_gemm);
VK_DECLARE(vk256_gemm);
VK_DECLARE(vk2_gemm);
/* SIMDe builds (tests only). */
VK_DECLARE(vk512s_gemm);
VK_DECLARE(vk256s_gemm);
VK_DECLARE(vk2s_gemm);

/*
 * The same GEMM without requantization (CoDeNet's W4A8 layers, which finish
 * with their own): acc[r][n] = dot(a_r, w_n) + cterm[n], int32, row r at
 * acc + r * ldacc (N entries).  g->dwc must be NULL; g->rq is not used.
 */
typedef void (*vk_gemm_acc_fn)(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m,
			       int32_t *acc, size_t ldacc, uint8_t *scratch);
#define VK_DECLARE_ACC(fn)                                                                \
	void fn(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m, int32_t *acc, \
		size_t ldacc, uint8_t *scratch)
VK_DECLARE_ACC(vk512_gemm_acc);
VK_DECLARE_ACC(vk256_gemm_acc);
VK_DECLARE_ACC(vk2_gemm_acc);
VK_DECLARE_ACC(vk512s_gemm_acc);
VK_DECLARE_ACC(vk256s_gemm_acc);
VK_DECLARE_ACC(vk2s_gemm_acc);

/*
 * The GEMM on rows gathered in place (a conv's windows read straight from its
 * input, conv_vnni.c): row r's K4 bytes are the 4-byte groups at rows[r] +
 * koff[k / 4], k = 0, 4, .., K4 - 4 (all readable), and rsum[r] its Σ of real
 * bytes (the dwc term; read always, used when g->dwc is set).  rows and rsum
 * hold m + VK_MR_MAX entries (the last tile computes rows past m, not stored).
 */
typedef void (*vk_gemm_rows_fn)(const struct vk_gemm *g, const uint8_t *const *rows,
				const int32_t *koff, const int32_t *rsum, int m, uint8_t *y,
				size_t ldy);
#define VK_DECLARE_ROWS(fn)                                                               \
	void fn(const struct vk_gemm *g, const uint8_t *const *rows, const int32_t *koff,  \
		const int32_t *rsum, int m, uint8_t *y, size_t ldy)
VK_DECLARE_ROWS(vk512_gemm_rows);
VK_DECLARE_ROWS(vk256_gemm_rows);
VK_DECLARE_ROWS(vk2_gemm_rows);
VK_DECLARE_ROWS(vk512s_gemm_rows);
VK_DECLARE_ROWS(vk256s_gemm_rows);
VK_DECLARE_ROWS(vk2s_gemm_rows);

/*
 * y[i] = lut[x[i]] for i < n (y may be x), on AVX-512 VBMI (vk_lut.c): callers
 * check eng_kset_has_vbmi() (kset.h).
 */
typedef void (*vk_lut_fn)(const uint8_t *lut, const uint8_t *x, uint8_t *y, size_t n);
void vk512_lut(const uint8_t *lut, const uint8_t *x, uint8_t *y, size_t n);
void vk512s_lut(const uint8_t *lut, const uint8_t *x, uint8_t *y, size_t n); /* SIMDe */

#endif
