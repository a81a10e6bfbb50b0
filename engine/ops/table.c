/*
 * table.c — op type → kernel table and op names.
 *
 * eng_kernel_get() returns the fastest variant verified byte-identical to the
 * reference (the fast kernels fall back to the reference loops by
 * themselves when the CPU lacks AVX2); eng_kernel_get_ref() returns
 * the plain reference kernel, for tests and for debugging a mismatch.
 * Read-only tables; any thread.
 */
#include "kernels.h"

static const char *const op_names[ENG_OP__COUNT] = {
	[ENG_OP_CONV_2D] = "CONV_2D",
	[ENG_OP_DEPTHWISE_CONV_2D] = "DEPTHWISE_CONV_2D",
	[ENG_OP_ADD] = "ADD",
	[ENG_OP_MUL] = "MUL",
	[ENG_OP_CONCATENATION] = "CONCATENATION",
	[ENG_OP_SPLIT] = "SPLIT",
	[ENG_OP_RESHAPE] = "RESHAPE",
	[ENG_OP_LOGISTIC] = "LOGISTIC",
	[ENG_OP_RELU] = "RELU",
	[ENG_OP_RELU6] = "RELU6",
	[ENG_OP_HARD_SWISH] = "HARD_SWISH",
	[ENG_OP_AVERAGE_POOL_2D] = "AVERAGE_POOL_2D",
	[ENG_OP_MAX_POOL_2D] = "MAX_POOL_2D",
	[ENG_OP_MEAN] = "MEAN",
	[ENG_OP_RESIZE_NEAREST_NEIGHBOR] = "RESIZE_NEAREST_NEIGHBOR",
	[ENG_OP_RESIZE_BILINEAR] = "RESIZE_BILINEAR",
	[ENG_OP_QUANTIZE] = "QUANTIZE",
	[ENG_OP_DEQUANTIZE] = "DEQUANTIZE",
	[ENG_OP_DETECTION_POSTPROCESS] = "TFLite_Detection_PostProcess",
};

static const struct eng_kernel *const ref_table[ENG_OP__COUNT] = {
	[ENG_OP_CONV_2D] = &eng_k_conv_ref,
	[ENG_OP_DEPTHWISE_CONV_2D] = &eng_k_dwconv_ref,
	[ENG_OP_ADD] = &eng_k_add,
	[ENG_OP_MUL] = &eng_k_mul,
	[ENG_OP_CONCATENATION] = &eng_k_concat,
	[ENG_OP_SPLIT] = &eng_k_split,
	[ENG_OP_RESHAPE] = &eng_k_reshape,
	[ENG_OP_LOGISTIC] = &eng_k_logistic,
	[ENG_OP_RELU] = &eng_k_relu,
	[ENG_OP_RELU6] = &eng_k_relu6,
	[ENG_OP_HARD_SWISH] = &eng_k_hard_swish,
	[ENG_OP_AVERAGE_POOL_2D] = &eng_k_avgpool,
	[ENG_OP_MAX_POOL_2D] = &eng_k_maxpool,
	[ENG_OP_MEAN] = &eng_k_mean,
	[ENG_OP_RESIZE_NEAREST_NEIGHBOR] = &eng_k_resize_nn,
	[ENG_OP_RESIZE_BILINEAR] = &eng_k_resize_bilinear,
	[ENG_OP_QUANTIZE] = &eng_k_quantize,
	[ENG_OP_DEQUANTIZE] = &eng_k_dequantize,
	[ENG_OP_DETECTION_POSTPROCESS] = &eng_k_postprocess,
};

const struct eng_kernel *eng_kernel_get_ref(enum eng_op_type type)
{
	if ((int)type < 0 || type >= ENG_OP__COUNT)
		return NULL;
	return ref_table[type];
}

const struct eng_kernel *eng_kernel_get(enum eng_op_type type)
{
	return eng_kernel_get_set(type, eng_kset_best());
}

/* The AVX2 set: the VNNI sets' convolutions with emulated dot products (their
 * prepare falls back to conv_fast.c's kernels for the shapes they leave). */
static const struct eng_kernel *kernel_get_avx2(enum eng_op_type type)
{
	switch (type) {
	case ENG_OP_CONV_2D:
		return &eng_k_conv_vk_avx2;
	case ENG_OP_DEPTHWISE_CONV_2D:
		return &eng_k_dwconv_vk_avx2;
	case ENG_OP_ADD:
		return &eng_k_add_vk_avx2;
	case ENG_OP_MUL:
		return &eng_k_mul_fast;
	case ENG_OP_RELU:
		return &eng_k_relu_lut;
	case ENG_OP_RELU6:
		return &eng_k_relu6_lut;
	case ENG_OP_HARD_SWISH:
		return &eng_k_hard_swish_lut;
	case ENG_OP_QUANTIZE:
		return &eng_k_quantize_lut;
	case ENG_OP_DETECTION_POSTPROCESS:
		return &eng_k_postprocess_fast;
	default:
		return eng_kernel_get_ref(type);
	}
}

/* The VNNI sets differ from the AVX2 set in CONV_2D, DEPTHWISE_CONV_2D and ADD. */
const struct eng_kernel *eng_kernel_get_set(enum eng_op_type type, enum eng_kset ks)
{
	switch (ks) {
	case ENG_KS_REF:
		return eng_kernel_get_ref(type);
	case ENG_KS_AVX512VNNI:
		if (type == ENG_OP_CONV_2D)
			return &eng_k_conv_avx512vnni;
		if (type == ENG_OP_DEPTHWISE_CONV_2D)
			return &eng_k_dwconv_avx512vnni;
		if (type == ENG_OP_ADD)
			return &eng_k_add_avx512vnni;
		return kernel_get_avx2(type);
	case ENG_KS_AVXVNNI:
		if (type == ENG_OP_CONV_2D)
			return &eng_k_conv_avxvnni;
		if (type == ENG_OP_DEPTHWISE_CONV_2D)
			return &eng_k_dwconv_avxvnni;
		if (type == ENG_OP_ADD)
			return &eng_k_add_avxvnni;
		return kernel_get_avx2(type);
	default:
		return kernel_get_avx2(type);
	}
}

const char *eng_op_name(enum eng_op_type type)
{
	if ((int)type < 0 || type >= ENG_OP__COUNT)
		return "UNKNOWN";
	return op_names[type];
}
