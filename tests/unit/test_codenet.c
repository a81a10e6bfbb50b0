/*
 * test_codenet.c — CoDeNet in the engine against the Python reference.
 *
 * Parity (needs the fixtures tools/codenet/make_fixtures.py writes into the
 * build dir; CDN_FIXTURES points there, the cases skip when it is unset):
 *  - float models: every head within 1e-4 relative (max |diff| / max |ref|)
 *    of the float64 PyTorch reference; decoded detections agree;
 *  - w4a8 models: every layer and every head bit-exact against the integer
 *    simulation; decoded detections identical.
 * Without fixtures: the requantization, decoding and reader strictness on
 * hand-made files.
 */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codenet.h"
#include "kset.h"
#include "testutil.h"
#include "x86/vk.h"

static const char *fixtures(void)
{
	const char *d = getenv("CDN_FIXTURES");
	return d && *d ? d : NULL;
}

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

static bool write_all(const char *path, const void *d, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return false;
	bool ok = fwrite(d, 1, n, f) == n;
	return fclose(f) == 0 && ok;
}

/* names listed in fixtures.stamp */
static int fixture_names(char names[][64], int max)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/fixtures.stamp", fixtures());
	struct json_object *j = json_object_from_file(p);
	ck_assert_msg(j != NULL, "cannot read %s", p);
	int n = 0;
	for (size_t i = 0; i < json_object_array_length(j) && n < max; i++)
		snprintf(names[n++], 64, "%s", json_object_get_string(json_object_array_get_idx(j, i)));
	json_object_put(j);
	return n;
}

struct fx {
	struct cdn_model *m;
	struct cdn_ctx *c;
	struct cdn_st *ex;
	uint8_t *rgb;
	struct eng_detections det;
};

/* When set, fx_open() runs the model's W4A8 GEMM layers on it (cdn_model_set_vk). */
static cdn_vk_fn fx_vk;

