/*
 * test_parity.c — the engine against TensorFlow Lite's reference kernels on
 * the traffic model (../shared/data/traffic/reference):
 *  - frames 0001..0010 in order with the recurrent state carried: the two
 *    uint8 post-process inputs (tensor 421 box encodings, 423 scores) must be
 *    byte-identical and the 40 detections equal detections.json (order,
 *    class and score exactly, boxes within 1e-5);
 *  - a diagnostic over every tensor of frame 1 (frame1-tensors/index.jsonl)
 *    that names the FIRST operator whose output departs from the reference.
 */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "model.h"
#include "testutil.h"

#define BOX_TENSOR 421
#define SCORE_TENSOR 423

static char dir[1024];

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return b;
}

static uint8_t *ref_file(const char *rel, size_t *len)
{
	char p[1400];
	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	uint8_t *b = read_all(p, len);
	ck_assert_msg(b != NULL, "cannot read %s", p);
	return b;
}

static struct eng_model *load_kernels(bool reference)
{
	const char *d = getenv("DETD_SHARED_DATA");
	ck_assert_msg(d != NULL, "DETD_SHARED_DATA is not set");
	snprintf(dir, sizeof(dir), "%s/traffic", d);
	char mp[1100], lp[1100];
	snprintf(mp, sizeof(mp), "%s/traffic_model.tflite", dir);
	snprintf(lp, sizeof(lp), "%s/traffic_label_map.pbtxt", dir);
	struct eng_model_opts o = {.path = mp, .labels_path = lp, .reference_kernels = reference};
	struct eng_model *m = NULL;
	char err[512] = "";
	log_set_level(LOG_LVL_WARN);
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s", err);
	return m;
}

static struct eng_model *load(void)
{
	return load_kernels(false);
}

/* Report how two byte strings differ; returns the number of differing bytes. */
static size_t diff_bytes(const uint8_t *a, const uint8_t *b, size_t n, size_t *first, int *maxd)
{
	size_t cnt = 0;
	*maxd = 0;
	*first = n;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i]) {
			if (!cnt)
				*first = i;
			cnt++;
			int d = abs((int)a[i] - (int)b[i]);
			if (d > *maxd)
				*maxd = d;
		}
	return cnt;
}

START_TEST(model_description)
{
	struct eng_model *m = load();
	const struct eng_model_info *i = eng_model_info(m);
	ck_assert_str_eq(i->format, "tflite");
	ck_assert_str_eq(i->name, "traffic_model.tflite");
	ck_assert_int_eq(i->input_width, 256);
	ck_assert_int_eq(i->input_height, 256);
	ck_assert_int_eq(i->input_channels, 3);
	ck_assert(!i->input_is_float);
	ck_assert_int_eq(i->n_classes, 3);
	ck_assert_int_eq(i->max_detections, 40);
	ck_assert_int_eq(i->n_ops, 185);
	ck_assert_int_eq(i->n_tensors, 429);
	ck_assert_uint_eq(i->state_bytes, 2 * 8 * 8 * 320);
	ck_assert_uint_gt(i->weight_bytes, 2u << 20);
	ck_assert(i->gmac > 0.70 && i->gmac < 0.73); /* 0.715 GMAC per ENGINE.md */
	/* the arena is close to the largest live set */
	ck_assert_uint_le(i->arena_bytes, m->g.live_peak + m->g.live_peak / 4);
	ck_assert_str_eq(eng_model_label(m, 0), "sedan");
	ck_assert_str_eq(eng_model_label(m, 2), "large_veh_bus");
	ck_assert_str_eq(eng_model_label(m, 7), "7");
	/* The state pairs: init_lstm_c <-> lstm_c, init_lstm_h <-> lstm_h. */
	ck_assert_int_eq(m->n_state, 2);
	for (int s = 0; s < 2; s++) {
		const char *in = m->g.tensors[m->state[s].in].name;
		const char *out = m->g.tensors[m->state[s].out].name;
		ck_assert_str_eq(in + strlen("raw_inputs/init_"), out + strlen("raw_outputs/"));
	}
	ck_assert_ptr_nonnull(eng_backend_find("cpu"));
	ck_assert_ptr_null(eng_backend_find("gpu"));
	ck_assert_str_eq(eng_backend_names()[0], "cpu");
	eng_model_destroy(m);
}
END_TEST

