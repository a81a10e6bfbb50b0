/*
 * accel_desc.h — the contract between the host (C, engine/xrt/) and the
 * detd_accel FPGA kernel (HLS C++, engine/hls/accel.cpp): the per-call
 * descriptor, the buffer layouts, the kernel's argument list and its limits,
 * and the C entry point of the bit-exact C-simulation.
 *
 * Included from C11 and C++; every struct is a fixed-size POD of 32-bit
 * fields so the same bytes mean the same thing on the host and on the card.
 *
 * ---- What one descriptor computes -------------------------------------
 *
 *   in (NHWC int8/uint8) ──1×1 conv──► requant ──► mid ──3×3 depthwise
 *     (plain, stride 1|2, or deformable: integer offsets/dilation from aux)
 *     ──► requant ──► out (NHWC)
 *
 * Either stage can be switched off (ACCEL_F_PW / ACCEL_F_DW; at least one
 * on).  One descriptor covers an output rectangle (oy0, ox0, oh, ow) and a
 * channel tile [c0, c0 + nc) of the mid/out channels (depthwise: mid channel
 * c produces out channel c).  A block larger than the kernel's limits is
 * split into several descriptors by the host (engine/xrt/plan.c); all the
 * descriptors of one run share the in/aux/out/params buffers.
 *
 * Arithmetic per stage (acc is exact, int32):
 *   acc = Σ over taps inside the image and input channels (w − w_zp)·(x − x_zp)
 *   (taps outside the image are skipped, i.e. they read x = x_zp: TFLite's
 *   rule, and CoDeNet's "outside reads q = 0" with x_zp = −128)
 *   ACCEL_RQ_CDN (CoDeNet hardware requant, tools/codenet/codenet_quant.py):
 *     v = ((clamp(acc, −2^23, 2^23−1)·mult[c] + 2^15) >> 16) + bias[c] + out_zp
 *   ACCEL_RQ_TFL (TFLite, engine/ops/quant.h):
 *     v = MultiplyByQuantizedMultiplier(acc + bias[c], mult[c], shift[c]) + out_zp
 *   out = clamp(v, act_lo, act_hi), stored as int8 (or uint8 if the tensor's
 *   ACCEL_F_*_U8 flag says so).  CoDeNet ReLU: out_zp −128, act [−128, 127];
 *   CoDeNet linear: out_zp 0, act [−128, 127].
 *
 * ---- Buffers (all byte offsets are multiples of 16) ---------------------
 *
 * Activations: NHWC with the channel dimension padded to whole 128-bit words
 * (16 channels): pixel (y, x) of a tensor with `cw` words per pixel starts at
 * byte ((y·w + x)·cw)·16.  Padding channels are never read as data.
 * aux (deformable only): the offset tensor, int8 signed, NHWC at the mid
 * resolution, aux_cw words per pixel; channel 2k = dy, 2k+1 = dx of tap k
 * (k = (ky+1)·3 + (kx+1)), or channel 0 = s for the square variant.
 * params: per stage, at the descriptor's offsets:
 *   pw.w_off  1×1 weights of this tile, one row per mid channel.  W8: one
 *             int8/uint8 per weight, rows of in_cw words (in_cw·16 bytes).
 *             W4: signed 4-bit, two per byte (even input channel in the low
 *             nibble), rows of ceil(in_cw/2) words (32 weights per word).
 *             Weights past cin are ignored (the kernel zeroes them).
 *   dw.w_off  depthwise weights of this tile, [9][nc16] int8/uint8 (always
 *             8-bit storage; nc16 = nc rounded up to 16), tap-major
 *   *.rq_off  per-channel requantization, three int32 arrays of nc16 entries
 *             each: mult[], shift[], bias[] (RQ_CDN: shift unused, 0)
 *
 * ---- Kernel arguments (in order; Vitis argument index) -------------------
 *   0 desc    m_axi  gmem0  const accel_desc[n_desc]
 *   1 n_desc  s_axilite     uint32
 *   2 params  m_axi  gmem0  const 128-bit words (weights + requant)
 *   3 in      m_axi  gmem1  const 128-bit words
 *   4 aux     m_axi  gmem3  const 128-bit words (offsets; any valid buffer when unused)
 *             (its own bundle: read by stage_dw while read_input owns gmem1)
 *   5 out     m_axi  gmem2  128-bit words
 *   return    s_axilite     uint32 status: 0, or (index << 8) | ACCEL_E_* of
 *             the first descriptor refused (the kernel then stops)
 */
