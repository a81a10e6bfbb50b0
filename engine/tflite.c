/*
 * tflite.c — the TFLite flatbuffer reader (see tflite.h).
 *
 * Written from the public layout of TFLite's schema (schema.fbs) and of
 * FlatBuffers: a table starts with a signed 32-bit offset back to its vtable;
 * the vtable holds its own size, the object's size and one 16-bit offset per
 * field (0 = absent: the default applies).  Offsets to sub-objects are
 * unsigned 32-bit and relative to where they are stored; vectors start with
 * a 32-bit element count.  Everything is little endian and read byte by byte,
 * so neither alignment nor the host's endianness matter.
 *
 * Fields read (index in declaration order):
 *   Model: 0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers
 *   OperatorCode: 0 deprecated_builtin_code (int8), 1 custom_code, 2 version,
 *                 3 builtin_code (int32); the code is the larger of the two
 *   SubGraph: 0 tensors, 1 inputs, 2 outputs, 3 operators, 4 name
 *   Tensor: 0 shape, 1 type, 2 buffer, 3 name, 4 quantization, 6 sparsity
 *   QuantizationParameters: 2 scale, 3 zero_point, 6 quantized_dimension
 *   Operator: 0 opcode_index, 1 inputs, 2 outputs, 3 builtin_options_type,
 *             4 builtin_options, 5 custom_options
 *   Buffer: 0 data, 1 offset, 2 size (offset/size: data outside the
 *           flatbuffer, relative to the file start)
 *
 * Error messages name the object (operator 17 input 2, tensor 5 'name') and
 * what is wrong with it; they never print bytes of the file.
 */
#include "tflite.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbuf.h"

#define TFL_MAX_TENSOR_BYTES ((size_t)256 << 20) /* one tensor; far above any detector */
/* Far above any detector (a few thousand of each); bounds the planner's
 * quadratic work on hostile files. */
#define TFL_MAX_TENSORS 20000
#define TFL_MAX_OPERATORS 20000

struct fb {
	const uint8_t *b;
	size_t n;
	char *err;
	size_t errlen;
};

struct fbt {
	uint64_t pos;  /* table start */
	uint64_t vt;   /* vtable start */
	unsigned vtsz; /* vtable bytes */
	unsigned objsz;
};

__attribute__((format(printf, 3, 4))) static int fb_fail(struct fb *f, int rc, const char *fmt,
							  ...)
{
	if (f->err && f->errlen) {
		int k = snprintf(f->err, f->errlen, "model: ");
		if (k > 0 && (size_t)k < f->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(f->err + k, f->errlen - (size_t)k, fmt, ap);
			va_end(ap);
		}
	}
	return rc;
}

static uint64_t rd_le(const uint8_t *p, unsigned w)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < w; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* pos..pos+w inside the file? */
static int in_file(const struct fb *f, uint64_t pos, uint64_t w)
{
	return pos <= f->n && w <= f->n - pos;
}

static int fb_table(struct fb *f, uint64_t pos, struct fbt *t, const char *what)
{
	if (!in_file(f, pos, 4))
		return fb_fail(f, -EINVAL, "%s: table at %llu is outside the file (%zu bytes)", what,
			       (unsigned long long)pos, f->n);
	int32_t soff = (int32_t)(uint32_t)rd_le(f->b + pos, 4);
	int64_t vt = (int64_t)pos - (int64_t)soff;
	if (vt < 0 || !in_file(f, (uint64_t)vt, 4))
		return fb_fail(f, -EINVAL, "%s: vtable at %lld is outside the file", what,
			       (long long)vt);
	t->pos = pos;
	t->vt = (uint64_t)vt;
	t->vtsz = (unsigned)rd_le(f->b + vt, 2);
	t->objsz = (unsigned)rd_le(f->b + vt + 2, 2);
	if (t->vtsz < 4 || (t->vtsz & 1) || !in_file(f, t->vt, t->vtsz))
		return fb_fail(f, -EINVAL, "%s: vtable of %u bytes does not fit the file", what,
			       t->vtsz);
	if (t->objsz < 4 || !in_file(f, pos, t->objsz))
		return fb_fail(f, -EINVAL, "%s: table of %u bytes runs past the end of the file",
			       what, t->objsz);
	return 0;
}

/* Position of field idx of size w; 0 when absent, 1 when present, <0 on error. */
static int fb_field(struct fb *f, const struct fbt *t, int idx, unsigned w, uint64_t *fpos,
		    const char *what)
{
	unsigned slot = 4 + 2 * (unsigned)idx;
	if (slot + 2 > t->vtsz)
		return 0;
	unsigned off = (unsigned)rd_le(f->b + t->vt + slot, 2);
	if (off == 0)
		return 0;
	if (off + w > t->objsz)
		return fb_fail(f, -EINVAL, "%s: field %d lies outside its table", what, idx);
	*fpos = t->pos + off;
	return 1;
}

static int fb_scalar(struct fb *f, const struct fbt *t, int idx, unsigned w, uint64_t def,
		     uint64_t *v, const char *what)
{
	uint64_t p = 0; /* set when fb_field returns 1; -O3 cannot see it */
	int r = fb_field(f, t, idx, w, &p, what);
	if (r < 0)
		return r;
	*v = r ? rd_le(f->b + p, w) : def;
	return 0;
}

static int fb_i32(struct fb *f, const struct fbt *t, int idx, int32_t def, int32_t *v,
		  const char *what)
{
	uint64_t u;
	int r = fb_scalar(f, t, idx, 4, (uint32_t)def, &u, what);
	*v = (int32_t)(uint32_t)u;
	return r;
}

static int fb_u8(struct fb *f, const struct fbt *t, int idx, uint8_t def, uint8_t *v,
		 const char *what)
{
	uint64_t u;
	int r = fb_scalar(f, t, idx, 1, def, &u, what);
	*v = (uint8_t)u;
	return r;
}

