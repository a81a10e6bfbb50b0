/*
 * bench_e2e.c — `detd-bench e2e`: the daemon's data path without the loop:
 * N GStreamer sources (the sample video, looping, rate limited to fps) →
 * batcher → inference workers, for each max_batch in a list.  Reports per
 * configuration: the frames/s the sources delivered (the rate limit lets one
 * extra frame through at each loop of the 0.67 s video, so it exceeds
 * streams × fps a little), the results/s, stale drops, mean batch,
 * inference ms p50/p99, capture→result latency p50/p99, RSS and peak RSS
 * (of this one process, which runs the configurations one after the other:
 * run one stream count per process to see each one's own memory), and the
 * frames/s out of the decoders and into the conversion (what the rate limit
 * let through).  A
 * configuration is "sustained" when at least 95% of the delivered frames
 * become results (at most 5% stale drops).
 *
 * Threads: main (setup, sampling), GStreamer threads (submit), workers
 * (result callback records latency under a mutex).
 */
#include "bench_e2e.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "pipeline.h"

#define LAT_MAX 200000

struct run {
	pthread_mutex_t mu;
	bool measuring;
	uint64_t results;
	float *lat_ms;
	size_t n_lat;
	struct eng_batcher *b;
};

static void on_result(struct det_result *r, void *ud)
{
	struct run *run = ud;
	int64_t now = det_mono_ns();
	pthread_mutex_lock(&run->mu);
	if (run->measuring) {
		run->results++;
		if (run->n_lat < LAT_MAX)
			run->lat_ms[run->n_lat++] =
				(float)((double)(now - r->t.capture_mono_ns) / 1e6);
	}
	pthread_mutex_unlock(&run->mu);
	det_result_unref(r);
}

static void on_frame(struct det_frame *f, void *ud)
{
	struct run *run = ud;
	eng_batcher_submit(run->b, f);
}

static int cmpf(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static long rss_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0)
			v = atol(line + kl + 1);
	fclose(f);
	return v;
}

/* Process CPU time (all threads) in ms: the load-independent cost. */
static double cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* Frames out of the decoders, into the conversion (not dropped by the rate
 * limit before it) and delivered to the batcher, summed over the streams. */
struct pipe_sums {
	uint64_t decoded, converted, delivered;
};

