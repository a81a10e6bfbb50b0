/*
 * test_models.c — the engine against TensorFlow Lite's builtin kernels on
 * models other than the traffic model, on every kernel set (the selected
 * fast kernels and the plain reference kernels):
 *
 *   test_models coco    — Coral's SSD-MobileNet-v2 COCO model in
 *                         $DETD_SHARED_DATA/coco: the two post-process inputs
 *                         byte-identical to reference/NAME.pp_box.t250.bin and
 *                         NAME.pp_class.t259.bin, every detection equal to
 *                         reference/detections.jsonl.  Exits 77 (skip) when
 *                         the data is absent.
 *   test_models corpus  — every generated model of tests/data/modelgen
 *                         (its MANIFEST lists model, post-process input
 *                         tensors and reference directory) against the
 *                         oracle outputs committed beside it: post-process
 *                         inputs and detections for every input, and where
 *                         ref/NAME/tensors exists, every activation tensor
 *                         of the first input.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "testutil.h"

static const char *coco_dir(void)
{
	static char d[1024];
	const char *s = getenv("DETD_SHARED_DATA");
	snprintf(d, sizeof(d), "%s/coco", s ? s : "../shared/data");
	return d;
}

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

static uint8_t *must_read(const char *path, size_t *len)
{
	uint8_t *b = read_all(path, len);
	ck_assert_msg(b != NULL, "cannot read %s", path);
	return b;
}

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

/* One model, one set of inputs, compared with one reference directory. */
struct parity_case {
	const char *model;
	const char *labels;
	const char *inputs_dir;       /* NAME.rgb */
	const char *ref_dir;          /* detections.jsonl, NAME.pp_box.tB.bin, NAME.pp_class.tC.bin */
	int box_tensor, class_tensor; /* < 0: not compared */
	const char *const *names;     /* input stems, NULL-terminated */
	int ulps;                     /* 0: bytes equal; else float32 within this many ULPs */
};

/* Distance in units in the last place between two floats (same sign or around 0). */
static int64_t ulp_dist(float a, float b)
{
	int32_t ia, ib;
	memcpy(&ia, &a, 4);
	memcpy(&ib, &b, 4);
	int64_t x = ia < 0 ? (int64_t)INT32_MIN - ia : ia;
	int64_t y = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
	return x > y ? x - y : y - x;
}

static bool close_f(float a, float b, int ulps)
{
	return ulps ? ulp_dist(a, b) <= ulps : memcmp(&a, &b, sizeof(a)) == 0;
}

/* Compare one tensor with a reference file: identical bytes, or float32 within ulps. */
static bool same_tensor(const struct eng_ctx *c, int index, const char *path, const char *what,
			int ulps)
{
	size_t n, first;
	int maxd;
	uint8_t *ref = must_read(path, &n);
	const void *got;
	size_t bytes;
	ck_assert_int_eq(eng_ctx_tensor(c, index, &got, &bytes), 0);
	bool ok = bytes == n;
	if (!ok)
		fprintf(stderr, "%s: tensor %d has %zu bytes, reference %zu\n", what, index, bytes, n);
	size_t nd = ok ? diff_bytes(got, ref, n, &first, &maxd) : 0;
	if (nd && ulps) {
		size_t far = 0;
		int64_t worst = 0;
		for (size_t i = 0; i + 4 <= n; i += 4) {
			float a, b;
			memcpy(&a, (const uint8_t *)got + i, 4);
			memcpy(&b, ref + i, 4);
			int64_t d = ulp_dist(a, b);
			far += d > ulps;
			worst = d > worst ? d : worst;
		}
		if (far)
			fprintf(stderr, "%s: tensor %d: %zu floats further than %d ULPs (worst %lld)\n",
				what, index, far, ulps, (long long)worst);
		nd = far;
	} else if (nd) {
		/* float tensors: report the byte difference all the same, it is what counts */
		fprintf(stderr, "%s: tensor %d differs in %zu of %zu bytes (first at %zu, max %d)\n",
			what, index, nd, n, first, maxd);
		ok = false;
	}
	free(ref);
	return ok;
}

