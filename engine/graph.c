/*
 * graph.c — graph validation, kernel preparation, arena planning and the
 * sequential executor (see graph.h).
 *
 * Arena plan: each activation tensor lives from the node that writes it (or
 * the start, for model inputs) to the last node that reads it (or the end,
 * for model outputs and post-process outputs, which the engine reads after
 * the run).  Tensors are placed largest first at the lowest 64-byte aligned
 * offset that does not overlap any already placed tensor whose lifetime
 * overlaps ("greedy by size"), which keeps the arena close to the largest
 * set of simultaneously live tensors instead of the sum of all of them.
 */
#include "graph.h"
#include "pool.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GRAPH_MAX_TENSOR_BYTES ((size_t)256 << 20)
#define GRAPH_MAX_ARENA_BYTES ((size_t)1 << 30) /* a detector needs a few MiB */

size_t eng_dtype_size(enum eng_dtype t)
{
	switch (t) {
	case ENG_DT_F32: return 4;
	case ENG_DT_F16: return 2;
	case ENG_DT_I32: return 4;
	case ENG_DT_U8: return 1;
	case ENG_DT_I64: return 8;
	case ENG_DT_BOOL: return 1;
	case ENG_DT_I16: return 2;
	case ENG_DT_I8: return 1;
	case ENG_DT_STRING: return 0;
	}
	return 0;
}

const char *eng_dtype_name(enum eng_dtype t)
{
	switch (t) {
	case ENG_DT_F32: return "float32";
	case ENG_DT_F16: return "float16";
	case ENG_DT_I32: return "int32";
	case ENG_DT_U8: return "uint8";
	case ENG_DT_I64: return "int64";
	case ENG_DT_STRING: return "string";
	case ENG_DT_BOOL: return "bool";
	case ENG_DT_I16: return "int16";
	case ENG_DT_I8: return "int8";
	}
	return "unknown";
}

int eng_tensor_nbytes(const struct eng_tensor *t, size_t *bytes)
{
	size_t n = eng_dtype_size(t->type);
	if (!n)
		return -EINVAL;
	if (t->ndim < 0 || t->ndim > ENG_MAX_DIMS)
		return -EINVAL;
	for (int i = 0; i < t->ndim; i++) {
		if (t->dims[i] < 0)
			return -EINVAL;
		if (t->dims[i] && n > SIZE_MAX / (size_t)t->dims[i])
			return -EOVERFLOW;
		n *= (size_t)t->dims[i];
	}
	*bytes = n;
	return 0;
}