/* Follow the offset in field idx; 0 absent, 1 present (*target set), <0 error. */
static int fb_ref(struct fb *f, const struct fbt *t, int idx, uint64_t *target, const char *what)
{
	uint64_t p = 0; /* set when fb_field returns 1; -O3 cannot see it */
	int r = fb_field(f, t, idx, 4, &p, what);
	if (r <= 0)
		return r;
	uint64_t tg = p + rd_le(f->b + p, 4);
	if (!in_file(f, tg, 4))
		return fb_fail(f, -EINVAL, "%s: field %d points to %llu, outside the file (%zu bytes)",
			       what, idx, (unsigned long long)tg, f->n);
	*target = tg;
	return 1;
}

/* Vector in field idx with elements of w bytes: count and start of the first element. */
static int fb_vec(struct fb *f, const struct fbt *t, int idx, unsigned w, uint32_t *count,
		  uint64_t *start, const char *what)
{
	uint64_t v;
	*count = 0;
	*start = 0;
	int r = fb_ref(f, t, idx, &v, what);
	if (r <= 0)
		return r;
	uint64_t c = rd_le(f->b + v, 4);
	if (!in_file(f, v + 4, c * w))
		return fb_fail(f, -EINVAL,
			       "%s: vector of %llu elements at %llu runs past the end of the file",
			       what, (unsigned long long)c, (unsigned long long)v);
	*count = (uint32_t)c;
	*start = v + 4;
	return 1;
}

/* Table i of a vector of tables. */
static int fb_vec_table(struct fb *f, uint64_t start, uint32_t i, struct fbt *t, const char *what)
{
	uint64_t el = start + 4 * (uint64_t)i;
	return fb_table(f, el + rd_le(f->b + el, 4), t, what);
}

/* String field as a new C string ("" when absent); NULL only on ENOMEM. */
static int fb_str(struct fb *f, const struct fbt *t, int idx, char **out, const char *what)
{
	uint32_t c;
	uint64_t s;
	int r = fb_vec(f, t, idx, 1, &c, &s, what);
	if (r < 0)
		return r;
	*out = strndup(r ? (const char *)f->b + s : "", r ? c : 0);
	if (!*out)
		return fb_fail(f, -ENOMEM, "%s: out of memory", what);
	return 0;
}

/* ------------------------------------------------------------------------ */

static const char *const builtin_names[] = {
	"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
	"DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED",
	"HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION",
	"LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1",
	"RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
	"CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
	"UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND",
	"TRANSPOSE", "MEAN", "SUB", "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
	"STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX",
	"DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX",
	"MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT",
	"SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL",
	"NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT",
	"REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND",
	"LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE",
	"FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU",
	"SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2",
	"ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG",
	"QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE",
	"NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY",
	"SEGMENT_SUM", "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE",
	"BROADCAST_TO", "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE",
	"HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL", "CONV_3D_TRANSPOSE",
	"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS",
	"RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU",
	"DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX",
	"UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST",
	"BITWISE_XOR", "RIGHT_SHIFT",
};

const char *eng_tflite_builtin_name(int32_t code)
{
	if (code < 0 || (size_t)code >= sizeof(builtin_names) / sizeof(builtin_names[0]))
		return NULL;
	return builtin_names[code];
}

enum {
	TFL_ADD = 0,
	TFL_AVERAGE_POOL_2D = 1,
	TFL_CONCATENATION = 2,
	TFL_CONV_2D = 3,
	TFL_DEPTHWISE_CONV_2D = 4,
	TFL_DEQUANTIZE = 6,
	TFL_LOGISTIC = 14,
	TFL_MAX_POOL_2D = 17,
	TFL_MUL = 18,
	TFL_RELU = 19,
	TFL_RELU6 = 21,
	TFL_RESHAPE = 22,
	TFL_RESIZE_BILINEAR = 23,
	TFL_CUSTOM = 32,
	TFL_MEAN = 40,
	TFL_SPLIT = 49,
	TFL_RESIZE_NEAREST_NEIGHBOR = 97,
	TFL_QUANTIZE = 114,
	TFL_HARD_SWISH = 117,
};

/* BuiltinOptions union member ids of the options tables read here. */
enum {
	OPT_CONV = 1,
	OPT_DWCONV = 2,
	OPT_POOL = 5,
	OPT_CONCAT = 10,
	OPT_ADD = 11,
	OPT_RESIZE_BILINEAR = 15,
	OPT_MUL = 21,
	OPT_REDUCER = 27,
	OPT_SPLIT = 35,
	OPT_RESIZE_NEAREST = 74,
};

#define PP_CUSTOM_CODE "TFLite_Detection_PostProcess"

static int builtin_to_op(int32_t code, enum eng_op_type *t)
{
	static const struct {
		int32_t code;
		enum eng_op_type type;
	} map[] = {
		{TFL_ADD, ENG_OP_ADD},
		{TFL_AVERAGE_POOL_2D, ENG_OP_AVERAGE_POOL_2D},
		{TFL_CONCATENATION, ENG_OP_CONCATENATION},
		{TFL_CONV_2D, ENG_OP_CONV_2D},
		{TFL_DEPTHWISE_CONV_2D, ENG_OP_DEPTHWISE_CONV_2D},
		{TFL_DEQUANTIZE, ENG_OP_DEQUANTIZE},
		{TFL_LOGISTIC, ENG_OP_LOGISTIC},
		{TFL_MAX_POOL_2D, ENG_OP_MAX_POOL_2D},
		{TFL_MUL, ENG_OP_MUL},
		{TFL_RELU, ENG_OP_RELU},
		{TFL_RELU6, ENG_OP_RELU6},
		{TFL_RESHAPE, ENG_OP_RESHAPE},
		{TFL_RESIZE_BILINEAR, ENG_OP_RESIZE_BILINEAR},
		{TFL_MEAN, ENG_OP_MEAN},
		{TFL_SPLIT, ENG_OP_SPLIT},
		{TFL_RESIZE_NEAREST_NEIGHBOR, ENG_OP_RESIZE_NEAREST_NEIGHBOR},
		{TFL_QUANTIZE, ENG_OP_QUANTIZE},
		{TFL_HARD_SWISH, ENG_OP_HARD_SWISH},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].code == code) {
			*t = map[i].type;
			return 0;
		}
	return -ENOTSUP;
}

