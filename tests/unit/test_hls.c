/*
 * test_hls.c — the detd_accel kernel's C-simulation test bench.
 *
 * Every block engine/xrt/plan.c offloads is run through the C-sim (the HLS
 * source compiled with g++) on the very input tensors the CPU engine
 * computed, and every output byte is compared with the CPU engine's own
 * output of the block's last layer/node:
 *   - CoDeNet W4A8 fixtures (tools/codenet/make_fixtures.py into the build
 *     dir; CDN_FIXTURES points there): small variants, 256² 1.0× depthwise
 *     bounded, 256² 2.0× square, 512² 1.0× (full DCN: its decoder stays cpu);
 *   - the uint8 traffic model and the Coral SSD-MobileNet-v2 COCO model
 *     (../shared/data), W8 weights with TFLite's requantization.
 * Three suites (testutil.h): the kernel's own checks (descriptor refusal
 * codes, tiled layers against scalar loops) always run; "codenet" says SKIP
 * without the fixtures and "tflite" without ../shared/data, and inside them
 * the material is asserted, never returned from.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel_desc.h"
#include "codenet.h"
#include "log.h"
#include "model.h"
#include "plan.h"
#include "testutil.h"
#include "tflite.h"

/* ---- helpers ------------------------------------------------------------- */
static uint8_t *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
	if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
		free(b);
		b = NULL;
	}
	fclose(f);
	*n = (size_t)len;
	return b;
}

/* C11 aligned_alloc wants a size that is a multiple of the alignment */
static void *amalloc(size_t n)
{
	return aligned_alloc(64, (n + 63) & ~(size_t)63);
}

static size_t count_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *first)
{
	size_t d = 0;
	*first = n;
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i] && d++ == 0)
			*first = i;
	return d;
}

/* ---- CoDeNet --------------------------------------------------------------- */
static const char *fixtures(void)
{
	const char *d = getenv("CDN_FIXTURES");
	return d && *d ? d : NULL;
}

/* The input each layer read during the traced run, rebuilt from the traced
 * layer outputs with the same data movement as cdn_model.c's walk()
 * (split / concat-shuffle / max-pool / upsample are the engine's own ops). */
struct inputs {
	int n;
	const struct cdn_ten **in; /* per layer; NULL for the first conv */
	struct cdn_ten *owned;     /* tensors made here */
	int n_owned;
};

static const struct cdn_ten *own(struct inputs *s, int h, int w, int c, bool sgn)
{
	struct cdn_ten *t = &s->owned[s->n_owned++];
	*t = (struct cdn_ten){.h = h, .w = w, .c = c, .sgn = sgn};
	t->q = malloc((size_t)h * w * c);
	ck_assert_ptr_nonnull(t->q);
	return t;
}

static const struct cdn_ten *tr(const struct cdn_ctx *c, int i)
{
	const struct cdn_ten *t = NULL;
	ck_assert_int_eq(cdn_ctx_trace(c, i, &t), 0);
	ck_assert_ptr_nonnull(t);
	return t;
}

static void build_inputs(const struct cdn_model *m, const struct cdn_ctx *c, struct inputs *s)
{
	int n = cdn_model_desc(m)->n_layers;
	s->n = n;
	s->in = calloc((size_t)n, sizeof(*s->in));
	s->owned = calloc((size_t)(4 * n + 4), sizeof(*s->owned));
	s->n_owned = 0;
	const struct cdn_ten *x = NULL, *b1 = NULL;
	for (int i = 0; i < n; i++) {
		const struct cdn_layer *L = cdn_model_layer(m, i);
		const char *nm = L->name, *leaf = strrchr(nm, '.');
		const struct cdn_ten *out = tr(c, i);
		const struct cdn_ten *prev = i > 0 ? tr(c, i - 1) : NULL;
		const char *pleaf = i > 0 ? strrchr(cdn_model_layer(m, i - 1)->name, '.') : NULL;
		int st, u;
		if (strcmp(nm, "first.conv") == 0) {
			x = out;
			if (L->stride == 2) {
				const struct cdn_ten *y = own(s, (x->h - 1) / 2 + 1, (x->w - 1) / 2 + 1,
							      x->c, x->sgn);
				cdn_op_maxpool3s2(x, (struct cdn_ten *)y);
				x = y;
			}
		} else if (sscanf(nm, "stage%d.%d.", &st, &u) == 2) {
			if (strstr(nm, "branch1.dw")) {
				s->in[i] = x;
			} else if (strstr(nm, "branch1.pw")) {
				s->in[i] = prev;
				b1 = out;
			} else if (strstr(nm, "branch2.pw1")) {
				if (u == 0) {
					s->in[i] = x;
				} else {
					const struct cdn_ten *a = own(s, x->h, x->w, x->c / 2, x->sgn);
					const struct cdn_ten *bb = own(s, x->h, x->w, x->c / 2, x->sgn);
					cdn_op_split(x, (struct cdn_ten *)a, (struct cdn_ten *)bb);
					b1 = a;
					s->in[i] = bb;
				}
			} else if (strstr(nm, "branch2.dw")) {
				s->in[i] = prev;
			} else if (strstr(nm, "branch2.pw2")) {
				s->in[i] = prev;
				const struct cdn_ten *y = own(s, out->h, out->w, b1->c + out->c, b1->sgn);
				cdn_op_concat_shuffle(b1, out, (struct cdn_ten *)y);
				x = y;
			}
		} else if (strcmp(nm, "conv5") == 0) {
			s->in[i] = x;
			x = out;
		} else if (strncmp(nm, "dec.", 4) == 0) {
			if (strcmp(leaf, ".pw") == 0) {
				s->in[i] = x;
			} else if (strcmp(leaf, ".offset") == 0) {
				s->in[i] = pleaf && strcmp(pleaf, ".pw") == 0 ? prev : x;
			} else { /* .conv or .dcn: the last layer of the block */
				if (strcmp(leaf, ".dcn") == 0)
					s->in[i] = s->in[i - 1];
				else
					s->in[i] = pleaf && strcmp(pleaf, ".pw") == 0 ? prev : x;
				const struct cdn_ten *y = own(s, 2 * out->h, 2 * out->w, out->c, out->sgn);
				cdn_op_upsample2(out, (struct cdn_ten *)y);
				x = y;
			}
		} else if (strncmp(nm, "head.", 5) == 0) {
			s->in[i] = strcmp(leaf, ".pw") == 0 ? x : prev;
		}
	}
}

