/* test_bus.c — the result bus (filters, shared serialization, latest,
 * replay ring and gaps, stream states, slow-consumer policy) and the metrics
 * registry it feeds. */
#include "bus.h"
#include "metrics.h"
#include "pubtest.h"
#include "testutil.h"

#define MAXGOT 256

struct sink {
	struct bus_msg *got[MAXGOT];
	int n;
	struct bus_sub *self;
	bool unsub_on_first;
};

static void sink_fn(void *ud, struct bus_msg *m)
{
	struct sink *s = ud;
	ck_assert_int_lt(s->n, MAXGOT);
	s->got[s->n++] = bus_msg_ref(m);
	if (s->unsub_on_first) {
		bus_unsubscribe(s->self);
		s->self = NULL;
		s->unsub_on_first = false;
	}
}

static void sink_clear(struct sink *s)
{
	for (int i = 0; i < s->n; i++)
		bus_msg_unref(s->got[i]);
	s->n = 0;
}

static struct json_object *parse(struct bus_msg *m)
{
	ck_assert_int_eq(m->data[m->len - 1], '\n');
	struct json_object *o = json_tokener_parse(m->data);
	ck_assert_ptr_nonnull(o);
	return o;
}

static int n_objects(struct json_object *o)
{
	struct json_object *a;
	ck_assert(json_object_object_get_ex(o, "objects", &a));
	return (int)json_object_array_length(a);
}

static void filter(struct bus_filter *f, const char *json)
{
	char err[256];
	struct json_object *o = json_tokener_parse(json);
	ck_assert_int_eq(bus_filter_from_json(f, o, err, sizeof(err)), 0);
	json_object_put(o);
}

START_TEST(serialize_fields)
{
	struct det_result *r = pt_result("cam0", 12, 2);
	struct bus_msg *m = bus_serialize_result(r, NULL);
	struct json_object *o = parse(m);
	ck_assert_str_eq(pt_str(o, "type"), "detections");
	ck_assert_str_eq(pt_str(o, "stream"), "cam0");
	ck_assert_int_eq(pt_int(o, "seq"), 12);
	ck_assert_int_eq(pt_int(o, "width"), 1280);
	ck_assert_int_eq(pt_int(o, "pts_ns"), 12 * 40000000LL);
	ck_assert_ptr_nonnull(strstr(pt_str(o, "capture_time"), "Z"));
	struct json_object *objs, *o1, *box, *t;
	json_object_object_get_ex(o, "objects", &objs);
	o1 = json_object_array_get_idx(objs, 1);
	ck_assert_str_eq(pt_str(o1, "label"), "person");
	ck_assert_int_eq(pt_int(o1, "class_id"), 1);
	ck_assert_double_eq_tol(json_object_get_double(json_object_object_get(o1, "score")), 0.5, 1e-6);
	json_object_object_get_ex(o1, "box", &box);
	ck_assert_int_eq(json_object_get_int(json_object_array_get_idx(box, 0)), 101);
	ck_assert_double_eq_tol(json_object_get_double(json_object_array_get_idx(box, 3)), 250.5, 1e-6);
	json_object_object_get_ex(o1, "box_norm", &box);
	ck_assert_double_eq_tol(json_object_get_double(json_object_array_get_idx(box, 2)), 300.0 / 1280, 1e-4);
	ck_assert(json_object_object_get_ex(o, "timings", &t));
	ck_assert_double_eq_tol(json_object_get_double(json_object_object_get(t, "inference_ms")), 19.0, 0.01);
	/* short numbers, not 0.50000000000000000 */
	ck_assert_ptr_nonnull(strstr(m->data, "\"score\":0.5,"));
	json_object_put(o);
	bus_msg_unref(m);
	det_result_unref(r);
}
END_TEST

