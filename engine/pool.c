/*
 * pool.c — the engine's persistent compute threads (pool.h).
 *
 * A run publishes a job under the mutex and bumps a generation counter;
 * workers spin briefly on the counter (operators follow each other within
 * microseconds, a futex wake-up costs more than the work of a small slice)
 * and then sleep on a condition variable.  The caller takes slice 0 and waits
 * for the others on a second condition variable.  Workers: their own threads,
 * started at create, joined at destroy.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define POOL_MAX 64
#define POOL_SPIN 2000 /* polls (pause) before sleeping: tens of microseconds */

struct eng_pool {
	int threads; /* including the caller */
	pthread_t tid[POOL_MAX];
	int n_started;
	pthread_mutex_t mu;
	pthread_cond_t work, done;
	atomic_uint gen;  /* bumped per run */
	bool stop;
	/* the current job (written under mu before gen is bumped) */
	eng_pool_fn fn;
	void *ctx;
	size_t n;
	int slices;
	atomic_int pending; /* worker slices not finished */
};

static void run_slice(struct eng_pool *p, int s)
{
	size_t b = p->n * (size_t)s / (size_t)p->slices, e = p->n * (size_t)(s + 1) / (size_t)p->slices;
	p->fn(p->ctx, b, e, s);
}

struct pool_worker {
	struct eng_pool *p;
	int id; /* 1..threads-1: the slice it runs */
};

static void *worker_main(void *arg)
{
	struct pool_worker *w = arg;
	struct eng_pool *p = w->p;
	const int id = w->id;
	free(w);
	unsigned seen = 0;
	for (;;) {
		unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
		for (int i = 0; g == seen && i < POOL_SPIN; i++) {
#if defined(__x86_64__) || defined(__i386__)
			__builtin_ia32_pause();
#endif
			g = atomic_load_explicit(&p->gen, memory_order_acquire);
		}
		pthread_mutex_lock(&p->mu);
		while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		bool stop = p->stop;
		pthread_mutex_unlock(&p->mu);
		if (stop)
			return NULL;
		seen = g;
		if (id < p->slices) {
			run_slice(p, id);
			if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
				pthread_mutex_lock(&p->mu);
				pthread_cond_signal(&p->done);
				pthread_mutex_unlock(&p->mu);
			}
		}
	}
}

static int cpus_available(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

int eng_pool_create(int threads, struct eng_pool **out)
{
	*out = NULL;
	int cpus = cpus_available();
	if (threads > cpus)
		threads = cpus;
	if (threads > POOL_MAX)
		threads = POOL_MAX;
	if (threads <= 1)
		return 0;
	struct eng_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->threads = threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	atomic_init(&p->gen, 0);
	atomic_init(&p->pending, 0);
	for (int i = 1; i < threads; i++) {
		struct pool_worker *w = malloc(sizeof(*w));
		if (w)
			*w = (struct pool_worker){p, i};
		int e = w ? pthread_create(&p->tid[p->n_started], NULL, worker_main, w) : ENOMEM;
		if (e) {
			free(w);
			eng_pool_destroy(p);
			return -e;
		}
		p->n_started++;
	}
	*out = p;
	return 0;
}

void eng_pool_destroy(struct eng_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->n_started; i++)
		pthread_join(p->tid[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

int eng_pool_threads(const struct eng_pool *p)
{
	return p ? p->threads : 1;
}

void eng_pool_run(struct eng_pool *p, int slices, size_t n, eng_pool_fn fn, void *ctx)
{
	int t = p ? p->threads : 1;
	if (slices < t)
		t = slices;
	if ((size_t)t > n)
		t = (int)n;
	if (t <= 1) {
		if (n)
			fn(ctx, 0, n, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->n = n;
	p->slices = t;
	atomic_store_explicit(&p->pending, t - 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	run_slice(p, 0);
	/* the others: spin a little, then sleep */
	for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&p->pending, memory_order_acquire); i++) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
	pthread_mutex_lock(&p->mu);
	while (atomic_load_explicit(&p->pending, memory_order_acquire))
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