__attribute__((format(printf, 3, 4))) static int gfail(char *err, size_t errlen, const char *fmt,
							...)
{
	if (err && errlen) {
		int k = snprintf(err, errlen, "model: ");
		if (k > 0 && (size_t)k < errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

/* Inputs and outputs each op type takes (the kernels check shapes and types). */
static const struct {
	int min_in, max_in, min_out, max_out;
} arity[ENG_OP__COUNT] = {
	[ENG_OP_CONV_2D] = {2, 3, 1, 1},
	[ENG_OP_DEPTHWISE_CONV_2D] = {2, 3, 1, 1},
	[ENG_OP_ADD] = {2, 2, 1, 1},
	[ENG_OP_MUL] = {2, 2, 1, 1},
	[ENG_OP_CONCATENATION] = {1, 4096, 1, 1},
	[ENG_OP_SPLIT] = {2, 2, 1, 4096},
	[ENG_OP_RESHAPE] = {1, 2, 1, 1},
	[ENG_OP_LOGISTIC] = {1, 1, 1, 1},
	[ENG_OP_RELU] = {1, 1, 1, 1},
	[ENG_OP_RELU6] = {1, 1, 1, 1},
	[ENG_OP_HARD_SWISH] = {1, 1, 1, 1},
	[ENG_OP_AVERAGE_POOL_2D] = {1, 1, 1, 1},
	[ENG_OP_MAX_POOL_2D] = {1, 1, 1, 1},
	[ENG_OP_MEAN] = {2, 2, 1, 1},
	[ENG_OP_RESIZE_NEAREST_NEIGHBOR] = {2, 2, 1, 1},
	[ENG_OP_RESIZE_BILINEAR] = {2, 2, 1, 1},
	[ENG_OP_QUANTIZE] = {1, 1, 1, 1},
	[ENG_OP_DEQUANTIZE] = {1, 1, 1, 1},
	[ENG_OP_DETECTION_POSTPROCESS] = {3, 3, 4, 4},
};

static const char *opname(const struct eng_node *n)
{
	const char *s = eng_op_name(n->type);
	return s ? s : "?";
}

static bool input_optional(const struct eng_node *n, int i)
{
	return (n->type == ENG_OP_CONV_2D || n->type == ENG_OP_DEPTHWISE_CONV_2D) && i == 2;
}

static int check_wiring(struct eng_graph *g, char *err, size_t errlen)
{
	int *w = g->first_use, *last = g->last_use;
	const int NEVER = -2;
	for (int t = 0; t < g->n_tensors; t++) {
		w[t] = NEVER;
		last[t] = NEVER;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int t = g->inputs[i];
		if (g->tensors[t].is_const)
			return gfail(err, errlen, "model input %d (tensor %d) is a constant", i, t);
		w[t] = -1;
	}
	for (int i = 0; i < g->n_nodes; i++) {
		struct eng_node *n = &g->nodes[i];
		if ((unsigned)n->type >= ENG_OP__COUNT)
			return gfail(err, errlen, "operator %d has an unknown type", i);
		if (n->n_in < arity[n->type].min_in || n->n_in > arity[n->type].max_in)
			return gfail(err, errlen, "operator %d (%s) has %d inputs, expected %d..%d", i,
				     opname(n), n->n_in, arity[n->type].min_in,
				     arity[n->type].max_in);
		if (n->n_out < arity[n->type].min_out || n->n_out > arity[n->type].max_out)
			return gfail(err, errlen, "operator %d (%s) has %d outputs, expected %d..%d",
				     i, opname(n), n->n_out, arity[n->type].min_out,
				     arity[n->type].max_out);
		if (n->type == ENG_OP_SPLIT && n->n_out != n->opts.split.num_splits)
			return gfail(err, errlen, "operator %d (SPLIT) has %d outputs for %d splits", i,
				     n->n_out, n->opts.split.num_splits);
		for (int k = 0; k < n->n_in; k++) {
			const struct eng_tensor *t = n->in[k];
			if (!t) {
				if (input_optional(n, k))
					continue;
				return gfail(err, errlen, "operator %d (%s) input %d is missing", i,
					     opname(n), k);
			}
			if (t->is_const)
				continue;
			if (w[t->index] == NEVER)
				return gfail(err, errlen,
					     "operator %d (%s) input %d reads tensor %d '%s' before "
					     "anything writes it",
					     i, opname(n), k, t->index, t->name ? t->name : "");
			last[t->index] = i;
		}
		for (int k = 0; k < n->n_out; k++) {
			const struct eng_tensor *t = n->out[k];
			if (!t)
				return gfail(err, errlen, "operator %d (%s) output %d is missing", i,
					     opname(n), k);
			if (t->is_const)
				return gfail(err, errlen,
					     "operator %d (%s) output %d is the constant tensor %d", i,
					     opname(n), k, t->index);
			if (w[t->index] != NEVER)
				return gfail(err, errlen,
					     "operator %d (%s) output %d writes tensor %d, which is "
					     "already written (%s)",
					     i, opname(n), k, t->index,
					     w[t->index] < 0 ? "model input" : "by an earlier operator");
			w[t->index] = i;
			last[t->index] = i;
		}
	}
	for (int i = 0; i < g->n_outputs; i++) {
		int t = g->outputs[i];
		if (g->tensors[t].is_const)
			continue;
		if (w[t] == NEVER)
			return gfail(err, errlen, "model output %d (tensor %d) is never written", i, t);
		last[t] = g->n_nodes;
	}
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].type == ENG_OP_DETECTION_POSTPROCESS)
			for (int k = 0; k < g->nodes[i].n_out; k++)
				last[g->nodes[i].out[k]->index] = g->n_nodes;
	for (int i = 0; i < g->n_inputs; i++) {
		int t = g->inputs[i];
		if (last[t] < -1)
			last[t] = -1;
	}
	return 0;
}

static size_t align_up(size_t v)
{
	return (v + ENG_ARENA_ALIGN - 1) & ~(size_t)(ENG_ARENA_ALIGN - 1);
}

struct place {
	int t;
	size_t off, size;
};

static int cmp_size_desc(const void *a, const void *b)
{
	const struct place *x = a, *y = b;
	if (x->size != y->size)
		return x->size < y->size ? 1 : -1;
	return x->t - y->t;
}

static int cmp_off(const void *a, const void *b)
{
	const struct place *x = *(const struct place *const *)a, *y = *(const struct place *const *)b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return 0;
}

static int plan_arena(struct eng_graph *g, char *err, size_t errlen)
{
	int n = 0;
	struct place *pl = calloc((size_t)g->n_tensors, sizeof(*pl));
	const struct place **near = calloc((size_t)g->n_tensors, sizeof(*near));
	if (!pl || !near) {
		free(pl);
		free(near);
		gfail(err, errlen, "out of memory planning the arena");
		return -ENOMEM;
	}
	for (int t = 0; t < g->n_tensors; t++) {
		const struct eng_tensor *x = &g->tensors[t];
		if (x->is_const || g->first_use[t] < -1)
			continue;
		pl[n].t = t;
		pl[n].size = align_up(x->bytes ? x->bytes : 1);
		n++;
	}
	qsort(pl, (size_t)n, sizeof(*pl), cmp_size_desc);
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		int ti = pl[i].t, m = 0;
		for (int j = 0; j < i; j++) {
			int tj = pl[j].t;
			if (g->first_use[tj] <= g->last_use[ti] && g->first_use[ti] <= g->last_use[tj])
				near[m++] = &pl[j];
		}
		qsort(near, (size_t)m, sizeof(*near), cmp_off);
		size_t cur = 0;
		for (int j = 0; j < m; j++) {
			if (near[j]->off >= cur + pl[i].size)
				break;
			if (near[j]->off + near[j]->size > cur)
				cur = near[j]->off + near[j]->size;
		}
		pl[i].off = cur;
		g->tensors[ti].offset = cur;
		if (cur + pl[i].size > total)
			total = cur + pl[i].size;
	}
	/* The largest live set, for comparison (info and tests). */
	size_t peak = 0;
	for (int step = -1; step <= g->n_nodes; step++) {
		size_t live = 0;
		for (int i = 0; i < n; i++) {
			int t = pl[i].t;
			if (g->first_use[t] <= step && step <= g->last_use[t])
				live += pl[i].size;
		}
		if (live > peak)
			peak = live;
	}
	if (total > GRAPH_MAX_ARENA_BYTES) {
		free(pl);
		free(near);
		gfail(err, errlen, "activations need %zu MiB, more than detd allows (%zu MiB)",
		      total >> 20, GRAPH_MAX_ARENA_BYTES >> 20);
		return -EFBIG;
	}
	g->arena_bytes = total ? total : ENG_ARENA_ALIGN;
	g->live_peak = peak;
	free(pl);
	free(near);
	return 0;
}