int eng_tflite_sniff(const uint8_t *buf, size_t len)
{
	return buf && len >= 8 && memcmp(buf + 4, "TFL3", 4) == 0;
}

struct opcode {
	int32_t code;
	char *custom;
};

struct parse {
	struct fb f;
	struct eng_graph *g;
	uint32_t n_opcodes;
	struct opcode *opcodes;
	uint32_t n_buffers;
	uint64_t buffers_start;
	uint64_t *data_pos; /* per tensor: file position of its constant data */
};

static const char *tname(const struct eng_tensor *t)
{
	return t->name ? t->name : "";
}

/* ---- options ------------------------------------------------------------ */

static int opt_act(struct fb *f, int op, const char *nm, uint8_t v, enum eng_act *a)
{
	if (v > ENG_ACT_TANH)
		return fb_fail(f, -ENOTSUP, "operator %d (%s): fused activation %u is not supported",
			       op, nm, v);
	*a = (enum eng_act)v;
	return 0;
}

static int opt_pad(struct fb *f, int op, const char *nm, uint8_t v, enum eng_padding *p)
{
	if (v > 1)
		return fb_fail(f, -EINVAL, "operator %d (%s): padding %u is neither SAME nor VALID",
			       op, nm, v);
	*p = v == 0 ? ENG_PAD_SAME : ENG_PAD_VALID;
	return 0;
}

/*
 * Custom options of the post-process, read the way TFLite's kernel reads them:
 * an absent (or null) key takes TFLite's default (0, except
 * detections_per_class = 100 and use_regular_nms = false), integers wrap to
 * int32 as AsInt32() does, floats convert, unused keys are ignored.  Whether
 * the values make sense for the configuration in use is checked by the
 * kernel's prepare, as TFLite checks it at run time.
 */
static int pp_fail(struct parse *p, int op, const char *why)
{
	return fb_fail(&p->f, -EINVAL, "operator %d (%s): custom options: %s", op, PP_CUSTOM_CODE,
		       why);
}

static int pp_int(struct parse *p, int op, const uint8_t *buf, size_t len, const char *key,
		  int def, int *v)
{
	char why[160] = "";
	int64_t x;
	int r = eng_flex_map_int(buf, len, key, &x, why, sizeof(why));
	if (r == -ENOENT) {
		*v = def;
		return 0;
	}
	if (r)
		return pp_fail(p, op, why);
	*v = (int32_t)(uint32_t)(uint64_t)x;
	return 0;
}

static int pp_float(struct parse *p, int op, const uint8_t *buf, size_t len, const char *key,
		    float *v)
{
	char why[160] = "";
	double d;
	int r = eng_flex_map_number(buf, len, key, &d, why, sizeof(why));
	if (r == -ENOENT) {
		*v = 0.0f;
		return 0;
	}
	if (r)
		return pp_fail(p, op, why);
	if (!isfinite(d) || fabs(d) > FLT_MAX)
		return fb_fail(&p->f, -EINVAL, "operator %d (%s): option '%s' is not a finite float",
			       op, PP_CUSTOM_CODE, key);
	*v = (float)d;
	return 0;
}

static int parse_pp_opts(struct parse *p, int op, const uint8_t *buf, size_t len,
			 struct eng_postprocess_opts *o)
{
	int r, b = 0;
	if (!len)
		return fb_fail(&p->f, -EINVAL, "operator %d (%s) has no custom options", op,
			       PP_CUSTOM_CODE);
	if ((r = pp_int(p, op, buf, len, "max_detections", 0, &o->max_detections)) ||
	    (r = pp_int(p, op, buf, len, "max_classes_per_detection", 0,
			&o->max_classes_per_detection)) ||
	    (r = pp_int(p, op, buf, len, "detections_per_class", 100, &o->detections_per_class)) ||
	    (r = pp_int(p, op, buf, len, "use_regular_nms", 0, &b)) ||
	    (r = pp_int(p, op, buf, len, "num_classes", 0, &o->num_classes)) ||
	    (r = pp_float(p, op, buf, len, "nms_score_threshold", &o->nms_score_threshold)) ||
	    (r = pp_float(p, op, buf, len, "nms_iou_threshold", &o->nms_iou_threshold)) ||
	    (r = pp_float(p, op, buf, len, "y_scale", &o->y_scale)) ||
	    (r = pp_float(p, op, buf, len, "x_scale", &o->x_scale)) ||
	    (r = pp_float(p, op, buf, len, "h_scale", &o->h_scale)) ||
	    (r = pp_float(p, op, buf, len, "w_scale", &o->w_scale)))
		return r;
	o->use_regular_nms = b != 0;
	return 0;
}