static void free_inputs(struct inputs *s)
{
	for (int i = 0; i < s->n_owned; i++)
		free(s->owned[i].q);
	free(s->owned);
	free(s->in);
}

/* HLS_DUMP_DIR set (tools/codenet/hls_reference.py does it): write each
 * block's input, aux and C-sim output plus a JSON line describing it, for
 * the independent check against PyTorch/torchvision. */
static void dump_block(const char *model, int bi, const struct cdn_model *m,
		       const struct plan_block *b, const void *x, const void *aux, const void *got)
{
	const char *dir = getenv("HLS_DUMP_DIR");
	if (!dir || !*dir)
		return;
	char p[1200];
	const struct accel_desc *d = &b->desc[0];
	bool pw = d->flags & ACCEL_F_PW, dw = d->flags & ACCEL_F_DW;
	snprintf(p, sizeof(p), "%s/%s.%d.in", dir, model, bi);
	FILE *f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(x, 1, (size_t)b->in_h * b->in_w * b->in_c, f),
			  (size_t)b->in_h * b->in_w * b->in_c);
	fclose(f);
	snprintf(p, sizeof(p), "%s/%s.%d.out", dir, model, bi);
	f = fopen(p, "wb");
	ck_assert_ptr_nonnull(f);
	size_t no = (size_t)b->out_h * b->out_w * b->out_c;
	ck_assert_uint_eq(fwrite(got, 1, no, f), no);
	fclose(f);
	if (aux) {
		snprintf(p, sizeof(p), "%s/%s.%d.aux", dir, model, bi);
		f = fopen(p, "wb");
		ck_assert_ptr_nonnull(f);
		size_t na = (size_t)b->in_h * b->in_w * b->aux_c;
		ck_assert_uint_eq(fwrite(aux, 1, na, f), na);
		fclose(f);
	}
	snprintf(p, sizeof(p), "%s/blocks.jsonl", dir);
	f = fopen(p, "a");
	ck_assert_ptr_nonnull(f);
	const char *l0 = cdn_model_layer(m, b->units[0])->name;
	const char *l1 = cdn_model_layer(m, b->units[b->n_units - 1])->name;
	fprintf(f, "{\"model\": \"%s\", \"block\": %d, \"pw\": %s, \"dw\": %s, "
		   "\"pw_layer\": \"%s\", \"dw_layer\": \"%s\", \"in\": [%d, %d, %d], "
		   "\"out\": [%d, %d, %d], \"aux_c\": %d, \"stride\": %u, \"deform\": %u, "
		   "\"bound\": %d, \"pw_x_zp\": %d, \"pw_relu\": %s, \"dw_relu\": %s}\n",
		model, bi, pw ? "true" : "false", dw ? "true" : "false", pw ? l0 : "",
		dw ? l1 : "", b->in_h, b->in_w, b->in_c, b->out_h, b->out_w, b->out_c, b->aux_c,
		d->stride, d->deform, d->bound, d->pw.x_zp, d->pw.out_zp == -128 ? "true" : "false",
		d->dw.out_zp == -128 ? "true" : "false");
	fclose(f);
}

