/*
 * test_batcher.c — the batcher against a test double of the engine
 * (fake_engine.c): round-robin fairness, newest-wins slots, the max_wait cut,
 * drop accounting, stream removal, state following its stream, shutdown
 * drain, and the backend failure policy.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "fake_engine.h"
#include "log.h"
#include "testutil.h"

#define MAX_RES 8192

static pthread_mutex_t rmu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rcv = PTHREAD_COND_INITIALIZER;
static struct det_result *res[MAX_RES];
static int n_res;

static void on_result(struct det_result *r, void *user)
{
	(void)user;
	pthread_mutex_lock(&rmu);
	if (n_res < MAX_RES)
		res[n_res++] = r;
	else
		det_result_unref(r);
	pthread_cond_broadcast(&rcv);
	pthread_mutex_unlock(&rmu);
}

static bool wait_results(int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&rmu);
	int rc = 0;
	while (n_res < n && rc == 0)
		rc = pthread_cond_timedwait(&rcv, &rmu, &ts);
	bool ok = n_res >= n;
	pthread_mutex_unlock(&rmu);
	return ok;
}

static void clear_results(void)
{
	pthread_mutex_lock(&rmu);
	for (int i = 0; i < n_res; i++)
		det_result_unref(res[i]);
	n_res = 0;
	pthread_mutex_unlock(&rmu);
}

static void setup(void)
{
	log_set_level(LOG_LVL_ERROR);
	fake_reset();
	clear_results();
}

static void teardown(void)
{
	fake_gate_hold(false);
	clear_results();
}

static struct eng_batcher_opts opts(int workers, int max_batch, int max_wait_ms)
{
	return (struct eng_batcher_opts){
		.model = fake_model(), .workers = workers, .threads = 1, .max_batch = max_batch,
		.max_wait_ms = max_wait_ms, .min_score = 0.5, .on_result = on_result};
}

static struct eng_batcher *make(const struct eng_batcher_opts *o)
{
	struct eng_batcher *b = NULL;
	char err[128] = "";
	int rc = eng_batcher_create(o, &b, err, sizeof(err));
	ck_assert_msg(rc == 0, "create: %d %s", rc, err);
	return b;
}

/* Add one single-letter stream per character of ids ("abc": a, b, c). */
static void add_streams(struct eng_batcher *b, const char *ids)
{
	for (const char *p = ids; *p; p++) {
		char id[2] = {*p, 0};
		ck_assert_int_eq(eng_batcher_add_stream(b, id), 0);
	}
}

/* A frame of stream id whose first byte is tag. */
static struct det_frame *frame(const char *id, uint64_t seq, unsigned char tag)
{
	struct det_frame *f = det_frame_new(FAKE_W, FAKE_H, 3);
	ck_assert_ptr_nonnull(f);
	snprintf(f->stream_id, sizeof(f->stream_id), "%s", id);
	f->seq = seq;
	f->data[0] = tag;
	f->orig_width = 80;
	f->orig_height = 20;
	f->map = (struct det_mapping){.scale_x = FAKE_W / 80.0, .scale_y = FAKE_H / 20.0};
	f->capture_mono_ns = det_mono_ns();
	return f;
}