static int parse_options(struct parse *p, int op, const struct fbt *opt, uint8_t otype,
			 const char *nm, struct eng_node *n)
{
	struct fb *f = &p->f;
	char what[64];
	snprintf(what, sizeof(what), "operator %d (%s) options", op, nm);
	int expect;
	switch (n->type) {
	case ENG_OP_CONV_2D: expect = OPT_CONV; break;
	case ENG_OP_DEPTHWISE_CONV_2D: expect = OPT_DWCONV; break;
	case ENG_OP_AVERAGE_POOL_2D:
	case ENG_OP_MAX_POOL_2D: expect = OPT_POOL; break;
	case ENG_OP_CONCATENATION: expect = OPT_CONCAT; break;
	case ENG_OP_ADD: expect = OPT_ADD; break;
	case ENG_OP_MUL: expect = OPT_MUL; break;
	case ENG_OP_MEAN: expect = OPT_REDUCER; break;
	case ENG_OP_SPLIT: expect = OPT_SPLIT; break;
	case ENG_OP_RESIZE_BILINEAR: expect = OPT_RESIZE_BILINEAR; break;
	case ENG_OP_RESIZE_NEAREST_NEIGHBOR: expect = OPT_RESIZE_NEAREST; break;
	default: expect = -1; break;
	}
	/* Absent options table: the schema's defaults (all zero) apply. */
	bool have = opt && otype == expect;
	if (expect > 0 && opt && otype != expect)
		return fb_fail(f, -EINVAL, "operator %d (%s) carries options of type %u, expected %d",
			       op, nm, otype, expect);
	if (expect < 0 || !have) {
		/* Ops whose options are mandatory for a meaningful result. */
		if (n->type == ENG_OP_CONV_2D || n->type == ENG_OP_DEPTHWISE_CONV_2D ||
		    n->type == ENG_OP_AVERAGE_POOL_2D || n->type == ENG_OP_MAX_POOL_2D ||
		    n->type == ENG_OP_SPLIT)
			return fb_fail(f, -EINVAL, "operator %d (%s) has no options", op, nm);
		return 0;
	}
	int r = 0;
	uint8_t u8a = 0, u8b = 0;
	int32_t a = 0, b = 0, c = 0, d = 0, e = 0;
	switch (n->type) {
	case ENG_OP_CONV_2D: {
		struct eng_conv_opts *o = &n->opts.conv;
		if ((r = fb_u8(f, opt, 0, 0, &u8a, what)) || (r = fb_i32(f, opt, 1, 0, &a, what)) ||
		    (r = fb_i32(f, opt, 2, 0, &b, what)) || (r = fb_u8(f, opt, 3, 0, &u8b, what)) ||
		    (r = fb_i32(f, opt, 4, 1, &c, what)) || (r = fb_i32(f, opt, 5, 1, &d, what)) ||
		    (r = opt_pad(f, op, nm, u8a, &o->padding)) ||
		    (r = opt_act(f, op, nm, u8b, &o->act)))
			return r;
		o->stride_w = a, o->stride_h = b, o->dilation_w = c, o->dilation_h = d;
		o->depth_multiplier = 1;
		break;
	}
	case ENG_OP_DEPTHWISE_CONV_2D: {
		struct eng_conv_opts *o = &n->opts.conv;
		if ((r = fb_u8(f, opt, 0, 0, &u8a, what)) || (r = fb_i32(f, opt, 1, 0, &a, what)) ||
		    (r = fb_i32(f, opt, 2, 0, &b, what)) || (r = fb_i32(f, opt, 3, 0, &e, what)) ||
		    (r = fb_u8(f, opt, 4, 0, &u8b, what)) || (r = fb_i32(f, opt, 5, 1, &c, what)) ||
		    (r = fb_i32(f, opt, 6, 1, &d, what)) ||
		    (r = opt_pad(f, op, nm, u8a, &o->padding)) ||
		    (r = opt_act(f, op, nm, u8b, &o->act)))
			return r;
		o->stride_w = a, o->stride_h = b, o->dilation_w = c, o->dilation_h = d;
		o->depth_multiplier = e;
		if (e < 0 || e > 1 << 16)
			return fb_fail(f, -EINVAL, "operator %d (%s): depth multiplier %d", op, nm, e);
		break;
	}
	case ENG_OP_AVERAGE_POOL_2D:
	case ENG_OP_MAX_POOL_2D: {
		struct eng_pool_opts *o = &n->opts.pool;
		if ((r = fb_u8(f, opt, 0, 0, &u8a, what)) || (r = fb_i32(f, opt, 1, 0, &a, what)) ||
		    (r = fb_i32(f, opt, 2, 0, &b, what)) || (r = fb_i32(f, opt, 3, 0, &c, what)) ||
		    (r = fb_i32(f, opt, 4, 0, &d, what)) || (r = fb_u8(f, opt, 5, 0, &u8b, what)) ||
		    (r = opt_pad(f, op, nm, u8a, &o->padding)) ||
		    (r = opt_act(f, op, nm, u8b, &o->act)))
			return r;
		o->stride_w = a, o->stride_h = b, o->filter_w = c, o->filter_h = d;
		if (c < 1 || d < 1 || c > 1 << 16 || d > 1 << 16)
			return fb_fail(f, -EINVAL, "operator %d (%s): filter %dx%d", op, nm, c, d);
		break;
	}
	case ENG_OP_CONCATENATION:
		if ((r = fb_i32(f, opt, 0, 0, &a, what)) || (r = fb_u8(f, opt, 1, 0, &u8b, what)) ||
		    (r = opt_act(f, op, nm, u8b, &n->opts.concat.act)))
			return r;
		n->opts.concat.axis = a;
		break;
	case ENG_OP_ADD:
	case ENG_OP_MUL:
		if ((r = fb_u8(f, opt, 0, 0, &u8b, what)) ||
		    (r = opt_act(f, op, nm, u8b, &n->opts.act.act)))
			return r;
		break;
	case ENG_OP_MEAN:
		if ((r = fb_u8(f, opt, 0, 0, &u8a, what)))
			return r;
		n->opts.mean.keep_dims = u8a != 0;
		break;
	case ENG_OP_SPLIT:
		if ((r = fb_i32(f, opt, 0, 0, &a, what)))
			return r;
		n->opts.split.num_splits = a;
		break;
	case ENG_OP_RESIZE_BILINEAR:
		if ((r = fb_u8(f, opt, 2, 0, &u8a, what)) || (r = fb_u8(f, opt, 3, 0, &u8b, what)))
			return r;
		n->opts.resize.align_corners = u8a != 0;
		n->opts.resize.half_pixel_centers = u8b != 0;
		break;
	case ENG_OP_RESIZE_NEAREST_NEIGHBOR:
		if ((r = fb_u8(f, opt, 0, 0, &u8a, what)) || (r = fb_u8(f, opt, 1, 0, &u8b, what)))
			return r;
		n->opts.resize.align_corners = u8a != 0;
		n->opts.resize.half_pixel_centers = u8b != 0;
		break;
	default:
		break;
	}
	if (n->type == ENG_OP_CONV_2D || n->type == ENG_OP_DEPTHWISE_CONV_2D) {
		const struct eng_conv_opts *o = &n->opts.conv;
		if (o->stride_w < 1 || o->stride_h < 1 || o->dilation_w < 1 || o->dilation_h < 1 ||
		    o->stride_w > 1 << 16 || o->stride_h > 1 << 16 || o->dilation_w > 1 << 16 ||
		    o->dilation_h > 1 << 16)
			return fb_fail(f, -EINVAL, "operator %d (%s): stride %dx%d dilation %dx%d", op,
				       nm, o->stride_w, o->stride_h, o->dilation_w, o->dilation_h);
	}
	if (n->type == ENG_OP_AVERAGE_POOL_2D || n->type == ENG_OP_MAX_POOL_2D) {
		const struct eng_pool_opts *o = &n->opts.pool;
		if (o->stride_w < 1 || o->stride_h < 1 || o->stride_w > 1 << 16 ||
		    o->stride_h > 1 << 16)
			return fb_fail(f, -EINVAL, "operator %d (%s): stride %dx%d", op, nm,
				       o->stride_w, o->stride_h);
	}
	if (n->type == ENG_OP_SPLIT && (n->opts.split.num_splits < 1 ||
					n->opts.split.num_splits > 1 << 16))
		return fb_fail(f, -EINVAL, "operator %d (%s): %d splits", op, nm,
			       n->opts.split.num_splits);
	return 0;
}

