/*
 * cpu/cpu.c — the cpu backend: every node runs on the kernels of ops.h, in
 * file order, on the thread that owns the context.  It keeps no per-context
 * data; the arena and scratch belong to the context.
 */
#include <stddef.h>

#include "backend.h"

static int cpu_open(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		    void **priv, char *err, size_t errlen)
{
	(void)m;
	(void)bo;
	(void)threads;
	(void)err;
	(void)errlen;
	*priv = NULL;
	return 0;
}

static int cpu_run(void *priv, const struct eng_graph *g, const struct eng_exec *x,
		   int64_t *op_ns, eng_node_observer obs, void *obs_user)
{
	(void)priv;
	return eng_graph_run(g, x, op_ns, obs, obs_user);
}

static void cpu_close(void *priv)
{
	(void)priv;
}

const struct eng_backend_ops eng_backend_cpu = {
	.name = "cpu",
	.open = cpu_open,
	.run = cpu_run,
	.close = cpu_close,
};
