/* test_results.c — the bounded worker → loop result queue. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "log.h"
#include "results.h"
#include "testutil.h"

struct seen {
	int n;
	uint64_t last_seq[8];
	bool in_order;
};

static void on_result(struct det_result *r, void *user)
{
	struct seen *s = user;
	int k = r->stream_id[1] - '0';
	if (r->seq <= s->last_seq[k])
		s->in_order = false;
	s->last_seq[k] = r->seq;
	s->n++;
}

static struct det_result *result(const char *id, uint64_t seq)
{
	struct det_result *r = det_result_new(NULL, 1);
	snprintf(r->stream_id, sizeof(r->stream_id), "%s", id);
	r->seq = seq;
	return r;
}

START_TEST(full_drops_oldest)
{
	struct event_base *base = event_base_new();
	struct seen seen = {.in_order = true};
	struct results *q;
	ck_assert_int_eq(results_create(base, 3, on_result, &seen, &q), 0);
	for (uint64_t i = 1; i <= 5; i++)
		ck_assert_int_eq(results_push(q, result("s0", i)), i > 3 ? -ENOBUFS : 0);
	struct results_stats st;
	results_stats(q, &st);
	ck_assert_uint_eq(st.pushed, 5);
	ck_assert_uint_eq(st.dropped_full, 2);
	ck_assert_uint_eq(st.depth, 3);
	/* delivered by the loop through the user event */
	event_base_loop(base, EVLOOP_NONBLOCK);
	ck_assert_int_eq(seen.n, 3);
	struct results_stream rs;
	ck_assert_int_eq(results_stream(q, "s0", &rs), 0);
	ck_assert_uint_eq(rs.delivered, 3);
	ck_assert_uint_eq(rs.dropped_full, 2);
	ck_assert_ptr_nonnull(rs.latest);
	ck_assert_uint_eq(rs.latest->seq, 5);
	ck_assert_uint_eq(seen.last_seq[0], 5);
	results_forget(q, "s0");
	ck_assert_int_eq(results_stream(q, "s0", &rs), -ENOENT);
	/* destroy with queued results: released, not delivered */
	results_push(q, result("s1", 1));
	results_destroy(q);
	ck_assert_int_eq(seen.n, 3);
	event_base_free(base);
}
END_TEST

struct producer {
	struct results *q;
	char id[4];
	int n;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (int i = 1; i <= p->n; i++)
		results_push(p->q, result(p->id, (uint64_t)i));
	return NULL;
}

struct ctl {
	struct results *q;
	struct event_base *base;
	int total;
};

static void check_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct ctl *c = arg;
	struct results_stats st;
	results_stats(c->q, &st);
	if (st.pushed == (uint64_t)c->total && st.depth == 0)
		event_base_loopexit(c->base, NULL);
}

START_TEST(threads_to_loop)
{
	ck_assert_int_eq(evthread_use_pthreads(), 0);
	struct event_base *base = event_base_new();
	struct seen seen = {.in_order = true};
	struct results *q;
	ck_assert_int_eq(results_create(base, 16, on_result, &seen, &q), 0);
	struct ctl c = {.q = q, .base = base, .total = 4 * 5000};
	struct event *tick = event_new(base, -1, EV_PERSIST, check_done, &c);
	struct timeval tv = {0, 2000};
	event_add(tick, &tv);
	struct producer p[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		p[i] = (struct producer){.q = q, .n = 5000};
		snprintf(p[i].id, sizeof(p[i].id), "s%d", i);
		pthread_create(&th[i], NULL, produce, &p[i]);
	}
	event_base_dispatch(base);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	results_flush(q);
	struct results_stats st;
	results_stats(q, &st);
	ck_assert_uint_eq(st.pushed, 20000);
	ck_assert_uint_eq(st.delivered + st.dropped_full, 20000);
	ck_assert_uint_eq(st.delivered, (uint64_t)seen.n);
	ck_assert_uint_le(st.high_water, 16);
	ck_assert(seen.in_order);
	for (int i = 0; i < 4; i++) {
		struct results_stream rs;
		ck_assert_int_eq(results_stream(q, p[i].id, &rs), 0);
		ck_assert_uint_eq(rs.delivered + rs.dropped_full, 5000);
		if (rs.delivered) /* latest = last delivered (a flood may drop a whole stream) */
			ck_assert_uint_eq(rs.latest->seq, seen.last_seq[i]);
		else
			ck_assert_ptr_null(rs.latest);
	}
	event_free(tick);
	results_destroy(q);
	event_base_free(base);
}
END_TEST

int main(void)
{
	log_set_level(LOG_LVL_ERROR);
	Suite *s = suite_create("results");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, full_drops_oldest);
	tcase_add_test(tc, threads_to_loop);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
