/*
 * bench_engine.c — `detd-bench engine`, dispatched from detd-bench's main (detd_bench.c).
 *
 *   detd-bench engine --model M --inputs DIR [--labels L] [--threads N] [--batch B] [--runs R]
 *                     [--backend cpu|xrt-sim|xrt] [--device N] [--xclbin FILE]
 *
 * engine mode: loads the model, reads every *.rgb file of DIR (raw model
 * input bytes, in name order), runs one warm-up batch then R timed batches of
 * B frames (frame j of a batch belongs to stream j, each stream carrying its
 * recurrent state), and prints total and per-op latency (median, min, max),
 * frames/s, process CPU time per frame and peak RSS (getrusage).  With a
 * device backend every op says where it ran ("where": cpu or the device;
 * the first op of a fused block carries the whole kernel call, the others
 * 0 ms) and the device's counters follow the tables.
 * Single-threaded tool; speed is measured here, never asserted in tests.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_engine.h"
#include "engine.h"

struct bench_opts {
	const char *model, *inputs, *labels;
	int threads, batch, runs;
	const char *backend, *xclbin;
	int device;
};

static double now_ms(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* median/min/max of v[0..n) (sorts v) */
static void stats(double *v, int n, double *med, double *mn, double *mx)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	*mn = v[0];
	*mx = v[n - 1];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int load_inputs(const char *dir, size_t bytes, uint8_t ***out, int *n_out)
{
	DIR *d = opendir(dir);
	if (!d) {
		int rc = -errno;
		fprintf(stderr, "detd-bench: %s: %s\n", dir, strerror(errno));
		return rc;
	}
	char **names = NULL;
	int n = 0, cap = 0, rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".rgb"))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nn = realloc(names, (size_t)cap * sizeof(*nn));
			if (!nn) {
				rc = -ENOMEM;
				goto out;
			}
			names = nn;
		}
		names[n] = strdup(e->d_name);
		if (!names[n]) {
			rc = -ENOMEM;
			goto out;
		}
		n++;
	}
	if (n == 0) {
		fprintf(stderr, "detd-bench: no .rgb inputs in %s\n", dir);
		rc = -ENOENT;
		goto out;
	}
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	uint8_t **bufs = calloc((size_t)n, sizeof(*bufs));
	if (!bufs) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		FILE *f = fopen(path, "rb");
		bufs[i] = malloc(bytes + 1);
		size_t got = (f && bufs[i]) ? fread(bufs[i], 1, bytes + 1, f) : 0;
		if (f)
			fclose(f);
		if (got != bytes) {
			fprintf(stderr, "detd-bench: %s: expected %zu bytes of model input\n", path, bytes);
			for (int j = 0; j <= i; j++)
				free(bufs[j]);
			free(bufs);
			rc = -EINVAL;
			goto out;
		}
	}
	*out = bufs;
	*n_out = n;
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