/* ---- tensors ------------------------------------------------------------ */

static int parse_quant(struct parse *p, int ti, const struct fbt *q, struct eng_tensor *t)
{
	struct fb *f = &p->f;
	char what[200];
	snprintf(what, sizeof(what), "tensor %d '%.120s' quantization", ti, tname(t));
	uint32_t ns, nz;
	uint64_t ss, zs;
	int32_t axis;
	int r;
	if ((r = fb_vec(f, q, 2, 4, &ns, &ss, what)) < 0 ||
	    (r = fb_vec(f, q, 3, 8, &nz, &zs, what)) < 0 || (r = fb_i32(f, q, 6, 0, &axis, what)))
		return r;
	if (ns == 0)
		return 0; /* min/max only, or nothing: not quantized */
	if (nz != 0 && nz != ns)
		return fb_fail(f, -EINVAL, "%s: %u scales but %u zero points", what, ns, nz);
	if (ns > 1) {
		if (axis < 0 || axis >= t->ndim || t->dims[axis] != (int)ns)
			return fb_fail(f, -EINVAL,
				       "%s: %u per-channel scales do not match dimension %d", what,
				       ns, axis);
	}
	float *sc = calloc(ns, sizeof(*sc));
	int64_t *zp = calloc(ns, sizeof(*zp));
	t->q.scale = sc;
	t->q.zero_point = zp;
	if (!sc || !zp)
		return fb_fail(f, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < ns; i++) {
		uint32_t u = (uint32_t)rd_le(f->b + ss + 4 * (uint64_t)i, 4);
		memcpy(&sc[i], &u, 4);
		if (!isfinite(sc[i]) || sc[i] < 0)
			return fb_fail(f, -EINVAL, "%s: scale %u is not a finite non-negative number",
				       what, i);
		if (nz)
			zp[i] = (int64_t)rd_le(f->b + zs + 8 * (uint64_t)i, 8);
		if (zp[i] < INT32_MIN || zp[i] > INT32_MAX)
			return fb_fail(f, -EINVAL, "%s: zero point %u is %lld, outside int32", what, i,
				       (long long)zp[i]);
	}
	t->has_quant = true;
	t->q.n = (int)ns;
	t->q.axis = ns > 1 ? axis : 0;
	return 0;
}

/* File position and size of buffer bi's data (size 0: no data). */
static int buffer_data(struct parse *p, uint32_t bi, int ti, uint64_t *pos, uint64_t *size)
{
	struct fb *f = &p->f;
	char what[48];
	snprintf(what, sizeof(what), "buffer %u (of tensor %d)", bi, ti);
	struct fbt b;
	uint32_t c;
	uint64_t s, off, sz;
	int r;
	if ((r = fb_vec_table(f, p->buffers_start, bi, &b, what)) ||
	    (r = fb_vec(f, &b, 0, 1, &c, &s, what)) < 0 ||
	    (r = fb_scalar(f, &b, 1, 8, 0, &off, what)) || (r = fb_scalar(f, &b, 2, 8, 0, &sz, what)))
		return r;
	if (c) {
		*pos = s;
		*size = c;
		return 0;
	}
	/* Data stored after the flatbuffer (models over 2 GB); offset 1 means "none". */
	if (off > 1 && sz) {
		if (!in_file(f, off, sz))
			return fb_fail(f, -EINVAL, "%s: data at %llu+%llu is outside the file", what,
				       (unsigned long long)off, (unsigned long long)sz);
		*pos = off;
		*size = sz;
		return 0;
	}
	*pos = *size = 0;
	return 0;
}

