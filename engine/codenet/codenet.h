/*
 * codenet.h — CoDeNet inside the engine: the model format reader (JSON
 * architecture + safetensors weights), the operators (float and W4A8
 * integer), and one-frame execution producing struct eng_detections.
 * Internal to engine/: eng_model_load() dispatches here for
 * model.format "codenet"; tools/ and tests/ use it directly.
 *
 * The arithmetic is defined by tools/codenet/codenet_quant.py (integer) and
 * tools/codenet/codenet_ref.py (float); this code reproduces it (integer:
 * bit for bit).  Tensors are NHWC here (the channel vector of a pixel is
 * contiguous: depthwise deformable sampling applies one set of bilinear
 * weights to the whole vector).
 *
 * Threads: a cdn_model is immutable after cdn_model_load() and may be shared;
 * a cdn_ctx belongs to one thread at a time and may use `threads` helper
 * threads inside cdn_run().
 */
#ifndef DETD_ENGINE_CODENET_H
#define DETD_ENGINE_CODENET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define CDN_NAME_MAX 96
#define CDN_MAX_DIMS 6

/* ---- safetensors ------------------------------------------------------ */
enum cdn_dtype { CDN_F32, CDN_I32, CDN_I8 };

struct cdn_st_tensor {
	char name[CDN_NAME_MAX];
	enum cdn_dtype dtype;
	int ndim;
	int dims[CDN_MAX_DIMS];
	size_t count, bytes, begin;
	const uint8_t *data; /* into the file image: may be unaligned, memcpy it */
};
struct cdn_st;
int cdn_st_open(const char *path, struct cdn_st **out, char *err, size_t errlen);
void cdn_st_close(struct cdn_st *st); /* NULL-safe */
int cdn_st_count(const struct cdn_st *st);
const struct cdn_st_tensor *cdn_st_at(const struct cdn_st *st, int i);
const struct cdn_st_tensor *cdn_st_find(const struct cdn_st *st, const char *name);
/* Checks dtype and exact shape; -ENOENT if absent, -EINVAL (with err) if different. */
int cdn_st_get(const struct cdn_st *st, const char *name, enum cdn_dtype dtype, int ndim,
	       const int *dims, const void **data, char *err, size_t errlen);
const char *cdn_dtype_name(enum cdn_dtype d);

/* ---- tensors and layers ----------------------------------------------- */
/* An activation: NHWC, exactly one of f (float path) / q (int8 path) set.
 * sgn: int8 domain (false: unsigned, real = s·(a+128); true: signed, real = s·a). */
struct cdn_ten {
	int h, w, c;
	bool sgn;
	float *f;
	int8_t *q;
	int slot; /* cdn_run's arena bookkeeping (0 for tensors made elsewhere) */
};

enum cdn_lkind {
	CDN_L_CONV,     /* regular k×k conv (k 1 or 3), stride 1/2/4 */
	CDN_L_DW,       /* depthwise 3×3 */
	CDN_L_DCN_FULL, /* deformable 3×3 cin→cout (deformable im2col + GEMM) */
	CDN_L_DCN_DW,   /* depthwise deformable 3×3 */
};

/* Deformable sampling variant (see tools/codenet/codenet_ref.py). */
struct cdn_dcn_cfg {
	bool mask;    /* DCNv2: 9 mask logits after the 18 offsets (float only) */
	bool square;  /* one scalar per pixel: dilation d = clamp(1 + s, 0, bound) */
	bool rounded; /* offsets rounded half-to-even: gather, no interpolation */
	float bound;  /* 0: unbounded; else offsets clamped to ±bound (square: d ≤ bound) */
};

/* A u8×s8 GEMM with int32 output: vk_gemm_acc_fn (engine/ops/x86/vk.h). */
struct vk_gemm;
typedef void (*cdn_vk_fn)(const struct vk_gemm *g, const uint8_t *a, size_t lda, int m,
			  int32_t *acc, size_t ldacc, uint8_t *scratch);