static void run_frames(bool reference, int n_frames)
{
	struct eng_model *m = load_kernels(reference);
	struct eng_ctx *c = NULL;
	struct eng_state *st = NULL;
	char err[512] = "";
	ck_assert_msg(eng_ctx_create(m, eng_backend_find("cpu"), 1, &c, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_int_eq(eng_state_create(m, &st), 0);
	ck_assert_int_eq(eng_ctx_watch(c, BOX_TENSOR), 0);
	ck_assert_int_eq(eng_ctx_watch(c, SCORE_TENSOR), 0);

	char p[1400];
	snprintf(p, sizeof(p), "%s/reference/detections.json", dir);
	json_object *ref = json_object_from_file(p);
	ck_assert_msg(ref != NULL, "cannot parse %s", p);
	json_object *frames = json_object_object_get(ref, "frames");
	ck_assert_int_eq(json_object_array_length(frames), 10);
	struct eng_detections *d = malloc(sizeof(*d));
	int bad_frames = 0;

	for (int f = 1; f <= n_frames; f++) {
		char rel[64];
		size_t n_in, n_box, n_sc;
		snprintf(rel, sizeof(rel), "reference/inputs/%04d.rgb", f);
		uint8_t *img = ref_file(rel, &n_in);
		ck_assert_uint_eq(n_in, 256 * 256 * 3);
		const uint8_t *ins[1] = {img};
		struct eng_state *sts[1] = {st};
		ck_assert_int_eq(eng_run(c, 1, ins, sts, d), 0);

		snprintf(rel, sizeof(rel), "reference/raw/%04d_box_encodings.u8", f);
		uint8_t *box = ref_file(rel, &n_box);
		snprintf(rel, sizeof(rel), "reference/raw/%04d_scores.u8", f);
		uint8_t *sc = ref_file(rel, &n_sc);
		const void *got;
		size_t bytes, first;
		int maxd;
		ck_assert_int_eq(eng_ctx_tensor(c, BOX_TENSOR, &got, &bytes), 0);
		ck_assert_uint_eq(bytes, n_box);
		size_t nd_box = diff_bytes(got, box, bytes, &first, &maxd);
		if (nd_box)
			fprintf(stderr, "frame %d: box encodings differ in %zu of %zu bytes (first %zu, "
					"max %d)\n", f, nd_box, bytes, first, maxd);
		ck_assert_int_eq(eng_ctx_tensor(c, SCORE_TENSOR, &got, &bytes), 0);
		ck_assert_uint_eq(bytes, n_sc);
		size_t nd_sc = diff_bytes(got, sc, bytes, &first, &maxd);
		if (nd_sc)
			fprintf(stderr, "frame %d: scores differ in %zu of %zu bytes (first %zu, max %d)\n",
				f, nd_sc, bytes, first, maxd);

		json_object *fr = json_object_array_get_idx(frames, (size_t)f - 1);
		ck_assert_int_eq(json_object_get_int(json_object_object_get(fr, "frame")), f);
		json_object *dets = json_object_object_get(fr, "detections");
		int nref = (int)json_object_array_length(dets);
		int det_bad = d->n != nref;
		if (det_bad)
			fprintf(stderr, "frame %d: %d detections, reference %d\n", f, d->n, nref);
		for (int i = 0; i < nref && i < d->n; i++) {
			json_object *o = json_object_array_get_idx(dets, (size_t)i);
			int cls = json_object_get_int(json_object_object_get(o, "class_id"));
			float score =
				(float)json_object_get_double(json_object_object_get(o, "score"));
			const char *keys[4] = {"ymin", "xmin", "ymax", "xmax"};
			bool ok = d->d[i].class_id == cls && d->d[i].score == score;
			for (int k = 0; k < 4; k++) {
				double rv = json_object_get_double(json_object_object_get(o, keys[k]));
				ok = ok && fabs((double)d->d[i].box[k] - rv) <= 1e-5;
			}
			if (!ok) {
				det_bad = 1;
				fprintf(stderr, "frame %d detection %d: got class %d score %.8f box "
						"%.8f %.8f %.8f %.8f; reference class %d score %.8f\n",
					f, i, d->d[i].class_id, d->d[i].score, d->d[i].box[0],
					d->d[i].box[1], d->d[i].box[2], d->d[i].box[3], cls, score);
			}
		}
		bad_frames += nd_box || nd_sc || det_bad;
		free(img);
		free(box);
		free(sc);
	}
	ck_assert_msg(bad_frames == 0, "%d of %d frames differ from the reference (see stderr)",
		      bad_frames, n_frames);

	/* A reset state and a stateless run both reproduce frame 1 (its state is zero). */
	eng_state_reset(st);
	size_t n_in;
	uint8_t *img = ref_file("reference/inputs/0001.rgb", &n_in);
	const uint8_t *ins[2] = {img, img};
	struct eng_state *sts[2] = {st, NULL};
	struct eng_detections *two = malloc(2 * sizeof(*two));
	ck_assert_int_eq(eng_run(c, 2, ins, sts, two), 0);
	json_object *dets = json_object_object_get(json_object_array_get_idx(frames, 0),
						   "detections");
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(two[k].n, 40);
		json_object *o = json_object_array_get_idx(dets, 0);
		ck_assert(two[k].d[0].score ==
			  (float)json_object_get_double(json_object_object_get(o, "score")));
	}
	const struct eng_op_timing *t;
	int nt;
	ck_assert_int_eq(eng_ctx_op_timings(c, &t, &nt), 0);
	ck_assert_int_eq(nt, 185);
	ck_assert_str_eq(t[184].op_name, "TFLite_Detection_PostProcess");
	free(two);
	free(img);
	free(d);
	json_object_put(ref);
	eng_state_destroy(st);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
}

START_TEST(ten_frames_with_state)
{
	run_frames(false, 10);
}
END_TEST

/* The plain reference kernels too (slower: three frames, state carried). */
START_TEST(reference_kernels_three_frames)
{
	run_frames(true, 3);
}
END_TEST

static void frame1_diagnostic(bool reference)
{
	struct eng_model *m = load_kernels(reference);
	struct eng_ctx *c = NULL;
	char err[512] = "";
	ck_assert_msg(eng_ctx_create(m, NULL, 1, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(eng_ctx_watch(c, -1), 0);
	size_t n_in;
	uint8_t *img = ref_file("reference/inputs/0001.rgb", &n_in);
	const uint8_t *ins[1] = {img};
	struct eng_detections *d = malloc(sizeof(*d));
	ck_assert_int_eq(eng_run(c, 1, ins, NULL, d), 0);

	/* Which tensors depart from the reference. */
	const struct eng_graph *g = &m->g;
	char *bad = calloc((size_t)g->n_tensors, 1);
	char p[1400];
	snprintf(p, sizeof(p), "%s/reference/frame1-tensors/index.jsonl", dir);
	FILE *idx = fopen(p, "r");
	ck_assert_msg(idx != NULL, "cannot read %s", p);
	char line[4096];
	int n_checked = 0, n_bad = 0;
	while (fgets(line, sizeof(line), idx)) {
		json_object *o = json_tokener_parse(line);
		ck_assert_ptr_nonnull(o);
		int ti = json_object_get_int(json_object_object_get(o, "tensor"));
		const char *file = json_object_get_string(json_object_object_get(o, "file"));
		if (ti >= g->n_tensors) {
			/* TFLite's post-process adds temporaries (decoded boxes) that
			 * are not in the file. */
			json_object_put(o);
			continue;
		}
		ck_assert(ti >= 0);
		char rel[256];
		snprintf(rel, sizeof(rel), "reference/frame1-tensors/%s", file);
		size_t n;
		uint8_t *want = ref_file(rel, &n);
		const void *got;
		size_t bytes;
		ck_assert_int_eq(eng_ctx_tensor(c, ti, &got, &bytes), 0);
		ck_assert_msg(bytes == n, "tensor %d: %zu bytes, reference %zu", ti, bytes, n);
		size_t first;
		int maxd;
		size_t nd = g->tensors[ti].type == ENG_DT_F32
				    ? (memcmp(got, want, n) != 0)
				    : diff_bytes(got, want, n, &first, &maxd);
		if (g->tensors[ti].type == ENG_DT_F32 && nd) {
			/* floats: within 1e-5 counts as equal (post-process boxes) */
			const float *a = got, *b = (const float *)want;
			nd = 0;
			for (size_t i = 0; i < n / 4; i++)
				nd += fabsf(a[i] - b[i]) > 1e-5f;
		}
		if (nd) {
			bad[ti] = 1;
			n_bad++;
		}
		n_checked++;
		free(want);
		json_object_put(o);
	}
	fclose(idx);
	ck_assert_int_ge(n_checked, 200);

	/* The first operator (in execution order) writing a departing tensor
	 * while all its inputs agree is where the bug is. */
	int first_op = -1;
	for (int i = 0; i < g->n_nodes && first_op < 0; i++)
		for (int k = 0; k < g->nodes[i].n_out; k++)
			if (bad[g->nodes[i].out[k]->index]) {
				first_op = i;
				break;
			}
	if (first_op >= 0) {
		const struct eng_node *n = &g->nodes[first_op];
		const struct eng_tensor *t = NULL;
		for (int k = 0; k < n->n_out && !t; k++)
			if (bad[n->out[k]->index])
				t = n->out[k];
		fprintf(stderr, "frame 1 (%s kernels): %d of %d tensors depart; first departing "
				"operator %d (%s), output tensor %d '%s'; inputs:",
			reference ? "reference" : "selected", n_bad, n_checked, first_op, eng_op_name(n->type), t->index, t->name);
		for (int k = 0; k < n->n_in; k++)
			if (n->in[k])
				fprintf(stderr, " %d%s", n->in[k]->index,
					n->in[k]->is_const ? "(const)" : bad[n->in[k]->index] ? "(bad)" : "");
		fprintf(stderr, "\n");
	}
	ck_assert_msg(first_op < 0, "operator %d (%s) is the first to depart from the reference",
		      first_op, first_op >= 0 ? eng_op_name(g->nodes[first_op].type) : "");
	free(bad);
	free(d);
	free(img);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
}

START_TEST(frame1_first_departing_operator)
{
	frame1_diagnostic(false);
}
END_TEST

START_TEST(frame1_first_departing_operator_reference_kernels)
{
	frame1_diagnostic(true);
}
END_TEST

/* Every kernel set this CPU can run (DETD_KERNELS forces it): the ten
 * reference frames and every frame-1 tensor, byte for byte. */
START_TEST(every_kernel_set)
{
	enum eng_kset ks = (enum eng_kset)_i;
	if (!eng_kset_usable(ks)) {
		fprintf(stderr, "SKIP: kernel set %s: this CPU lacks the instructions\n",
			eng_kset_name(ks));
		return;
	}
	setenv("DETD_KERNELS", eng_kset_name(ks), 1);
	struct eng_model *m = load();
	ck_assert_str_eq(eng_model_info(m)->kernels, eng_kset_name(ks));
	eng_model_destroy(m);
	run_frames(false, 10);
	frame1_diagnostic(false);
	fprintf(stderr, "kernel set %s: 10 frames and frame-1 tensors match\n", eng_kset_name(ks));
}
END_TEST

/* A kernel set that does not exist or that this CPU cannot run fails the load, saying so. */
START_TEST(forced_kernel_set_errors)
{
	const char *d = getenv("DETD_SHARED_DATA");
	ck_assert_ptr_nonnull(d);
	char mp[1100];
	snprintf(mp, sizeof(mp), "%s/traffic/traffic_model.tflite", d);
	struct eng_model_opts o = {.path = mp};
	struct eng_model *m = NULL;
	char err[512] = "";
	setenv("DETD_KERNELS", "avx1024", 1);
	ck_assert_int_eq(eng_model_load(&o, &m, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(err, "DETD_KERNELS=avx1024") != NULL, "%s", err);
	for (int i = 0; i < ENG_KS__COUNT; i++) {
		if (eng_kset_usable((enum eng_kset)i))
			continue;
		setenv("DETD_KERNELS", eng_kset_name((enum eng_kset)i), 1);
		ck_assert_int_eq(eng_model_load(&o, &m, err, sizeof(err)), -ENOTSUP);
		ck_assert_msg(strstr(err, "lacks") != NULL, "%s", err);
	}
	/* the reference kernels ignore the variable */
	o.reference_kernels = true;
	setenv("DETD_KERNELS", "avx1024", 1);
	ck_assert_int_eq(eng_model_load(&o, &m, err, sizeof(err)), 0);
	ck_assert_str_eq(eng_model_info(m)->kernels, "ref");
	eng_model_destroy(m);
}
END_TEST

/* Contexts share the model read-only: two threads, each with its own context
 * and state, run frames 1..3 at the same time and get identical results. */
struct worker {
	const struct eng_model *m;
	uint8_t *img[3];
	struct eng_detections det[3];
	int rc;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct eng_ctx *c = NULL;
	struct eng_state *st = NULL;
	char err[256];
	w->rc = eng_ctx_create(w->m, NULL, 1, &c, err, sizeof(err));
	if (!w->rc)
		w->rc = eng_state_create(w->m, &st);
	for (int f = 0; f < 3 && !w->rc; f++) {
		const uint8_t *ins[1] = {w->img[f]};
		struct eng_state *sts[1] = {st};
		w->rc = eng_run(c, 1, ins, sts, &w->det[f]);
	}
	eng_state_destroy(st);
	eng_ctx_destroy(c);
	return NULL;
}

START_TEST(contexts_in_parallel)
{
	struct eng_model *m = load();
	static struct worker w[2];
	uint8_t *img[3];
	for (int f = 0; f < 3; f++) {
		char rel[64];
		size_t n;
		snprintf(rel, sizeof(rel), "reference/inputs/%04d.rgb", f + 1);
		img[f] = ref_file(rel, &n);
	}
	pthread_t th[2];
	for (int i = 0; i < 2; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].m = m;
		memcpy(w[i].img, img, sizeof(img));
		ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(w[i].rc, 0);
	}
	for (int f = 0; f < 3; f++) {
		ck_assert_int_eq(w[0].det[f].n, 40);
		ck_assert_int_eq(w[0].det[f].n, w[1].det[f].n);
		ck_assert(memcmp(w[0].det[f].d, w[1].det[f].d, 40 * sizeof(w[0].det[f].d[0])) == 0);
	}
	for (int f = 0; f < 3; f++)
		free(img[f]);
	eng_model_destroy(m);
}
END_TEST

/* A backend that fails at run time: eng_run() reports it instead of quietly
 * re-running on cpu (that is the batcher's one fallback path), and the
 * context stays usable. */
static int fail_open(const struct eng_model *m, const struct eng_backend_opts *bo, int threads,
		     void **priv, char *err, size_t errlen)
{
	(void)m, (void)bo, (void)threads, (void)err, (void)errlen;
	*priv = malloc(16);
	return *priv ? 0 : -ENOMEM;
}

static int fail_run(void *priv, const struct eng_graph *g, const struct eng_exec *x,
		    int64_t *op_ns, eng_node_observer obs, void *obs_user)
{
	(void)priv, (void)g, (void)op_ns, (void)obs, (void)obs_user;
	memset(x->arena, 0xa5, 4096); /* clobber, as a broken device might */
	return -EIO;
}

static const struct eng_backend_ops failing = {
	.name = "failing", .open = fail_open, .run = fail_run, .close = free,
};

START_TEST(failing_backend_reports_error)
{
	struct eng_model *m = load();
	struct eng_ctx *c = NULL, *ref = NULL;
	char err[256];
	ck_assert_int_eq(eng_ctx_create(m, &failing, 1, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(eng_ctx_create(m, NULL, 1, &ref, err, sizeof(err)), 0);
	size_t n;
	uint8_t *img = ref_file("reference/inputs/0001.rgb", &n);
	const uint8_t *ins[2] = {img, img};
	struct eng_detections *a = malloc(2 * sizeof(*a)), *b = malloc(2 * sizeof(*b));
	ck_assert_int_eq(eng_run(c, 2, ins, NULL, a), -EIO);
	ck_assert_int_eq(eng_run(c, 1, ins, NULL, a), -EIO);
	ck_assert_int_eq(eng_run(ref, 2, ins, NULL, b), 0);
	ck_assert_int_eq(b[1].n, 40);
	struct eng_backend_info info;
	ck_assert_int_eq(eng_ctx_backend_info(c, &info), -ENOTSUP);
	ck_assert_int_eq(eng_ctx_backend_info(ref, &info), -ENOTSUP);
	free(a);
	free(b);
	free(img);
	eng_ctx_destroy(c);
	eng_ctx_destroy(ref);
	eng_model_destroy(m);
}
END_TEST

/* Argument checks and the debug hooks' contract. */
START_TEST(api_edges)
{
	struct eng_model *m = load(), *m2 = load();
	struct eng_ctx *c = NULL;
	struct eng_state *other = NULL;
	char err[256];
	ck_assert_int_eq(eng_ctx_create(m, NULL, 0, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(eng_state_create(m2, &other), 0);
	const void *data;
	size_t bytes;
	const struct eng_op_timing *t;
	int nt;
	ck_assert_int_eq(eng_ctx_tensor(c, 421, &data, &bytes), -ENODATA); /* no run yet */
	ck_assert_int_eq(eng_ctx_op_timings(c, &t, &nt), -ENODATA);
	ck_assert_int_eq(eng_ctx_tensor(c, 429, &data, &bytes), -EINVAL);
	ck_assert_int_eq(eng_ctx_tensor(c, -1, &data, &bytes), -EINVAL);
	ck_assert_int_eq(eng_ctx_watch(c, 429), -EINVAL);
	ck_assert_int_eq(eng_ctx_tensor(c, 420, &data, &bytes), 0); /* anchors: constant */
	ck_assert_uint_eq(bytes, 26880 * 4);

	size_t n;
	uint8_t *img = ref_file("reference/inputs/0001.rgb", &n);
	const uint8_t *ins[1] = {img}, *none[1] = {NULL};
	struct eng_state *sts[1] = {other};
	struct eng_detections *d = malloc(sizeof(*d));
	ck_assert_int_eq(eng_run(c, 1, ins, sts, d), -EINVAL); /* state of another model */
	ck_assert_int_eq(eng_run(c, 1, none, NULL, d), -EINVAL);
	ck_assert_int_eq(eng_run(c, -1, ins, NULL, d), -EINVAL);
	ck_assert_int_eq(eng_run(c, 0, NULL, NULL, NULL), 0);
	ck_assert_int_eq(eng_run(c, 1, ins, NULL, d), 0);
	/* Without watching, an intermediate tensor is gone; outputs stay. */
	ck_assert_int_eq(eng_ctx_tensor(c, 421, &data, &bytes), -ENODATA);
	ck_assert_int_eq(eng_ctx_tensor(c, 427, &data, &bytes), 0); /* raw_outputs/lstm_c */
	ck_assert_uint_eq(bytes, 8 * 8 * 320);
	ck_assert_int_eq(eng_ctx_op_timings(c, &t, &nt), 0);
	int64_t total = 0;
	for (int i = 0; i < nt; i++) {
		ck_assert_int_ge(t[i].ns, 0);
		ck_assert_int_eq(t[i].index, i);
		total += t[i].ns;
	}
	ck_assert_int_gt(total, 0);
	free(d);
	free(img);
	eng_state_destroy(other);
	eng_ctx_destroy(c);
	eng_model_destroy(m2);
	eng_model_destroy(m);
}
END_TEST

/* threads = 2: frames of two streams of one batch run at once, frames of one
 * stream stay in order; everything equals the sequential run.  _i: 0 lanes
 * (the default), 1 layer by layer on 2 threads, 2 layer by layer on 1 thread
 * (DETD_BATCH; a batch with a stream twice always takes the lanes). */
START_TEST(batch_on_two_threads)
{
	static const char *const modes[] = {"lanes", "layers", "layers"};
	struct eng_model *m = load();
	struct eng_ctx *par = NULL, *seq = NULL;
	struct eng_state *a = NULL, *b = NULL, *sa = NULL, *sb = NULL;
	char err[256];
	unsetenv("DETD_BATCH"); /* seq: frame after frame */
	ck_assert_int_eq(eng_ctx_create(m, NULL, 1, &seq, err, sizeof(err)), 0);
	setenv("DETD_BATCH", modes[_i], 1); /* this test's forked process only */
	ck_assert_int_eq(eng_ctx_create(m, NULL, _i == 2 ? 1 : 2, &par, err, sizeof(err)), 0);
	unsetenv("DETD_BATCH");
	ck_assert_int_eq(eng_state_create(m, &a), 0);
	ck_assert_int_eq(eng_state_create(m, &b), 0);
	ck_assert_int_eq(eng_state_create(m, &sa), 0);
	ck_assert_int_eq(eng_state_create(m, &sb), 0);
	uint8_t *img[3];
	for (int f = 0; f < 3; f++) {
		char rel[64];
		size_t n;
		snprintf(rel, sizeof(rel), "reference/inputs/%04d.rgb", f + 1);
		img[f] = ref_file(rel, &n);
	}
	/* stream a: frames 1, 2, 3; stream b: frames 2, 3; one stateless frame 1 */
	const uint8_t *ins[6] = {img[0], img[1], img[1], img[2], img[2], img[0]};
	struct eng_state *ps[6] = {a, b, a, b, a, NULL};
	struct eng_state *ss[6] = {sa, sb, sa, sb, sa, NULL};
	struct eng_detections *dp = malloc(6 * sizeof(*dp)), *ds = malloc(6 * sizeof(*ds));
	ck_assert_int_eq(eng_run(par, 6, ins, ps, dp), 0);
	ck_assert_int_eq(eng_run(seq, 6, ins, ss, ds), 0);
	for (int f = 0; f < 6; f++) {
		ck_assert_int_eq(dp[f].n, 40);
		ck_assert_msg(memcmp(dp[f].d, ds[f].d, 40 * sizeof(dp[f].d[0])) == 0,
			      "frame %d differs between 2 threads and 1", f);
	}
	/* frame 1 of stream a and the stateless frame 1 agree */
	ck_assert(memcmp(dp[0].d, dp[5].d, 40 * sizeof(dp[0].d[0])) == 0);
	const struct eng_op_timing *t;
	int nt;
	ck_assert_int_eq(eng_ctx_op_timings(par, &t, &nt), 0);
	const void *o1, *o2;
	size_t b1, b2;
	ck_assert_int_eq(eng_ctx_tensor(par, 316, &o1, &b1), 0); /* last frame's boxes */
	ck_assert_int_eq(eng_ctx_tensor(seq, 316, &o2, &b2), 0);
	ck_assert(b1 == b2 && memcmp(o1, o2, b1) == 0);
	/* streams a and b once each, and a stateless frame: with "layers" the
	 * batch runs layer by layer; states carried on from the batch above */
	const uint8_t *ins2[3] = {img[0], img[2], img[1]};
	struct eng_state *ps2[3] = {b, a, NULL}, *ss2[3] = {sb, sa, NULL};
	ck_assert_int_eq(eng_run(par, 3, ins2, ps2, dp), 0);
	ck_assert_int_eq(eng_run(seq, 3, ins2, ss2, ds), 0);
	for (int f = 0; f < 3; f++) {
		ck_assert_int_eq(dp[f].n, ds[f].n);
		ck_assert_msg(memcmp(dp[f].d, ds[f].d, (size_t)ds[f].n * sizeof(dp[f].d[0])) == 0,
			      "%s: frame %d of the distinct-stream batch differs", modes[_i], f);
	}
	ck_assert_int_eq(eng_ctx_tensor(par, 316, &o1, &b1), 0);
	ck_assert_int_eq(eng_ctx_tensor(seq, 316, &o2, &b2), 0);
	ck_assert(b1 == b2 && memcmp(o1, o2, b1) == 0);
	for (int f = 0; f < 3; f++)
		free(img[f]);
	free(dp);
	free(ds);
	eng_state_destroy(a);
	eng_state_destroy(b);
	eng_state_destroy(sa);
	eng_state_destroy(sb);
	eng_ctx_destroy(par);
	eng_ctx_destroy(seq);
	eng_model_destroy(m);
}
END_TEST

static const char *data_missing(void)
{
	return tu_shared_data_has("traffic/reference/detections.json")
		       ? NULL
		       : "no traffic reference in DETD_SHARED_DATA";
}

static Suite *parity_suite(void)
{
	Suite *s = suite_create("parity");
	TCase *tc = tcase_create("traffic");
	tcase_set_timeout(tc, 900);
	tcase_add_test(tc, model_description);
	tcase_add_test(tc, frame1_first_departing_operator);
	tcase_add_test(tc, frame1_first_departing_operator_reference_kernels);
	tcase_add_test(tc, ten_frames_with_state);
	tcase_add_test(tc, reference_kernels_three_frames);
	tcase_add_loop_test(tc, every_kernel_set, ENG_KS_AVX2, ENG_KS__COUNT);
	tcase_add_test(tc, forced_kernel_set_errors);
	tcase_add_test(tc, contexts_in_parallel);
	tcase_add_test(tc, failing_backend_reports_error);
	tcase_add_test(tc, api_edges);
	tcase_add_loop_test(tc, batch_on_two_threads, 0, 3);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {{NULL, parity_suite, data_missing}};
	return tu_main(argc, argv, suites, 1);
}