/* Detections equal, bit for bit (the reference prints floats with %.9g, which round-trips). */
static bool same_detections(const struct eng_detections *d, json_object *dets, const char *what,
			    int ulps)
{
	int nref = (int)json_object_array_length(dets);
	bool ok = d->n == nref;
	if (!ok)
		fprintf(stderr, "%s: %d detections, reference %d\n", what, d->n, nref);
	for (int i = 0; i < nref && i < d->n; i++) {
		json_object *o = json_object_array_get_idx(dets, (size_t)i);
		int cls = json_object_get_int(json_object_object_get(o, "class_id"));
		float score = (float)json_object_get_double(json_object_object_get(o, "score"));
		json_object *box = json_object_object_get(o, "box");
		bool same = d->d[i].class_id == cls && close_f(d->d[i].score, score, ulps);
		for (int k = 0; k < 4; k++)
			same = same && close_f(d->d[i].box[k],
					       (float)json_object_get_double(
						       json_object_array_get_idx(box, (size_t)k)),
					       ulps);
		if (!same) {
			ok = false;
			fprintf(stderr, "%s: detection %d: got class %d score %.9g box %.9g %.9g %.9g "
					"%.9g; reference class %d score %.9g\n",
				what, i, d->d[i].class_id, (double)d->d[i].score,
				(double)d->d[i].box[0], (double)d->d[i].box[1],
				(double)d->d[i].box[2], (double)d->d[i].box[3], cls, (double)score);
		}
	}
	return ok;
}

/*
 * ref_dir/tensors/STEM.tINDEX.NAME.bin (tools/modelgen/make-tensors.sh): the
 * oracle's value of every activation for input STEM.  Compares each with the
 * engine's tensor INDEX; returns how many differ (each one is reported, so a
 * mismatch names the first op that departs from TFLite).
 */
static int tensors_differ(const struct eng_ctx *c, const char *tdir, const char *stem,
			  const char *what, int ulps, int *seen)
{
	struct dirent **ents = NULL;
	int ne = scandir(tdir, &ents, NULL, versionsort);
	if (ne < 0)
		return 0;
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "%s.t", stem);
	int bad = 0;
	for (int i = 0; i < ne; i++) {
		const char *fn = ents[i]->d_name;
		int index;
		if (strncmp(fn, prefix, strlen(prefix)) == 0 &&
		    sscanf(fn + strlen(prefix), "%d.", &index) == 1) {
			char p[2400], w[1300];
			snprintf(p, sizeof(p), "%s/%s", tdir, fn);
			snprintf(w, sizeof(w), "%s (%s)", what, fn);
			bad += !same_tensor(c, index, p, w, ulps);
			(*seen)++;
		}
		free(ents[i]);
	}
	free(ents);
	return bad;
}