/* Returns the number of blocks checked. */
static int check_codenet(const char *name, int *n_dcn)
{
	char p[1200];
	char err[256] = "";
	struct cdn_model *m = NULL;
	snprintf(p, sizeof(p), "%s/%s.json", fixtures(), name);
	ck_assert_msg(cdn_model_load(p, &m, err, sizeof(err)) == 0, "%s: %s", name, err);
	const struct cdn_desc *d = cdn_model_desc(m);
	ck_assert(d->quant);
	snprintf(p, sizeof(p), "%s/input_%dx%d.rgb", fixtures(), d->height, d->width);
	size_t n;
	uint8_t *rgb = read_all(p, &n);
	ck_assert_msg(rgb && n == (size_t)d->width * d->height * 3, "%s", p);
	struct cdn_ctx *c = NULL;
	ck_assert_int_eq(cdn_ctx_create(m, 1, &c), 0);
	cdn_ctx_set_trace(c, true);
	struct eng_detections *det = malloc(sizeof(*det));
	ck_assert_int_eq(cdn_run(c, rgb, det), 0);
	struct inputs in;
	build_inputs(m, c, &in);
	struct plan *pl = NULL;
	ck_assert_msg(plan_codenet(m, &pl, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_gt(pl->n_blocks, 0);
	uint32_t descs = 0;
	for (int bi = 0; bi < pl->n_blocks; bi++) {
		const struct plan_block *b = &pl->blocks[bi];
		int u0 = b->units[0], ul = b->units[b->n_units - 1];
		const struct cdn_ten *xin = in.in[u0], *want = tr(c, ul);
		ck_assert_msg(xin != NULL, "%s: no input for layer %s", name,
			      cdn_model_layer(m, u0)->name);
		ck_assert_int_eq(xin->h, b->in_h);
		ck_assert_int_eq(xin->w, b->in_w);
		ck_assert_int_eq(xin->c, b->in_c);
		ck_assert_int_eq(want->h * want->w * want->c, b->out_h * b->out_w * b->out_c);
		const int8_t *aux = b->aux_unit >= 0 ? tr(c, b->aux_unit)->q : NULL;
		size_t nb = (size_t)b->out_h * b->out_w * b->out_c;
		uint8_t *got = malloc(nb);
		ck_assert_int_eq(plan_csim_block(pl, b, xin->q, aux, got), 0);
		size_t first;
		size_t bad = count_diff(got, (const uint8_t *)want->q, nb, &first);
		ck_assert_msg(bad == 0, "%s block %d (%s..%s, %u desc): %zu of %zu bytes differ, first at %zu (%d vs %d)",
			      name, bi, cdn_model_layer(m, u0)->name, cdn_model_layer(m, ul)->name,
			      b->n_desc, bad, nb, first, (int8_t)got[first], want->q[first]);
		dump_block(name, bi, m, b, xin->q, aux, got);
		if (b->aux_unit >= 0)
			(*n_dcn)++;
		descs += b->n_desc;
		free(got);
	}
	fprintf(stderr, "hls csim %s: %d blocks (%u descriptors) bit-exact, %zu params bytes\n", name,
		pl->n_blocks, descs, pl->params_bytes);
	int nb = pl->n_blocks;
	plan_destroy(pl);
	free_inputs(&in);
	free(det);
	free(rgb);
	cdn_ctx_destroy(c);
	cdn_model_destroy(m);
	return nb;
}

static void codenet_case(const char *name, bool expect_dcn)
{
	ck_assert_msg(fixtures() != NULL, "CDN_FIXTURES not set (the suite's check let it)");
	int n_dcn = 0;
	ck_assert_int_gt(check_codenet(name, &n_dcn), 0);
	if (expect_dcn)
		ck_assert_msg(n_dcn == 3, "%s: %d deformable blocks offloaded, expected 3", name, n_dcn);
	else
		ck_assert_int_eq(n_dcn, 0);
}

START_TEST(test_cdn_small)
{
	/* plain dw decoder, bounded and square deformable, and models whose
	 * deformable layers must stay on the cpu (full / unbounded) */
	codenet_case("t_dwconv_q", false);
	codenet_case("t_dw_bound_q", true);
	codenet_case("t_dw_square_q", true);
	codenet_case("t_dw_q", false); /* unbounded offsets: cpu */
	codenet_case("t_full_q", false);
	codenet_case("t_conv3x3_q", false);
	codenet_case("t_full_rounded_square_q", false);
}
END_TEST

START_TEST(test_cdn_s256_dw)
{
	codenet_case("s256_dw_q", true);
}
END_TEST

START_TEST(test_cdn_s256_2x_square)
{
	codenet_case("s256_2x_square_q", true);
}
END_TEST

START_TEST(test_cdn_s512_full)
{
	codenet_case("s512_full_q", false);
}
END_TEST

/* ---- TFLite ------------------------------------------------------------------- */
static int check_tflite(const char *model_rel, const char *input_rel, int min_blocks)
{
	const char *sd = getenv("DETD_SHARED_DATA");
	ck_assert_msg(sd != NULL, "DETD_SHARED_DATA not set (the suite's check let it)");
	char mp[1200], ip[1200], err[512] = "";
	snprintf(mp, sizeof(mp), "%s/%s", sd, model_rel);
	snprintf(ip, sizeof(ip), "%s/%s", sd, input_rel);
	struct eng_model_opts o = {.path = mp};
	struct eng_model *m = NULL;
	log_set_level(LOG_LVL_ERROR);
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s: %s", model_rel, err);
	size_t n;
	uint8_t *img = read_all(ip, &n);
	ck_assert_msg(img != NULL, "cannot read %s", ip);
	struct eng_ctx *c = NULL;
	ck_assert_msg(eng_ctx_create(m, NULL, 1, &c, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(eng_ctx_watch(c, -1), 0);
	const uint8_t *ins[1] = {img};
	struct eng_detections *det = malloc(sizeof(*det));
	ck_assert_int_eq(eng_run(c, 1, ins, NULL, det), 0);
	const struct eng_graph *g = &m->g;
	struct plan *pl = NULL;
	ck_assert_msg(plan_tflite(g, &pl, err, sizeof(err)) == 0, "%s", err);
	int fused = 0, accel_nodes = 0, convs = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		accel_nodes += pl->where[i] == PLAN_ACCEL;
		convs += g->nodes[i].type == ENG_OP_CONV_2D ||
			 g->nodes[i].type == ENG_OP_DEPTHWISE_CONV_2D;
	}
	for (int bi = 0; bi < pl->n_blocks; bi++) {
		const struct plan_block *b = &pl->blocks[bi];
		const void *x, *want;
		size_t xb, wb;
		ck_assert_int_eq(eng_ctx_tensor(c, b->in_tensor, &x, &xb), 0);
		ck_assert_int_eq(eng_ctx_tensor(c, b->out_tensor, &want, &wb), 0);
		ck_assert_uint_eq(xb, (size_t)b->in_h * b->in_w * b->in_c);
		ck_assert_uint_eq(wb, (size_t)b->out_h * b->out_w * b->out_c);
		uint8_t *got = malloc(wb);
		ck_assert_int_eq(plan_csim_block(pl, b, x, NULL, got), 0);
		size_t first;
		size_t bad = count_diff(got, want, wb, &first);
		ck_assert_msg(bad == 0, "%s block %d (nodes %d..%d, %u desc): %zu of %zu bytes differ, first at %zu (%u vs %u)",
			      model_rel, bi, b->units[0], b->units[b->n_units - 1], b->n_desc, bad, wb,
			      first, got[first], ((const uint8_t *)want)[first]);
		fused += b->n_units == 2;
		free(got);
	}
	fprintf(stderr, "hls csim %s: %d blocks (%d fused 1x1+dw), %d of %d conv/dw nodes on the kernel, all bit-exact\n",
		model_rel, pl->n_blocks, fused, accel_nodes, convs);
	ck_assert_int_ge(pl->n_blocks, min_blocks);
	ck_assert_int_gt(fused, 0);
	int nb = pl->n_blocks;
	plan_destroy(pl);
	free(det);
	free(img);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	return nb;
}

START_TEST(test_tfl_traffic)
{
	check_tflite("traffic/traffic_model.tflite", "traffic/reference/inputs/0001.rgb", 20);
}
END_TEST

/* The traffic model's blocks against TensorFlow Lite itself: the input and
 * output tensors of every block as TFLite's reference kernels computed them
 * on frame 1 (../shared/data/traffic/reference/frame1-tensors), so neither
 * side of the comparison is detd's CPU engine. */
START_TEST(test_tfl_traffic_vs_tflite)
{
	const char *sd = getenv("DETD_SHARED_DATA");
	ck_assert_msg(sd != NULL, "DETD_SHARED_DATA not set (the suite's check let it)");
	char p[1200], err[512] = "";
	snprintf(p, sizeof(p), "%s/traffic/traffic_model.tflite", sd);
	struct eng_model_opts o = {.path = p};
	struct eng_model *m = NULL;
	log_set_level(LOG_LVL_ERROR);
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s", err);
	const struct eng_graph *g = &m->g;
	char **file = calloc((size_t)g->n_tensors, sizeof(char *));
	snprintf(p, sizeof(p), "%s/traffic/reference/frame1-tensors/index.jsonl", sd);
	FILE *idx = fopen(p, "r");
	ck_assert_msg(idx != NULL, "cannot read %s", p);
	char line[4096];
	while (fgets(line, sizeof(line), idx)) {
		int ti;
		const char *f = strstr(line, "\"file\":\"");
		if (sscanf(line, "{\"tensor\":%d,", &ti) != 1 || !f || ti < 0 || ti >= g->n_tensors)
			continue;
		f += 8;
		const char *e = strchr(f, '"');
		ck_assert_ptr_nonnull(e);
		file[ti] = strndup(f, (size_t)(e - f));
	}
	fclose(idx);
	struct plan *pl = NULL;
	ck_assert_msg(plan_tflite(g, &pl, err, sizeof(err)) == 0, "%s", err);
	int checked = 0;
	for (int bi = 0; bi < pl->n_blocks; bi++) {
		const struct plan_block *b = &pl->blocks[bi];
		if (!file[b->in_tensor] || !file[b->out_tensor])
			continue;
		size_t ni, no;
		snprintf(p, sizeof(p), "%s/traffic/reference/frame1-tensors/%s", sd, file[b->in_tensor]);
		uint8_t *x = read_all(p, &ni);
		snprintf(p, sizeof(p), "%s/traffic/reference/frame1-tensors/%s", sd, file[b->out_tensor]);
		uint8_t *want = read_all(p, &no);
		ck_assert(x && want);
		ck_assert_uint_eq(ni, (size_t)b->in_h * b->in_w * b->in_c);
		ck_assert_uint_eq(no, (size_t)b->out_h * b->out_w * b->out_c);
		uint8_t *got = malloc(no);
		ck_assert_int_eq(plan_csim_block(pl, b, x, NULL, got), 0);
		size_t first;
		size_t bad = count_diff(got, want, no, &first);
		ck_assert_msg(bad == 0, "block %d (nodes %d..%d) vs TFLite: %zu of %zu bytes differ, first at %zu (%u vs %u)",
			      bi, b->units[0], b->units[b->n_units - 1], bad, no, first, got[first],
			      want[first]);
		checked++;
		free(x);
		free(want);
		free(got);
	}
	fprintf(stderr, "hls csim traffic vs TensorFlow Lite's reference tensors: %d of %d blocks checked, all bit-exact\n",
		checked, pl->n_blocks);
	ck_assert_int_ge(checked, pl->n_blocks * 9 / 10);
	for (int i = 0; i < g->n_tensors; i++)
		free(file[i]);
	free(file);
	plan_destroy(pl);
	eng_model_destroy(m);
}
END_TEST

/* The graph up to its post-process, run by the plain executor with an
 * observer that keeps every node's outputs: the blocks do not need the
 * post-process, whose options this branch's reader may refuse. */
struct keep {
	const struct eng_graph *g;
	uint8_t **t; /* per tensor: copy of its bytes, or NULL */
};

static void keep_outputs(void *user, const struct eng_node *n, const struct eng_exec *x)
{
	struct keep *k = user;
	for (int i = 0; i < n->n_out; i++) {
		const struct eng_tensor *t = n->out[i];
		size_t id = (size_t)(t - k->g->tensors);
		free(k->t[id]);
		k->t[id] = malloc(t->bytes);
		ck_assert_ptr_nonnull(k->t[id]);
		memcpy(k->t[id], eng_tdata(x, t), t->bytes);
	}
}

static void check_tflite_prefix(const char *model_rel, const char *input_rel, int min_blocks)
{
	const char *sd = getenv("DETD_SHARED_DATA");
	ck_assert_msg(sd != NULL, "DETD_SHARED_DATA not set (the suite's check let it)");
	char mp[1200], ip[1200], err[512] = "";
	snprintf(mp, sizeof(mp), "%s/%s", sd, model_rel);
	snprintf(ip, sizeof(ip), "%s/%s", sd, input_rel);
	size_t n, ni;
	uint8_t *buf = read_all(mp, &n), *img = read_all(ip, &ni);
	ck_assert_msg(buf && img, "cannot read %s / %s", mp, ip);
	struct eng_graph g;
	memset(&g, 0, sizeof(g));
	ck_assert_msg(eng_tflite_parse(buf, n, &g, err, sizeof(err)) == 0, "%s: %s", model_rel, err);
	int full = g.n_nodes, pp = -1;
	for (int i = 0; i < g.n_nodes; i++)
		if (g.nodes[i].type == ENG_OP_DETECTION_POSTPROCESS)
			pp = i;
	ck_assert_int_gt(pp, 0);
	int *outs = g.outputs, n_outs = g.n_outputs;
	int cut[8], nc = 0;
	for (int k = 0; k < g.nodes[pp].n_in && nc < 8; k++)
		if (g.nodes[pp].in[k] && !g.nodes[pp].in[k]->is_const)
			cut[nc++] = g.nodes[pp].in[k]->index;
	g.n_nodes = pp;
	g.outputs = cut;
	g.n_outputs = nc;
	log_set_level(LOG_LVL_ERROR);
	ck_assert_msg(eng_graph_prepare(&g, err, sizeof(err)) == 0, "%s", err);
	uint8_t *arena = aligned_alloc(ENG_ARENA_ALIGN, (g.arena_bytes + 63) & ~(size_t)63);
	void *scratch = amalloc(g.scratch_bytes + 1);
	ck_assert(arena && scratch);
	const struct eng_tensor *it = &g.tensors[g.inputs[0]];
	ck_assert_uint_eq(it->bytes, ni);
	memcpy(arena + it->offset, img, ni);
	struct keep k = {.g = &g, .t = calloc((size_t)g.n_tensors, sizeof(uint8_t *))};
	k.t[g.inputs[0]] = malloc(ni);
	memcpy(k.t[g.inputs[0]], img, ni);
	struct eng_exec x = {.arena = arena, .scratch = scratch, .threads = 1};
	ck_assert_int_eq(eng_graph_run(&g, &x, NULL, keep_outputs, &k), 0);
	struct plan *pl = NULL;
	ck_assert_msg(plan_tflite(&g, &pl, err, sizeof(err)) == 0, "%s", err);
	int fused = 0, accel_nodes = 0, convs = 0;
	for (int i = 0; i < g.n_nodes; i++) {
		accel_nodes += pl->where[i] == PLAN_ACCEL;
		convs += g.nodes[i].type == ENG_OP_CONV_2D ||
			 g.nodes[i].type == ENG_OP_DEPTHWISE_CONV_2D;
	}
	for (int bi = 0; bi < pl->n_blocks; bi++) {
		const struct plan_block *b = &pl->blocks[bi];
		const uint8_t *xin = k.t[b->in_tensor], *want = k.t[b->out_tensor];
		ck_assert(xin && want);
		size_t wb = (size_t)b->out_h * b->out_w * b->out_c;
		ck_assert_uint_eq(g.tensors[b->out_tensor].bytes, wb);
		uint8_t *got = malloc(wb);
		ck_assert_int_eq(plan_csim_block(pl, b, xin, NULL, got), 0);
		size_t first;
		size_t bad = count_diff(got, want, wb, &first);
		ck_assert_msg(bad == 0, "%s block %d (nodes %d..%d, %u desc): %zu of %zu bytes differ, first at %zu (%u vs %u)",
			      model_rel, bi, b->units[0], b->units[b->n_units - 1], b->n_desc, bad, wb,
			      first, got[first], want[first]);
		fused += b->n_units == 2;
		free(got);
	}
	fprintf(stderr, "hls csim %s (graph up to its post-process): %d blocks (%d fused 1x1+dw), %d of %d conv/dw nodes on the kernel, all bit-exact\n",
		model_rel, pl->n_blocks, fused, accel_nodes, convs);
	ck_assert_int_ge(pl->n_blocks, min_blocks);
	ck_assert_int_gt(fused, 0);
	plan_destroy(pl);
	for (int i = 0; i < g.n_tensors; i++)
		free(k.t[i]);
	free(k.t);
	free(arena);
	free(scratch);
	g.n_nodes = full;
	g.outputs = outs;
	g.n_outputs = n_outs;
	eng_graph_free(&g);
	free(buf);
	free(img);
}

START_TEST(test_tfl_coco)
{
	check_tflite_prefix("coco/mobilenet_ssd_v2_coco_quant_postprocess.tflite",
			    "coco/inputs/grace_hopper.rgb", 20);
}
END_TEST

/* ---- the kernel's own checks ------------------------------------------------ */
static struct accel_desc good_desc(void)
{
	struct accel_desc d = {
		.magic = ACCEL_DESC_MAGIC, .version = ACCEL_DESC_VERSION,
		.flags = ACCEL_F_PW | ACCEL_F_DW, .wbits = 8, .stride = 1, .pad_t = 1, .pad_l = 1,
		.in_h = 4, .in_w = 4, .in_cw = 1, .cin = 16, .mid_h = 4, .mid_w = 4,
		.out_h = 4, .out_w = 4, .out_cw = 1, .oh = 4, .ow = 4, .nc = 16,
	};
	d.pw.act_lo = d.dw.act_lo = -128;
	d.pw.act_hi = d.dw.act_hi = 127;
	d.dw.w_off = 1024;
	d.pw.rq_off = 2048;
	d.dw.rq_off = 3072;
	return d;
}

START_TEST(test_desc_refused)
{
	static uint8_t params[4096] __attribute__((aligned(64)));
	static uint8_t in[256] __attribute__((aligned(64))), out[256] __attribute__((aligned(64)));
	struct accel_desc d[2] = {good_desc(), good_desc()};
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), 0);
	d[1].magic = 0;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_MAGIC);
	d[1] = good_desc();
	d[1].flags = 0;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_STAGES);
	d[1] = good_desc();
	d[1].nc = ACCEL_MAX_TILE_C + 16;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_CHAN);
	d[1] = good_desc();
	d[1].cin = ACCEL_MAX_CIN + 1;
	d[1].in_cw = (ACCEL_MAX_CIN + 16) / 16;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_CHAN);
	d[1] = good_desc();
	d[1].deform = ACCEL_DEF_OFFSET;
	d[1].bound = ACCEL_MAX_BOUND + 1;
	d[1].aux_cw = 2;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_DEFORM);
	d[1] = good_desc();
	d[1].ow = 5;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_DIMS);
	d[1] = good_desc();
	d[1].pw.rq_off = 8;
	ck_assert_uint_eq(accel_csim_run(d, 2, params, in, NULL, out), (1u << 8) | ACCEL_E_ALIGN);
}
END_TEST