static bool fx_open(struct fx *f, const char *name, bool trace, int threads)
{
	char p[512], err[512];
	memset(f, 0, sizeof(*f));
	snprintf(p, sizeof(p), "%s/%s.json", fixtures(), name);
	if (access(p, R_OK) != 0)
		return false; /* not every fixture has every variant: callers decide */
	int r = cdn_model_load(p, &f->m, err, sizeof(err));
	ck_assert_msg(r == 0, "%s: %s", name, err);
	if (fx_vk && cdn_model_desc(f->m)->quant) {
		ck_assert_int_eq(cdn_model_set_vk(f->m, fx_vk), 0);
		bool packed = false;
		for (int l = 0; l < cdn_model_desc(f->m)->n_layers; l++)
			packed = packed || cdn_model_layer(f->m, l)->vk[0] != NULL;
		ck_assert_msg(packed, "%s: no layer on the VNNI GEMM", name);
	}
	snprintf(p, sizeof(p), "%s/%s.expected.safetensors", fixtures(), name);
	r = cdn_st_open(p, &f->ex, err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	const struct cdn_desc *d = cdn_model_desc(f->m);
	snprintf(p, sizeof(p), "%s/input_%dx%d.rgb", fixtures(), d->height, d->width);
	size_t n;
	f->rgb = read_all(p, &n);
	ck_assert_msg(f->rgb && n == (size_t)d->width * d->height * 3, "%s", p);
	ck_assert_int_eq(cdn_ctx_create(f->m, threads, &f->c), 0);
	cdn_ctx_set_trace(f->c, trace);
	r = cdn_run(f->c, f->rgb, &f->det);
	ck_assert_msg(r == 0, "%s: run %d", name, r);
	return true;
}

static void fx_close(struct fx *f)
{
	cdn_ctx_destroy(f->c);
	cdn_model_destroy(f->m);
	cdn_st_close(f->ex);
	free(f->rgb);
}

static const char *const HEADS[3] = {"hm", "wh", "reg"};

/* expected [C][H][W] vs engine NHWC */
static double head_rel(const struct cdn_st_tensor *e, const struct cdn_ten *t)
{
	ck_assert_int_eq(e->ndim, 3);
	ck_assert_int_eq(e->dims[0], t->c);
	ck_assert_int_eq(e->dims[1], t->h);
	ck_assert_int_eq(e->dims[2], t->w);
	float *ref = malloc(e->bytes);
	memcpy(ref, e->data, e->bytes);
	double md = 0, mr = 0;
	for (int c = 0; c < t->c; c++)
		for (int y = 0; y < t->h; y++)
			for (int x = 0; x < t->w; x++) {
				double r = ref[((size_t)c * t->h + y) * t->w + x];
				double g = t->f[((size_t)y * t->w + x) * t->c + c];
				md = fmax(md, fabs(r - g));
				mr = fmax(mr, fabs(r));
			}
	free(ref);
	return md / (mr > 0 ? mr : 1);
}

static int q_mismatch(const struct cdn_st_tensor *e, const struct cdn_ten *t, int *first)
{
	ck_assert_int_eq(e->dtype, CDN_I8);
	ck_assert_int_eq(e->ndim, 3);
	ck_assert_int_eq(e->dims[0], t->c);
	ck_assert_int_eq(e->dims[1], t->h);
	ck_assert_int_eq(e->dims[2], t->w);
	const int8_t *ref = (const int8_t *)e->data;
	int bad = 0;
	*first = -1;
	for (int c = 0; c < t->c; c++)
		for (int y = 0; y < t->h; y++)
			for (int x = 0; x < t->w; x++) {
				size_t ri = ((size_t)c * t->h + y) * t->w + x;
				if (ref[ri] != t->q[((size_t)y * t->w + x) * t->c + c]) {
					if (bad++ == 0)
						*first = (int)ri;
				}
			}
	return bad;
}

/* detections vs the reference's [n][6] (class, score, ymin, xmin, ymax, xmax) */
static void check_dets(const char *name, const struct cdn_st *ex, const struct eng_detections *d,
		       double tol, int allow_swaps)
{
	const struct cdn_st_tensor *e = cdn_st_find(ex, "det");
	ck_assert_ptr_nonnull(e);
	int n = e->ndim == 2 ? e->dims[0] : 0;
	float *ref = malloc(e->bytes ? e->bytes : 1);
	memcpy(ref, e->data, e->bytes);
	ck_assert_msg(d->n == n, "%s: %d detections, reference %d", name, d->n, n);
	int off = 0;
	for (int i = 0; i < n; i++) {
		const float *r = ref + 6 * i;
		const struct eng_detection *g = &d->d[i];
		bool same = g->class_id == (int)r[0] && fabs(g->score - r[1]) <= tol;
		for (int k = 0; k < 4 && same; k++)
			same = fabs(g->box[k] - r[2 + k]) <= tol;
		if (!same)
			off++;
	}
	/* the float path may swap near-tied neighbours in the ranking */
	ck_assert_msg(off <= allow_swaps, "%s: %d of %d detections differ", name, off, n);
	free(ref);
}

START_TEST(test_float_parity)
{
	char names[64][64];
	int n = fixture_names(names, 64);
	int tested = 0;
	for (int i = 0; i < n; i++) {
		struct fx f;
		if (!fx_open(&f, names[i], false, 1 + (i % 2)))
			continue;
		for (int h = 0; h < 3; h++) {
			const struct cdn_ten *t;
			ck_assert_int_eq(cdn_ctx_head(f.c, h, &t), 0);
			const struct cdn_st_tensor *e = cdn_st_find(f.ex, HEADS[h]);
			ck_assert_ptr_nonnull(e);
			double rel = head_rel(e, t);
			ck_assert_msg(rel <= 1e-4, "%s %s: rel %.3g", names[i], HEADS[h], rel);
		}
		check_dets(names[i], f.ex, &f.det, 1e-4, 2);
		fx_close(&f);
		tested++;
	}
	ck_assert_int_gt(tested, 0);
}
END_TEST

/* The W4A8 GEMM variants of test_int_bitexact: engine/codenet's own, then the
 * VNNI ones (native where the CPU has them, SIMDe builds everywhere). */
static const char *const gemm_names[] = {"codenet's own", "avx512vnni", "avxvnni",
					 "avx512vnni (SIMDe)", "avxvnni (SIMDe)"};
static bool gemm_variant(int i, cdn_vk_fn *fn)
{
	*fn = NULL;
	switch (i) {
	case 0:
		return true;
	case 1:
		*fn = eng_kset_usable(ENG_KS_AVX512VNNI) ? vk512_gemm_acc : NULL;
		break;
	case 2:
		*fn = eng_kset_usable(ENG_KS_AVXVNNI) ? vk256_gemm_acc : NULL;
		break;
#ifdef HAVE_SIMDE
	case 3:
		*fn = vk512s_gemm_acc;
		break;
	case 4:
		*fn = vk256s_gemm_acc;
		break;
#endif
	default:
		break;
	}
	return *fn != NULL;
}

START_TEST(test_int_bitexact)
{
	ck_assert_msg(gemm_variant(_i, &fx_vk), "W4A8 GEMM on %s cannot run here (the suite's check let it)",
		      gemm_names[_i]);
	char names[64][64], q[80];
	int n = fixture_names(names, 64);
	int tested = 0;
	for (int i = 0; i < n; i++) {
		struct fx f;
		snprintf(q, sizeof(q), "%.60s_q", names[i]);
		if (!fx_open(&f, q, true, 2 - (i % 2)))
			continue;
		const struct cdn_desc *d = cdn_model_desc(f.m);
		ck_assert(d->quant);
		/* every traced layer (the small fixtures carry them) */
		for (int l = 0; l < d->n_layers; l++) {
			char tn[CDN_NAME_MAX + 8];
			const struct cdn_layer *L = cdn_model_layer(f.m, l);
			snprintf(tn, sizeof(tn), "trace.%s", L->name);
			const struct cdn_st_tensor *e = cdn_st_find(f.ex, tn);
			if (!e)
				continue;
			const struct cdn_ten *t;
			ck_assert_int_eq(cdn_ctx_trace(f.c, l, &t), 0);
			int first, bad = q_mismatch(e, t, &first);
			ck_assert_msg(bad == 0, "%s layer %s: %d values differ (first at %d)", q,
				      L->name, bad, first);
		}
		for (int h = 0; h < 3; h++) {
			const struct cdn_ten *t;
			ck_assert_int_eq(cdn_ctx_head(f.c, h, &t), 0);
			int first, bad = q_mismatch(cdn_st_find(f.ex, HEADS[h]), t, &first);
			ck_assert_msg(bad == 0, "%s head %s: %d values differ", q, HEADS[h], bad);
		}
		/* same int8 heads → same ranking; float32 sigmoid may differ by an ulp */
		check_dets(q, f.ex, &f.det, 1e-6, 0);
		fx_close(&f);
		tested++;
	}
	ck_assert_int_gt(tested, 0);
	fx_vk = NULL;
}
END_TEST

/* the portable GEMMs (no AVX2) give the same integers */
START_TEST(test_int_portable)
{
	setenv("DETD_CODENET_PORTABLE", "1", 1); /* this test's forked process only */
	static const char *const names[] = {"t_full_q", "t_conv3x3_q", "t_dw_square_q"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct fx f;
		if (!fx_open(&f, names[i], false, 2))
			continue;
		for (int h = 0; h < 3; h++) {
			const struct cdn_ten *t;
			ck_assert_int_eq(cdn_ctx_head(f.c, h, &t), 0);
			int first, bad = q_mismatch(cdn_st_find(f.ex, HEADS[h]), t, &first);
			ck_assert_msg(bad == 0, "%s head %s: %d values differ", names[i], HEADS[h], bad);
		}
		fx_close(&f);
	}
}
END_TEST

START_TEST(test_threads_identical)
{
	struct fx a, b;
	ck_assert(fx_open(&a, "t_full_q", false, 1));
	ck_assert(fx_open(&b, "t_full_q", false, 3));
	ck_assert_int_eq(a.det.n, b.det.n);
	ck_assert(memcmp(&a.det.d, &b.det.d, sizeof(a.det.d[0]) * (size_t)a.det.n) == 0);
	fx_close(&a);
	fx_close(&b);
}
END_TEST

/* The planned arena: smaller than one buffer per tensor, and reusing it frame
 * after frame changes nothing (a run on another picture in between, then the
 * first picture again: the same heads, byte for byte). */
START_TEST(test_arena_reuse)
{
	ck_assert_msg(fixtures() != NULL, "CDN_FIXTURES not set (the suite's check let it)");
	static const char *const names[] = {"t_full_q", "t_dw_q", "t_full"};
	int tested = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct fx f;
		if (!fx_open(&f, names[i], false, 2))
			continue;
		size_t arena, ws, naive;
		cdn_ctx_memory(f.c, &arena, &ws, &naive);
		ck_assert_msg(arena > 0 && arena < naive, "%s: arena %zu, tensors %zu", names[i],
			      arena, naive);
		if (cdn_model_desc(f.m)->quant)
			ck_assert_msg(ws > 0, "%s: no operator workspace", names[i]);
		const struct cdn_ten *t;
		void *first[3];
		size_t bytes[3];
		for (int h = 0; h < 3; h++) {
			ck_assert_int_eq(cdn_ctx_head(f.c, h, &t), 0);
			bytes[h] = (size_t)t->h * t->w * t->c * (t->f ? sizeof(float) : 1);
			first[h] = malloc(bytes[h]);
			memcpy(first[h], t->f ? (void *)t->f : (void *)t->q, bytes[h]);
		}
		const struct cdn_desc *d = cdn_model_desc(f.m);
		size_t n = (size_t)d->width * d->height * 3;
		uint8_t *other = malloc(n);
		for (size_t k = 0; k < n; k++)
			other[k] = (uint8_t)(255 - f.rgb[k]);
		struct eng_detections det;
		ck_assert_int_eq(cdn_run(f.c, other, &det), 0);
		ck_assert_int_eq(cdn_ctx_head(f.c, 0, &t), 0);
		ck_assert_msg(memcmp(t->f ? (void *)t->f : (void *)t->q, first[0], bytes[0]) != 0,
			      "%s: another picture gave the same heat map", names[i]);
		ck_assert_int_eq(cdn_run(f.c, f.rgb, &det), 0);
		for (int h = 0; h < 3; h++) {
			ck_assert_int_eq(cdn_ctx_head(f.c, h, &t), 0);
			ck_assert_msg(memcmp(t->f ? (void *)t->f : (void *)t->q, first[h],
					     bytes[h]) == 0,
				      "%s: head %d differs on the third run", names[i], h);
			free(first[h]);
		}
		ck_assert_int_eq(det.n, f.det.n);
		free(other);
		fx_close(&f);
		tested++;
	}
	ck_assert_int_gt(tested, 0);
}
END_TEST