static int bench_engine(const struct bench_opts *o)
{
	char err[512] = "";
	struct eng_model *m = NULL;
	struct eng_ctx *c = NULL;
	struct eng_state **st = NULL;
	uint8_t **inputs = NULL;
	int n_inputs = 0, rc;
	double *tot = NULL, *per_op = NULL, *cpu = NULL;
	struct eng_detections *det = NULL;
	const uint8_t **batch_in = NULL;

	struct eng_model_opts mo = {.path = o->model, .labels_path = o->labels};
	rc = eng_model_load(&mo, &m, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "detd-bench: %s\n", err);
		goto out;
	}
	const struct eng_model_info *mi = eng_model_info(m);
	size_t in_bytes = (size_t)mi->input_width * mi->input_height * mi->input_channels;
	rc = load_inputs(o->inputs, in_bytes, &inputs, &n_inputs);
	if (rc)
		goto out;
	const struct eng_backend_ops *be = eng_backend_find(o->backend);
	if (!be) {
		fprintf(stderr, "detd-bench: unknown backend '%s'\n", o->backend);
		rc = -EINVAL;
		goto out;
	}
	struct eng_backend_opts bo = {.device = o->device, .xclbin = o->xclbin};
	rc = eng_ctx_create_opts(m, be, &bo, o->threads, &c, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "detd-bench: %s\n", err);
		goto out;
	}
	st = calloc((size_t)o->batch, sizeof(*st));
	det = calloc((size_t)o->batch, sizeof(*det));
	batch_in = calloc((size_t)o->batch, sizeof(*batch_in));
	tot = calloc((size_t)o->runs, sizeof(*tot));
	cpu = calloc((size_t)o->runs, sizeof(*cpu));
	per_op = calloc((size_t)o->runs * (size_t)mi->n_ops, sizeof(*per_op));
	if (!st || !det || !batch_in || !tot || !cpu || !per_op) {
		rc = -ENOMEM;
		goto out;
	}
	for (int i = 0; i < o->batch; i++) {
		rc = eng_state_create(m, &st[i]);
		if (rc)
			goto out;
	}
	int next = 0;
	for (int r = -1; r < o->runs; r++) { /* r == -1: warm-up */
		for (int i = 0; i < o->batch; i++)
			batch_in[i] = inputs[next++ % n_inputs];
		double t0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
		rc = eng_run(c, o->batch, batch_in, st, det);
		double t1 = now_ms(CLOCK_MONOTONIC), c1 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
		if (rc) {
			fprintf(stderr, "detd-bench: run failed: %s\n", strerror(-rc));
			goto out;
		}
		if (r < 0)
			continue;
		tot[r] = t1 - t0;
		cpu[r] = c1 - c0;
		const struct eng_op_timing *t;
		int nt;
		if (eng_ctx_op_timings(c, &t, &nt) == 0)
			for (int k = 0; k < nt && k < mi->n_ops; k++)
				per_op[(size_t)k * o->runs + r] = (double)t[k].ns / 1e6;
	}

	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("model %s: %d ops, %.3f GMAC/frame, input %dx%dx%d, arena %zu KiB\n", mi->name,
	       mi->n_ops, mi->gmac, mi->input_width, mi->input_height, mi->input_channels,
	       mi->arena_bytes / 1024);
	printf("backend %s, threads %d, batch %d, runs %d, inputs %d, kernels %s\n", o->backend,
	       o->threads, o->batch, o->runs, n_inputs, mi->kernels ? mi->kernels : "n/a");
	printf("\n%-5s %-30s %-8s %10s %10s %10s %7s %8s\n", "op", "name", "where", "median_ms",
	       "min_ms", "max_ms", "share", "GOP/s");
	const struct eng_op_timing *t = NULL;
	int nt = 0;
	eng_ctx_op_timings(c, &t, &nt);
	double sum_med = 0.0;
	double *meds = calloc((size_t)nt + 1, sizeof(*meds));
	for (int k = 0; k < nt && k < mi->n_ops; k++) {
		double mn, mx;
		stats(per_op + (size_t)k * o->runs, o->runs, &meds[k], &mn, &mx);
		sum_med += meds[k];
	}
	for (int k = 0; k < nt && k < mi->n_ops; k++) {
		double *v = per_op + (size_t)k * o->runs;
		printf("%-5d %-30s %-8s %10.3f %10.3f %10.3f %6.1f%%", t[k].index, t[k].op_name,
		       eng_ctx_placement(c, k), meds[k], v[0], v[o->runs - 1],
		       sum_med > 0 ? 100.0 * meds[k] / sum_med : 0.0);
		if (t[k].macs > 0 && meds[k] > 0)
			printf(" %8.1f", 2.0 * (double)t[k].macs / (meds[k] * 1e6));
		else if (t[k].shape[0])
			printf(" %8s", "");
		printf("%s%s\n", t[k].shape[0] ? "  " : "", t[k].shape);
	}
	/* per op type: sum of the per-op medians; GOP/s = 2 · MACs / time (one frame per
	 * lane: the per-op times are those of one frame) */
	printf("\n%-30s %10s %7s %8s %8s %8s\n", "op type", "median_ms", "share", "on_dev",
	       "on_cpu", "GOP/s");
	for (int k = 0; k < nt && k < mi->n_ops; k++) {
		bool seen = false;
		for (int j = 0; j < k; j++)
			if (!strcmp(t[j].op_name, t[k].op_name))
				seen = true;
		if (seen)
			continue;
		double s = 0.0, macs = 0.0;
		int on_dev = 0, on_cpu = 0;
		for (int j = k; j < nt && j < mi->n_ops; j++)
			if (!strcmp(t[j].op_name, t[k].op_name)) {
				s += meds[j];
				macs += (double)t[j].macs;
				if (strcmp(eng_ctx_placement(c, j), "cpu"))
					on_dev++;
				else
					on_cpu++;
			}
		printf("%-30s %10.3f %6.1f%% %8d %8d", t[k].op_name, s,
		       sum_med > 0 ? 100.0 * s / sum_med : 0.0, on_dev, on_cpu);
		if (macs > 0 && s > 0)
			printf(" %8.1f", 2.0 * macs / (s * 1e6));
		printf("\n");
	}
	free(meds);
	struct eng_backend_info di;
	if (eng_ctx_backend_info(c, &di) == 0)
		printf("\ndevice %s (%s), xclbin %s: %d nodes on the device, %d on cpu, %d kernel "
		       "calls/frame, %llu runs, %llu failed, %.3f ms per kernel call\n",
		       di.device, di.backend, di.xclbin_uuid, di.nodes_device, di.nodes_cpu,
		       di.blocks, (unsigned long long)di.runs, (unsigned long long)di.failures,
		       di.ms_per_run);
	double med, mn, mx, cmed, cmn, cmx;
	stats(tot, o->runs, &med, &mn, &mx);
	stats(cpu, o->runs, &cmed, &cmn, &cmx);
	printf("\ntotal per batch of %d: median %.2f ms, min %.2f ms, max %.2f ms\n", o->batch, med,
	       mn, mx);
	printf("per frame: median %.2f ms (CPU %.2f ms), min %.2f ms\n", med / o->batch,
	       cmed / o->batch, mn / o->batch);
	printf("frames/s: %.1f (median), %.1f (best)\n", 1000.0 * o->batch / med,
	       1000.0 * o->batch / mn);
	printf("peak RSS: %.1f MiB\n", (double)ru.ru_maxrss / 1024.0);
	rc = 0;
