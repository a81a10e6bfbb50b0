/*
 * xrt_backend.c — the FPGA host backends "xrt" (a card through Xilinx XRT)
 * and "xrt-sim" (the same host code on the C-simulated kernel), both over
 * struct xrt_dev_ops (xrt_dev.h).
 *
 * Per context (one inference worker): the device, the xclbin (UUID checked
 * against the kernel the plan targets), the detd_accel kernel (argument
 * layout checked), the model's lowering (engine/xrt/plan.h) with its packed
 * weights and every block's descriptors uploaded once and kept resident in
 * device buffers, and one set of activation buffers (in/aux/out) sized for
 * the largest block.  A run walks the graph in node order: the first node of
 * an offloaded block packs its input into the kernel's layout, writes and
 * syncs it, runs the kernel with the block's descriptors (tiled by the plan
 * to the kernel's limits), waits with a timeout, checks the run state, syncs
 * back and unpacks into the arena; every other node runs on the cpu kernels.
 * CoDeNet models run on engine/codenet's walk instead, which offers each
 * layer to xb_cdn_layer() (cdn_ctx_set_offload): a block runs at its first
 * layer, and a two-layer block's output waits in `deferred` for the second.
 * A failing or late kernel fails the frame: the batcher's health path
 * (engine/health.h) re-runs it on cpu.
 *
 * Threads: open/close on the context's creator, run/info/placement on its
 * owner; nothing is shared between contexts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "log.h"
#include "model.h"
#include "plan.h"
#include "xrt_dev.h"

#define TOPIC "xrt"
#define DEFAULT_TIMEOUT_MS 1000

struct xb {
	const struct xrt_dev_ops *ops;
	void *u; /* ops->user */
	const char *be_name;
	const struct eng_graph *g;
	struct plan *plan;
	void *dev, *kernel;
	void *bo_params, *bo_in, *bo_aux, *bo_out;
	void **bo_desc; /* per block */
	/* Per block: host copy of its output when its two nodes are not
	 * adjacent in node order (NULL otherwise).  The kernel runs at the
	 * first node, while its input is alive; the output enters the arena at
	 * the second, where the arena plan gives it its place. */
	uint8_t **deferred;
	size_t in_cap, aux_cap, out_cap;
	uint8_t *stage; /* host staging for pack/unpack */
	unsigned timeout_ms;
	char dev_name[64];
	char uuid[40];
	uint64_t runs, failures;
	int64_t run_ns;
	int nodes_device, nodes_cpu;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void xrt_uuid_str(const uint8_t u[16], char *out, size_t len)
{
	snprintf(out, len,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
		 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
		 u[14], u[15]);
}

static void xb_close(void *priv)
{
	struct xb *b = priv;
	if (!b)
		return;
	const struct xrt_dev_ops *o = b->ops;
	if (b->bo_desc)
		for (int i = 0; i < b->plan->n_blocks; i++)
			o->bo_free(b->u, b->bo_desc[i]);
	free(b->bo_desc);
	if (b->deferred)
		for (int i = 0; i < b->plan->n_blocks; i++)
			free(b->deferred[i]);
	free(b->deferred);
	o->bo_free(b->u, b->bo_params);
	o->bo_free(b->u, b->bo_in);
	o->bo_free(b->u, b->bo_aux);
	o->bo_free(b->u, b->bo_out);
	o->kernel_close(b->u, b->kernel);
	o->dev_close(b->u, b->dev);
	plan_destroy(b->plan);
	free(b->stage);
	free(b);
}

/* The kernel's arguments must be where accel_desc.h says: five buffers
 * (in some memory bank each) and the scalar n_desc at 1. */
static int check_args(struct xb *b, int group[ACCEL_NARGS], char *err, size_t errlen)
{
	for (int a = 0; a < ACCEL_NARGS; a++) {
		group[a] = b->ops->arg_group(b->u, b->kernel, a);
		bool want_buffer = a != ACCEL_ARG_NDESC;
		if (want_buffer != (group[a] >= 0)) {
			snprintf(err, errlen,
				 "%s: kernel %s argument %d is %s, expected %s (xclbin built from "
				 "another kernel version?)",
				 b->be_name, ACCEL_KERNEL_NAME, a,
				 group[a] >= 0 ? "a buffer" : "not a buffer",
				 want_buffer ? "a buffer" : "the scalar n_desc");
			return -EPROTO;
		}
	}
	return 0;
}