/* through the engine's public API: format sniffed from the file, same detections */
START_TEST(test_engine_dispatch)
{
	struct fx f;
	ck_assert(fx_open(&f, "t_dw_q", false, 1));
	char p[512], err[512];
	snprintf(p, sizeof(p), "%s/t_dw_q.json", fixtures());
	struct eng_model_opts o = {.path = p, .format = ENG_FORMAT_AUTO};
	struct eng_model *m = NULL;
	ck_assert_msg(eng_model_load(&o, &m, err, sizeof(err)) == 0, "%s", err);
	const struct eng_model_info *inf = eng_model_info(m);
	ck_assert_str_eq(inf->format, "codenet");
	ck_assert_int_eq(inf->input_width, 64);
	ck_assert_int_eq(inf->n_classes, 5);
	ck_assert(!inf->input_is_float);
	ck_assert_str_eq(eng_model_label(m, 1), "person");
	ck_assert_str_eq(eng_model_label(m, 7), "7");
	struct eng_ctx *c = NULL;
	ck_assert_int_eq(eng_ctx_create(m, NULL, 2, &c, err, sizeof(err)), 0);
	struct eng_state *st = NULL;
	ck_assert_int_eq(eng_state_create(m, &st), 0);
	const uint8_t *in[2] = {f.rgb, f.rgb};
	struct eng_state *sts[2] = {st, NULL};
	static struct eng_detections out[2];
	ck_assert_int_eq(eng_run(c, 2, in, sts, out), 0);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(out[k].n, f.det.n);
		ck_assert(memcmp(out[k].d, f.det.d, sizeof(f.det.d[0]) * (size_t)f.det.n) == 0);
	}
	const struct eng_op_timing *t;
	int nt;
	ck_assert_int_eq(eng_ctx_op_timings(c, &t, &nt), 0);
	ck_assert_int_eq(nt, inf->n_ops);
	ck_assert_str_eq(t[0].op_name, "first.conv");
	eng_state_destroy(st);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	/* an explicit format and a broken weights reference fail cleanly */
	o.format = ENG_FORMAT_CODENET;
	snprintf(p, sizeof(p), "%s/t_dw_q.expected.safetensors", fixtures());
	ck_assert_int_lt(eng_model_load(&o, &m, err, sizeof(err)), 0);
	ck_assert_ptr_null(m);
	fx_close(&f);
}
END_TEST

