/* test_common.c — frames, results and box mapping. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "frame.h"
#include "log.h"
#include "testutil.h"

START_TEST(frame_alloc_and_refs)
{
	struct det_frame *f = det_frame_new(4, 3, 3);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->size, 36);
	ck_assert_uint_eq(f->stride, 12);
	f->data[35] = 7; /* whole payload is addressable */
	det_frame_ref(f);
	det_frame_unref(f);
	ck_assert_int_eq(atomic_load(&f->refs), 1);
	det_frame_unref(f);
	det_frame_unref(NULL);
	ck_assert_ptr_null(det_frame_new(0, 3, 3));
	ck_assert_ptr_null(det_frame_new(100000, 3, 3));
}
END_TEST

START_TEST(map_box_stretch_and_letterbox)
{
	struct det_object o = {.box_norm = {0.25f, 0.5f, 0.75f, 1.25f}};
	struct det_mapping st = {.scale_x = 256.0 / 960, .scale_y = 256.0 / 540};
	det_object_map_box(&o, &st, 256, 256, 960, 540);
	ck_assert_float_eq_tol(o.box_px[0], 480.0f, 1e-3f);
	ck_assert_float_eq_tol(o.box_px[1], 135.0f, 1e-3f);
	ck_assert_float_eq_tol(o.box_px[2], 960.0f, 1e-3f); /* clipped from 1200 */
	ck_assert_float_eq_tol(o.box_px[3], 405.0f, 1e-3f);

	/* letterbox 960x540 into 256x256: scale 256/960, 56 rows of padding on top */
	double s = 256.0 / 960;
	struct det_mapping lb = {.scale_x = s, .scale_y = s, .pad_x = 0, .pad_y = (256 - 540 * s) / 2};
	struct det_object p = {.box_norm = {0.5f, 0.0f, 0.5f, 0.5f}};
	det_object_map_box(&p, &lb, 256, 256, 960, 540);
	ck_assert_float_eq_tol(p.box_px[1], 270.0f, 1e-3f);
	ck_assert_float_eq_tol(p.box_px[2], 480.0f, 1e-3f);
}
END_TEST

START_TEST(log_levels)
{
	ck_assert_int_eq(log_set_level_name("debug"), 0);
	ck_assert_int_eq(log_get_level(), LOG_LVL_DEBUG);
	ck_assert_int_lt(log_set_level_name("loud"), 0);
	ck_assert_int_eq(log_get_level(), LOG_LVL_DEBUG);
	log_set_level(LOG_LVL_ERROR);
	ck_assert_str_eq(log_level_name(LOG_LVL_WARN), "warn");
}
END_TEST

/* The loop changes the level on SIGHUP while every thread logs: under
 * ThreadSanitizer (scripts/test) a plain or volatile threshold is a reported
 * data race; the atomic one is not. */
static atomic_bool reader_stop;

static void *level_reader(void *arg)
{
	(void)arg;
	unsigned long n = 0;
	while (!atomic_load(&reader_stop)) {
		log_debug("test", "never printed at this level %lu", n); /* reads the threshold */
		n += log_get_level() == LOG_LVL_DEBUG;
	}
	return NULL;
}

START_TEST(log_level_set_while_threads_log)
{
	pthread_t t[2];
	atomic_store(&reader_stop, false);
	log_set_level(LOG_LVL_ERROR);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, level_reader, NULL), 0);
	for (int i = 0; i < 20000; i++)
		log_set_level(i % 2 ? LOG_LVL_WARN : LOG_LVL_ERROR);
	atomic_store(&reader_stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(log_get_level(), LOG_LVL_WARN);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, frame_alloc_and_refs);
	tcase_add_test(tc, map_box_stretch_and_letterbox);
	tcase_add_test(tc, log_levels);
	tcase_add_test(tc, log_level_set_while_threads_log);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
