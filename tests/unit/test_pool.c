/*
 * test_pool.c — the engine's persistent compute threads (engine/pool.c):
 * every index of a range runs exactly once, slices are contiguous and tagged
 * with their slot, the caller runs slice 0, the size is capped at the CPUs
 * available, many consecutive runs reuse the same threads.
 */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "testutil.h"

struct rec {
	atomic_int *hits;
	atomic_int calls;
	pthread_t caller;
	atomic_int caller_slot; /* slot the caller ran, -1 none */
	atomic_int bad_slot;
};

static void mark(void *ctx, size_t b, size_t e, int slot)
{
	struct rec *r = ctx;
	atomic_fetch_add(&r->calls, 1);
	if (slot < 0 || slot >= 64)
		atomic_store(&r->bad_slot, 1);
	if (pthread_equal(pthread_self(), r->caller))
		atomic_store(&r->caller_slot, slot);
	for (size_t i = b; i < e; i++)
		atomic_fetch_add(&r->hits[i], 1);
}

static void check_run(struct eng_pool *p, int slices, size_t n)
{
	struct rec r = {.hits = calloc(n + 1, sizeof(atomic_int)), .caller = pthread_self()};
	atomic_init(&r.calls, 0);
	atomic_init(&r.caller_slot, -1);
	atomic_init(&r.bad_slot, 0);
	eng_pool_run(p, slices, n, mark, &r);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(atomic_load(&r.hits[i]) == 1, "index %zu ran %d times (n %zu slices %d)", i,
			      atomic_load(&r.hits[i]), n, slices);
	int want = slices < eng_pool_threads(p) ? slices : eng_pool_threads(p);
	if ((size_t)want > n)
		want = (int)n;
	ck_assert_int_eq(atomic_load(&r.calls), n ? (want < 1 ? 1 : want) : 0);
	if (n)
		ck_assert_int_eq(atomic_load(&r.caller_slot), 0);
	ck_assert_int_eq(atomic_load(&r.bad_slot), 0);
	free(r.hits);
}

START_TEST(every_index_once)
{
	struct eng_pool *p = NULL;
	ck_assert_int_eq(eng_pool_create(4, &p), 0);
	cpu_set_t set;
	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	int cpus = CPU_COUNT(&set);
	int want = cpus < 4 ? cpus : 4;
	ck_assert_int_eq(eng_pool_threads(p), want);
	if (want == 1)
		ck_assert_ptr_null(p); /* one CPU: no pool, everything on the caller */
	for (int rep = 0; rep < 300; rep++)
		check_run(p, 1 + rep % 5, (size_t)(rep % 37));
	check_run(p, 4, 100000);
	eng_pool_destroy(p);
}
END_TEST

START_TEST(null_pool_runs_inline)
{
	check_run(NULL, 4, 17);
	check_run(NULL, 1, 0);
	struct eng_pool *p = (struct eng_pool *)1;
	ck_assert_int_eq(eng_pool_create(1, &p), 0);
	ck_assert_ptr_null(p);
	eng_pool_destroy(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");
	tcase_add_test(tc, every_index_once);
	tcase_add_test(tc, null_pool_runs_inline);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