/* ---- without fixtures ---------------------------------------------------- */
START_TEST(test_requant)
{
	/* ((acc·m + 2^15) >> 16) + bias, floor shift, clamps */
	ck_assert_int_eq(cdn_requant(65536, 1, 0, false), 1);
	ck_assert_int_eq(cdn_requant(32768, 1, 0, false), 1);  /* exactly .5 rounds up */
	ck_assert_int_eq(cdn_requant(32767, 1, 0, false), 0);
	ck_assert_int_eq(cdn_requant(-32768, 1, 0, false), 0); /* -0.5 → 0 */
	ck_assert_int_eq(cdn_requant(-32769, 1, 0, false), -1);
	ck_assert_int_eq(cdn_requant(1000, 65535, 3, false), 127);
	ck_assert_int_eq(cdn_requant(-1000, 65535, 0, false), -128);
	ck_assert_int_eq(cdn_requant(-1000, 65535, 0, true), -128); /* ReLU → q 0 */
	ck_assert_int_eq(cdn_requant(100 << 16, 1, 0, true), 100 - 128);
	ck_assert_int_eq(cdn_requant(300 << 10, 64, 0, true), 127);
	/* the 24-bit accumulator saturates before the multiply */
	ck_assert_int_eq(cdn_requant(1 << 26, 4, 0, true), cdn_requant((1 << 23) - 1, 4, 0, true));
	ck_assert_int_eq(cdn_requant((1 << 23) - 1, 4, -500, false), 12); /* 512.5 floors to 512 */
	ck_assert_int_eq(cdn_requant(1 << 26, 4, -500, false), 12);
	ck_assert_int_eq(cdn_requant(-(1 << 26), 4, 600, false), 88);   /* -2^23·4/2^16 = -512 */
}
END_TEST