/* Blocks read and write arena tensors: their shapes must be what the plan
 * packs and unpacks. */
static int check_plan(const struct eng_graph *g, const struct plan *p, char *err, size_t errlen)
{
	for (int i = 0; i < p->n_blocks; i++) {
		const struct plan_block *pb = &p->blocks[i];
		if (pb->in_tensor < 0 || pb->out_tensor < 0 || pb->aux_c ||
		    g->tensors[pb->in_tensor].bytes != (size_t)pb->in_h * pb->in_w * pb->in_c ||
		    g->tensors[pb->out_tensor].bytes != (size_t)pb->out_h * pb->out_w * pb->out_c) {
			snprintf(err, errlen, "xrt: block %d: tensors do not match the plan", i);
			return -EINVAL;
		}
	}
	return 0;
}

static int upload(struct xb *b, void *bo, const void *src, size_t bytes)
{
	int r = b->ops->bo_write(b->u, bo, src, bytes, 0);
	return r ? r : b->ops->bo_sync(b->u, bo, XRT_SYNC_TO_DEVICE, bytes, 0);
}

static int alloc_bo(struct xb *b, size_t bytes, int group, void **bo)
{
	return b->ops->bo_alloc(b->u, b->dev, bytes ? bytes : ACCEL_WORD_BYTES, group, bo);
}

/* Bytes of a CoDeNet block's output, int8 NHWC. */
static size_t cdn_out_bytes(const struct plan_block *pb)
{
	return (size_t)pb->out_h * pb->out_w * pb->out_c;
}