static int parse_tensor(struct parse *p, int ti, const struct fbt *tt)
{
	struct fb *f = &p->f;
	struct eng_tensor *t = &p->g->tensors[ti];
	char what[200];
	snprintf(what, sizeof(what), "tensor %d name", ti);
	uint32_t nd;
	uint64_t ds, q;
	uint8_t type;
	int32_t buf;
	int r;
	t->index = ti;
	if ((r = fb_str(f, tt, 3, (char **)&t->name, what)))
		return r;
	snprintf(what, sizeof(what), "tensor %d '%.120s'", ti, tname(t));
	if ((r = fb_vec(f, tt, 0, 4, &nd, &ds, what)) < 0 || (r = fb_u8(f, tt, 1, 0, &type, what)) ||
	    (r = fb_i32(f, tt, 2, 0, &buf, what)))
		return r;
	if (nd > ENG_MAX_DIMS)
		return fb_fail(f, -ENOTSUP, "%s has %u dimensions (at most %d)", what, nd,
			       ENG_MAX_DIMS);
	t->ndim = (int)nd;
	for (uint32_t i = 0; i < nd; i++) {
		int32_t d = (int32_t)(uint32_t)rd_le(f->b + ds + 4 * (uint64_t)i, 4);
		if (d < 0)
			return fb_fail(f, -EINVAL, "%s: dimension %u is %d", what, i, d);
		t->dims[i] = d;
	}
	t->type = (enum eng_dtype)type;
	if (!eng_dtype_size(t->type) || t->type == ENG_DT_STRING)
		return fb_fail(f, -ENOTSUP, "%s has type %u, which detd does not support", what, type);
	size_t bytes;
	if (eng_tensor_nbytes(t, &bytes) || bytes > TFL_MAX_TENSOR_BYTES)
		return fb_fail(f, -EINVAL, "%s: its shape is too large", what);
	t->bytes = bytes;
	if ((uint32_t)buf >= p->n_buffers)
		return fb_fail(f, -EINVAL, "%s refers to buffer %u of %u", what, (uint32_t)buf,
			       p->n_buffers);
	r = fb_ref(f, tt, 6, &q, what);
	if (r < 0)
		return r;
	if (r)
		return fb_fail(f, -ENOTSUP, "%s is sparse, which detd does not support", what);
	r = fb_ref(f, tt, 4, &q, what);
	if (r < 0)
		return r;
	if (r) {
		struct fbt qt;
		if ((r = fb_table(f, q, &qt, what)) || (r = parse_quant(p, ti, &qt, t)))
			return r;
	}
	uint64_t dpos = 0, dsize = 0;
	if ((r = buffer_data(p, (uint32_t)buf, ti, &dpos, &dsize)))
		return r;
	if (dsize) {
		if (dsize != bytes)
			return fb_fail(f, -EINVAL, "%s has %llu bytes of data but its shape needs %zu",
				       what, (unsigned long long)dsize, bytes);
		t->is_const = true;
		p->data_pos[ti] = dpos;
	}
	return 0;
}

static int copy_weights(struct parse *p)
{
	struct eng_graph *g = p->g;
	size_t total = 0;
	for (int i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].is_const)
			total += (g->tensors[i].bytes + ENG_ARENA_ALIGN - 1) & ~(size_t)(ENG_ARENA_ALIGN - 1);
	if (!total)
		return 0;
	g->weights = aligned_alloc(ENG_ARENA_ALIGN, total);
	if (!g->weights)
		return fb_fail(&p->f, -ENOMEM, "out of memory for %zu bytes of weights", total);
	g->weight_bytes = total;
	size_t off = 0;
	for (int i = 0; i < g->n_tensors; i++) {
		struct eng_tensor *t = &g->tensors[i];
		if (!t->is_const)
			continue;
		memcpy(g->weights + off, p->f.b + p->data_pos[i], t->bytes);
		t->const_data = g->weights + off;
		off += (t->bytes + ENG_ARENA_ALIGN - 1) & ~(size_t)(ENG_ARENA_ALIGN - 1);
	}
	return 0;
}

/* ---- operators ---------------------------------------------------------- */

static int parse_index_list(struct parse *p, const struct fbt *ot, int field, int op,
			    const char *dir, bool allow_absent, int *count,
			    struct eng_tensor ***out)
{
	struct fb *f = &p->f;
	char what[64];
	snprintf(what, sizeof(what), "operator %d %ss", op, dir);
	uint32_t c;
	uint64_t s;
	int r = fb_vec(f, ot, field, 4, &c, &s, what);
	if (r < 0)
		return r;
	if (c > 4096)
		return fb_fail(f, -EINVAL, "operator %d has %u %ss", op, c, dir);
	*count = (int)c;
	*out = calloc(c ? c : 1, sizeof(**out));
	if (!*out)
		return fb_fail(f, -ENOMEM, "%s: out of memory", what);
	for (uint32_t i = 0; i < c; i++) {
		int32_t ix = (int32_t)(uint32_t)rd_le(f->b + s + 4 * (uint64_t)i, 4);
		if (ix == -1 && allow_absent)
			continue;
		if (ix < 0 || ix >= p->g->n_tensors)
			return fb_fail(f, -EINVAL, "operator %d %s %u refers to tensor %d of %d", op,
				       dir, i, ix, p->g->n_tensors);
		(*out)[i] = &p->g->tensors[ix];
	}
	return 0;
}

/*
 * Converters leave the post-process outputs without a shape (the runtime
 * sizes them at prepare): boxes [1,M,4], classes [1,M], scores [1,M],
 * num_detections [1] with M = max_detections * max_classes_per_detection,
 * replacing whatever shape the file gives, as TFLite does.
 */
