/*
 * backend.h — internal to engine/: what a backend implements.
 *
 * A backend runs one frame of a prepared model inside an execution context:
 * the engine has already written the frame and the recurrent state into the
 * context's arena (struct eng_exec) and reads the outputs back afterwards,
 * so a backend only decides where each node runs.  "cpu" runs every node
 * with the kernels of ops.h; an FPGA backend (xrt) offloads the nodes it
 * supports and hands the rest to the same kernels.
 *
 * open/close run on the thread that creates/destroys the context; run on the
 * thread that owns the context.  priv is per context.
 */
#ifndef DETD_ENGINE_BACKEND_H
#define DETD_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

struct eng_model;
struct eng_backend_info;
struct eng_backend_opts;

struct eng_backend_ops {
	const char *name;
	/* 0 or -errno with a reason in err; *priv is this context's backend data. */
	int (*open)(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		    void **priv, char *err, size_t errlen);
	/* One frame; op_ns (one entry per node) may be NULL; obs may be NULL. */
	int (*run)(void *priv, const struct eng_graph *g, const struct eng_exec *x, int64_t *op_ns,
		   eng_node_observer obs, void *obs_user);
	void (*close)(void *priv); /* NULL-safe on priv */
	/* Optional (NULL: nothing to report): device, counters, placement. */
	int (*info)(void *priv, struct eng_backend_info *out);
	/* Optional: where node i runs, "cpu" or the device's name (detd-bench tables). */
	const char *(*placement)(void *priv, int node);
	/* CoDeNet models (optional; without it a backend opens TFLite models
	 * only): called before CoDeNet layer `layer` runs, with its int8 input,
	 * the offsets of a deformable layer (else NULL) and its output buffer;
	 * 0 = the device produced out, 1 = run it on the cpu, -errno = the frame
	 * fails (see cdn_ctx_set_offload).  node numbers of placement() and
	 * info() are layer numbers for these models. */
	int (*cdn_layer)(void *priv, int layer, const int8_t *in, const int8_t *aux, int8_t *out);
};

extern const struct eng_backend_ops eng_backend_cpu;
/* engine/xrt/: the FPGA host path on the C-simulated kernel (always built) ... */
extern const struct eng_backend_ops eng_backend_xrt_sim;
/* ... and on a card through XRT (built with -Dxrt). */
extern const struct eng_backend_ops eng_backend_xrt;

#endif
