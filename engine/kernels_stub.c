/*
 * kernels_stub.c — built only while engine/ops/ has no kernels: an empty
 * kernel table, so the reader, graph and API can be built and tested.
 */
#include "ops/ops.h"

static const char *const names[ENG_OP__COUNT] = {
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

const struct eng_kernel *eng_kernel_get(enum eng_op_type type)
{
	(void)type;
	return 0;
}

const struct eng_kernel *eng_kernel_get_ref(enum eng_op_type type)
{
	(void)type;
	return 0;
}

const char *eng_op_name(enum eng_op_type type)
{
	return (unsigned)type < ENG_OP__COUNT ? names[type] : "?";
}