static int xb_open(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		   void **priv, const struct xrt_dev_ops *dev_ops, const char *be_name, char *err,
		   size_t errlen)
{
	(void)threads;
	*priv = NULL;
	struct xb *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->ops = bo->device_ops ? bo->device_ops : dev_ops;
	b->u = b->ops->user;
	b->be_name = be_name;
	b->g = m->cdn ? NULL : &m->g;
	b->timeout_ms = bo->timeout_ms > 0 ? (unsigned)bo->timeout_ms : DEFAULT_TIMEOUT_MS;
	const struct xrt_dev_ops *o = b->ops;
	int r, group[ACCEL_NARGS];
	uint8_t uuid[16];

	if (m->cdn) {
		if ((r = plan_codenet(m->cdn, &b->plan, err, errlen)))
			goto fail;
		if (b->plan->n_blocks == 0) {
			snprintf(err, errlen, "%s: no layer of this model fits the kernel "
				 "(only W4A8 CoDeNet models have device layers)", be_name);
			r = -ENOTSUP;
			goto fail;
		}
	} else if ((r = plan_tflite(&m->g, &b->plan, err, errlen)) ||
		   (r = check_plan(&m->g, b->plan, err, errlen))) {
		goto fail;
	}
	if ((r = o->dev_open(b->u, bo->device, &b->dev, err, errlen)))
		goto fail;
	o->dev_name(b->u, b->dev, b->dev_name, sizeof(b->dev_name));
	if (!bo->xclbin && dev_ops == &xrt_dev_sim) {
		/* the software device has its kernel built in */
	} else if (!bo->xclbin) {
		snprintf(err, errlen, "%s: engine.xrt.xclbin is not set", be_name);
		r = -EINVAL;
		goto fail;
	}
	if ((r = o->load_xclbin(b->u, b->dev, bo->xclbin, uuid, err, errlen)))
		goto fail;
	xrt_uuid_str(uuid, b->uuid, sizeof(b->uuid));
	if ((r = o->kernel_open(b->u, b->dev, uuid, ACCEL_KERNEL_NAME, &b->kernel, err, errlen)))
		goto fail;
	if ((r = check_args(b, group, err, errlen)))
		goto fail;

	/* Resident for the context's life: weights + requant, descriptors. */
	const struct plan *p = b->plan;
	if ((r = alloc_bo(b, p->params_bytes, group[ACCEL_ARG_PARAMS], &b->bo_params)) ||
	    (r = upload(b, b->bo_params, p->params, p->params_bytes)))
		goto fail_dev;
	size_t nb = p->n_blocks > 0 ? (size_t)p->n_blocks : 1;
	if (!(b->bo_desc = calloc(nb, sizeof(void *)))) {
		r = -ENOMEM;
		goto fail_dev;
	}
	for (int i = 0; i < p->n_blocks; i++) {
		const struct plan_block *pb = &p->blocks[i];
		size_t n = (size_t)pb->n_desc * sizeof(struct accel_desc);
		if ((r = alloc_bo(b, n, group[ACCEL_ARG_DESC], &b->bo_desc[i])) ||
		    (r = upload(b, b->bo_desc[i], pb->desc, n)))
			goto fail_dev;
		size_t ni = plan_tensor_bytes(pb->in_h, pb->in_w, pb->in_c);
		size_t no = plan_tensor_bytes(pb->out_h, pb->out_w, pb->out_c);
		size_t na = pb->aux_c ? plan_tensor_bytes(pb->in_h, pb->in_w, pb->aux_c) : 0;
		b->in_cap = ni > b->in_cap ? ni : b->in_cap;
		b->out_cap = no > b->out_cap ? no : b->out_cap;
		b->aux_cap = na > b->aux_cap ? na : b->aux_cap;
	}
	if (!(b->deferred = calloc(nb, sizeof(uint8_t *)))) {
		r = -ENOMEM;
		goto fail_dev;
	}
	for (int i = 0; i < p->n_blocks; i++) {
		/* CoDeNet: every two-layer block keeps its output until the
		 * walk reaches its second layer */
		const struct plan_block *pb = &p->blocks[i];
		size_t out_bytes = m->cdn ? cdn_out_bytes(pb) : m->g.tensors[pb->out_tensor].bytes;
		if (pb->n_units == 2 && (m->cdn || pb->units[1] != pb->units[0] + 1) &&
		    !(b->deferred[i] = malloc(out_bytes))) {
			r = -ENOMEM;
			goto fail_dev;
		}
	}
	if (b->aux_cap < ACCEL_WORD_BYTES) /* TFLite blocks are never deformable */
		b->aux_cap = ACCEL_WORD_BYTES;
	size_t st = b->in_cap > b->out_cap ? b->in_cap : b->out_cap;
	st = b->aux_cap > st ? b->aux_cap : st;
	if ((r = alloc_bo(b, b->in_cap, group[ACCEL_ARG_IN], &b->bo_in)) ||
	    (r = alloc_bo(b, b->aux_cap, group[ACCEL_ARG_AUX], &b->bo_aux)) ||
	    (r = alloc_bo(b, b->out_cap, group[ACCEL_ARG_OUT], &b->bo_out)))
		goto fail_dev;
	if (!(b->stage = malloc(st ? st : 1))) {
		r = -ENOMEM;
		goto fail_dev;
	}
	uint8_t zero[ACCEL_WORD_BYTES] = {0};
	if ((r = upload(b, b->bo_aux, zero, sizeof(zero))))
		goto fail_dev;
	int n_deferred = 0;
	for (int i = 0; i < p->n_blocks; i++)
		n_deferred += b->deferred[i] != NULL;
	for (int i = 0; i < p->n_units; i++) {
		if (p->where[i] == PLAN_ACCEL)
			b->nodes_device++;
		else
			b->nodes_cpu++;
	}
	log_info(TOPIC, "%s: %s, xclbin %s: %d of %d %s in %d blocks on the device "
		 "(%d with non-adjacent %s), %zu KiB weights resident", be_name, b->dev_name,
		 b->uuid, b->nodes_device, p->n_units, m->cdn ? "layers" : "nodes", p->n_blocks,
		 n_deferred, m->cdn ? "layers" : "nodes", p->params_bytes >> 10);
	*priv = b;
	return 0;
fail_dev:
	snprintf(err, errlen, "%s: device buffers: %s", be_name, strerror(-r));
fail:
	if (err && errlen && !err[0])
		snprintf(err, errlen, "%s: %s", be_name, strerror(-r));
	xb_close(b);
	return r;
}