/* W4 nibbles, tiling over the line-buffer width and the channel limit, and
 * TFLite's requantization against a scalar model written in this test */
START_TEST(test_tiled_pw_w8_vs_scalar)
{
	/* 1×1 only, 100 output channels (2 channel tiles), 300 columns (3 column
	 * tiles), int8, per-channel multipliers */
	enum { H = 3, W = 300, CI = 40, CO = 100 };
	int8_t *x = malloc((size_t)H * W * CI), *want = malloc((size_t)H * W * CO);
	uint8_t *kin = amalloc(plan_tensor_bytes(H, W, CI));
	uint8_t *kout = amalloc(plan_tensor_bytes(H, W, CO));
	uint8_t *params = amalloc(65536);
	memset(params, 0, 65536);
	unsigned seed = 7;
	for (size_t i = 0; i < (size_t)H * W * CI; i++) {
		seed = seed * 1103515245u + 12345u;
		x[i] = (int8_t)(seed >> 16);
	}
	int8_t w[CO][CI];
	int32_t mult[CO], shift[CO], bias[CO];
	for (int o = 0; o < CO; o++) {
		for (int i = 0; i < CI; i++) {
			seed = seed * 1103515245u + 12345u;
			w[o][i] = (int8_t)(seed >> 16);
		}
		mult[o] = 1200000000 + o * 7000000;
		shift[o] = -9 - (o % 3);
		bias[o] = o * 37 - 1500;
	}
	const int xzp = 3, ozp = -5;
	for (int p = 0; p < H * W; p++)
		for (int o = 0; o < CO; o++) {
			int32_t acc = bias[o];
			for (int i = 0; i < CI; i++)
				acc += w[o][i] * (x[(size_t)p * CI + i] - xzp);
			/* srdhm + rounding right shift, written out here */
			int64_t ab = (int64_t)acc * mult[o];
			int32_t hi = (int32_t)((ab + (ab >= 0 ? (1 << 30) : 1 - (1 << 30))) / (1ll << 31));
			int e = -shift[o];
			int32_t mask = (1 << e) - 1, rem = hi & mask, thr = (mask >> 1) + (hi < 0);
			int32_t v = (hi >> e) + (rem > thr) + ozp;
			want[(size_t)p * CO + o] = (int8_t)(v < -128 ? -128 : v > 100 ? 100 : v);
		}
	struct accel_desc d[6];
	int nd = 0;
	for (int c0 = 0; c0 < CO; c0 += ACCEL_MAX_TILE_C) {
		int nc = CO - c0 < ACCEL_MAX_TILE_C ? CO - c0 : ACCEL_MAX_TILE_C;
		int nc16 = (nc + 15) & ~15;
		uint32_t woff = (uint32_t)(c0 * 256), rqoff = 32768 + (uint32_t)c0 * 64;
		for (int o = 0; o < nc; o++) {
			memcpy(params + woff + (size_t)o * 48, w[c0 + o], CI); /* row = 3 words */
			memcpy(params + rqoff + 4 * o, &mult[c0 + o], 4);
			memcpy(params + rqoff + 4 * (nc16 + o), &shift[c0 + o], 4);
			memcpy(params + rqoff + 4 * (2 * nc16 + o), &bias[c0 + o], 4);
		}
		for (int ox0 = 0; ox0 < W; ox0 += ACCEL_MAX_W) {
			struct accel_desc t = {
				.magic = ACCEL_DESC_MAGIC, .version = ACCEL_DESC_VERSION,
				.flags = ACCEL_F_PW, .wbits = 8, .stride = 1,
				.in_h = H, .in_w = W, .in_cw = plan_cw(CI), .cin = CI, .mid_h = H,
				.mid_w = W, .out_h = H, .out_w = W, .out_cw = plan_cw(CO),
				.oh = H, .ox0 = (uint32_t)ox0,
				.ow = (uint32_t)(W - ox0 < ACCEL_MAX_W ? W - ox0 : ACCEL_MAX_W),
				.c0 = (uint32_t)c0, .nc = (uint32_t)nc,
			};
			t.pw = (struct accel_stage){.rq_mode = ACCEL_RQ_TFL, .x_zp = xzp, .out_zp = ozp,
						    .act_lo = -128, .act_hi = 100, .w_off = woff,
						    .rq_off = rqoff};
			d[nd++] = t;
		}
	}
	plan_pack(x, H, W, CI, kin);
	ck_assert_uint_eq(accel_csim_run(d, (uint32_t)nd, params, kin, NULL, kout), 0);
	int8_t *got = malloc((size_t)H * W * CO);
	plan_unpack(kout, H, W, CO, got);
	size_t first;
	ck_assert_uint_eq(count_diff((uint8_t *)got, (uint8_t *)want, (size_t)H * W * CO, &first), 0);
	free(got);
	free(x);
	free(want);
	free(kin);
	free(kout);
	free(params);
}
END_TEST