struct cdn_layer {
	char name[CDN_NAME_MAX];
	enum cdn_lkind kind;
	int cin, cout, k, stride;
	bool relu;
	bool is_offset; /* the offset conv of a deformable layer: linear, 1 LSB = 1 pixel */
	/* packed weights: CONV / DCN_FULL [k·k·cin][cout] (tap-major, then input
	 * channel), DW / DCN_DW [k·k][c] */
	float *wf, *bf;   /* float model */
	int16_t *wq;      /* w4a8: 4-bit values widened for the integer GEMM */
	int16_t *wq2;     /* w4a8 GEMM layers: wq as [K/2][cout][2] pairs (cdn_layer_pack) */
	int32_t *mq, *bq; /* w4a8: 16-bit multiplier and bias per output channel */
	float oscale;     /* w4a8 heads: dequantization scale of the output */
	/* w4a8 GEMM layers on a VNNI kernel set (cdn_model_set_vk): the weights
	 * packed for vpdpbusd, [0] for unsigned inputs (q = a + 128 as a byte),
	 * [1] for signed ones (q + 128, with −128·Σw in cterm); NULL: AVX2/ref */
	struct vk_gemm *vk[2];
	cdn_vk_fn vkfn;
};

/* Run op-parallel work: fn(arg, tid, begin, end) over [0, n) split into at most
 * `threads` contiguous chunks (tid 0..threads-1; chunk 0 runs on the caller).
 * Returns 0, or -errno if a helper thread could not start (its chunk then
 * runs on the caller: the result is complete either way). */
typedef void (*cdn_par_fn)(void *arg, int tid, int begin, int end);
int cdn_parallel(int threads, int n, cdn_par_fn fn, void *arg);

/*
 * How the operators of a context split their work: at most `threads` chunks,
 * run by `run` when set (the engine's persistent pool: run(user, threads, n,
 * fn, arg) has cdn_parallel's contract and returns when every chunk is done),
 * else by cdn_parallel (a helper thread per chunk: tools and tests).
 */
struct cdn_par {
	int threads;
	void (*run)(void *user, int threads, int n, cdn_par_fn fn, void *arg);
	void *user;
};

/* Operators.  Output tensors are allocated by the caller (h, w, c, sgn set,
 * buffer of the right type).  threads ≥ 1.  Return 0 or -ENOMEM. */
int cdn_op_conv(const struct cdn_layer *L, const struct cdn_ten *in, struct cdn_ten *out,
		int threads);
int cdn_op_dcn(const struct cdn_layer *L, const struct cdn_dcn_cfg *cfg, const struct cdn_ten *in,
	       const struct cdn_ten *off, struct cdn_ten *out, int threads);
/* The same on a caller's workspace (a context's planned arena): per-thread
 * scratch bytes from cdn_op_*_scratch() for these shapes (quant: the W4A8
 * path), and ws of cdn_op_ws_bytes(those, threads) bytes, CDN_WS_ALIGN
 * aligned (NULL when the scratch is 0).  No allocation; 0 or -EINVAL. */
#define CDN_WS_ALIGN 64
size_t cdn_op_conv_scratch(const struct cdn_layer *L, bool quant, const struct cdn_ten *in,
			   const struct cdn_ten *out);
size_t cdn_op_dcn_scratch(const struct cdn_layer *L, bool quant, const struct cdn_ten *in,
			  const struct cdn_ten *out);
size_t cdn_op_ws_bytes(size_t per_thread, int threads);
int cdn_op_conv_ws(const struct cdn_layer *L, const struct cdn_ten *in, struct cdn_ten *out,
		   const struct cdn_par *par, void *ws);
int cdn_op_dcn_ws(const struct cdn_layer *L, const struct cdn_dcn_cfg *cfg,
		  const struct cdn_ten *in, const struct cdn_ten *off, struct cdn_ten *out,
		  const struct cdn_par *par, void *ws);
void cdn_op_maxpool3s2(const struct cdn_ten *in, struct cdn_ten *out);
void cdn_op_upsample2(const struct cdn_ten *in, struct cdn_ten *out);
void cdn_op_split(const struct cdn_ten *in, struct cdn_ten *a, struct cdn_ten *b);
void cdn_op_concat_shuffle(const struct cdn_ten *a, const struct cdn_ten *b, struct cdn_ten *out);
/* Derive wq2 from wq (GEMM layers of W4A8 models; optional: without it the
 * portable kernel runs).  0 or -ENOMEM; the caller frees wq2. */
int cdn_layer_pack(struct cdn_layer *L);
/* Pack a W4A8 GEMM layer (CONV, DCN_FULL) for fn (L->vk, L->vkfn; other
 * layers: nothing).  0 or -ENOMEM; cdn_layer_vk_free() releases it. */
int cdn_layer_pack_vk(struct cdn_layer *L, cdn_vk_fn fn);
void cdn_layer_vk_free(struct cdn_layer *L);
/* the requantization of codenet_quant.py */
int8_t cdn_requant(int32_t acc, int32_t m, int32_t bias, bool relu);
float cdn_sigmoid(float x);