START_TEST(round_robin_fairness)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	ck_assert_int_eq(eng_batcher_add_stream(b, "a"), 0);
	ck_assert_int_eq(eng_batcher_add_stream(b, "b"), 0);
	ck_assert_int_eq(eng_batcher_add_stream(b, "c"), 0);
	ck_assert_int_eq(eng_batcher_add_stream(b, "b"), -EEXIST);

	fake_gate_hold(true);
	ck_assert_int_eq(eng_batcher_submit(b, frame("a", 1, 'a')), 0);
	ck_assert(fake_wait_runs_started(1));
	/* a is in flight; a fast a must not go before b and c */
	ck_assert_int_eq(eng_batcher_submit(b, frame("a", 2, 'a')), 0);
	ck_assert_int_eq(eng_batcher_submit(b, frame("b", 1, 'b')), 0);
	ck_assert_int_eq(eng_batcher_submit(b, frame("c", 1, 'c')), 0);
	fake_gate_hold(false);
	ck_assert(wait_results(4));
	unsigned char order[8];
	ck_assert_int_eq(fake_log(order, 8), 4);
	ck_assert_mem_eq(order, "abca", 4);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(round_robin_batches)
{
	/* batch 2 of 3 always-ready streams: each stream every 1.5 batches */
	struct eng_batcher_opts o = opts(1, 2, 1000);
	struct eng_batcher *b = make(&o);
	add_streams(b, "abc");
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 'a'));
	eng_batcher_submit(b, frame("b", 1, 'b'));
	eng_batcher_submit(b, frame("c", 1, 'c'));
	ck_assert(fake_wait_runs_started(1)); /* cut at 2 (full): a, b */
	eng_batcher_submit(b, frame("a", 2, 'a'));
	eng_batcher_submit(b, frame("b", 2, 'b'));
	fake_gate_hold(false);
	ck_assert(wait_results(5));
	eng_batcher_stop(b, true);
	unsigned char order[8];
	ck_assert_int_eq(fake_log(order, 8), 5);
	ck_assert_mem_eq(order, "abcab", 5);
	int sizes[4];
	ck_assert_int_eq(fake_batches(sizes, 4), 3);
	ck_assert_int_eq(sizes[0], 2);
	ck_assert_int_eq(sizes[1], 2);
	ck_assert_int_eq(sizes[2], 1);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(newest_wins)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 1));
	ck_assert(fake_wait_runs_started(1));
	for (uint64_t s = 2; s <= 5; s++)
		eng_batcher_submit(b, frame("a", s, (unsigned char)s));
	fake_gate_hold(false);
	ck_assert(wait_results(2));
	eng_batcher_stop(b, true);
	ck_assert_int_eq(n_res, 2);
	ck_assert_uint_eq(res[0]->seq, 1);
	ck_assert_uint_eq(res[1]->seq, 5);
	struct eng_stream_stats ss;
	ck_assert_int_eq(eng_batcher_stream_stats(b, "a", &ss), 0);
	ck_assert_uint_eq(ss.submitted, 5);
	ck_assert_uint_eq(ss.results, 2);
	ck_assert_uint_eq(ss.drops[ENG_DROP_STALE], 3);
	ck_assert_uint_eq(ss.last_seq, 5);
	eng_batcher_destroy(b);
}
END_TEST

static double ms_since(int64_t t0)
{
	return (double)(det_mono_ns() - t0) / 1e6;
}