/* Depthwise stage alone, every variant, on a tensor wide enough for several
 * column tiles (halo at the tile edges) and two channel tiles, against a
 * scalar model written here from the definitions in accel_desc.h. */
static int32_t scalar_cdn_rq(int32_t acc, int32_t m, int32_t b, bool relu)
{
	acc = acc < -(1 << 23) ? -(1 << 23) : acc > (1 << 23) - 1 ? (1 << 23) - 1 : acc;
	int64_t v = (((int64_t)acc * m + (1 << 15)) >> 16) + b;
	if (relu)
		return (int32_t)((v < 0 ? 0 : v > 255 ? 255 : v) - 128);
	return (int32_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

static void dw_variant(uint32_t deform, int bound, int stride, int pad)
{
	enum { C = 80, AC = 18 };
	/* TFLite SAME pads nothing before only when the input is even */
	const int H = pad ? 9 : 10, W = pad ? 301 : 300;
	int OH = (H + 2 * pad - 3) / stride + 1, OW = (W + 2 * pad - 3) / stride + 1;
	if (pad == 0) { /* TFLite SAME with no padding before: out = ceil(in/stride) */
		OH = (H + stride - 1) / stride;
		OW = (W + stride - 1) / stride;
	}
	int8_t *x = malloc((size_t)H * W * C), *off = malloc((size_t)H * W * AC);
	int8_t *want = malloc((size_t)OH * OW * C), *got = malloc((size_t)OH * OW * C);
	int8_t w[9][C];
	int32_t m[C], b[C];
	unsigned seed = 11 + deform * 7 + (unsigned)stride;
#define RND() (seed = seed * 1103515245u + 12345u, (int)(seed >> 16))
	for (size_t i = 0; i < (size_t)H * W * C; i++)
		x[i] = (int8_t)RND();
	for (size_t i = 0; i < (size_t)H * W * AC; i++)
		off[i] = (int8_t)(RND() % 11 - 5);
	for (int c = 0; c < C; c++) {
		for (int t = 0; t < 9; t++)
			w[t][c] = (int8_t)(RND() % 15 - 7);
		m[c] = RND() & 0xffff;
		b[c] = RND() % 200 - 100;
	}
	for (int y = 0; y < OH; y++)
		for (int xo = 0; xo < OW; xo++)
			for (int c = 0; c < C; c++) {
				int cy = y * stride + 1 - pad, cx = xo * stride + 1 - pad;
				const int8_t *o = off + ((size_t)cy * W + cx) * AC;
				int32_t acc = 0;
				for (int t = 0; t < 9; t++) {
					int ky = t / 3 - 1, kx = t % 3 - 1, py, px;
					if (deform == ACCEL_DEF_OFFSET) {
						int dy = o[2 * t], dx = o[2 * t + 1];
						dy = dy < -bound ? -bound : dy > bound ? bound : dy;
						dx = dx < -bound ? -bound : dx > bound ? bound : dx;
						py = cy + ky + dy;
						px = cx + kx + dx;
					} else if (deform == ACCEL_DEF_SQUARE) {
						int d = 1 + o[0];
						d = d < 0 ? 0 : d > bound ? bound : d;
						py = cy + ky * d;
						px = cx + kx * d;
					} else {
						py = cy + ky;
						px = cx + kx;
					}
					if (py < 0 || py >= H || px < 0 || px >= W)
						continue;
					acc += w[t][c] * (x[((size_t)py * W + px) * C + c] + 128);
				}
				want[((size_t)y * OW + xo) * C + c] =
					(int8_t)scalar_cdn_rq(acc, m[c], b[c], true);
			}
	uint8_t *params = amalloc(8192);
	memset(params, 0, 8192);
	uint8_t *kin = amalloc(plan_tensor_bytes(H, W, C));
	uint8_t *kaux = amalloc(plan_tensor_bytes(H, W, AC));
	uint8_t *kout = amalloc(plan_tensor_bytes(OH, OW, C));
	plan_pack(x, H, W, C, kin);
	plan_pack(off, H, W, AC, kaux);
	struct accel_desc d[64];
	int nd = 0;
	for (int c0 = 0; c0 < C; c0 += ACCEL_MAX_TILE_C) {
		int nc = C - c0 < ACCEL_MAX_TILE_C ? C - c0 : ACCEL_MAX_TILE_C, nc16 = (nc + 15) & ~15;
		uint32_t woff = (uint32_t)c0 * 32, rq = 4096 + (uint32_t)c0 * 32;
		for (int t = 0; t < 9; t++)
			for (int c = 0; c < nc; c++)
				params[woff + (size_t)t * nc16 + c] = (uint8_t)w[t][c0 + c];
		for (int c = 0; c < nc; c++) {
			memcpy(params + rq + 4 * c, &m[c0 + c], 4);
			memcpy(params + rq + 4 * (2 * nc16 + c), &b[c0 + c], 4);
		}
		struct accel_desc t = {
			.magic = ACCEL_DESC_MAGIC, .version = ACCEL_DESC_VERSION,
			.flags = ACCEL_F_DW, .wbits = 8, .stride = (uint32_t)stride, .pad_t = pad,
			.pad_l = pad, .deform = deform, .bound = deform ? bound : 0,
			.in_h = H, .in_w = W, .in_cw = plan_cw(C), .mid_h = H, .mid_w = W,
			.out_h = (uint32_t)OH, .out_w = (uint32_t)OW, .out_cw = plan_cw(C),
			.aux_cw = deform ? plan_cw(AC) : 0, .oh = (uint32_t)OH,
			.c0 = (uint32_t)c0, .nc = (uint32_t)nc,
		};
		t.dw = (struct accel_stage){.rq_mode = ACCEL_RQ_CDN, .x_zp = -128, .out_zp = -128,
					    .act_lo = -128, .act_hi = 127, .w_off = woff,
					    .rq_off = rq};
		for (int ox0 = 0; ox0 < OW;) {
			int ow = OW - ox0;
			for (;; ow--) { /* widest tile whose mid columns fit */
				int32_t lo, n;
				t.ox0 = (uint32_t)ox0;
				t.ow = (uint32_t)ow;
				accel_mid_range(&t, ox0, ow, pad, W, &lo, &n);
				if (n <= ACCEL_MAX_W)
					break;
			}
			d[nd++] = t;
			ox0 += ow;
		}
	}
	ck_assert_int_gt(nd, 4); /* several column tiles per channel tile */
	ck_assert_uint_eq(accel_csim_run(d, (uint32_t)nd, params, kin, kaux, kout), 0);
	plan_unpack(kout, OH, OW, C, got);
	size_t first;
	size_t bad = count_diff((uint8_t *)got, (uint8_t *)want, (size_t)OH * OW * C, &first);
	ck_assert_msg(bad == 0, "deform %u stride %d: %zu bytes differ, first at %zu (%d vs %d)",
		      deform, stride, bad, first, got[first], want[first]);
#undef RND
	free(x);
	free(off);
	free(want);
	free(got);
	free(params);
	free(kin);
	free(kaux);
	free(kout);
}

START_TEST(test_dw_tiles_vs_scalar)
{
	dw_variant(ACCEL_DEF_NONE, 0, 1, 1);
	dw_variant(ACCEL_DEF_NONE, 0, 2, 1);
	dw_variant(ACCEL_DEF_NONE, 0, 2, 0);
	dw_variant(ACCEL_DEF_OFFSET, 3, 1, 1);
	dw_variant(ACCEL_DEF_OFFSET, ACCEL_MAX_BOUND, 1, 1);
	dw_variant(ACCEL_DEF_SQUARE, 4, 1, 1);
}
END_TEST

static Suite *suite_kernel(void)
{
	Suite *s = suite_create("hls");
	TCase *k = tcase_create("kernel");
	tcase_add_test(k, test_desc_refused);
	tcase_add_test(k, test_tiled_pw_w8_vs_scalar);
	tcase_add_test(k, test_dw_tiles_vs_scalar);
	suite_add_tcase(s, k);
	return s;
}

static Suite *suite_codenet(void)
{
	Suite *s = suite_create("hls-codenet");
	TCase *c = tcase_create("codenet");
	tcase_set_timeout(c, 600);
	tcase_add_test(c, test_cdn_small);
	tcase_add_test(c, test_cdn_s256_dw);
	tcase_add_test(c, test_cdn_s256_2x_square);
	tcase_add_test(c, test_cdn_s512_full);
	suite_add_tcase(s, c);
	return s;
}

static const char *codenet_missing(void)
{
	return fixtures() ? NULL
			  : "no CoDeNet fixtures (CDN_FIXTURES unset: /usr/bin/python3 without torch)";
}

static Suite *suite_tflite(void)
{
	Suite *s = suite_create("hls-tflite");
	TCase *t = tcase_create("tflite");
	tcase_set_timeout(t, 600);
	tcase_add_test(t, test_tfl_traffic);
	tcase_add_test(t, test_tfl_traffic_vs_tflite);
	tcase_add_test(t, test_tfl_coco);
	suite_add_tcase(s, t);
	return s;
}

static const char *tflite_missing(void)
{
	if (!tu_shared_data_has("traffic/reference/frame1-tensors/index.jsonl"))
		return "no ../shared/data traffic model and reference tensors (DETD_SHARED_DATA)";
	if (!tu_shared_data_has("coco/mobilenet_ssd_v2_coco_quant_postprocess.tflite"))
		return "no ../shared/data COCO model (DETD_SHARED_DATA)";
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, suite_kernel, NULL},
		{"codenet", suite_codenet, codenet_missing},
		{"tflite", suite_tflite, tflite_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
