/*
 * plan.h — lowering a loaded model onto the detd_accel kernel
 * (engine/hls/accel_desc.h): which layers/nodes the kernel runs, grouped in
 * blocks, with each block's descriptors (tiled to the kernel's limits) and
 * one packed weights+requant blob for the whole model; everything else is
 * marked cpu.
 *
 * CoDeNet (W4A8 models only): 1×1 conv followed by the 3×3 depthwise of the
 * same unit (plain or deformable, bound 1..ACCEL_MAX_BOUND) fuse into one
 * block; lone 1×1 convs and lone depthwise convs are blocks of one stage.
 * The first conv, 3×3 regular convs, offset convs (their output is the
 * deformable block's aux input), full deformable convs, unbounded
 * deformable convs and the data movement stay on the cpu.
 * TFLite (uint8/int8): CONV_2D 1×1 stride 1 whose only consumer is a 3×3
 * DEPTHWISE_CONV_2D (multiplier 1, dilation 1, stride 1/2) fuse; lone 1×1
 * CONV_2D and lone 3×3 depthwise are one-stage blocks (so an IBN is
 * [expand + depthwise] then [project]).  W8 weights, TFLite requantization
 * taken from the CPU kernels' prepared multipliers (bit-exact by
 * construction).  Other nodes stay on the cpu.
 *
 * Activations cross the kernel boundary in its layout (NHWC, channels padded
 * to 16): plan_pack()/plan_unpack() convert.
 *
 * A plan is built once per model at load time (any thread) and is read-only
 * afterwards.
 */
#ifndef DETD_ENGINE_XRT_PLAN_H
#define DETD_ENGINE_XRT_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accel_desc.h"

struct cdn_model;
struct eng_graph;

enum plan_where { PLAN_CPU = 0, PLAN_ACCEL = 1 };

struct plan_block {
	/* What the block covers.  CoDeNet: layer indices (cdn_model_layer);
	 * TFLite: node indices of g->nodes.  units[0] consumes the block's
	 * input, units[n_units-1] produces its output. */
	int n_units;
	int units[2];
	/* CoDeNet deformable block: layer index of the offset conv whose output
	 * is the aux input; TFLite: tensor indices.  -1 when unused. */
	int aux_unit;
	int in_tensor, out_tensor; /* TFLite tensor indices; -1 for CoDeNet */
	int in_h, in_w, in_c;      /* logical shapes (unpadded channels) */
	int out_h, out_w, out_c;
	int aux_c;
	bool in_u8, out_u8;        /* byte types (TFLite uint8 tensors) */
	uint32_t n_desc;
	struct accel_desc *desc;   /* offsets are into plan->params */
	uint64_t macs;             /* multiply-accumulates of the block */
};

struct plan {
	int n_blocks;
	struct plan_block *blocks;
	uint8_t *params; /* every block's weights + requant, 64-byte aligned */
	size_t params_bytes;
	int n_units;     /* layers (CoDeNet) or nodes (TFLite) of the model */
	uint8_t *where;  /* per unit: enum plan_where */
	int *block_of;   /* per unit: block index, -1 for cpu */
};

/* Build the plan of a CoDeNet model (float models: everything cpu).
 * 0, -ENOMEM, or -EINVAL with err. */
int plan_codenet(const struct cdn_model *m, struct plan **out, char *err, size_t errlen);
/* Build the plan of a prepared TFLite graph (eng_graph_prepare done). */
int plan_tflite(const struct eng_graph *g, struct plan **out, char *err, size_t errlen);
void plan_destroy(struct plan *p); /* NULL-safe */

/* Words (16 bytes) per pixel of a c-channel tensor in the kernel's layout. */
static inline uint32_t plan_cw(int c)
{
	return (uint32_t)(c + ACCEL_VEC - 1) / ACCEL_VEC;
}
/* Bytes of an h×w×c tensor in the kernel's layout. */
static inline size_t plan_tensor_bytes(int h, int w, int c)
{
	return (size_t)h * (size_t)w * plan_cw(c) * ACCEL_WORD_BYTES;
}
/* NHWC bytes → kernel layout (padding channels zeroed), and back. */
void plan_pack(const void *src, int h, int w, int c, void *dst);
void plan_unpack(const void *src, int h, int w, int c, void *dst);

/* Run one block through the C-simulation: packs in/aux, runs, unpacks into
 * out (out_h·out_w·out_c bytes).  aux may be NULL for non-deformable blocks.
 * 0, -ENOMEM, or -EIO when the kernel refused a descriptor. */
int plan_csim_block(const struct plan *p, const struct plan_block *b, const void *in,
		    const void *aux, void *out);

#endif
