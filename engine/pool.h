/*
 * pool.h — one persistent compute thread pool per engine context.
 *
 * Created with the context (eng_ctx_create), sized by engine.threads but
 * never more than the CPUs this process may run on, joined at destroy: no
 * thread is created per batch or per operator.  eng_pool_run() splits a range
 * into slices and runs slice 0 on the calling thread and the others on the
 * workers, returning when all are done.  One caller at a time (the context's
 * thread); a slice function must not call eng_pool_run() on the same pool.
 */
#ifndef DETD_ENGINE_POOL_H
#define DETD_ENGINE_POOL_H

#include <stddef.h>

struct eng_pool;

/* fn(ctx, begin, end, slot): slot 0..slices-1 identifies the slice (per-slice scratch). */
typedef void (*eng_pool_fn)(void *ctx, size_t begin, size_t end, int slot);

/* threads: compute threads including the caller's (capped at the CPUs available).
 * 0 or -errno; *out is NULL when one thread is all there is. */
int eng_pool_create(int threads, struct eng_pool **out);
void eng_pool_destroy(struct eng_pool *p); /* joins the workers; NULL-safe */
int eng_pool_threads(const struct eng_pool *p); /* 1 for NULL */

/* Split [0, n) into min(slices, threads, n) contiguous slices and run them.
 * A NULL pool runs fn(ctx, 0, n, 0) on the caller. */
void eng_pool_run(struct eng_pool *p, int slices, size_t n, eng_pool_fn fn, void *ctx);

#endif