START_TEST(test_decode)
{
	enum { H = 4, W = 5, C = 2 };
	float hm[H * W * C], wh[H * W * 2], reg[H * W * 2];
	for (int i = 0; i < H * W * C; i++)
		hm[i] = -5;
	for (int i = 0; i < H * W * 2; i++) {
		wh[i] = 2;
		reg[i] = 0.5f;
	}
	hm[(1 * W + 1) * C + 0] = 3;  /* peak class 0 */
	hm[(1 * W + 2) * C + 0] = 2;  /* not a peak (next to 3) */
	hm[(3 * W + 4) * C + 1] = 1;  /* peak class 1 */
	hm[(0 * W + 4) * C + 1] = 1;  /* tie with the above: lower index first */
	struct eng_detections d;
	ck_assert_int_eq(cdn_decode(hm, wh, reg, H, W, C, 20, 16, 3, 0.5f, &d), 0);
	ck_assert_int_eq(d.n, 3);
	ck_assert_int_eq(d.d[0].class_id, 0);
	ck_assert_float_eq_tol(d.d[0].score, 1 / (1 + expf(-3)), 1e-7);
	/* cx = 1.5, w = 2 → x 0.5..2.5 ·4 / 20 */
	ck_assert_float_eq_tol(d.d[0].box[1], 0.1f, 1e-6);
	ck_assert_float_eq_tol(d.d[0].box[3], 0.5f, 1e-6);
	ck_assert_float_eq_tol(d.d[0].box[0], 0.125f, 1e-6);
	ck_assert_int_eq(d.d[1].class_id, 1);
	ck_assert_float_eq_tol(d.d[1].box[0], (0.5f - 1) * 4 / 16, 1e-6); /* y = 0 first */
	ck_assert_float_eq_tol(d.d[2].box[0], (3.5f - 1) * 4 / 16, 1e-6);
	/* the threshold drops the logit −5 peaks elsewhere, and max_det caps */
	ck_assert_int_eq(cdn_decode(hm, wh, reg, H, W, C, 20, 16, 1, 0.5f, &d), 0);
	ck_assert_int_eq(d.n, 1);
}
END_TEST