/* One block on the device: in (and aux, deformable blocks) → kernel → out,
 * host tensors in NHWC. */
static int run_block_io(struct xb *b, int bi, const void *in, const void *aux, void *out)
{
	const struct xrt_dev_ops *o = b->ops;
	const struct plan_block *pb = &b->plan->blocks[bi];
	size_t ni = plan_tensor_bytes(pb->in_h, pb->in_w, pb->in_c);
	size_t no = plan_tensor_bytes(pb->out_h, pb->out_w, pb->out_c);
	void *run = NULL;
	uint32_t status = 0;
	int r;

	plan_pack(in, pb->in_h, pb->in_w, pb->in_c, b->stage);
	if ((r = upload(b, b->bo_in, b->stage, ni)))
		return r;
	if (pb->aux_c) {
		if (!aux)
			return -EINVAL;
		plan_pack(aux, pb->in_h, pb->in_w, pb->aux_c, b->stage);
		if ((r = upload(b, b->bo_aux, b->stage,
				plan_tensor_bytes(pb->in_h, pb->in_w, pb->aux_c))))
			return r;
	}
	if ((r = o->run_open(b->u, b->kernel, &run)))
		return r;
	/* argument order of accel_desc.h */
	if ((r = o->run_set_bo(b->u, run, ACCEL_ARG_DESC, b->bo_desc[bi])) ||
	    (r = o->run_set_u32(b->u, run, ACCEL_ARG_NDESC, pb->n_desc)) ||
	    (r = o->run_set_bo(b->u, run, ACCEL_ARG_PARAMS, b->bo_params)) ||
	    (r = o->run_set_bo(b->u, run, ACCEL_ARG_IN, b->bo_in)) ||
	    (r = o->run_set_bo(b->u, run, ACCEL_ARG_AUX, b->bo_aux)) ||
	    (r = o->run_set_bo(b->u, run, ACCEL_ARG_OUT, b->bo_out)))
		goto out;
	int64_t t0 = mono_ns();
	if ((r = o->run_start(b->u, run)))
		goto out;
	enum xrt_run_state s = o->run_wait(b->u, run, b->timeout_ms, &status);
	b->run_ns += mono_ns() - t0;
	b->runs++;
	switch (s) {
	case XRT_RUN_COMPLETED:
		break;
	case XRT_RUN_TIMEOUT:
		log_error(TOPIC, "%s: block %d: no completion within %u ms", b->be_name, bi,
			  b->timeout_ms);
		r = -ETIMEDOUT;
		goto out;
	case XRT_RUN_REFUSED:
		log_error(TOPIC, "%s: block %d: kernel refused descriptor %u (error %u)",
			  b->be_name, bi, status >> 8, status & 0xff);
		r = -EPROTO;
		goto out;
	case XRT_RUN_ERROR:
	default:
		log_error(TOPIC, "%s: block %d: run ended in an error state", b->be_name, bi);
		r = -EIO;
		goto out;
	}
	if ((r = o->bo_sync(b->u, b->bo_out, XRT_SYNC_FROM_DEVICE, no, 0)) ||
	    (r = o->bo_read(b->u, b->bo_out, b->stage, no, 0)))
		goto out;
	plan_unpack(b->stage, pb->out_h, pb->out_w, pb->out_c, out);
out:
	if (r && r != -ETIMEDOUT && r != -EPROTO && r != -EIO)
		log_error(TOPIC, "%s: block %d: %s", b->be_name, bi, strerror(-r));
	if (r)
		b->failures++;
	o->run_close(b->u, run);
	return r;
}

/* A TFLite block: from and to the arena (or its deferred copy). */
static int run_block(struct xb *b, int bi, uint8_t *arena)
{
	const struct plan_block *pb = &b->plan->blocks[bi];
	const struct eng_tensor *ti = &b->g->tensors[pb->in_tensor];
	const struct eng_tensor *to = &b->g->tensors[pb->out_tensor];
	return run_block_io(b, bi, arena + ti->offset, NULL,
			    b->deferred[bi] ? b->deferred[bi] : arena + to->offset);
}

