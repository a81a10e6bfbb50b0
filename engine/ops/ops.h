/*
 * ops.h — the contract between the graph (engine/graph.c, engine/tflite.c)
 * and the kernels (engine/ops/<family>.c).  Internal to engine/.
 *
 * The model owns nodes and tensors and is immutable after load, so several
 * worker threads can run it at once: a kernel never writes into a node or a
 * tensor while evaluating.  Activation tensors have no data pointer; their
 * bytes live at tensor->offset inside the arena of the running context
 * (struct eng_exec).  Constant tensors point into the model file's buffers.
 *
 * Each op has:
 *   prepare — at load time: check types and shapes, compute requantization
 *             multipliers, pack weights; may allocate node->prep (freed by
 *             release) and ask for node->scratch_bytes of per-context scratch.
 *   eval    — at run time: pure function of its inputs, the prepared data and
 *             the scratch memory.
 * Every op has a plain reference implementation (ops/<family>.c); faster
 * variants (SIMD, threaded) plug in as other entries of the same table and
 * must produce byte-identical output.
 */
#ifndef DETD_ENGINE_OPS_H
#define DETD_ENGINE_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_MAX_DIMS 6

enum eng_dtype {
	ENG_DT_F32 = 0, /* values follow TFLite's TensorType codes on purpose */
	ENG_DT_F16 = 1,
	ENG_DT_I32 = 2,
	ENG_DT_U8 = 3,
	ENG_DT_I64 = 4,
	ENG_DT_STRING = 5,
	ENG_DT_BOOL = 6,
	ENG_DT_I16 = 7,
	ENG_DT_I8 = 9,
};

struct eng_quant {
	/* Per-tensor: n == 1.  Per-channel: n == dims[axis], scale/zero_point arrays. */
	int n;
	int axis;
	const float *scale;
	const int64_t *zero_point;
};

struct eng_tensor {
	int index; /* as in the model file */
	const char *name;
	enum eng_dtype type;
	int ndim;
	int dims[ENG_MAX_DIMS];
	size_t bytes;
	bool is_const;
	const void *const_data; /* is_const: into the model's buffers */
	size_t offset;          /* !is_const: into the context's arena */
	bool has_quant;
	struct eng_quant q;
};

enum eng_act { ENG_ACT_NONE = 0, ENG_ACT_RELU, ENG_ACT_RELU_N1_TO_1, ENG_ACT_RELU6, ENG_ACT_TANH };
enum eng_padding { ENG_PAD_SAME = 0, ENG_PAD_VALID };

enum eng_op_type {
	ENG_OP_CONV_2D,
	ENG_OP_DEPTHWISE_CONV_2D,
	ENG_OP_ADD,
	ENG_OP_MUL,
	ENG_OP_CONCATENATION,
	ENG_OP_SPLIT,
	ENG_OP_RESHAPE,
	ENG_OP_LOGISTIC,
	ENG_OP_RELU,
	ENG_OP_RELU6,
	ENG_OP_HARD_SWISH,
	ENG_OP_AVERAGE_POOL_2D,
	ENG_OP_MAX_POOL_2D,
	ENG_OP_MEAN,
	ENG_OP_RESIZE_NEAREST_NEIGHBOR,
	ENG_OP_RESIZE_BILINEAR,
	ENG_OP_QUANTIZE,
	ENG_OP_DEQUANTIZE,
	ENG_OP_DETECTION_POSTPROCESS,
	ENG_OP__COUNT
};

/* Options, as the model file gives them (TFLite's builtin options). */
struct eng_conv_opts {
	enum eng_padding padding;
	int stride_w, stride_h;
	int dilation_w, dilation_h;
	int depth_multiplier; /* depthwise only */
	enum eng_act act;
};
struct eng_pool_opts {
	enum eng_padding padding;
	int stride_w, stride_h;
	int filter_w, filter_h;
	enum eng_act act;
};
struct eng_act_opts {
	enum eng_act act; /* ADD, MUL */
};
struct eng_concat_opts {
	int axis; /* may be negative as in the file */
	enum eng_act act;
};
struct eng_split_opts {
	int num_splits;
};
struct eng_mean_opts {
	bool keep_dims;
};
struct eng_resize_opts {
	bool align_corners;
	bool half_pixel_centers;
};
struct eng_postprocess_opts {
	int max_detections;
	int max_classes_per_detection;
	int detections_per_class;
	bool use_regular_nms;
	float nms_score_threshold;
	float nms_iou_threshold;
	int num_classes;
	float y_scale, x_scale, h_scale, w_scale;
};

union eng_op_opts {
	struct eng_conv_opts conv;
	struct eng_pool_opts pool;
	struct eng_act_opts act;
	struct eng_concat_opts concat;
	struct eng_split_opts split;
	struct eng_mean_opts mean;
	struct eng_resize_opts resize;
	struct eng_postprocess_opts pp;
};

struct eng_node {
	int index; /* operator index in the file (subgraph 0) */
	enum eng_op_type type;
	int n_in, n_out;
	struct eng_tensor **in; /* an optional input absent in the file is NULL */
	struct eng_tensor **out;
	union eng_op_opts opts;
	void *prep;           /* kernel-owned, from prepare */
	size_t scratch_bytes; /* per-context scratch the kernel needs at eval */
	int64_t macs;         /* multiply-accumulates, for stats; set by prepare */
};

/* The running context a kernel sees. */
struct eng_pool;
struct eng_exec {
	uint8_t *arena;
	void *scratch; /* at least node->scratch_bytes, 64-byte aligned */
	int threads;   /* compute threads the kernel may use (1 = reference path) */
	struct eng_pool *pool; /* the context's threads (engine/pool.h), or NULL */
	bool lut_vbmi; /* 8-bit table lookups use AVX-512 VBMI: the model's kernel set
			* is avx512vnni and the CPU has VBMI (eng_kset_has_vbmi) */
};

static inline void *eng_tdata(const struct eng_exec *x, const struct eng_tensor *t)
{
	return t->is_const ? (void *)(uintptr_t)t->const_data : (void *)(x->arena + t->offset);
}

struct eng_kernel {
	const char *name; /* TFLite's op name, e.g. "CONV_2D" */
	/* 0 or -errno; on error err holds the reason (caller prefixes op index). */
	int (*prepare)(struct eng_node *n, char *err, size_t errlen);
	int (*eval)(const struct eng_node *n, const struct eng_exec *x);
	void (*release)(struct eng_node *n);
};

/* The kernel of an op type (reference or the fastest verified variant of eng_kset_best()). */
const struct eng_kernel *eng_kernel_get(enum eng_op_type type);
const char *eng_op_name(enum eng_op_type type);
/* The kernel of an op type in a kernel set (kset.h; ENG_KS_REF: the reference). */
#include "kset.h"
const struct eng_kernel *eng_kernel_get_set(enum eng_op_type type, enum eng_kset ks);
/* The plain reference kernel of an op type (tests compare the two). */
const struct eng_kernel *eng_kernel_get_ref(enum eng_op_type type);

#endif