START_TEST(filters_and_shared_messages)
{
	struct bus *b = bus_create(8, NULL);
	struct sink all = {0}, all2 = {0}, cam1 = {0}, cars = {0}, cars2 = {0}, hi = {0};
	struct bus_filter f = {0};
	bus_subscribe(b, &f, sink_fn, &all);
	bus_subscribe(b, &f, sink_fn, &all2);
	filter(&f, "{\"streams\":[\"cam1\"]}");
	bus_subscribe(b, &f, sink_fn, &cam1);
	filter(&f, "{\"labels\":[\"car\"]}");
	bus_subscribe(b, &f, sink_fn, &cars);
	filter(&f, "{\"labels\":[\"car\"],\"streams\":[]}");
	bus_subscribe(b, &f, sink_fn, &cars2);
	filter(&f, "{\"min_score\":0.8}");
	bus_subscribe(b, &f, sink_fn, &hi);
	ck_assert_uint_eq(bus_sub_count(b), 6);

	struct det_result *r = pt_result("cam0", 1, 4); /* car .3, person .5, suv .7, bus .9 */
	bus_publish(b, r);
	det_result_unref(r);
	r = pt_result("cam1", 1, 1); /* car .3 only */
	bus_publish(b, r);
	det_result_unref(r);
	r = pt_result("cam1", 2, 0); /* nothing detected */
	bus_publish(b, r);
	det_result_unref(r);

	ck_assert_int_eq(all.n, 3);
	ck_assert_int_eq(cam1.n, 2);
	ck_assert_int_eq(cars.n, 2);  /* frames without a car are not sent */
	ck_assert_int_eq(hi.n, 1);
	/* one serialization per message, shared: same bytes for equal filters */
	ck_assert_ptr_eq(all.got[0], all2.got[0]);
	ck_assert_ptr_eq(cars.got[0], cars2.got[0]);
	ck_assert_ptr_ne(cars.got[0], all.got[0]);
	/* a filter that keeps every object of the frame gets the full message */
	ck_assert_ptr_eq(cars.got[1], all.got[1]);
	struct json_object *o = parse(cars.got[0]);
	ck_assert_int_eq(n_objects(o), 1);
	json_object_put(o);
	o = parse(hi.got[0]);
	ck_assert_int_eq(n_objects(o), 1);
	json_object_put(o);
	o = parse(all.got[0]);
	ck_assert_int_eq(n_objects(o), 4);
	json_object_put(o);

	/* latest per stream */
	o = parse(bus_latest(b, "cam1"));
	ck_assert_int_eq(pt_int(o, "seq"), 2);
	json_object_put(o);
	ck_assert_ptr_null(bus_latest(b, "nope"));

	struct sink *sinks[] = {&all, &all2, &cam1, &cars, &cars2, &hi};
	for (size_t i = 0; i < 6; i++)
		sink_clear(sinks[i]);
	bus_destroy(b); /* frees the remaining subscriptions (with a warning) */
}
END_TEST

START_TEST(bad_filters)
{
	static const char *const bad[] = {
		"{\"streams\":\"cam0\"}", "{\"streams\":[1]}", "{\"streams\":[\"a b\"]}",
		"{\"labels\":[\"\"]}", "{\"min_score\":1.5}", "{\"min_score\":\"high\"}",
		"{\"min_score\":-0.1}", "{\"streams\":[\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct bus_filter f;
		char err[256] = "";
		struct json_object *o = json_tokener_parse(bad[i]);
		ck_assert_int_eq(bus_filter_from_json(&f, o, err, sizeof(err)), -EINVAL);
		ck_assert_msg(err[0] != '\0', "no reason for %s", bad[i]);
		ck_assert_ptr_null(f.streams);
		json_object_put(o);
	}
}
END_TEST

START_TEST(unsubscribe_inside_delivery)
{
	struct bus *b = bus_create(4, NULL);
	struct sink a = {.unsub_on_first = true}, c = {0};
	struct bus_filter f = {0};
	a.self = bus_subscribe(b, &f, sink_fn, &a);
	bus_subscribe(b, &f, sink_fn, &c);
	for (uint64_t i = 1; i <= 3; i++) {
		struct det_result *r = pt_result("cam0", i, 1);
		bus_publish(b, r);
		det_result_unref(r);
	}
	ck_assert_int_eq(a.n, 1);
	ck_assert_int_eq(c.n, 3);
	ck_assert_uint_eq(bus_sub_count(b), 1);
	sink_clear(&a);
	sink_clear(&c);
	bus_destroy(b);
}
END_TEST

