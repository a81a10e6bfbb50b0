/*
 * detd-codenet-ops — times the CoDeNet operators of engine/codenet/ for the
 * operator study (tools/codenet/bench_ops.py drives it next to torchvision
 * and prints the table).  Prints one JSON object per line.
 *
 *   detd-codenet-ops ops H W CIN COUT THREADS REPS
 *       every op on random data: conv3x3 (CIN→COUT), dw3x3, full DCN
 *       (CIN→COUT), depthwise DCN, bounded, square, rounded; fp32 and int8
 *   detd-codenet-ops model MODEL.json THREADS REPS
 *       whole network on a synthetic frame: total and per-layer ms
 * Times are medians of REPS runs after one warm-up, in milliseconds.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codenet.h"
#include "kset.h"
#include "x86/vk.h"

/* The W4A8 GEMM the engine would pick here (DETD_KERNELS or the CPU): a VNNI
 * one, or NULL for engine/codenet's own. */
static cdn_vk_fn vk_gemm(void)
{
	enum eng_kset ks = ENG_KS_REF;
	char err[160];
	if (eng_kset_select(&ks, err, sizeof(err)))
		return NULL;
	return ks == ENG_KS_AVX512VNNI ? vk512_gemm_acc : ks == ENG_KS_AVXVNNI ? vk256_gemm_acc : NULL;
}

/* DETD_BENCH_CPUTIME=1: process CPU time instead of wall time (a loaded
 * machine; meaningful for 1 thread only) */
static double now_ms(void)
{
	static int cpu = -1;
	if (cpu < 0)
		cpu = getenv("DETD_BENCH_CPUTIME") && atoi(getenv("DETD_BENCH_CPUTIME"));
	struct timespec ts;
	clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static uint32_t rng = 12345;
static float frand(void) /* [-1, 1) */
{
	rng = rng * 1664525u + 1013904223u;
	return (float)(rng >> 8) / (float)(1u << 23) - 1.0f;
}

struct opcase {
	const char *name;
	enum cdn_lkind kind;
	bool deform;
	struct cdn_dcn_cfg cfg;
	int offc;
};

static double time_op(const struct opcase *oc, const struct cdn_layer *L, struct cdn_ten *in,
		      struct cdn_ten *off, struct cdn_ten *out, int threads, int reps)
{
	double t[64];
	if (reps > 64)
		reps = 64;
	for (int r = -1; r < reps; r++) {
		double t0 = now_ms();
		int e = oc->deform ? cdn_op_dcn(L, &oc->cfg, in, off, out, threads)
				   : cdn_op_conv(L, in, out, threads);
		if (e < 0) {
			fprintf(stderr, "op %s failed: %d\n", oc->name, e);
			exit(1);
		}
		if (r >= 0)
			t[r] = now_ms() - t0;
	}
	qsort(t, (size_t)reps, sizeof(double), cmp_d);
	return t[reps / 2];
}

static int run_ops(int H, int W, int cin, int cout, int threads, int reps)
{
	const struct opcase cases[] = {
		{"conv3x3", CDN_L_CONV, false, {0}, 0},
		{"dw3x3", CDN_L_DW, false, {0}, 0},
		{"dcn_full", CDN_L_DCN_FULL, true, {0}, 18},
		{"dcn_dw", CDN_L_DCN_DW, true, {0}, 18},
		{"dcn_dw_bound", CDN_L_DCN_DW, true, {.bound = 2}, 18},
		{"dcn_dw_square", CDN_L_DCN_DW, true, {.square = true, .bound = 4}, 1},
		{"dcn_dw_rounded", CDN_L_DCN_DW, true, {.rounded = true}, 18},
	};
	size_t npix = (size_t)H * W;
	int cmax = cin > cout ? cin : cout;
	float *fin = malloc(npix * cin * sizeof(float)), *fout = malloc(npix * cmax * sizeof(float));
	float *foff = malloc(npix * 18 * sizeof(float));
	int8_t *qin = malloc(npix * cin), *qout = malloc(npix * cmax), *qoff = malloc(npix * 18);
	size_t nw = (size_t)9 * cin * cmax;
	float *wf = malloc(nw * sizeof(float)), *bf = calloc((size_t)cmax, sizeof(float));
	int16_t *wq = malloc(nw * sizeof(int16_t));
	int32_t *mq = malloc(cmax * sizeof(int32_t)), *bq = calloc((size_t)cmax, sizeof(int32_t));
	if (!fin || !fout || !foff || !qin || !qout || !qoff || !wf || !bf || !wq || !mq || !bq)
		return -ENOMEM;
	for (size_t i = 0; i < npix * cin; i++) {
		fin[i] = frand() + 1;
		qin[i] = (int8_t)(frand() * 127);
	}
	for (size_t i = 0; i < npix * 18; i++) {
		foff[i] = frand() * 3;
		qoff[i] = (int8_t)(frand() * 3);
	}
	for (size_t i = 0; i < nw; i++) {
		wf[i] = frand() * 0.1f;
		wq[i] = (int16_t)(frand() * 7);
	}
	for (int c = 0; c < cmax; c++)
		mq[c] = 300;
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		const struct opcase *oc = &cases[k];
		bool dw = oc->kind == CDN_L_DW || oc->kind == CDN_L_DCN_DW;
		int co = dw ? cin : cout;
		struct cdn_layer L = {.kind = oc->kind, .cin = cin, .cout = co, .k = 3, .stride = 1,
				      .relu = true, .wf = wf, .bf = bf, .wq = wq, .mq = mq, .bq = bq};
		if (cdn_layer_pack(&L) < 0 || cdn_layer_pack_vk(&L, vk_gemm()) < 0)
			return -ENOMEM;
		double ms[2];
		for (int q = 0; q < 2; q++) {
			struct cdn_ten in = {.h = H, .w = W, .c = cin}, out = {.h = H, .w = W, .c = co},
				       off = {.h = H, .w = W, .c = oc->offc ? oc->offc : 18, .sgn = true};
			if (q) {
				in.q = qin, out.q = qout, off.q = qoff;
			} else {
				in.f = fin, out.f = fout, off.f = foff;
			}
			ms[q] = time_op(oc, &L, &in, &off, &out, threads, reps);
		}
		free(L.wq2);
		cdn_layer_vk_free(&L);
		printf("{\"op\":\"%s\",\"h\":%d,\"w\":%d,\"cin\":%d,\"cout\":%d,\"threads\":%d,"
		       "\"fp32_ms\":%.3f,\"int8_ms\":%.3f}\n",
		       oc->name, H, W, cin, co, threads, ms[0], ms[1]);
		fflush(stdout);
	}
	free(fin), free(fout), free(foff), free(qin), free(qout), free(qoff);
	free(wf), free(bf), free(wq), free(mq), free(bq);
	return 0;
}