#ifndef DETD_ENGINE_HLS_ACCEL_DESC_H
#define DETD_ENGINE_HLS_ACCEL_DESC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ACCEL_KERNEL_NAME "detd_accel"
#define ACCEL_DESC_MAGIC 0x44414343u /* "DACC" */
#define ACCEL_DESC_VERSION 1u
#define ACCEL_NARGS 6
/* argument indices (xrtKernelArgGroupId, xrtRunSetArg) */
enum accel_arg {
	ACCEL_ARG_DESC = 0,
	ACCEL_ARG_NDESC = 1,
	ACCEL_ARG_PARAMS = 2,
	ACCEL_ARG_IN = 3,
	ACCEL_ARG_AUX = 4,
	ACCEL_ARG_OUT = 5,
};

/* ---- limits of the synthesized kernel ---------------------------------- */
#define ACCEL_VEC 16          /* channels per 128-bit word */
#define ACCEL_WORD_BYTES 16
#define ACCEL_MAX_CIN 1024    /* 1×1 input channels (weights of a tile held on chip) */
#define ACCEL_MAX_TILE_C 64   /* mid/out channels per descriptor */
#define ACCEL_MAX_W 128       /* mid columns per tile, halo included (line buffer width) */
#define ACCEL_MAX_BOUND 8     /* deformable |offset| / dilation bound */
#define ACCEL_MAX_R (ACCEL_MAX_BOUND + 1) /* rows/cols of halo a tap can reach */
#define ACCEL_LB_ROWS (2 * ACCEL_MAX_R + 1)
#define ACCEL_MAX_AUX_CW 2    /* offset channels: 18 → 2 words */
#define ACCEL_MAX_DIM 4096    /* tensor height/width */
/* parallelism of the synthesized kernel (tools/bench_fpga.c models it):
 * 1×1 stage 16 input × ACCEL_PE_OUT output channels per beat; depthwise
 * stage 16 channels × 9 taps per beat */
#define ACCEL_PE_OUT 8 /* Ultra96: 288 of 360 DSPs (detd-bench fpga-model) */

/* flags */
#define ACCEL_F_PW 0x01u      /* 1×1 stage on */
#define ACCEL_F_DW 0x02u      /* depthwise stage on */
#define ACCEL_F_IN_U8 0x10u   /* input bytes are uint8 (else int8) */
#define ACCEL_F_MID_U8 0x20u  /* the 1×1 output (dw input) is uint8 */
#define ACCEL_F_OUT_U8 0x40u  /* output bytes are uint8 */
#define ACCEL_F_W_U8 0x80u    /* W8 weights (both stages) are uint8 (else int8) */

/* deformable variants of the depthwise stage (integer sampling = gather) */
enum accel_deform {
	ACCEL_DEF_NONE = 0,    /* plain 3×3 depthwise */
	ACCEL_DEF_OFFSET = 1,  /* tap k at (y + ky + dy_k, x + kx + dx_k), dy/dx clamped to ±bound */
	ACCEL_DEF_SQUARE = 2,  /* d = clamp(1 + s, 0, bound), taps at (y + ky·d, x + kx·d) */
};

/* requantization recipes */
enum accel_rq_mode {
	ACCEL_RQ_CDN = 0, /* CoDeNet hardware: 24-bit acc × 16-bit scale, +2^15 >> 16, + bias */
	ACCEL_RQ_TFL = 1, /* TFLite: acc + bias, Q31 multiplier + shift (double rounding) */
};

/* status codes (low byte of the kernel's return value) */
enum accel_err {
	ACCEL_OK = 0,
	ACCEL_E_MAGIC = 1,  /* magic/version */
	ACCEL_E_STAGES = 2, /* neither stage on */
	ACCEL_E_DIMS = 3,   /* tensor/tile dims outside the limits or inconsistent */
	ACCEL_E_CHAN = 4,   /* channel tile outside the limits */
	ACCEL_E_DEFORM = 5, /* deform variant/bound/aux invalid */
	ACCEL_E_RQ = 6,     /* requant mode/width invalid */
	ACCEL_E_ALIGN = 7,  /* params offset not word aligned */
	ACCEL_E_NOMEM = 8,  /* C-sim only: no memory for the on-chip buffers */
};