START_TEST(replay_and_gap)
{
	struct bus *b = bus_create(5, NULL);
	for (uint64_t i = 1; i <= 12; i++) {
		struct det_result *r = pt_result("cam0", i, 2);
		bus_publish(b, r);
		det_result_unref(r);
	}
	struct sink s = {0};
	struct bus_filter f = {0};
	struct bus_sub *sub = bus_subscribe(b, &f, sink_fn, &s);
	/* ring holds 8..12; since 3 → gap 4..7 then 8..12 */
	bus_replay(sub, "cam0", 3);
	ck_assert_int_eq(s.n, 6);
	struct json_object *o = parse(s.got[0]);
	ck_assert_str_eq(pt_str(o, "type"), "gap");
	ck_assert_int_eq(pt_int(o, "from"), 4);
	ck_assert_int_eq(pt_int(o, "to"), 7);
	json_object_put(o);
	for (int i = 1; i < 6; i++) {
		o = parse(s.got[i]);
		ck_assert_int_eq(pt_int(o, "seq"), 7 + i);
		json_object_put(o);
	}
	sink_clear(&s);
	/* nothing lost: no gap */
	bus_replay(sub, "cam0", 10);
	ck_assert_int_eq(s.n, 2);
	sink_clear(&s);
	bus_replay(sub, "cam0", 12);
	bus_replay(sub, "unknown", 0);
	ck_assert_int_eq(s.n, 0);
	/* a filtered replay filters objects */
	filter(&f, "{\"labels\":[\"person\"]}");
	bus_sub_set_filter(sub, &f);
	bus_replay(sub, "cam0", 10);
	ck_assert_int_eq(s.n, 2);
	o = parse(s.got[0]);
	ck_assert_int_eq(n_objects(o), 1);
	json_object_put(o);
	sink_clear(&s);
	/* seq restart (stream re-created) clears the ring */
	struct det_result *r = pt_result("cam0", 1, 2);
	bus_publish(b, r);
	det_result_unref(r);
	sink_clear(&s);
	bus_replay(sub, "cam0", 0);
	ck_assert_int_eq(s.n, 1);
	sink_clear(&s);
	bus_unsubscribe(sub);
	bus_destroy(b);
}
END_TEST

START_TEST(stream_states)
{
	struct metrics *m = metrics_create();
	struct bus *b = bus_create(2, m);
	ck_assert_int_eq(bus_stream_add(b, "cam0"), 0);
	ck_assert_int_eq(bus_stream_add(b, "cam0"), -EEXIST);
	ck_assert_int_eq(bus_stream_add(b, "bad id"), -EINVAL);
	struct sink s = {0};
	struct bus_filter f = {0};
	filter(&f, "{\"streams\":[\"cam0\"]}");
	struct bus_sub *sub = bus_subscribe(b, &f, sink_fn, &s);
	bus_stream_state(b, "cam0", "running", NULL);
	bus_stream_state(b, "cam9", "error", "no such file"); /* not subscribed to cam9 */
	ck_assert_int_eq(s.n, 1);
	struct json_object *o = parse(s.got[0]);
	ck_assert_str_eq(pt_str(o, "type"), "status");
	ck_assert_str_eq(pt_str(o, "state"), "running");
	json_object_put(o);
	o = bus_stream_json(b, "cam9");
	ck_assert_str_eq(pt_str(o, "error"), "no such file");
	json_object_put(o);
	o = bus_stream_ids_json(b);
	ck_assert_int_eq(json_object_array_length(o), 2);
	json_object_put(o);
	ck_assert_int_eq(bus_stream_remove(b, "cam0"), 0);
	ck_assert_int_eq(bus_stream_remove(b, "cam0"), -ENOENT);
	ck_assert_int_eq(s.n, 2); /* "removed" status */
	ck_assert(!bus_stream_exists(b, "cam0"));
	size_t len;
	char *txt = metrics_render(m, &len);
	ck_assert_ptr_nonnull(strstr(txt, "detd_stream_state{stream=\"cam9\",state=\"error\"} 1\n"));
	ck_assert_ptr_null(strstr(txt, "stream=\"cam0\"")); /* forgotten with the stream */
	free(txt);
	sink_clear(&s);
	bus_unsubscribe(sub);
	bus_destroy(b);
	metrics_destroy(m);
}
END_TEST