/* Run a case on one kernel set; returns the number of inputs that differ. */
static int run_case(const struct parity_case *pc, bool reference)
{
	struct eng_model_opts o = {
		.path = pc->model, .labels_path = pc->labels, .reference_kernels = reference};
	struct eng_model *m = NULL;
	struct eng_ctx *c = NULL;
	char err[512] = "";
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s: %s", pc->model, err);
	ck_assert_msg(eng_ctx_create(m, eng_backend_find("cpu"), 1, &c, err, sizeof(err)) == 0,
		      "%s", err);
	if (pc->box_tensor >= 0)
		ck_assert_int_eq(eng_ctx_watch(c, pc->box_tensor), 0);
	if (pc->class_tensor >= 0)
		ck_assert_int_eq(eng_ctx_watch(c, pc->class_tensor), 0);
	char tdir[2048];
	snprintf(tdir, sizeof(tdir), "%s/tensors", pc->ref_dir);
	bool per_tensor = access(tdir, R_OK) == 0;
	int tensors_seen = 0;
	if (per_tensor)
		ck_assert_int_eq(eng_ctx_watch(c, -1), 0);

	char p[2048];
	snprintf(p, sizeof(p), "%s/detections.jsonl", pc->ref_dir);
	FILE *jf = fopen(p, "r");
	ck_assert_msg(jf != NULL, "cannot open %s", p);
	const struct eng_model_info *inf = eng_model_info(m);
	size_t in_bytes = (size_t)inf->input_width * (size_t)inf->input_height *
			  (size_t)inf->input_channels;
	struct eng_detections *d = malloc(sizeof(*d));
	ck_assert_ptr_nonnull(d);
	int bad = 0;
	char *line = NULL;
	size_t cap = 0;
	for (int i = 0; pc->names[i]; i++) {
		char what[512];
		snprintf(what, sizeof(what), "%s [%s kernels] %s", pc->model,
			 reference ? "reference" : "selected", pc->names[i]);
		ck_assert_msg(getline(&line, &cap, jf) > 0, "%s: reference has too few lines", what);
		json_object *ref = json_tokener_parse(line);
		ck_assert_msg(ref != NULL, "%s: bad reference line", what);
		char want[300];
		snprintf(want, sizeof(want), "%s.rgb", pc->names[i]);
		ck_assert_str_eq(json_object_get_string(json_object_object_get(ref, "file")), want);

		size_t n;
		snprintf(p, sizeof(p), "%s/%s.rgb", pc->inputs_dir, pc->names[i]);
		uint8_t *img = must_read(p, &n);
		ck_assert_uint_eq(n, in_bytes);
		const uint8_t *ins[1] = {img};
		struct eng_state *sts[1] = {NULL};
		ck_assert_int_eq(eng_run(c, 1, ins, sts, d), 0);
		bool ok = true;
		if (pc->box_tensor >= 0) {
			snprintf(p, sizeof(p), "%s/%s.pp_box.t%d.bin", pc->ref_dir, pc->names[i],
				 pc->box_tensor);
			ok = same_tensor(c, pc->box_tensor, p, what, pc->ulps) && ok;
		}
		if (pc->class_tensor >= 0) {
			snprintf(p, sizeof(p), "%s/%s.pp_class.t%d.bin", pc->ref_dir, pc->names[i],
				 pc->class_tensor);
			ok = same_tensor(c, pc->class_tensor, p, what, pc->ulps) && ok;
		}
		ok = same_detections(d, json_object_object_get(ref, "detections"), what, pc->ulps) &&
		     ok;
		if (per_tensor) {
			int nt = tensors_differ(c, tdir, pc->names[i], what, pc->ulps,
						&tensors_seen);
			if (nt)
				fprintf(stderr, "%s: %d activation tensors differ from TFLite\n", what,
					nt);
			ok = nt == 0 && ok;
		}
		bad += !ok;
		json_object_put(ref);
		free(img);
	}
	ck_assert_msg(!per_tensor || tensors_seen > 0, "%s: no tensor files in %s", pc->model,
		      tdir);
	if (per_tensor)
		fprintf(stderr, "%s [%s kernels]: %d activation tensors compared\n", pc->model,
			reference ? "reference" : "selected", tensors_seen);
	free(line);
	fclose(jf);
	free(d);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	return bad;
}

/* ---- Coral SSD-MobileNet-v2 COCO ---------------------------------------- */

static const char *const coco_names[] = {"grace_hopper", "kite_and_cold", "pets", "traffic_0005",
					 NULL};

static void coco_case(struct parity_case *pc, char *model, char *labels, char *inputs,
		      char *ref, size_t cap)
{
	snprintf(model, cap, "%s/mobilenet_ssd_v2_coco_quant_postprocess.tflite", coco_dir());
	snprintf(labels, cap, "%s/coco_labels.txt", coco_dir());
	snprintf(inputs, cap, "%s/inputs", coco_dir());
	snprintf(ref, cap, "%s/reference", coco_dir());
	*pc = (struct parity_case){model, labels, inputs, ref, 250, 259, coco_names, 0};
}

START_TEST(coco_matches_tflite)
{
	char model[1200], labels[1200], inputs[1200], ref[1200];
	struct parity_case pc;
	coco_case(&pc, model, labels, inputs, ref, sizeof(model));
	int bad = run_case(&pc, _i == 1);
	ck_assert_msg(bad == 0, "%d of 4 inputs differ from TFLite (%s kernels, see stderr)", bad,
		      _i ? "reference" : "selected");
}
END_TEST

START_TEST(coco_model_description)
{
	char model[1200], labels[1200], inputs[1200], ref[1200];
	struct parity_case pc;
	coco_case(&pc, model, labels, inputs, ref, sizeof(model));
	struct eng_model_opts o = {.path = model, .labels_path = labels};
	struct eng_model *m = NULL;
	char err[512] = "";
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s", err);
	const struct eng_model_info *i = eng_model_info(m);
	ck_assert_int_eq(i->input_width, 300);
	ck_assert_int_eq(i->input_height, 300);
	ck_assert(!i->input_is_float);
	ck_assert_int_eq(i->n_classes, 90);
	ck_assert_uint_eq(i->state_bytes, 0);
	/* Coral's label file has gaps: 11 has no name, 12 is "stop sign" */
	ck_assert_str_eq(eng_model_label(m, 10), "fire hydrant");
	ck_assert_str_eq(eng_model_label(m, 11), "11");
	ck_assert_str_eq(eng_model_label(m, 12), "stop sign");
	ck_assert_str_eq(eng_model_label(m, 31), "tie");
	eng_model_destroy(m);
}
END_TEST