/* A CoDeNet layer (struct eng_backend_ops.cdn_layer). */
static int xb_cdn_layer(void *priv, int layer, const int8_t *in, const int8_t *aux, int8_t *out)
{
	struct xb *b = priv;
	const struct plan *p = b->plan;
	if (b->g || layer < 0 || layer >= p->n_units || p->where[layer] != PLAN_ACCEL)
		return 1;
	int bi = p->block_of[layer];
	const struct plan_block *pb = &p->blocks[bi];
	if (pb->units[0] != layer) { /* the second layer: made at the first */
		memcpy(out, b->deferred[bi], cdn_out_bytes(pb));
		return 0;
	}
	return run_block_io(b, bi, in, aux, b->deferred[bi] ? (void *)b->deferred[bi] : out);
}

static int xb_run(void *priv, const struct eng_graph *g, const struct eng_exec *x, int64_t *op_ns,
		  eng_node_observer obs, void *obs_user)
{
	struct xb *b = priv;
	const struct plan *p = b->plan;
	for (int i = 0; i < g->n_nodes; i++) {
		const struct eng_node *n = &g->nodes[i];
		int64_t t0 = mono_ns();
		int r = 0;
		if (p->where[i] == PLAN_ACCEL) {
			int bi = p->block_of[i];
			const struct plan_block *pb = &p->blocks[bi];
			/* a block runs once, at its first node */
			if (pb->units[0] == i)
				r = run_block(b, bi, x->arena);
			else if (b->deferred[bi])
				memcpy(x->arena + g->tensors[pb->out_tensor].offset, b->deferred[bi],
				       g->tensors[pb->out_tensor].bytes);
		} else {
			r = g->kernels[i]->eval(n, x);
			if (r > 0)
				r = -EIO;
		}
		if (r)
			return r;
		if (op_ns)
			op_ns[i] = mono_ns() - t0;
		if (obs)
			obs(obs_user, n, x);
	}
	return 0;
}

static int xb_info(void *priv, struct eng_backend_info *out)
{
	const struct xb *b = priv;
	memset(out, 0, sizeof(*out));
	snprintf(out->backend, sizeof(out->backend), "%s", b->be_name);
	snprintf(out->device, sizeof(out->device), "%s", b->dev_name);
	snprintf(out->xclbin_uuid, sizeof(out->xclbin_uuid), "%s", b->uuid);
	out->runs = b->runs;
	out->failures = b->failures;
	out->ms_per_run = b->runs ? (double)b->run_ns / 1e6 / (double)b->runs : 0;
	out->nodes_device = b->nodes_device;
	out->nodes_cpu = b->nodes_cpu;
	out->blocks = b->plan->n_blocks;
	return 0;
}

static const char *xb_placement(void *priv, int node)
{
	const struct xb *b = priv;
	if (node < 0 || node >= b->plan->n_units || b->plan->where[node] != PLAN_ACCEL)
		return "cpu";
	return b->be_name;
}

static int sim_open(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		    void **priv, char *err, size_t errlen)
{
	return xb_open(m, bo, threads, priv, &xrt_dev_sim, "xrt-sim", err, errlen);
}

const struct eng_backend_ops eng_backend_xrt_sim = {
	.name = "xrt-sim",
	.open = sim_open,
	.run = xb_run,
	.close = xb_close,
	.info = xb_info,
	.placement = xb_placement,
	.cdn_layer = xb_cdn_layer,
};

#if DETD_HAVE_XRT
static int real_open(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		     void **priv, char *err, size_t errlen)
{
	return xb_open(m, bo, threads, priv, &xrt_dev_real, "xrt", err, errlen);
}

const struct eng_backend_ops eng_backend_xrt = {
	.name = "xrt",
	.open = real_open,
	.run = xb_run,
	.close = xb_close,
	.info = xb_info,
	.placement = xb_placement,
	.cdn_layer = xb_cdn_layer,
};
#endif