static int shape_pp_outputs(struct parse *p, int op, struct eng_node *n)
{
	const struct eng_postprocess_opts *o = &n->opts.pp;
	long long m = (long long)o->max_detections * o->max_classes_per_detection;
	if (n->n_out != 4)
		return fb_fail(&p->f, -EINVAL, "operator %d (%s) has %d outputs, expected 4", op,
			       PP_CUSTOM_CODE, n->n_out);
	if (m > 1 << 20)
		return fb_fail(&p->f, -EINVAL, "operator %d (%s) writes %lld detections", op,
			       PP_CUSTOM_CODE, m);
	static const int nd[4] = {3, 2, 2, 1};
	for (int k = 0; k < 4; k++) {
		struct eng_tensor *t = n->out[k];
		int want[3] = {1, (int)m, 4};
		if (k == 3)
			want[0] = 1;
		if (t->type != ENG_DT_F32)
			return fb_fail(&p->f, -EINVAL, "operator %d (%s) output %d is not float32", op,
				       PP_CUSTOM_CODE, k);
		/* TFLite's prepare resizes the outputs to these shapes whatever the file
		 * declares (converters often write [] or stale shapes); so do we. */
		if (!p->data_pos[t->index]) {
			t->ndim = nd[k];
			for (int d = 0; d < nd[k]; d++)
				t->dims[d] = want[d];
			t->bytes = 4 * (size_t)(k == 0 ? 4 * m : k == 3 ? 1 : m);
			continue;
		}
		return fb_fail(&p->f, -EINVAL, "operator %d (%s) output %d is a constant", op,
			       PP_CUSTOM_CODE, k);
	}
	return 0;
}

/* The op type of an operator: 0, -ENOTSUP (message names the op), -EINVAL. */
static int op_kind(struct parse *p, int op, const struct fbt *ot, enum eng_op_type *type,
		   const char **name, char *label, size_t labellen)
{
	struct fb *f = &p->f;
	char what[48];
	snprintf(what, sizeof(what), "operator %d", op);
	uint64_t oc;
	int r;
	if ((r = fb_scalar(f, ot, 0, 4, 0, &oc, what)))
		return r;
	if (oc >= p->n_opcodes)
		return fb_fail(f, -EINVAL, "operator %d refers to operator code %llu of %u", op,
			       (unsigned long long)oc, p->n_opcodes);
	const struct opcode *code = &p->opcodes[oc];
	const char *nm = eng_tflite_builtin_name(code->code);
	if (code->code == TFL_CUSTOM) {
		if (strcmp(code->custom, PP_CUSTOM_CODE) != 0) {
			snprintf(label, labellen, "custom op '%.60s'", code->custom);
			return fb_fail(f, -ENOTSUP,
				       "operator %d is the custom op '%.60s', which detd does not "
				       "support",
				       op, code->custom);
		}
		*type = ENG_OP_DETECTION_POSTPROCESS;
		*name = PP_CUSTOM_CODE;
		return 0;
	}
	if (builtin_to_op(code->code, type)) {
		if (nm) {
			snprintf(label, labellen, "%s", nm);
			return fb_fail(f, -ENOTSUP, "operator %d is %s, which detd does not support",
				       op, nm);
		}
		snprintf(label, labellen, "builtin %d", code->code);
		return fb_fail(f, -ENOTSUP,
			       "operator %d has builtin code %d, which detd does not know", op,
			       code->code);
	}
	*name = nm;
	return 0;
}

/* After the first unsupported operator: name the others too, so a user sees
 * everything a model needs at once. */
static void list_more_unsupported(struct parse *p, uint64_t ops_start, uint32_t n_ops,
				  uint32_t from)
{
	char *err = p->f.err;
	size_t errlen = p->f.errlen;
	if (!err || !errlen)
		return;
	char scratch[160], label[80];
	p->f.err = scratch;
	p->f.errlen = sizeof(scratch);
	int more = 0;
	for (uint32_t i = from; i < n_ops; i++) {
		struct fbt ot;
		enum eng_op_type t;
		const char *nm;
		if (fb_vec_table(&p->f, ops_start, i, &ot, "operator"))
			break;
		if (op_kind(p, (int)i, &ot, &t, &nm, label, sizeof(label)) != -ENOTSUP)
			continue;
		size_t k = strlen(err);
		if (k + 1 >= errlen)
			break;
		snprintf(err + k, errlen - k, "%s operator %u (%s)", more ? "," : "; also", i, label);
		more++;
	}
	p->f.err = err;
	p->f.errlen = errlen;
}

static int parse_operator(struct parse *p, int op, const struct fbt *ot)
{
	struct fb *f = &p->f;
	struct eng_node *n = &p->g->nodes[op];
	char what[48], label[80];
	snprintf(what, sizeof(what), "operator %d", op);
	n->index = op;
	const char *nm = NULL;
	int r;
	if ((r = op_kind(p, op, ot, &n->type, &nm, label, sizeof(label))))
		return r;
	if (!nm)
		nm = "?";
	if ((r = parse_index_list(p, ot, 1, op, "input", true, &n->n_in, &n->in)) ||
	    (r = parse_index_list(p, ot, 2, op, "output", false, &n->n_out, &n->out)))
		return r;

	uint8_t otype;
	uint64_t optpos;
	struct fbt opt;
	if ((r = fb_u8(f, ot, 3, 0, &otype, what)))
		return r;
	r = fb_ref(f, ot, 4, &optpos, what);
	if (r < 0)
		return r;
	bool have = r > 0;
	if (have && (r = fb_table(f, optpos, &opt, what)))
		return r;
	if ((r = parse_options(p, op, have ? &opt : NULL, otype, nm, n)))
		return r;
	if (n->type == ENG_OP_DETECTION_POSTPROCESS) {
		uint32_t c;
		uint64_t s;
		if ((r = fb_vec(f, ot, 5, 1, &c, &s, what)) < 0 ||
		    (r = parse_pp_opts(p, op, f->b + s, c, &n->opts.pp)))
			return r;
		if ((r = shape_pp_outputs(p, op, n)))
			return r;
	}
	return 0;
}

/* ---- model -------------------------------------------------------------- */