out:
	if (st)
		for (int i = 0; i < o->batch; i++)
			eng_state_destroy(st[i]);
	free(st);
	eng_ctx_destroy(c);
	eng_model_destroy(m);
	for (int i = 0; i < n_inputs; i++)
		free(inputs[i]);
	free(inputs);
	free(tot);
	free(cpu);
	free(per_op);
	free(det);
	free(batch_in);
	return rc ? 1 : 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: detd-bench engine --model M --inputs DIR [--labels L] [--threads N]\n"
		   "                         [--batch B] [--runs R]\n"
		   "                         [--backend cpu|xrt-sim|xrt] [--device N] [--xclbin FILE]\n");
}

int bench_engine_main(int argc, char **argv)
{
	struct bench_opts o = {.threads = 1, .batch = 1, .runs = 20, .backend = "cpu"};
	static const struct option lo[] = {
		{"model", required_argument, NULL, 'm'},  {"inputs", required_argument, NULL, 'i'},
		{"labels", required_argument, NULL, 'l'}, {"threads", required_argument, NULL, 't'},
		{"batch", required_argument, NULL, 'b'},  {"runs", required_argument, NULL, 'r'},
		{"backend", required_argument, NULL, 'B'}, {"device", required_argument, NULL, 'D'},
		{"xclbin", required_argument, NULL, 'X'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "m:i:l:t:b:r:h", lo, NULL)) != -1) {
		switch (ch) {
		case 'm':
			o.model = optarg;
			break;
		case 'i':
			o.inputs = optarg;
			break;
		case 'l':
			o.labels = optarg;
			break;
		case 't':
			o.threads = atoi(optarg);
			break;
		case 'b':
			o.batch = atoi(optarg);
			break;
		case 'r':
			o.runs = atoi(optarg);
			break;
		case 'B':
			o.backend = optarg;
			break;
		case 'D':
			o.device = atoi(optarg);
			break;
		case 'X':
			o.xclbin = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.model || !o.inputs || o.threads < 1 || o.batch < 1 || o.batch > 64 || o.runs < 1 ||
	    o.runs > 100000) {
		usage(stderr);
		return 2;
	}
	return bench_engine(&o);
}