struct accel_stage {
	uint32_t rq_mode;  /* enum accel_rq_mode */
	int32_t x_zp;      /* input zero point (in the stored byte's own type) */
	int32_t w_zp;      /* weight zero point (uint8 TFLite weights; else 0) */
	int32_t out_zp;    /* added after scaling */
	int32_t act_lo, act_hi; /* output clamp (in the stored type's range) */
	uint32_t w_off;    /* byte offset of the weights in params */
	uint32_t rq_off;   /* byte offset of mult/shift/bias in params */
};

struct accel_desc {
	uint32_t magic, version;
	uint32_t flags;   /* ACCEL_F_* */
	uint32_t wbits;   /* 1×1 weight width: 4 or 8 */
	uint32_t stride;  /* depthwise stride: 1 or 2 (1 when the dw stage is off) */
	int32_t pad_t, pad_l; /* depthwise padding before: CoDeNet 1; TFLite SAME 0 or 1 */
	uint32_t deform;  /* enum accel_deform */
	int32_t bound;    /* 1..ACCEL_MAX_BOUND when deform != NONE */
	/* whole tensors (the tile reads/writes inside them) */
	uint32_t in_h, in_w, in_cw;   /* input; in_cw words per pixel */
	uint32_t cin;                 /* 1×1 input channels (≤ in_cw·16) */
	uint32_t mid_h, mid_w;        /* 1×1 output = dw input (== in_h, in_w) */
	uint32_t out_h, out_w, out_cw;
	uint32_t aux_cw;              /* offset words per pixel (deformable) */
	/* tile */
	uint32_t oy0, ox0, oh, ow;    /* output rectangle */
	uint32_t c0, nc;              /* mid/out channel tile; c0 multiple of 16 */
	struct accel_stage pw, dw;
	uint32_t reserved[7];         /* zero; pads the descriptor to 192 bytes */
};

#define ACCEL_DESC_BYTES 192u /* 12 AXI words; the desc array's stride */
#ifdef __cplusplus
static_assert(sizeof(struct accel_desc) == ACCEL_DESC_BYTES, "accel_desc layout");
#else
_Static_assert(sizeof(struct accel_desc) == ACCEL_DESC_BYTES, "accel_desc layout");
#endif

/* Halo of the depthwise stage: output pixel (y, x) reads mid rows/cols
 * [c − e, c + e] with c = y·stride − pad + 1 (dw on; c = y when off). */
static inline int32_t accel_extent(const struct accel_desc *d)
{
	if (!(d->flags & ACCEL_F_DW))
		return 0;
	if (d->deform == ACCEL_DEF_OFFSET)
		return 1 + d->bound;
	if (d->deform == ACCEL_DEF_SQUARE)
		return d->bound;
	return 1;
}

/* Mid range [*lo, *lo + *n) of one axis a tile of outputs [o0, o0 + on)
 * needs, clipped to [0, mid): used for columns (line-buffer width) and rows. */
static inline void accel_mid_range(const struct accel_desc *d, int32_t o0, int32_t on,
				   int32_t pad, int32_t mid, int32_t *lo, int32_t *n)
{
	int32_t e = accel_extent(d);
	int32_t s = (d->flags & ACCEL_F_DW) ? (int32_t)d->stride : 1;
	int32_t off = (d->flags & ACCEL_F_DW) ? 1 - pad : 0;
	int32_t a = o0 * s + off - e, b = (o0 + on - 1) * s + off + e;
	a = a < 0 ? 0 : a;
	b = b > mid - 1 ? mid - 1 : b;
	*lo = a;
	*n = b >= a ? b - a + 1 : 0;
}

/*
 * C-simulation: runs the kernel's top function (compiled from the HLS source
 * with the host C++ compiler) on host memory laid out as above.  params, in,
 * aux, out: 16-byte aligned buffers of the kernel's layouts (aux may be NULL
 * when no descriptor is deformable).  Returns the kernel's status (0 = all
 * descriptors ran).  Any thread; no global state.
 */
uint32_t accel_csim_run(const struct accel_desc *d, uint32_t n_desc, const void *params,
			const void *in, const void *aux, void *out);

#ifdef __cplusplus
}
#endif

#endif