int eng_graph_prepare(struct eng_graph *g, char *err, size_t errlen)
{
	int r;
	g->first_use = calloc((size_t)g->n_tensors, sizeof(int));
	g->last_use = calloc((size_t)g->n_tensors, sizeof(int));
	g->kernels = calloc((size_t)g->n_nodes, sizeof(*g->kernels));
	if (!g->first_use || !g->last_use || !g->kernels) {
		gfail(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((r = check_wiring(g, err, errlen)))
		return r;
	for (int i = 0; i < g->n_nodes; i++) {
		struct eng_node *n = &g->nodes[i];
		const struct eng_kernel *k = g->reference_kernels ? eng_kernel_get_ref(n->type)
					     : g->kset_given ? eng_kernel_get_set(n->type, g->kset)
							     : eng_kernel_get(n->type);
		if (!k || !k->prepare || !k->eval) {
			gfail(err, errlen, "operator %d (%s) has no kernel in this build", i,
			      opname(n));
			return -ENOTSUP;
		}
		char why[200] = "";
		r = k->prepare(n, why, sizeof(why));
		if (r) {
			if (r > 0)
				r = -EINVAL;
			gfail(err, errlen, "operator %d (%s): %s", i, opname(n),
			      why[0] ? why : "rejected by its kernel");
			return r;
		}
		g->kernels[i] = k;
		g->n_prepared = i + 1;
		/* A kernel may have given its outputs their shapes. */
		for (int o = 0; o < n->n_out; o++) {
			size_t b;
			if (eng_tensor_nbytes(n->out[o], &b) || b > GRAPH_MAX_TENSOR_BYTES)
				return gfail(err, errlen, "operator %d (%s) output %d is too large", i,
					     opname(n), o);
			n->out[o]->bytes = b;
		}
		if (n->scratch_bytes > GRAPH_MAX_TENSOR_BYTES)
			return gfail(err, errlen, "operator %d (%s) asks for %zu bytes of scratch", i,
				     opname(n), n->scratch_bytes);
		if (n->scratch_bytes > g->scratch_bytes)
			g->scratch_bytes = n->scratch_bytes;
		if (n->macs > 0)
			g->macs += n->macs;
	}
	return plan_arena(g, err, errlen);
}

void eng_graph_free(struct eng_graph *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_prepared && g->kernels; i++)
		if (g->kernels[i] && g->kernels[i]->release)
			g->kernels[i]->release(&g->nodes[i]);
	for (int i = 0; g->nodes && i < g->n_nodes; i++) {
		free(g->nodes[i].in);
		free(g->nodes[i].out);
	}
	for (int i = 0; g->tensors && i < g->n_tensors; i++) {
		free((void *)(uintptr_t)g->tensors[i].name);
		free((void *)(uintptr_t)g->tensors[i].q.scale);
		free((void *)(uintptr_t)g->tensors[i].q.zero_point);
	}
	free(g->nodes);
	free(g->tensors);
	free(g->inputs);
	free(g->outputs);
	free(g->weights);
	free(g->first_use);
	free(g->last_use);
	free(g->kernels);
	memset(g, 0, sizeof(*g));
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int eng_graph_run(const struct eng_graph *g, const struct eng_exec *x, int64_t *op_ns,
		  eng_node_observer obs, void *obs_user)
{
	for (int i = 0; i < g->n_nodes; i++) {
		const struct eng_node *n = &g->nodes[i];
		int64_t t0 = op_ns ? now_ns() : 0;
		int r = g->kernels[i]->eval(n, x);
		if (r)
			return r > 0 ? -EIO : r;
		if (op_ns)
			op_ns[i] = now_ns() - t0;
		if (obs)
			obs(obs_user, n, x);
	}
	return 0;
}

/* Nodes below this many MACs per frame run their frames in turn on the caller:
 * handing them to the pool costs more than they take. */
#define BATCH_PARALLEL_MIN_MACS 200000

struct batch_job {
	const struct eng_kernel *k;
	const struct eng_node *n;
	const struct eng_exec *xs;
	int *rc; /* per frame */
};

static void batch_slice(void *ctx, size_t begin, size_t end, int slot)
{
	const struct batch_job *j = ctx;
	(void)slot;
	for (size_t f = begin; f < end; f++) {
		int r = j->k->eval(j->n, &j->xs[f]);
		j->rc[f] = r > 0 ? -EIO : r;
	}
}

int eng_graph_run_batch(const struct eng_graph *g, const struct eng_exec *xs, int nf,
			struct eng_pool *pool, int64_t *op_ns, int *bad_frame)
{
	int *rc = calloc(nf > 0 ? (size_t)nf : 1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	const int threads = eng_pool_threads(pool);
	int r = 0;
	for (int i = 0; i < g->n_nodes && !r; i++) {
		const struct eng_node *n = &g->nodes[i];
		struct batch_job j = {g->kernels[i], n, xs, rc};
		int64_t t0 = op_ns ? now_ns() : 0;
		if (threads > 1 && nf > 1 && n->macs >= BATCH_PARALLEL_MIN_MACS)
			eng_pool_run(pool, threads, (size_t)nf, batch_slice, &j);
		else
			batch_slice(&j, 0, (size_t)nf, 0);
		for (int f = 0; f < nf && !r; f++)
			if (rc[f]) {
				r = rc[f];
				if (bad_frame)
					*bad_frame = f;
			}
		if (op_ns)
			op_ns[i] = (now_ns() - t0) / (nf > 0 ? nf : 1);
	}
	free(rc);
	return r;
}