/* CenterNet decoding.  hm [H][W][C] logits, wh/reg [H][W][2] (channel 0 = x).
 * Peaks (logit == its 3×3 max), top max_det by logit (ties: lower
 * class-major index first), then score = sigmoid ≥ thresh.  Boxes are
 * normalized to the input (in_w, in_h); the output stride is 4. */
int cdn_decode(const float *hm, const float *wh, const float *reg, int H, int W, int C,
	       int in_w, int in_h, int max_det, float thresh, struct eng_detections *out);


/* ---- model and context -------------------------------------------------- */
struct cdn_model;
struct cdn_ctx;

struct cdn_desc {
	int width, height; /* input */
	int classes;
	int max_det;
	float thresh;
	bool quant; /* w4a8 */
	int n_layers;
	size_t weight_bytes;
	double gmac;
	int out_h, out_w; /* head resolution (input / 4) */
};

/* Load <json_path> and the weights file it names (relative to its folder). */
int cdn_model_load(const char *json_path, struct cdn_model **out, char *err, size_t errlen);
void cdn_model_destroy(struct cdn_model *m);
const struct cdn_desc *cdn_model_desc(const struct cdn_model *m);
const char *cdn_model_label(const struct cdn_model *m, int class_id); /* NULL if none */
const struct cdn_layer *cdn_model_layer(const struct cdn_model *m, int i);
/* Run the W4A8 GEMM layers on fn (a VNNI kernel set, chosen by the caller),
 * before any context is created (their scratch grows).  fn NULL: back to the
 * AVX2/portable GEMM.  0 or -ENOMEM (the model then keeps the old kernels). */
int cdn_model_set_vk(struct cdn_model *m, cdn_vk_fn fn);
/* The deformable sampling variant of the decoder (engine/xrt/plan.c). */
const struct cdn_dcn_cfg *cdn_model_dcn(const struct cdn_model *m);

int cdn_ctx_create(const struct cdn_model *m, int threads, struct cdn_ctx **out);
void cdn_ctx_destroy(struct cdn_ctx *c);
/* Keep a copy of every layer's output of the next runs (tests). */
void cdn_ctx_set_trace(struct cdn_ctx *c, bool on);
/*
 * A device that runs some layers instead of the cpu operators (engine/xrt's
 * backends).  Before each conv / deformable layer of a run, fn(user, layer,
 * in, aux, out): in is the layer's input, aux the offsets of a deformable
 * layer (else NULL), out its allocated output.  It returns 0 when the device
 * produced out, 1 to let the cpu operator run, or -errno to fail the run.  A
 * device block of two layers (1×1 conv + its depthwise) may leave the first
 * layer's out unwritten (its only reader is the second layer, also on the
 * device): traces then hold the cpu's garbage for it.  fn NULL: all cpu.
 */
typedef int (*cdn_offload_fn)(void *user, int layer, const struct cdn_ten *in,
			      const struct cdn_ten *aux, struct cdn_ten *out);
void cdn_ctx_set_offload(struct cdn_ctx *c, cdn_offload_fn fn, void *user);
/* The context's operators split their work through run (struct cdn_par; the
 * engine passes its persistent pool), not a thread per operator. */
void cdn_ctx_set_runner(struct cdn_ctx *c,
			void (*run)(void *user, int threads, int n, cdn_par_fn fn, void *arg),
			void *user);
/* rgb: height×width×3 bytes. */
int cdn_run(struct cdn_ctx *c, const uint8_t *rgb, struct eng_detections *out);
/* After a run: head 0 hm, 1 wh, 2 reg, NHWC; float path f, int path q. */
int cdn_ctx_head(const struct cdn_ctx *c, int which, const struct cdn_ten **t);
/* After a traced run: output of layer i (see cdn_model_layer). */
int cdn_ctx_trace(const struct cdn_ctx *c, int layer, const struct cdn_ten **t);
/* The context's planned memory: activation arena and operator workspace
 * bytes, and the sum of all activation sizes a malloc per tensor would take. */
void cdn_ctx_memory(const struct cdn_ctx *c, size_t *arena, size_t *ws, size_t *naive);
/* Nanoseconds spent in layer i during the last run (bench). */
int64_t cdn_ctx_layer_ns(const struct cdn_ctx *c, int layer);

#endif