START_TEST(max_wait_cut)
{
	/* Two streams, batch 2: one frame alone waits max_wait_ms, then goes. */
	struct eng_batcher_opts o = opts(1, 2, 150);
	struct eng_batcher *b = make(&o);
	add_streams(b, "ab");
	int64_t t0 = det_mono_ns();
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(wait_results(1));
	ck_assert_msg(ms_since(t0) >= 140.0, "cut after %.1f ms", ms_since(t0));

	/* Both streams ready: cut as soon as the batch is full. */
	eng_batcher_submit(b, frame("a", 2, 'a'));
	eng_batcher_submit(b, frame("b", 1, 'b'));
	ck_assert(wait_results(3));
	eng_batcher_stop(b, true); /* counters are final once the workers are joined */
	struct eng_batcher_stats st;
	ck_assert_int_eq(eng_batcher_stats(b, &st), 0);
	ck_assert_uint_eq(st.batches, 2);
	ck_assert_uint_eq(st.frames_run, 3);
	ck_assert_double_eq_tol(st.mean_batch, 1.5, 1e-9);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(single_stream_does_not_wait)
{
	/* With one stream nothing can join the batch by waiting. */
	struct eng_batcher_opts o = opts(1, 4, 5000);
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(wait_results(1)); /* within the 10 s helper timeout, not 5 s of wait */
	eng_batcher_destroy(b);
}
END_TEST

struct feeder {
	struct eng_batcher *b;
	char id[8];
	int n;
};

static void *feed(void *arg)
{
	struct feeder *fd = arg;
	for (int i = 1; i <= fd->n; i++) {
		eng_batcher_submit(fd->b, frame(fd->id, (uint64_t)i, (unsigned char)i));
		if (i % 7 == 0) {
			struct timespec ts = {0, 300000};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

START_TEST(drop_accounting)
{
	struct eng_batcher_opts o = opts(2, 4, 2);
	struct eng_batcher *b = make(&o);
	fake_set_delay_ms(1);
	struct feeder fd[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		fd[i] = (struct feeder){.b = b, .n = 300};
		snprintf(fd[i].id, sizeof(fd[i].id), "cam%d", i);
		ck_assert_int_eq(eng_batcher_add_stream(b, fd[i].id), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, feed, &fd[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	eng_batcher_stop(b, true);

	uint64_t total_results = 0;
	for (int i = 0; i < 4; i++) {
		struct eng_stream_stats ss;
		ck_assert_int_eq(eng_batcher_stream_stats(b, fd[i].id, &ss), 0);
		uint64_t drops = 0;
		for (int r = 0; r < ENG_DROP__COUNT; r++)
			drops += ss.drops[r];
		ck_assert_uint_eq(ss.submitted, 300);
		ck_assert_uint_eq(ss.results + drops, ss.submitted);
		ck_assert_uint_eq(ss.drops[ENG_DROP_STALE], drops); /* drained: only stale */
		ck_assert_uint_eq(ss.last_seq, 300);                 /* the newest always wins */
		total_results += ss.results;
	}
	struct eng_batcher_stats st;
	eng_batcher_stats(b, &st);
	ck_assert_uint_eq(st.results, total_results);
	ck_assert_int_eq(n_res, (int)total_results);
	ck_assert_int_eq(st.queue_depth, 0);
	ck_assert_int_eq(st.in_flight, 0);
	ck_assert(st.mean_batch >= 1.0 && st.mean_batch <= 4.0);
	/* per stream, results come in sequence order */
	uint64_t last[4] = {0};
	for (int i = 0; i < n_res; i++) {
		int s = res[i]->stream_id[3] - '0';
		ck_assert_uint_gt(res[i]->seq, last[s]);
		last[s] = res[i]->seq;
	}
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(stream_removal)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	add_streams(b, "ab");
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(fake_wait_runs_started(1));
	eng_batcher_submit(b, frame("a", 2, 'a')); /* waits: dropped by the removal */
	ck_assert_int_eq(eng_batcher_remove_stream(b, "a"), 0);
	ck_assert_int_eq(eng_batcher_remove_stream(b, "a"), -ENOENT);
	ck_assert_int_eq(eng_batcher_submit(b, frame("a", 3, 'a')), -ENOENT);
	struct eng_stream_stats ss;
	ck_assert_int_eq(eng_batcher_stream_stats(b, "a", &ss), -ENOENT);
	fake_gate_hold(false);
	ck_assert(wait_results(1)); /* the frame in flight still yields its result */
	ck_assert_uint_eq(res[0]->seq, 1);
	eng_batcher_submit(b, frame("b", 1, 'b'));
	ck_assert(wait_results(2));
	ck_assert_str_eq(res[1]->stream_id, "b");
	struct eng_batcher_stats st;
	eng_batcher_stats(b, &st);
	ck_assert_uint_eq(st.drops[ENG_DROP_NO_STREAM], 2);
	ck_assert_int_eq(st.n_streams, 1);
	/* a removed stream can come back with fresh state */
	ck_assert_int_eq(eng_batcher_add_stream(b, "a"), 0);
	eng_batcher_submit(b, frame("a", 4, 'a'));
	ck_assert(wait_results(3));
	ck_assert_int_eq(res[2]->objects[0].class_id, 1);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(state_follows_stream)
{
	struct eng_batcher_opts o = opts(2, 2, 0);
	struct eng_batcher *b = make(&o);
	add_streams(b, "ab");
	int n = 0;
	for (int i = 1; i <= 5; i++) {
		eng_batcher_submit(b, frame("a", (uint64_t)i, 'a'));
		ck_assert(wait_results(++n));
		ck_assert_int_eq(res[n - 1]->objects[0].class_id, i);
	}
	eng_batcher_submit(b, frame("b", 1, 'b'));
	ck_assert(wait_results(++n));
	ck_assert_int_eq(res[n - 1]->objects[0].class_id, 1);
	/* the stream restarted: state back to zero */
	struct det_frame *f = frame("a", 6, 'a');
	f->stream_gen = 1;
	eng_batcher_submit(b, f);
	ck_assert(wait_results(++n));
	ck_assert_int_eq(res[n - 1]->objects[0].class_id, 1);
	struct eng_stream_stats ss;
	eng_batcher_stream_stats(b, "a", &ss);
	ck_assert_uint_eq(ss.state_resets, 1);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(result_contents)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "cam0");
	struct det_frame *f = frame("cam0", 42, 0);
	f->pts_ns = 1234;
	f->capture_wall_ns = 99;
	eng_batcher_submit(b, f);
	ck_assert(wait_results(1));
	struct det_result *r = res[0];
	ck_assert_str_eq(r->stream_id, "cam0");
	ck_assert_uint_eq(r->seq, 42);
	ck_assert_int_eq(r->pts_ns, 1234);
	ck_assert_int_eq(r->capture_wall_ns, 99);
	ck_assert_int_eq(r->orig_width, 80);
	ck_assert_int_eq(r->n_objects, 1); /* the 0.01 detection is below min_score */
	ck_assert_str_eq(r->objects[0].label, "pickup_suv_van");
	ck_assert_float_eq_tol(r->objects[0].score, 0.9f, 1e-6f);
	ck_assert_float_eq_tol(r->objects[0].box_px[0], 16.0f, 1e-3f); /* x0 = 0.2 * 80 */
	ck_assert_float_eq_tol(r->objects[0].box_px[1], 2.0f, 1e-3f);  /* y0 = 0.1 * 20 */
	ck_assert_float_eq_tol(r->objects[0].box_px[2], 48.0f, 1e-3f);
	ck_assert_float_eq_tol(r->objects[0].box_px[3], 10.0f, 1e-3f);
	ck_assert_str_eq(r->backend, "cpu");
	ck_assert(r->t.enqueue_mono_ns >= r->t.capture_mono_ns);
	ck_assert(r->t.infer_start_mono_ns >= r->t.enqueue_mono_ns);
	ck_assert(r->t.infer_end_mono_ns >= r->t.infer_start_mono_ns);
	/* a frame of the wrong size is dropped as an error, not run */
	struct det_frame *bad = det_frame_new(3, 3, 3);
	snprintf(bad->stream_id, sizeof(bad->stream_id), "cam0");
	eng_batcher_submit(b, bad);
	eng_batcher_stop(b, true);
	struct eng_stream_stats ss;
	eng_batcher_stream_stats(b, "cam0", &ss);
	ck_assert_uint_eq(ss.drops[ENG_DROP_ERROR], 1);
	ck_assert_uint_eq(ss.results, 1);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(shutdown_drains)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	add_streams(b, "abc");
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(fake_wait_runs_started(1));
	eng_batcher_submit(b, frame("b", 1, 'b'));
	eng_batcher_submit(b, frame("c", 1, 'c'));
	fake_gate_hold(false);
	eng_batcher_stop(b, true);
	ck_assert_int_eq(n_res, 3); /* everything waiting was run before stop returned */
	ck_assert_int_eq(eng_batcher_submit(b, frame("a", 2, 'a')), -ESHUTDOWN);
	struct eng_stream_stats ss;
	eng_batcher_stream_stats(b, "a", &ss);
	ck_assert_uint_eq(ss.drops[ENG_DROP_SHUTDOWN], 1);
	eng_batcher_stop(b, true); /* idempotent */
	eng_batcher_destroy(b);
}
END_TEST

static void *stop_nodrain(void *arg)
{
	eng_batcher_stop(arg, false);
	return NULL;
}

START_TEST(shutdown_without_drain)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	struct eng_batcher *b = make(&o);
	add_streams(b, "ab");
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(fake_wait_runs_started(1));
	eng_batcher_submit(b, frame("b", 1, 'b'));
	pthread_t th;
	pthread_create(&th, NULL, stop_nodrain, b);
	struct eng_batcher_stats st;
	for (int i = 0; i < 5000; i++) {
		eng_batcher_stats(b, &st);
		if (st.drops[ENG_DROP_SHUTDOWN] == 1)
			break;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_uint_eq(st.drops[ENG_DROP_SHUTDOWN], 1);
	fake_gate_hold(false);
	pthread_join(th, NULL);
	ck_assert_int_eq(n_res, 1); /* the frame in flight finished */
	ck_assert_str_eq(res[0]->stream_id, "a");
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(failing_backend_falls_back)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	o.test_fail = true;
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	for (int i = 1; i <= 3; i++) {
		eng_batcher_submit(b, frame("a", (uint64_t)i, 'a'));
		ck_assert(wait_results(i));
		ck_assert_str_eq(res[i - 1]->backend, "cpu");
	}
	eng_batcher_stop(b, true);
	struct eng_batcher_stats st;
	eng_batcher_stats(b, &st);
	ck_assert(!st.primary.healthy);
	ck_assert_uint_ge(st.primary.failures, 1);
	ck_assert_uint_ge(st.primary.fallback_runs, 1);
	ck_assert_uint_eq(st.results, 3);
	ck_assert_ptr_nonnull(strstr(st.primary.name, "test-fail"));
	eng_batcher_destroy(b);

	/* a real (non-cpu) backend that fails: its own ctx fails, cpu runs the batch */
	clear_results();
	o = opts(1, 1, 0);
	o.backend = eng_backend_find("bad");
	b = make(&o);
	eng_batcher_add_stream(b, "a");
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(wait_results(1));
	ck_assert_str_eq(res[0]->backend, "cpu");
	eng_batcher_stats(b, &st);
	ck_assert_str_eq(st.primary.name, "bad");
	ck_assert(!st.primary.healthy);
	ck_assert(!st.primary_is_cpu);
	/* the failed context was dropped: the re-probe (after 1 s) opens a new one */
	ck_assert_int_eq(fake_open_tries(), 1);
	struct timespec pause = {1, 200 * 1000000L};
	nanosleep(&pause, NULL);
	eng_batcher_submit(b, frame("a", 2, 'a'));
	ck_assert(wait_results(2));
	ck_assert_str_eq(res[1]->backend, "cpu");
	ck_assert_int_eq(fake_open_tries(), 2);
	eng_batcher_stats(b, &st);
	ck_assert_uint_eq(st.primary.failures, 2);
	ck_assert_uint_eq(st.primary.probes, 1);
	eng_batcher_destroy(b);
}
END_TEST

/* A device backend that cannot open at start: not fatal, cpu serves, the
 * health path re-probes with backoff and takes the device when it appears. */
START_TEST(missing_device_probed_with_backoff)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	o.backend = eng_backend_find("dev");
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(wait_results(1));
	ck_assert_str_eq(res[0]->backend, "cpu");
	struct eng_batcher_stats st;
	eng_batcher_stats(b, &st);
	ck_assert(!st.primary.healthy);
	ck_assert_uint_eq(st.primary.open_failures, 1);
	ck_assert_uint_eq(st.primary.failures, 0);
	ck_assert_uint_ge(st.primary.fallback_runs, 1);
	ck_assert_ptr_nonnull(strstr(st.primary.last_error, "open: fake: no device"));
	ck_assert_int_gt(st.primary.next_probe_ms, 0);
	/* within the first backoff interval nobody tries to open it again */
	int tries = fake_open_tries();
	for (int i = 2; i <= 4; i++) {
		eng_batcher_submit(b, frame("a", (uint64_t)i, 'a'));
		ck_assert(wait_results(i));
		ck_assert_str_eq(res[i - 1]->backend, "cpu");
	}
	ck_assert_int_eq(fake_open_tries(), tries);
	/* the device appears: the next due probe opens it and it serves */
	fake_set_device(true);
	int got = 4;
	bool on_dev = false;
	for (int k = 0; k < 60 && !on_dev; k++) {
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
		eng_batcher_submit(b, frame("a", (uint64_t)(got + 1), 'a'));
		ck_assert(wait_results(got + 1));
		on_dev = strcmp(res[got]->backend, "dev") == 0;
		got++;
	}
	ck_assert_msg(on_dev, "device not re-probed");
	eng_batcher_stats(b, &st);
	ck_assert(st.primary.healthy);
	ck_assert_uint_ge(st.primary.probes, 1);
	ck_assert_uint_eq(st.drops[ENG_DROP_ERROR], 0);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(deadline_marks_unhealthy)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	o.test_delay_ms = 60;
	o.deadline_ms = 10;
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	eng_batcher_submit(b, frame("a", 1, 'a'));
	ck_assert(wait_results(1)); /* late but valid: kept */
	eng_batcher_submit(b, frame("a", 2, 'a'));
	ck_assert(wait_results(2));
	struct eng_batcher_stats st;
	eng_batcher_stats(b, &st);
	ck_assert(!st.primary.healthy);
	ck_assert_uint_ge(st.primary.deadline_misses, 1);
	ck_assert_uint_eq(st.drops[ENG_DROP_ERROR], 0);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(slow_backend_drops_stale)
{
	struct eng_batcher_opts o = opts(1, 1, 0);
	o.test_delay_ms = 30;
	struct eng_batcher *b = make(&o);
	eng_batcher_add_stream(b, "a");
	for (int i = 1; i <= 100; i++) {
		eng_batcher_submit(b, frame("a", (uint64_t)i, 'a'));
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
		struct eng_batcher_stats st;
		eng_batcher_stats(b, &st);
		ck_assert_int_le(st.queue_depth, 1); /* bounded: one slot per stream */
	}
	eng_batcher_stop(b, true);
	struct eng_stream_stats ss;
	eng_batcher_stream_stats(b, "a", &ss);
	ck_assert_uint_gt(ss.drops[ENG_DROP_STALE], 0);
	ck_assert_uint_eq(ss.results + ss.drops[ENG_DROP_STALE], 100);
	eng_batcher_destroy(b);
}
END_TEST

/* The watchdog's heartbeat: busy while a batch runs (here held at the fake
 * backend's gate), growing with time, back to 0 once the result is out. */
START_TEST(worker_heartbeat)
{
	struct eng_batcher_opts o = opts(2, 1, 0);
	struct eng_batcher *b = make(&o);
	add_streams(b, "a");
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, 0, det_mono_ns()), 0);
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, 1, det_mono_ns()), 0);
	fake_gate_hold(true);
	eng_batcher_submit(b, frame("a", 1, 'a'));
	int busy_worker = -1;
	for (int t = 0; t < 2000 && busy_worker < 0; t++) {
		for (int i = 0; i < 2; i++)
			if (eng_batcher_worker_busy_ns(b, i, det_mono_ns()) > 0)
				busy_worker = i;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_int_ge(busy_worker, 0);
	struct timespec ts = {0, 50000000};
	nanosleep(&ts, NULL);
	ck_assert_int_ge(eng_batcher_worker_busy_ns(b, busy_worker, det_mono_ns()), 50000000);
	/* the other worker waits for work: idle, not stuck */
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, 1 - busy_worker, det_mono_ns()), 0);
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, 2, det_mono_ns()), 0);
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, -1, det_mono_ns()), 0);
	fake_gate_hold(false);
	ck_assert(wait_results(1));
	for (int t = 0; t < 2000 && eng_batcher_worker_busy_ns(b, busy_worker, det_mono_ns()); t++)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	ck_assert_int_eq(eng_batcher_worker_busy_ns(b, busy_worker, det_mono_ns()), 0);
	eng_batcher_destroy(b);
}
END_TEST