static void pipe_sums(struct pipe_sources *src, struct pipe_sums *out)
{
	struct pipe_stream_stats *st = NULL;
	size_t n = 0;
	memset(out, 0, sizeof(*out));
	if (pipe_sources_snapshot(src, &st, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		out->decoded += st[i].frames_decoded;
		out->converted += st[i].frames_decoded - st[i].dropped[PIPE_DROP_RATE];
		out->delivered += st[i].frames_delivered;
	}
	free(st);
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int parse_list(const char *s, int *v, int max)
{
	int n = 0;
	char *dup = strdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		v[n++] = atoi(t);
	free(dup);
	return n;
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: detd-bench e2e [--model PATH] [--video PATH] [--streams 1,2,4]\n"
		"                      [--fps F] [--batch 1,2,4] [--workers W] [--threads T]\n"
		"                      [--wait-ms M] [--seconds S] [--warmup S]\n");
}

int bench_e2e_main(int argc, char **argv)
{
	const char *data = getenv("DETD_SHARED_DATA");
	char model_path[1024], video_path[1024];
	snprintf(model_path, sizeof(model_path), "%s/traffic/traffic_model.tflite",
		 data ? data : "../shared/data");
	snprintf(video_path, sizeof(video_path), "%s/traffic/traffic_frames.mp4",
		 data ? data : "../shared/data");
	int streams[16] = {1, 2, 4}, n_streams = 3;
	int batches[16] = {1, 2, 4}, n_batches = 3;
	double fps = 10, seconds = 8, warmup = 3;
	int workers = 1, threads = 1, wait_ms = 10;

	static const struct option lo[] = {
		{"model", required_argument, NULL, 'm'},  {"video", required_argument, NULL, 'v'},
		{"streams", required_argument, NULL, 's'}, {"fps", required_argument, NULL, 'f'},
		{"batch", required_argument, NULL, 'b'},   {"workers", required_argument, NULL, 'w'},
		{"threads", required_argument, NULL, 't'}, {"wait-ms", required_argument, NULL, 'W'},
		{"seconds", required_argument, NULL, 'S'}, {"warmup", required_argument, NULL, 'u'},
		{"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 'm': snprintf(model_path, sizeof(model_path), "%s", optarg); break;
		case 'v': snprintf(video_path, sizeof(video_path), "%s", optarg); break;
		case 's': n_streams = parse_list(optarg, streams, 16); break;
		case 'f': fps = atof(optarg); break;
		case 'b': n_batches = parse_list(optarg, batches, 16); break;
		case 'w': workers = atoi(optarg); break;
		case 't': threads = atoi(optarg); break;
		case 'W': wait_ms = atoi(optarg); break;
		case 'S': seconds = atof(optarg); break;
		case 'u': warmup = atof(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (fps <= 0 || seconds <= 0 || workers < 1 || threads < 1) {
		usage(stderr);
		return 2;
	}
	log_set_level(LOG_LVL_WARN);
	/* As the daemon does (daemon/main.c): few malloc arenas. */
	mallopt(M_ARENA_MAX, 2);
	char err[256] = "";
	struct eng_model *m;
	struct eng_model_opts mo = {.path = model_path};
	if (eng_model_load(&mo, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "e2e: %s\n", err);
		return 1;
	}
	const struct eng_model_info *mi = eng_model_info(m);
	char uri[1100];
	char *abs = realpath(video_path, NULL);
	snprintf(uri, sizeof(uri), "file://%s", abs ? abs : video_path);
	free(abs);

	printf("# detd-bench e2e: model %s, video %s, fps/stream %.1f, workers %d, threads %d, "
	       "max_wait %d ms, %.0f s (+%.0f s warm-up), %ld online CPUs\n",
	       mi->name, video_path, fps, workers, threads, wait_ms, seconds, warmup,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-6s %-7s %-8s %-8s %-8s %-7s %-6s %-8s %-8s %-8s %-8s %-7s %-7s %-7s %-10s %-8s "
	       "%-8s %s\n", "batch", "streams", "nominal", "in_fps", "out_fps", "stale%",
	       "mean_b", "inf_p50", "inf_p99", "lat_p50", "lat_p99", "rss_MB", "hwm_MB", "anon_MB",
	       "cpu_ms/res",
	       "dec_fps", "conv_fps", "sustained");

	int rc = 0;
	struct run run = {.lat_ms = malloc(LAT_MAX * sizeof(float))};
	pthread_mutex_init(&run.mu, NULL);
	for (int bi = 0; bi < n_batches; bi++) {
		for (int si = 0; si < n_streams; si++) {
			int B = batches[bi], N = streams[si];
			struct eng_batcher_opts bo = {
				.model = m, .workers = workers, .threads = threads, .max_batch = B,
				.max_wait_ms = wait_ms, .min_score = 0.5, .on_result = on_result,
				.user = &run};
			run.measuring = false;
			run.results = 0;
			run.n_lat = 0;
			if (eng_batcher_create(&bo, &run.b, err, sizeof(err)) < 0) {
				fprintf(stderr, "e2e: %s\n", err);
				rc = 1;
				goto out;
			}
			struct pipe_callbacks cb = {.on_frame = on_frame, .ud = &run};
			struct pipe_sources *src;
			if (pipe_sources_create(mi->input_width, mi->input_height, &cb, &src) < 0) {
				fprintf(stderr, "e2e: pipeline\n");
				eng_batcher_destroy(run.b);
				rc = 1;
				goto out;
			}
			for (int k = 0; k < N; k++) {
				char id[16];
				snprintf(id, sizeof(id), "cam%d", k);
				struct cfg_stream cs = {.id = id, .kind = CFG_SRC_URI, .uri = uri,
							.fps = fps, .loop = true, .enabled = true,
							.aspect = CFG_ASPECT_STRETCH};
				eng_batcher_add_stream(run.b, id);
				pipe_sources_add(src, &cs);
			}
			sleep_s(warmup);
			struct eng_batcher_stats s0, s1;
			struct pipe_sums p0, p1;
			eng_batcher_stats(run.b, &s0);
			pipe_sums(src, &p0);
			pthread_mutex_lock(&run.mu);
			run.measuring = true;
			pthread_mutex_unlock(&run.mu);
			double c0 = cpu_ms();
			sleep_s(seconds);
			double c1 = cpu_ms();
			pthread_mutex_lock(&run.mu);
			run.measuring = false;
			uint64_t results = run.results;
			size_t nl = run.n_lat;
			pthread_mutex_unlock(&run.mu);
			eng_batcher_stats(run.b, &s1);
			pipe_sums(src, &p1);
			long rss = rss_kb("VmRSS:"), hwm = rss_kb("VmHWM:");
			long anon = rss_kb("RssAnon:"); /* RSS minus shared-library pages */
			pipe_sources_destroy(src);
			eng_batcher_destroy(run.b);

			qsort(run.lat_ms, nl, sizeof(float), cmpf);
			double p50 = nl ? run.lat_ms[(nl - 1) / 2] : 0;
			double p99 = nl ? run.lat_ms[(nl - 1) * 99 / 100] : 0;
			uint64_t sub = s1.submitted - s0.submitted;
			uint64_t stale = s1.drops[ENG_DROP_STALE] - s0.drops[ENG_DROP_STALE];
			uint64_t bat = s1.batches - s0.batches, fr = s1.frames_run - s0.frames_run;
			double achieved = (double)results / seconds;
			double nominal = (double)N * fps, in_fps = (double)sub / seconds;
			double stale_pct = sub ? 100.0 * (double)stale / (double)sub : 0;
			printf("%-6d %-7d %-8.1f %-8.1f %-8.1f %-7.1f %-6.2f %-8.1f %-8.1f %-8.1f %-8.1f "
			       "%-7.1f %-7.1f %-7.1f %-10.1f %-8.1f %-8.1f %s\n",
			       B, N, nominal, in_fps, achieved, stale_pct,
			       bat ? (double)fr / (double)bat : 0, s1.infer_ms_p50, s1.infer_ms_p99,
			       p50, p99, (double)rss / 1024.0, (double)hwm / 1024.0, (double)anon / 1024.0,
			       results ? (c1 - c0) / (double)results : 0,
			       (double)(p1.decoded - p0.decoded) / seconds,
			       (double)(p1.converted - p0.converted) / seconds,
			       stale_pct <= 5.0 ? "yes" : "no");
			fflush(stdout);
		}
	}
	printf("# peak RSS (VmHWM) %.1f MB\n", (double)rss_kb("VmHWM:") / 1024.0);
out:
	free(run.lat_ms);
	eng_model_destroy(m);
	return rc;
}