/* depthwise deformable with zero integer offsets == depthwise conv */
START_TEST(test_dcn_zero_offsets)
{
	enum { H = 5, W = 6, C = 4 };
	float in[H * W * C], off[H * W * 18] = {0}, o1[H * W * C], o2[H * W * C], wt[9 * C], b[C];
	for (int i = 0; i < H * W * C; i++)
		in[i] = (float)((i * 37) % 11) - 5;
	for (int i = 0; i < 9 * C; i++)
		wt[i] = (float)((i * 13) % 7) - 3;
	for (int i = 0; i < C; i++)
		b[i] = (float)i;
	struct cdn_layer L = {.kind = CDN_L_DW, .cin = C, .cout = C, .k = 3, .stride = 1,
			      .relu = false, .wf = wt, .bf = b};
	struct cdn_ten ti = {.h = H, .w = W, .c = C, .f = in};
	struct cdn_ten to = {.h = H, .w = W, .c = 18, .f = off};
	struct cdn_ten a = {.h = H, .w = W, .c = C, .f = o1}, bb = {.h = H, .w = W, .c = C, .f = o2};
	ck_assert_int_eq(cdn_op_conv(&L, &ti, &a, 2), 0);
	struct cdn_layer D = L;
	D.kind = CDN_L_DCN_DW;
	struct cdn_dcn_cfg cfg = {0};
	ck_assert_int_eq(cdn_op_dcn(&D, &cfg, &ti, &to, &bb, 1), 0);
	for (int i = 0; i < H * W * C; i++)
		ck_assert_float_eq_tol(o1[i], o2[i], 1e-5);
	/* square with s = 0 (d = 1) is the same again */
	float s[H * W] = {0};
	struct cdn_ten ts = {.h = H, .w = W, .c = 1, .f = s};
	cfg.square = true;
	ck_assert_int_eq(cdn_op_dcn(&D, &cfg, &ti, &ts, &bb, 3), 0);
	for (int i = 0; i < H * W * C; i++)
		ck_assert_float_eq_tol(o1[i], o2[i], 1e-5);
}
END_TEST

/* ---- reader strictness ---------------------------------------------------- */
static char tmpdir[256];

static int load_json(const char *json, char *err, size_t errlen)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/m.json", tmpdir);
	ck_assert(write_all(p, json, strlen(json)));
	struct cdn_model *m = NULL;
	int r = cdn_model_load(p, &m, err, errlen);
	cdn_model_destroy(m);
	return r;
}

#define TINY_JSON_FMT \
	"{\"format\":\"codenet\",\"version\":1,\"backbone\":\"shufflenetv2\",\"width\":\"custom\"," \
	"\"stage_channels\":[4,8,8,8,8],\"stage_repeats\":[1,1,1],\"input\":{\"width\":32," \
	"\"height\":32},\"first_layer\":\"stride4\",\"decoder_channels\":[4,4,4]," \
	"\"head_channels\":4,\"dcn\":{\"kind\":\"depthwise\",\"bound\":2},\"classes\":2," \
	"\"quantization\":\"%s\",\"weights\":\"w.safetensors\"%s}"

static void setup_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_codenet.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_tmp(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* write a safetensors file from a raw header string and a data size */
static void write_st(const char *header, size_t data_bytes)
{
	char p[512];
	size_t hl = strlen(header);
	size_t n = 8 + hl + data_bytes;
	uint8_t *b = calloc(1, n);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, header, hl);
	snprintf(p, sizeof(p), "%s/w.safetensors", tmpdir);
	ck_assert(write_all(p, b, n));
	free(b);
}