/* ---- the generated corpus ------------------------------------------------ */

/*
 * tests/data/modelgen/MANIFEST: one model per line,
 *   NAME BOX_TENSOR CLASS_TENSOR ULPS
 * with NAME.tflite and the oracle's dump in ref/NAME/ (inputs in inputs/).
 * ULPS 0: every byte equal; float models: within ULPS (see its README).
 */
START_TEST(corpus_matches_tflite)
{
	const char *root = getenv("DETD_SOURCE_ROOT");
	ck_assert_msg(root != NULL, "DETD_SOURCE_ROOT is not set");
	char dir[1200], p[1400];
	snprintf(dir, sizeof(dir), "%s/tests/data/modelgen", root);
	snprintf(p, sizeof(p), "%s/MANIFEST", dir);
	FILE *mf = fopen(p, "r");
	ck_assert_msg(mf != NULL, "cannot open %s", p);

	/* the input stems: every inputs/NAME.rgb, in name order (as the oracle reads them) */
	char inputs[1300];
	snprintf(inputs, sizeof(inputs), "%s/inputs", dir);
	struct dirent **ents = NULL;
	int ne = scandir(inputs, &ents, NULL, alphasort);
	ck_assert_int_gt(ne, 0);
	char *stems[64];
	int ns = 0;
	for (int i = 0; i < ne; i++) {
		size_t l = strlen(ents[i]->d_name);
		if (l > 4 && strcmp(ents[i]->d_name + l - 4, ".rgb") == 0 && ns < 63)
			stems[ns++] = strndup(ents[i]->d_name, l - 4);
		free(ents[i]);
	}
	free(ents);
	stems[ns] = NULL;
	ck_assert_int_gt(ns, 0);

	char name[256];
	int box, cls, ulps, models = 0, bad_models = 0;
	while (fscanf(mf, "%255s %d %d %d", name, &box, &cls, &ulps) == 4) {
		char model[1500], ref[1500];
		snprintf(model, sizeof(model), "%s/%s.tflite", dir, name);
		snprintf(ref, sizeof(ref), "%s/ref/%s", dir, name);
		struct parity_case pc = {model, NULL, inputs, ref, box, cls,
					 (const char *const *)stems, ulps};
		int bad = run_case(&pc, _i == 1);
		if (bad)
			fprintf(stderr, "%s: %d of %d inputs differ\n", name, bad, ns);
		bad_models += bad != 0;
		models++;
	}
	fclose(mf);
	for (int i = 0; i < ns; i++)
		free(stems[i]);
	ck_assert_int_gt(models, 0);
	ck_assert_msg(bad_models == 0, "%d of %d generated models differ from TFLite (%s kernels)",
		      bad_models, models, _i ? "reference" : "selected");
}
END_TEST

int main(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : "";
	log_set_level(LOG_LVL_WARN);
	Suite *s = suite_create("models");
	TCase *tc = tcase_create(what);
	tcase_set_timeout(tc, 900);
	if (strcmp(what, "coco") == 0) {
		char p[1200];
		snprintf(p, sizeof(p), "%s/mobilenet_ssd_v2_coco_quant_postprocess.tflite",
			 coco_dir());
		if (access(p, R_OK) != 0) {
			fprintf(stderr, "SKIP: %s is absent\n", p);
			return 77;
		}
		tcase_add_test(tc, coco_model_description);
		/* _i: 0 = the selected (fast) kernels, 1 = the reference kernels */
		tcase_add_loop_test(tc, coco_matches_tflite, 0, 2);
	} else if (strcmp(what, "corpus") == 0) {
		tcase_add_loop_test(tc, corpus_matches_tflite, 0, 2);
	} else {
		fprintf(stderr, "usage: test_models coco|corpus\n");
		return 2;
	}
	suite_add_tcase(s, tc);
	return run_suite(s);
}