START_TEST(bad_options)
{
	struct eng_batcher *b = (struct eng_batcher *)1;
	struct eng_batcher_opts o = opts(1, 0, 0);
	char err[64];
	ck_assert_int_eq(eng_batcher_create(&o, &b, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(b);
	o = opts(1, ENG_BATCH_MAX + 1, 0);
	ck_assert_int_eq(eng_batcher_create(&o, &b, err, sizeof(err)), -EINVAL);
	eng_batcher_destroy(NULL);
	ck_assert_str_eq(eng_drop_reason_name(ENG_DROP_STALE), "stale");
	ck_assert_str_eq(eng_drop_reason_name(ENG_DROP_NO_STREAM), "no_stream");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("batcher");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, round_robin_fairness);
	tcase_add_test(tc, round_robin_batches);
	tcase_add_test(tc, newest_wins);
	tcase_add_test(tc, max_wait_cut);
	tcase_add_test(tc, single_stream_does_not_wait);
	tcase_add_test(tc, drop_accounting);
	tcase_add_test(tc, stream_removal);
	tcase_add_test(tc, state_follows_stream);
	tcase_add_test(tc, result_contents);
	tcase_add_test(tc, shutdown_drains);
	tcase_add_test(tc, shutdown_without_drain);
	tcase_add_test(tc, failing_backend_falls_back);
	tcase_add_test(tc, missing_device_probed_with_backoff);
	tcase_add_test(tc, deadline_marks_unhealthy);
	tcase_add_test(tc, slow_backend_drops_stale);
	tcase_add_test(tc, worker_heartbeat);
	tcase_add_test(tc, bad_options);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
