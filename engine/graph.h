/*
 * graph.h — internal to engine/: the in-memory graph every model reader
 * produces (tensors + nodes per ops.h), its validation, kernel preparation,
 * the activation-arena plan and the plain sequential executor.
 *
 * A graph is built on one thread at load time and is read-only afterwards:
 * any number of contexts (threads) may run it at once, each with its own
 * arena.
 */
#ifndef DETD_ENGINE_GRAPH_H
#define DETD_ENGINE_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"

#define ENG_ARENA_ALIGN 64

struct eng_graph {
	int n_tensors;
	struct eng_tensor *tensors;
	int n_nodes;
	struct eng_node *nodes;
	int n_inputs, n_outputs;
	int *inputs; /* tensor indices of the model's inputs, as in the file */
	int *outputs;

	/* All constant data in one 64-byte aligned block (each tensor 64-byte aligned). */
	uint8_t *weights;
	size_t weight_bytes;

	bool reference_kernels; /* set before eng_graph_prepare(): eng_kernel_get_ref() */
	bool kset_given;        /* set before eng_graph_prepare(): use kset, else the best */
	enum eng_kset kset;

	/* Filled by eng_graph_prepare(). */
	int n_prepared;        /* nodes whose prepare succeeded (release those) */
	size_t arena_bytes;    /* activation arena of one context */
	size_t scratch_bytes;  /* largest per-node scratch */
	size_t live_peak;      /* largest set of simultaneously live tensors (lower bound) */
	int64_t macs;          /* sum of node->macs */
	int *first_use;        /* per tensor: node that writes it (-1: before the first node) */
	int *last_use;         /* per tensor: last node that reads it (n_nodes: after the run) */
	const struct eng_kernel **kernels; /* per node, from eng_kernel_get() */
};

/* Bytes of one element of a type; 0 for types the engine cannot hold. */
size_t eng_dtype_size(enum eng_dtype t);
const char *eng_dtype_name(enum eng_dtype t);
/* dims product × element size with overflow checks; -EOVERFLOW/-EINVAL. */
int eng_tensor_nbytes(const struct eng_tensor *t, size_t *bytes);

/*
 * Check the wiring (arity per op type, every activation written before it is
 * read and written once), call every kernel's prepare in node order, then
 * plan the arena.  Messages start with "model: ".
 */
int eng_graph_prepare(struct eng_graph *g, char *err, size_t errlen);

/* Release prepared kernels and free everything the graph owns (not g itself). */
void eng_graph_free(struct eng_graph *g);

/*
 * Called after node i ran (tests and --dump-tensor use it to see tensors the
 * arena later reuses).
 */
typedef void (*eng_node_observer)(void *user, const struct eng_node *n,
				  const struct eng_exec *x);

/*
 * Run all nodes in order.  op_ns (n_nodes entries, may be NULL) receives each
 * node's wall time.  Returns 0 or the first kernel error (-errno).
 */
int eng_graph_run(const struct eng_graph *g, const struct eng_exec *x, int64_t *op_ns,
		  eng_node_observer obs, void *obs_user);

/*
 * Run all nodes in order over nf frames at once (xs[f]: frame f's arena and
 * scratch, threads 1): node i runs on every frame before node i+1 starts, so
 * a layer's weights are read once per batch while they are in cache.  The
 * frames of a large node are split over pool's threads (NULL pool: in
 * turn on the caller).  op_ns receives each node's wall time divided by nf.
 * Returns 0 or the first kernel error (-errno), the frame in *bad_frame.
 */
struct eng_pool;
int eng_graph_run_batch(const struct eng_graph *g, const struct eng_exec *xs, int nf,
			struct eng_pool *pool, int64_t *op_ns, int *bad_frame);

#endif