static int run_model(const char *path, int threads, int reps)
{
	char err[512];
	struct cdn_model *m;
	struct cdn_ctx *c;
	int r = cdn_model_load(path, &m, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		return r;
	}
	const struct cdn_desc *d = cdn_model_desc(m);
	if ((d->quant && (r = cdn_model_set_vk(m, vk_gemm())) < 0) ||
	    (r = cdn_ctx_create(m, threads, &c)) < 0)
		return r;
	size_t n = (size_t)d->width * d->height * 3;
	uint8_t *rgb = malloc(n);
	for (size_t i = 0; i < n; i++)
		rgb[i] = (uint8_t)((i * 2654435761u) >> 24);
	struct eng_detections det;
	double t[64], *lay = calloc((size_t)d->n_layers * 64, sizeof(double));
	if (reps > 64)
		reps = 64;
	for (int k = -1; k < reps; k++) {
		double t0 = now_ms();
		if ((r = cdn_run(c, rgb, &det)) < 0)
			return r;
		if (k < 0)
			continue;
		t[k] = now_ms() - t0;
		for (int l = 0; l < d->n_layers; l++)
			lay[(size_t)l * 64 + k] = cdn_ctx_layer_ns(c, l) * 1e-6;
	}
	qsort(t, (size_t)reps, sizeof(double), cmp_d);
	printf("{\"model\":\"%s\",\"threads\":%d,\"quant\":%s,\"gmac\":%.3f,\"total_ms\":%.3f,"
	       "\"layers\":{",
	       path, threads, d->quant ? "true" : "false", d->gmac, t[reps / 2]);
	for (int l = 0; l < d->n_layers; l++) {
		qsort(lay + (size_t)l * 64, (size_t)reps, sizeof(double), cmp_d);
		printf("%s\"%s\":%.3f", l ? "," : "", cdn_model_layer(m, l)->name,
		       lay[(size_t)l * 64 + reps / 2]);
	}
	printf("}}\n");
	free(lay);
	free(rgb);
	cdn_ctx_destroy(c);
	cdn_model_destroy(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 8 && !strcmp(argv[1], "ops"))
		return run_ops(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]),
			       atoi(argv[6]), atoi(argv[7])) < 0;
	if (argc == 5 && !strcmp(argv[1], "model"))
		return run_model(argv[2], atoi(argv[3]), atoi(argv[4])) < 0;
	fprintf(stderr, "usage: %s ops H W CIN COUT THREADS REPS | model MODEL.json THREADS REPS\n",
		argv[0]);
	return 2;
}