static int parse_opcodes(struct parse *p, const struct fbt *model)
{
	struct fb *f = &p->f;
	uint64_t s;
	int r = fb_vec(f, model, 1, 4, &p->n_opcodes, &s, "operator_codes");
	if (r < 0)
		return r;
	p->opcodes = calloc(p->n_opcodes ? p->n_opcodes : 1, sizeof(*p->opcodes));
	if (!p->opcodes)
		return fb_fail(f, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < p->n_opcodes; i++) {
		char what[48];
		snprintf(what, sizeof(what), "operator code %u", i);
		struct fbt t;
		uint8_t dep;
		int32_t code;
		if ((r = fb_vec_table(f, s, i, &t, what)) || (r = fb_u8(f, &t, 0, 0, &dep, what)) ||
		    (r = fb_i32(f, &t, 3, 0, &code, what)) ||
		    (r = fb_str(f, &t, 1, &p->opcodes[i].custom, what)))
			return r;
		/* Old files only have the int8 field; newer ones keep it at
		 * PLACEHOLDER (127) for codes above it. */
		int32_t d = (int8_t)dep;
		p->opcodes[i].code = code > d ? code : d;
	}
	return 0;
}

static int parse_io(struct parse *p, const struct fbt *sg, int field, const char *dir, int *n,
		    int **out)
{
	struct fb *f = &p->f;
	uint32_t c;
	uint64_t s;
	char what[48];
	snprintf(what, sizeof(what), "subgraph %ss", dir);
	int r = fb_vec(f, sg, field, 4, &c, &s, what);
	if (r < 0)
		return r;
	if (c > 1024)
		return fb_fail(f, -EINVAL, "subgraph has %u %ss", c, dir);
	*out = calloc(c ? c : 1, sizeof(int));
	if (!*out)
		return fb_fail(f, -ENOMEM, "out of memory");
	*n = (int)c;
	for (uint32_t i = 0; i < c; i++) {
		int32_t ix = (int32_t)(uint32_t)rd_le(f->b + s + 4 * (uint64_t)i, 4);
		if (ix < 0 || ix >= p->g->n_tensors)
			return fb_fail(f, -EINVAL, "model %s %u refers to tensor %d of %d", dir, i, ix,
				       p->g->n_tensors);
		(*out)[i] = ix;
	}
	return 0;
}

int eng_tflite_parse(const uint8_t *buf, size_t len, struct eng_graph *g, char *err,
		     size_t errlen)
{
	struct parse p = {.f = {buf, len, err, errlen}, .g = g};
	struct fb *f = &p.f;
	struct fbt model, sg;
	uint64_t v, s, ts, os;
	uint32_t nsg, nt, no;
	int r;

	if (!eng_tflite_sniff(buf, len)) {
		r = fb_fail(f, -EINVAL, "not a TFLite file (no TFL3 identifier)");
		goto out;
	}
	if ((r = fb_table(f, rd_le(buf, 4), &model, "root table")) ||
	    (r = fb_scalar(f, &model, 0, 4, 0, &v, "model version")))
		goto out;
	if (v != 3) {
		r = fb_fail(f, -ENOTSUP, "schema version %llu, detd reads version 3",
			    (unsigned long long)v);
		goto out;
	}
	if ((r = parse_opcodes(&p, &model)))
		goto out;
	if ((r = fb_vec(f, &model, 4, 4, &p.n_buffers, &p.buffers_start, "buffers")) < 0 ||
	    (r = fb_vec(f, &model, 2, 4, &nsg, &s, "subgraphs")) < 0)
		goto out;
	if (nsg < 1) {
		r = fb_fail(f, -EINVAL, "no subgraph");
		goto out;
	}
	if ((r = fb_vec_table(f, s, 0, &sg, "subgraph 0")) ||
	    (r = fb_vec(f, &sg, 0, 4, &nt, &ts, "subgraph 0 tensors")) < 0 ||
	    (r = fb_vec(f, &sg, 3, 4, &no, &os, "subgraph 0 operators")) < 0)
		goto out;
	if (nt == 0 || no == 0) {
		r = fb_fail(f, -EINVAL, "subgraph 0 has %u tensors and %u operators", nt, no);
		goto out;
	}
	if (nt > TFL_MAX_TENSORS || no > TFL_MAX_OPERATORS) {
		r = fb_fail(f, -ENOTSUP, "subgraph 0 has %u tensors and %u operators (at most %d each)",
			    nt, no, TFL_MAX_TENSORS);
		goto out;
	}
	g->tensors = calloc(nt, sizeof(*g->tensors));
	g->nodes = calloc(no, sizeof(*g->nodes));
	p.data_pos = calloc(nt, sizeof(*p.data_pos));
	if (!g->tensors || !g->nodes || !p.data_pos) {
		r = fb_fail(f, -ENOMEM, "out of memory for %u tensors and %u operators", nt, no);
		goto out;
	}
	g->n_tensors = (int)nt;
	for (uint32_t i = 0; i < nt; i++) {
		struct fbt tt;
		char what[32];
		snprintf(what, sizeof(what), "tensor %u", i);
		if ((r = fb_vec_table(f, ts, i, &tt, what)) || (r = parse_tensor(&p, (int)i, &tt)))
			goto out;
	}
	if ((r = parse_io(&p, &sg, 1, "input", &g->n_inputs, &g->inputs)) ||
	    (r = parse_io(&p, &sg, 2, "output", &g->n_outputs, &g->outputs)))
		goto out;
	g->n_nodes = (int)no;
	for (uint32_t i = 0; i < no; i++) {
		struct fbt ot;
		char what[32];
		snprintf(what, sizeof(what), "operator %u", i);
		if ((r = fb_vec_table(f, os, i, &ot, what)))
			goto out;
		if ((r = parse_operator(&p, (int)i, &ot))) {
			if (r == -ENOTSUP && strstr(err ? err : "", "which detd does not"))
				list_more_unsupported(&p, os, no, i + 1);
			goto out;
		}
	}
	r = copy_weights(&p);
out:
	if (r > 0)
		r = 0;
	if (p.opcodes)
		for (uint32_t i = 0; i < p.n_opcodes; i++)
			free(p.opcodes[i].custom);
	free(p.opcodes);
	free(p.data_pos);
	return r;
}
