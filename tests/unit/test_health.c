/*
 * test_health.c — engine/health.c: the state of the one fallback path
 * (unhealthy on a failure, one probe at a time, exponential backoff with a
 * cap, reset on success, counters per kind of failure).
 */
#include <check.h>
#include <string.h>

#include "engine.h"
#include "health.h"
#include "log.h"
#include "testutil.h"

#define S 1000000000LL

START_TEST(backoff_and_single_probe)
{
	struct eng_health *h;
	ck_assert_int_eq(eng_health_create("xrt", &h), 0);
	ck_assert(eng_health_begin(h, 0));
	eng_health_ok(h);
	ck_assert(eng_health_healthy(h));

	/* first failure at t=10 s: cpu until t=11 s */
	eng_health_failed(h, ENG_HEALTH_RUN_FAILED, "run failed: Input/output error", 10 * S);
	ck_assert(!eng_health_healthy(h));
	ck_assert(!eng_health_begin(h, 10 * S + S / 2));
	struct eng_backend_health st;
	eng_health_snapshot(h, 10 * S + S / 2, &st);
	ck_assert_int_eq(st.next_probe_ms, 500);
	ck_assert_str_eq(st.last_error, "run failed: Input/output error");
	/* due: one caller gets the probe, the others stay on cpu */
	ck_assert(eng_health_begin(h, 11 * S));
	ck_assert(!eng_health_begin(h, 11 * S));
	ck_assert(!eng_health_begin(h, 30 * S));
	/* the probe fails: wait doubles (2 s), then 4 s, 8 s ... */
	eng_health_failed(h, ENG_HEALTH_OPEN_FAILED, "open: no device", 11 * S);
	ck_assert(!eng_health_begin(h, 13 * S - 1));
	ck_assert(eng_health_begin(h, 13 * S));
	eng_health_failed(h, ENG_HEALTH_OPEN_FAILED, "open: no device", 13 * S);
	ck_assert(!eng_health_begin(h, 17 * S - 1));
	ck_assert(eng_health_begin(h, 17 * S));
	/* many failures later the wait is capped at 60 s */
	int64_t t = 17 * S;
	for (int i = 0; i < 12; i++) {
		eng_health_failed(h, ENG_HEALTH_DEADLINE, "slow", t);
		t += ENG_HEALTH_BACKOFF_MAX_NS;
		ck_assert(eng_health_begin(h, t));
	}
	eng_health_failed(h, ENG_HEALTH_DEADLINE, "slow", t);
	ck_assert(!eng_health_begin(h, t + ENG_HEALTH_BACKOFF_MAX_NS - 1));
	ck_assert(eng_health_begin(h, t + ENG_HEALTH_BACKOFF_MAX_NS));
	/* success: healthy, every batch tries it, and the backoff starts over */
	eng_health_ok(h);
	ck_assert(eng_health_begin(h, t));
	ck_assert(eng_health_begin(h, t));
	eng_health_failed(h, ENG_HEALTH_RUN_FAILED, "again", 100 * S);
	ck_assert(eng_health_begin(h, 101 * S));

	eng_health_fallback(h);
	eng_health_fallback(h);
	eng_health_snapshot(h, 101 * S, &st);
	ck_assert_str_eq(st.name, "xrt");
	ck_assert_uint_eq(st.failures, 2);
	ck_assert_uint_eq(st.open_failures, 2);
	ck_assert_uint_eq(st.deadline_misses, 13);
	ck_assert_uint_eq(st.fallback_runs, 2);
	ck_assert_uint_eq(st.probes, 17);
	eng_health_destroy(h);
	eng_health_destroy(NULL);
}
END_TEST

int main(void)
{
	log_set_level(LOG_LVL_ERROR);
	Suite *s = suite_create("health");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, backoff_and_single_probe);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