START_TEST(test_reader_json)
{
	char j[2048], err[512];
	setup_tmp();
	write_st("{}", 0);
	snprintf(j, sizeof(j), TINY_JSON_FMT, "float", "");
	ck_assert_int_eq(load_json(j, err, sizeof(err)), -ENOENT); /* weights missing */
	ck_assert_msg(strstr(err, "first.conv.weight missing"), "%s", err);
	snprintf(j, sizeof(j), TINY_JSON_FMT, "float", ",\"extra\":1");
	ck_assert_int_eq(load_json(j, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "unknown key \"extra\""), "%s", err);
	snprintf(j, sizeof(j), TINY_JSON_FMT, "int4", "");
	ck_assert_int_eq(load_json(j, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(load_json("{\"format\":\"codenet\"", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(load_json("[1,2]", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(load_json("", err, sizeof(err)), -EINVAL);
	snprintf(j, sizeof(j), TINY_JSON_FMT, "float", ",\"labels\":[\"a\"]");
	ck_assert_int_eq(load_json(j, err, sizeof(err)), -EINVAL); /* 2 classes, 1 label */
	/* input not a multiple of 32 */
	snprintf(j, sizeof(j), TINY_JSON_FMT, "float", "");
	char *p = strstr(j, "\"width\":32");
	memcpy(p, "\"width\":33", 10);
	ck_assert_int_eq(load_json(j, err, sizeof(err)), -EINVAL);
	teardown_tmp();
}
END_TEST

START_TEST(test_reader_safetensors)
{
	char p[512], err[512];
	struct cdn_st *st = NULL;
	setup_tmp();
	snprintf(p, sizeof(p), "%s/w.safetensors", tmpdir);
	static const struct {
		const char *hdr;
		size_t data;
		const char *why;
	} bad[] = {
		{"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "dtype"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "bytes"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "outside"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 8, "range"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
		 8, "overlap"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 8, "data_offsets"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 8, "garbage"},
		{"{\"a\":", 8, "JSON"},
		{"[]", 0, "object"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_st(bad[i].hdr, bad[i].data);
		err[0] = 0;
		ck_assert_int_lt(cdn_st_open(p, &st, err, sizeof(err)), 0);
		ck_assert_msg(strstr(err, bad[i].why), "case %zu: %s", i, err);
	}
	/* header length larger than the file, and a short file */
	uint8_t b[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
	ck_assert(write_all(p, b, 10));
	ck_assert_int_lt(cdn_st_open(p, &st, err, sizeof(err)), 0);
	ck_assert(write_all(p, b, 5));
	ck_assert_int_lt(cdn_st_open(p, &st, err, sizeof(err)), 0);
	/* a good one, and the typed getter */
	write_st("{\"a\":{\"dtype\":\"I8\",\"shape\":[2,3],\"data_offsets\":[0,6]},"
		 "\"__metadata__\":{\"k\":\"v\"}}   ",
		 6);
	ck_assert_int_eq(cdn_st_open(p, &st, err, sizeof(err)), 0);
	const void *d;
	int dims[2] = {2, 3}, wrong[2] = {3, 2};
	ck_assert_int_eq(cdn_st_get(st, "a", CDN_I8, 2, dims, &d, err, sizeof(err)), 0);
	ck_assert_int_eq(cdn_st_get(st, "a", CDN_I8, 2, wrong, &d, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "shape [2,3], expected [3,2]"), "%s", err);
	ck_assert_int_eq(cdn_st_get(st, "a", CDN_F32, 2, dims, &d, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cdn_st_get(st, "b", CDN_I8, 2, dims, &d, err, sizeof(err)), -ENOENT);
	cdn_st_close(st);
	cdn_st_close(NULL);
	teardown_tmp();
}
END_TEST

/* hostile edits of a real fixture: every one is refused with a message */
START_TEST(test_reader_hostile_model)
{
	char src[512], p[512], err[512];
	size_t n;
	snprintf(src, sizeof(src), "%s/t_dw_q.safetensors", fixtures());
	uint8_t *orig = read_all(src, &n);
	ck_assert_msg(orig != NULL, "cannot read %s", src);
	setup_tmp();
	snprintf(p, sizeof(p), "%s/t_dw_q.json", fixtures());
	size_t jn;
	char *json = (char *)read_all(p, &jn);
	ck_assert_ptr_nonnull(json);
	json = realloc(json, jn + 1);
	json[jn] = 0;
	char *w = strstr(json, "\"t_dw_q.safetensors\"");
	ck_assert_ptr_nonnull(w);
	memcpy(w, "\"w.safetensors\"     ", 20);
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = hl << 8 | orig[i];
	snprintf(p, sizeof(p), "%s/w.safetensors", tmpdir);
	/* 1. the untouched copy loads */
	ck_assert(write_all(p, orig, n));
	ck_assert_int_eq(load_json(json, err, sizeof(err)), 0);
	/* 2. truncated data */
	ck_assert(write_all(p, orig, n - 1));
	ck_assert_int_lt(load_json(json, err, sizeof(err)), 0);
	/* 3. a 4-bit weight out of range: first data byte belongs to the first tensor in
	 *    offset order; set every I8 byte of "conv5.weight" to 100 */
	uint8_t *b = malloc(n);
	memcpy(b, orig, n);
	char *h = strndup((char *)b + 8, hl);
	char *e = strstr(h, "\"conv5.weight\"");
	ck_assert_ptr_nonnull(e);
	unsigned long beg, end;
	ck_assert_int_eq(sscanf(strstr(e, "data_offsets") + 15, "%lu,%lu", &beg, &end), 2);
	memset(b + 8 + hl + beg, 100, end - beg);
	ck_assert(write_all(p, b, n));
	ck_assert_int_eq(load_json(json, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "4-bit"), "%s", err);
	/* 4. renamed tensor: missing + unexpected */
	memcpy(b, orig, n);
	e = strstr((char *)b + 8, "\"conv5.bias\"");
	e[1] = 'C';
	ck_assert(write_all(p, b, n));
	ck_assert_int_lt(load_json(json, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "conv5.bias missing"), "%s", err);
	/* 5. dtype changed I32 → F32 on a scale */
	memcpy(b, orig, n);
	e = strstr((char *)b + 8, "\"conv5.scale\"");
	e = strstr(e, "I32");
	memcpy(e, "F32", 3);
	ck_assert(write_all(p, b, n));
	ck_assert_int_eq(load_json(json, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "dtype F32, expected I32"), "%s", err);
	/* 6. random byte flips in the header never crash */
	srand(7);
	for (int it = 0; it < 200; it++) {
		memcpy(b, orig, n);
		for (int k = 0; k < 3; k++)
			b[8 + (size_t)rand() % hl] = (uint8_t)rand();
		ck_assert(write_all(p, b, n));
		int r = load_json(json, err, sizeof(err));
		ck_assert(r == 0 || r < 0);
	}
	free(h);
	free(b);
	free(orig);
	free(json);
	teardown_tmp();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("codenet");
	TCase *t = tcase_create("ops");
	tcase_add_test(t, test_requant);
	tcase_add_test(t, test_decode);
	tcase_add_test(t, test_dcn_zero_offsets);
	suite_add_tcase(s, t);
	t = tcase_create("reader");
	tcase_add_test(t, test_reader_json);
	tcase_add_test(t, test_reader_safetensors);
	tcase_set_timeout(t, 120);
	suite_add_tcase(s, t);
	return s;
}

/* Cases on the fixtures generated by tools/codenet (needs torch at build time). */
static Suite *fixtures_suite(void)
{
	Suite *s = suite_create("codenet-fixtures");
	TCase *t = tcase_create("reader");
	tcase_add_test(t, test_reader_hostile_model);
	tcase_set_timeout(t, 120);
	suite_add_tcase(s, t);
	t = tcase_create("parity");
	tcase_add_test(t, test_float_parity);
	tcase_add_loop_test(t, test_int_bitexact, 0, 1);
	tcase_add_test(t, test_threads_identical);
	tcase_add_test(t, test_arena_reuse);
	tcase_add_test(t, test_int_portable);
	tcase_add_test(t, test_engine_dispatch);
	tcase_set_timeout(t, 600);
	suite_add_tcase(s, t);
	return s;
}

static const char *fixtures_missing(void)
{
	return fixtures() ? NULL
			  : "CDN_FIXTURES unset: /usr/bin/python3 has no torch/torchvision to "
			    "generate the CoDeNet fixtures";
}

/* The W4A8 GEMM's other variants, one suite each so meson shows SKIP where a
 * variant cannot run (variants [first, last) of gemm_variant). */
static Suite *gemm_suite(const char *name, int first, int last)
{
	Suite *s = suite_create(name); /* Check keeps the pointer: a literal */
	TCase *t = tcase_create("parity");
	tcase_add_loop_test(t, test_int_bitexact, first, last);
	tcase_set_timeout(t, 600);
	suite_add_tcase(s, t);
	return s;
}
static Suite *simde_suite(void)
{
	return gemm_suite("codenet-fixtures-simde", 3, 5);
}
static Suite *avx512vnni_suite(void)
{
	return gemm_suite("codenet-fixtures-avx512vnni", 1, 2);
}
static Suite *avxvnni_suite(void)
{
	return gemm_suite("codenet-fixtures-avxvnni", 2, 3);
}

static const char *gemm_missing(int i)
{
	cdn_vk_fn fn;
	const char *why = fixtures_missing();
	if (why || gemm_variant(i, &fn))
		return why;
	return i >= 3 ? "built without libsimde-dev" : "this CPU lacks the instructions";
}
static const char *simde_missing(void)
{
	return gemm_missing(3);
}
static const char *avx512vnni_missing(void)
{
	return gemm_missing(1);
}
static const char *avxvnni_missing(void)
{
	return gemm_missing(2);
}

int main(int argc, char **argv)
{
	static const struct tu_suite suites[] = {
		{NULL, suite, NULL},
		{"fixtures", fixtures_suite, fixtures_missing},
		{"fixtures-simde", simde_suite, simde_missing},
		{"fixtures-avx512vnni", avx512vnni_suite, avx512vnni_missing},
		{"fixtures-avxvnni", avxvnni_suite, avxvnni_missing},
	};
	return tu_main(argc, argv, suites, sizeof(suites) / sizeof(suites[0]));
}