START_TEST(flow_policy)
{
	struct bus_flow f;
	bus_flow_init(&f, 1000, 4000, 0.05);
	ck_assert_int_eq(bus_flow_offer(&f, 0, 500, 1), BUS_FLOW_SEND);
	ck_assert_int_eq(bus_flow_offer(&f, 600, 500, 2), BUS_FLOW_DROP);
	ck_assert_int_eq(bus_flow_offer(&f, 600, 500, 3), BUS_FLOW_DROP);
	struct bus_msg *n = bus_flow_take_notice(&f);
	ck_assert_str_eq(n->data, "{\"type\":\"dropped\",\"count\":2}\n");
	bus_msg_unref(n);
	ck_assert_ptr_null(bus_flow_take_notice(&f));
	ck_assert(!bus_flow_expired(&f, 600, 4));
	ck_assert(bus_flow_expired(&f, 600, 2 + 60000000));
	ck_assert_int_eq(bus_flow_offer(&f, 600, 500, 2 + 60000000), BUS_FLOW_DISCONNECT);
	ck_assert_int_eq(bus_flow_offer(&f, 4001, 1, 5), BUS_FLOW_DISCONNECT);
	bus_flow_drained(&f);
	ck_assert_int_eq(bus_flow_offer(&f, 0, 10, 6), BUS_FLOW_SEND);
	ck_assert_uint_eq(f.total_drops, 3);
}
END_TEST

START_TEST(metrics_render_format)
{
	struct metrics *m = metrics_create();
	static const double bk[] = {0.01, 0.1, 1};
	ck_assert_int_eq(metrics_define(m, "x_total", METRICS_COUNTER, "Things\nhappened", NULL, 0), 0);
	ck_assert_int_eq(metrics_define(m, "x_total", METRICS_COUNTER, "again", NULL, 0), 0);
	ck_assert_int_eq(metrics_define(m, "x_total", METRICS_GAUGE, "", NULL, 0), -EEXIST);
	ck_assert_int_eq(metrics_define(m, "1bad", METRICS_GAUGE, "", NULL, 0), -EINVAL);
	ck_assert_int_eq(metrics_define(m, "lat_seconds", METRICS_HISTOGRAM, "Latency", bk, 3), 0);
	ck_assert_int_eq(metrics_define(m, "g", METRICS_GAUGE, "G", NULL, 0), 0);
	metrics_counter_add(m, "x_total", 2, "stream", "a\"b\\c", NULL);
	metrics_counter_add(m, "x_total", 3, "stream", "a\"b\\c", NULL);
	metrics_counter_add(m, "x_total", -5, "stream", "a\"b\\c", NULL); /* ignored */
	ck_assert_int_eq(metrics_gauge_set(m, "x_total", 1, NULL), -EINVAL);
	ck_assert_int_eq(metrics_counter_add(m, "nope", 1, NULL), -EINVAL);
	metrics_gauge_set(m, "g", 0.25, NULL);
	ck_assert_int_eq(metrics_define(m, "mirror_total", METRICS_COUNTER, "M", NULL, 0), 0);
	metrics_counter_set(m, "mirror_total", 41, NULL);
	metrics_counter_set(m, "mirror_total", 42, NULL);
	metrics_observe(m, "lat_seconds", 0.005, NULL);
	metrics_observe(m, "lat_seconds", 0.05, NULL);
	metrics_observe(m, "lat_seconds", 5, NULL);
	char *t = metrics_render(m, NULL);
	ck_assert_ptr_nonnull(strstr(t, "# HELP x_total Things\\nhappened\n# TYPE x_total counter\n"));
	ck_assert_ptr_nonnull(strstr(t, "x_total{stream=\"a\\\"b\\\\c\"} 5\n"));
	ck_assert_ptr_nonnull(strstr(t, "g 0.25\n"));
	ck_assert_ptr_nonnull(strstr(t, "mirror_total 42\n"));
	ck_assert_ptr_nonnull(strstr(t, "lat_seconds_bucket{le=\"0.01\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(t, "lat_seconds_bucket{le=\"0.1\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(t, "lat_seconds_bucket{le=\"1\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(t, "lat_seconds_bucket{le=\"+Inf\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(t, "lat_seconds_count 3\n"));
	free(t);
	metrics_forget(m, "stream", "a\"b\\c"); /* escaped differently: stays (ids never need it) */
	metrics_destroy(m);
	metrics_destroy(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, serialize_fields);
	tcase_add_test(tc, filters_and_shared_messages);
	tcase_add_test(tc, bad_filters);
	tcase_add_test(tc, unsubscribe_inside_delivery);
	tcase_add_test(tc, replay_and_gap);
	tcase_add_test(tc, stream_states);
	tcase_add_test(tc, flow_policy);
	tcase_add_test(tc, metrics_render_format);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
