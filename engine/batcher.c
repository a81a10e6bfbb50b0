/*
 * batcher.c — per-stream frame slots, batch cutting, inference workers and
 * the backend failure policy (see batcher.h for the contract).
 *
 * Owns: the stream slots and their recurrent states, the worker threads and
 * their execution contexts, and the statistics.  One mutex (b->mu) guards all
 * of it; it is never held while running the model or calling on_result, so
 * eng_batcher_submit() from a GStreamer thread only ever waits for a few
 * pointer swaps.
 *
 * Threads: submit from streaming threads; the workers run worker_main(); the
 * rest from whoever owns the batcher (the daemon's main loop).
 */
#include "engine.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"

#define TOPIC "batcher"
#define INFER_RING 512   /* batch run times kept for p50/p99 */
#define LATENCY_RING 1024 /* capture→result times kept for p50/p99 */
#define FPS_BUCKETS 16    /* one-second buckets of delivered results */
#define FPS_WINDOW_S 5

struct stream {
	char id[DET_STREAM_ID_MAX];
	struct det_frame *slot; /* newest waiting frame or NULL */
	int64_t slot_since_ns;  /* when the slot went from empty to full */
	bool in_flight;         /* a worker runs a frame of this stream */
	bool removed;           /* removed while in flight: the worker frees it */
	bool gen_known;
	uint32_t gen;
	struct eng_state *state;
	uint64_t submitted, results, last_seq;
	uint64_t drops[ENG_DROP__COUNT];
	uint32_t state_resets;
};

struct worker {
	struct eng_batcher *b;
	pthread_t thread;
	bool started;
	struct eng_ctx *primary; /* NULL while the backend cannot be opened */
	struct eng_ctx *cpu; /* == primary when the configured backend is cpu */
	struct eng_detections *out; /* ENG_BATCH_MAX */
	/* Heartbeat for the service watchdog: when the worker took its current
	 * batch, 0 while it waits for work.  Atomic, not under b->mu, so that a
	 * worker stuck anywhere cannot also stall whoever checks on it. */
	_Atomic int64_t busy_since_ns;
};

struct fps_bucket {
	int64_t sec;
	uint64_t n;
};

struct eng_batcher {
	struct eng_batcher_opts o;
	int in_w, in_h, in_c;
	bool primary_is_cpu;
	const char *backend_name;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* slots changed, a stream left flight, or stop */
	struct stream *streams[ENG_BATCHER_STREAMS_MAX];
	int n_streams;
	int rr; /* index of the stream to serve first in the next batch */
	int waiting, in_flight;
	bool stopping, drain, joined;

	int n_workers;
	struct worker *workers;

	/* statistics, under mu */
	uint64_t batches, frames_run, submitted, results;
	uint64_t drops[ENG_DROP__COUNT];
	float infer_ms[INFER_RING];
	uint64_t n_infer;
	float latency_ms[LATENCY_RING];
	uint64_t n_latency;
	struct fps_bucket fps[FPS_BUCKETS];
	int64_t start_ns;
	char *xclbin; /* o.backend_opts.xclbin points here */
	struct eng_health *health; /* the one fallback policy (own lock) */
	bool have_dev;
	struct eng_backend_info dev; /* last report of a primary context, under mu */
};

static const char *const drop_names[ENG_DROP__COUNT] = {
	[ENG_DROP_STALE] = "stale",
	[ENG_DROP_SHUTDOWN] = "shutdown",
	[ENG_DROP_ERROR] = "error",
	[ENG_DROP_NO_STREAM] = "no_stream",
};

const char *eng_drop_reason_name(enum eng_drop_reason r)
{
	return (unsigned)r < ENG_DROP__COUNT ? drop_names[r] : "unknown";
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
							   const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- streams (all under b->mu) ---- */

static int find_stream(const struct eng_batcher *b, const char *id)
{
	for (int i = 0; i < b->n_streams; i++)
		if (strcmp(b->streams[i]->id, id) == 0)
			return i;
	return -1;
}

static void stream_free(struct stream *s)
{
	if (!s)
		return;
	det_frame_unref(s->slot);
	eng_state_destroy(s->state);
	free(s);
}

static void count_drop(struct eng_batcher *b, struct stream *s, enum eng_drop_reason r)
{
	b->drops[r]++;
	if (s)
		s->drops[r]++;
}

/* ---- statistics helpers ---- */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* p50/p99 of a ring; sorts a copy. */
static void percentiles(const float *ring, uint64_t n_total, int cap, double *p50, double *p99)
{
	int n = n_total < (uint64_t)cap ? (int)n_total : cap;
	*p50 = *p99 = 0;
	if (n == 0)
		return;
	float *tmp = malloc((size_t)n * sizeof(*tmp));
	if (!tmp)
		return;
	memcpy(tmp, ring, (size_t)n * sizeof(*tmp));
	qsort(tmp, (size_t)n, sizeof(*tmp), cmp_float);
	*p50 = tmp[(n - 1) * 50 / 100];
	*p99 = tmp[(n - 1) * 99 / 100];
	free(tmp);
}

static void fps_add(struct eng_batcher *b, int64_t now_ns, uint64_t n)
{
	int64_t sec = now_ns / 1000000000LL;
	struct fps_bucket *k = &b->fps[sec % FPS_BUCKETS];
	if (k->sec != sec) {
		k->sec = sec;
		k->n = 0;
	}
	k->n += n;
}

static double fps_rate(const struct eng_batcher *b, int64_t now_ns)
{
	int64_t sec = now_ns / 1000000000LL;
	int64_t full = sec - b->start_ns / 1000000000LL; /* completed seconds since start */
	if (full > FPS_WINDOW_S)
		full = FPS_WINDOW_S;
	if (full <= 0) {
		/* first second: the partial bucket over the elapsed time */
		double el = (double)(now_ns - b->start_ns) / 1e9;
		const struct fps_bucket *k = &b->fps[sec % FPS_BUCKETS];
		return (k->sec == sec && el > 0.05) ? (double)k->n / el : 0;
	}
	uint64_t n = 0;
	for (int64_t s = sec - full; s < sec; s++) {
		const struct fps_bucket *k = &b->fps[s % FPS_BUCKETS];
		if (k->sec == s)
			n += k->n;
	}
	return (double)n / (double)full;
}

/* ---- running a batch ---- */

struct batch {
	int n;
	struct stream *s[ENG_BATCH_MAX];
	struct det_frame *f[ENG_BATCH_MAX];
	bool reset[ENG_BATCH_MAX];
	uint64_t seq[ENG_BATCH_MAX];     /* of delivered frames */
	int64_t latency_ns[ENG_BATCH_MAX]; /* capture → result of delivered frames */
};

static bool frame_fits(const struct eng_batcher *b, const struct det_frame *f)
{
	return f->width == b->in_w && f->height == b->in_h && f->channels == b->in_c &&
	       f->stride == (size_t)b->in_w * (size_t)b->in_c && f->data;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* The configured backend, with the test-only wrappers around it.  A
 * context that could not be opened is opened again here (the re-probe);
 * why it failed goes to why. */
static int run_primary(struct worker *w, int n, const uint8_t *const *in,
		       struct eng_state *const *st, bool *open_failed, char *why, size_t whylen)
{
	struct eng_batcher *b = w->b;
	*open_failed = false;
	if (!w->primary) {
		char err[256] = "";
		int rc = eng_ctx_create_opts(b->o.model, b->o.backend, &b->o.backend_opts,
					     b->o.threads, &w->primary, err, sizeof(err));
		if (rc < 0) {
			w->primary = NULL;
			*open_failed = true;
			snprintf(why, whylen, "open: %s", err[0] ? err : strerror(-rc));
			return rc;
		}
		log_info(TOPIC, "backend %s opened", b->backend_name);
	}
	if (b->o.test_delay_ms > 0)
		sleep_ms(b->o.test_delay_ms);
	int rc = b->o.test_fail ? -EIO : eng_run(w->primary, n, in, st, w->out);
	struct eng_backend_info info;
	if (eng_ctx_backend_info(w->primary, &info) == 0) {
		pthread_mutex_lock(&b->mu);
		b->dev = info;
		b->have_dev = true;
		pthread_mutex_unlock(&b->mu);
	}
	if (rc < 0)
		snprintf(why, whylen, "run failed: %s", strerror(-rc));
	return rc;
}

static struct det_result *make_result(const struct eng_batcher *b, const struct det_frame *f,
				      const struct eng_detections *d, double min_score,
				      const char *backend, int64_t t0, int64_t t1)
{
	int kept = 0;
	for (int i = 0; i < d->n && i < ENG_MAX_DETECTIONS; i++)
		if (d->d[i].score >= min_score)
			kept++;
	struct det_result *r = det_result_new(f, kept);
	if (!r)
		return NULL;
	int k = 0;
	for (int i = 0; i < d->n && i < ENG_MAX_DETECTIONS && k < kept; i++) {
		const struct eng_detection *e = &d->d[i];
		if (e->score < min_score)
			continue;
		struct det_object *o = &r->objects[k++];
		o->class_id = e->class_id;
		snprintf(o->label, sizeof(o->label), "%s", eng_model_label(b->o.model, e->class_id));
		o->score = e->score;
		memcpy(o->box_norm, e->box, sizeof(o->box_norm));
		det_object_map_box(o, &f->map, b->in_w, b->in_h, f->orig_width, f->orig_height);
	}
	r->t.infer_start_mono_ns = t0;
	r->t.infer_end_mono_ns = t1;
	size_t bl = strnlen(backend, sizeof(r->backend) - 1);
	memcpy(r->backend, backend, bl);
	r->backend[bl] = '\0';
	return r;
}

/* Runs the batch (without the lock) and delivers results; delivered frames
 * leave bt->f[] as NULL, the others stay for the caller to count as errors. */
static void run_batch(struct worker *w, struct batch *bt, int *delivered, int64_t *run_ns)
{
	struct eng_batcher *b = w->b;
	const uint8_t *in[ENG_BATCH_MAX];
	struct eng_state *st[ENG_BATCH_MAX];
	int idx[ENG_BATCH_MAX]; /* batch position of each run slot */
	int n = 0;
	*delivered = 0;
	*run_ns = 0;

	for (int i = 0; i < bt->n; i++) {
		if (!frame_fits(b, bt->f[i]))
			continue;
		if (bt->reset[i])
			eng_state_reset(bt->s[i]->state);
		in[n] = bt->f[i]->data;
		st[n] = bt->s[i]->state;
		idx[n++] = i;
	}
	if (n == 0)
		return;

	pthread_mutex_lock(&b->mu);
	double min_score = b->o.min_score;
	pthread_mutex_unlock(&b->mu);

	/* The one fallback path: a primary that is unhealthy (and not due for
	 * a probe), fails to open, fails the run or misses the deadline is
	 * reported to the health state; the batch then runs on cpu. */
	bool use_primary = eng_health_begin(b->health, det_mono_ns());
	const char *ran_on = b->backend_name;
	int64_t t0 = det_mono_ns(), t1;
	int rc = -EAGAIN;
	if (use_primary) {
		char why[160];
		bool open_failed;
		rc = run_primary(w, n, in, st, &open_failed, why, sizeof(why));
		t1 = det_mono_ns();
		int64_t ms = (t1 - t0) / 1000000;
		if (rc < 0) {
			eng_health_failed(b->health,
					  open_failed ? ENG_HEALTH_OPEN_FAILED : ENG_HEALTH_RUN_FAILED,
					  why, t1);
			/* A device that failed a run (timeout, error state) may still
			 * be busy with our buffers: drop the context so the re-probe
			 * opens the device afresh.  (test_fail keeps it: the failure
			 * is simulated above the backend.) */
			if (!open_failed && !b->primary_is_cpu && !b->o.test_fail) {
				eng_ctx_destroy(w->primary);
				w->primary = NULL;
			}
		} else if (b->o.deadline_ms > 0 && ms > b->o.deadline_ms) {
			/* the results are valid: keep them, but stop trusting the backend */
			snprintf(why, sizeof(why), "run took %lld ms > deadline %d ms",
				 (long long)ms, b->o.deadline_ms);
			eng_health_failed(b->health, ENG_HEALTH_DEADLINE, why, t1);
		} else {
			eng_health_ok(b->health);
		}
	}
	if (rc < 0) {
		/* Fallback: run the batch again on cpu.  Its recurrent states
		 * may hold what the failed run left; the next frames settle it. */
		t0 = det_mono_ns();
		rc = eng_run(w->cpu, n, in, st, w->out);
		ran_on = "cpu";
		eng_health_fallback(b->health);
	}
	t1 = det_mono_ns();
	*run_ns = t1 - t0;
	if (rc < 0) {
		log_error(TOPIC, "batch of %d failed on cpu too: %s", n, strerror(-rc));
		return;
	}
	for (int j = 0; j < n; j++) {
		struct det_frame *f = bt->f[idx[j]];
		struct det_result *r = make_result(b, f, &w->out[j], min_score, ran_on, t0, t1);
		if (!r)
			continue;
		int64_t cap = f->capture_mono_ns ? f->capture_mono_ns : f->enqueue_mono_ns;
		bt->latency_ns[idx[j]] = det_mono_ns() - cap;
		bt->seq[idx[j]] = f->seq;
		b->o.on_result(r, b->o.user);
		det_frame_unref(f);
		bt->f[idx[j]] = NULL; /* delivered */
		(*delivered)++;
	}
}

/* Under b->mu: frames that could join a batch now. */
static int ready_count(const struct eng_batcher *b, int *idle_streams, int64_t *oldest)
{
	int ready = 0, idle = 0;
	*oldest = INT64_MAX;
	for (int i = 0; i < b->n_streams; i++) {
		const struct stream *s = b->streams[i];
		if (s->in_flight)
			continue;
		idle++;
		if (s->slot) {
			ready++;
			if (s->slot_since_ns < *oldest)
				*oldest = s->slot_since_ns;
		}
	}
	*idle_streams = idle;
	return ready;
}

/* Under b->mu: take up to max_batch ready frames, round-robin from b->rr. */
static void take_batch(struct eng_batcher *b, struct batch *bt)
{
	bt->n = 0;
	int n = b->n_streams, last = -1;
	for (int k = 0; k < n && bt->n < b->o.max_batch; k++) {
		int i = (b->rr + k) % n;
		struct stream *s = b->streams[i];
		if (s->in_flight || !s->slot)
			continue;
		struct det_frame *f = s->slot;
		s->slot = NULL;
		s->in_flight = true;
		bool reset = s->gen_known && s->gen != f->stream_gen;
		if (reset)
			s->state_resets++;
		s->gen = f->stream_gen;
		s->gen_known = true;
		bt->s[bt->n] = s;
		bt->f[bt->n] = f;
		bt->reset[bt->n] = reset;
		bt->n++;
		last = i;
	}
	if (last >= 0)
		b->rr = (last + 1) % n;
	b->waiting -= bt->n;
	b->in_flight += bt->n;
}

/* Under b->mu: account a finished batch and release its streams. */
static void finish_batch(struct eng_batcher *b, struct batch *bt, int delivered, int64_t run_ns,
			 int64_t now)
{
	if (delivered > 0) {
		b->batches++;
		b->frames_run += (uint64_t)delivered;
		b->infer_ms[b->n_infer % INFER_RING] = (float)((double)run_ns / 1e6);
		b->n_infer++;
		b->results += (uint64_t)delivered;
		fps_add(b, now, (uint64_t)delivered);
	}
	for (int i = 0; i < bt->n; i++) {
		struct stream *s = bt->s[i];
		s->in_flight = false;
		b->in_flight--;
		if (bt->f[i]) {
			count_drop(b, s, ENG_DROP_ERROR);
		} else {
			s->results++;
			s->last_seq = bt->seq[i];
			b->latency_ms[b->n_latency % LATENCY_RING] =
				(float)((double)bt->latency_ns[i] / 1e6);
			b->n_latency++;
		}
		if (s->removed)
			stream_free(s);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct eng_batcher *b = w->b;
	struct batch bt;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		if (b->stopping && !b->drain)
			break;
		int idle;
		int64_t oldest;
		int ready = ready_count(b, &idle, &oldest);
		if (ready == 0) {
			if (b->stopping)
				break;
			pthread_cond_wait(&b->cv, &b->mu);
			continue;
		}
		/* Cut when full, when no other idle stream could add a frame
		 * by waiting, when stopping, or when the oldest waited enough. */
		int64_t now = det_mono_ns();
		int64_t due = oldest + (int64_t)b->o.max_wait_ms * 1000000LL;
		if (!(ready >= b->o.max_batch || ready == idle || b->stopping || now >= due)) {
			struct timespec ts = {.tv_sec = due / 1000000000LL,
					      .tv_nsec = due % 1000000000LL};
			pthread_cond_timedwait(&b->cv, &b->mu, &ts);
			continue;
		}
		take_batch(b, &bt);
		atomic_store(&w->busy_since_ns, det_mono_ns());
		pthread_mutex_unlock(&b->mu);

		int delivered;
		int64_t run_ns;
		run_batch(w, &bt, &delivered, &run_ns);
		atomic_store(&w->busy_since_ns, 0);
		struct det_frame *undelivered[ENG_BATCH_MAX];
		int n_und = 0;

		pthread_mutex_lock(&b->mu);
		finish_batch(b, &bt, delivered, run_ns, det_mono_ns());
		for (int i = 0; i < bt.n; i++)
			if (bt.f[i])
				undelivered[n_und++] = bt.f[i];
		pthread_mutex_unlock(&b->mu);
		for (int i = 0; i < n_und; i++)
			det_frame_unref(undelivered[i]);
		pthread_mutex_lock(&b->mu);
		pthread_cond_broadcast(&b->cv); /* its streams may be ready again */
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* ---- public API ---- */

int eng_batcher_create(const struct eng_batcher_opts *opts, struct eng_batcher **out, char *err,
		       size_t errlen)
{
	*out = NULL;
	if (!opts || !opts->model || !opts->on_result || opts->workers < 1 || opts->workers > 64 ||
	    opts->max_batch < 1 || opts->max_batch > ENG_BATCH_MAX || opts->max_wait_ms < 0 ||
	    opts->deadline_ms < 0 || opts->test_delay_ms < 0) {
		set_err(err, errlen, "%s", "batcher: invalid options");
		return -EINVAL;
	}
	struct eng_batcher *b = calloc(1, sizeof(*b));
	if (!b) {
		set_err(err, errlen, "%s", "batcher: out of memory");
		return -ENOMEM;
	}
	int rc;
	b->o = *opts;
	b->o.backend_opts.xclbin = NULL;
	if (opts->backend_opts.xclbin && !(b->xclbin = strdup(opts->backend_opts.xclbin))) {
		free(b);
		set_err(err, errlen, "%s", "batcher: out of memory");
		return -ENOMEM;
	}
	b->o.backend_opts.xclbin = b->xclbin;
	if (b->o.threads < 1)
		b->o.threads = 1;
	const struct eng_model_info *mi = eng_model_info(opts->model);
	b->in_w = mi->input_width;
	b->in_h = mi->input_height;
	b->in_c = mi->input_channels;
	const struct eng_backend_ops *cpu = eng_backend_find("cpu");
	if (!b->o.backend)
		b->o.backend = cpu;
	b->backend_name = eng_backend_name(b->o.backend);
	b->primary_is_cpu = b->o.backend == cpu || strcmp(b->backend_name, "cpu") == 0;
	char hname[64];
	snprintf(hname, sizeof(hname), "%s%s", b->backend_name,
		 opts->test_fail ? "+test-fail" : opts->test_delay_ms ? "+test-slow" : "");
	if (eng_health_create(hname, &b->health) < 0) {
		free(b->xclbin);
		free(b);
		set_err(err, errlen, "%s", "batcher: out of memory");
		return -ENOMEM;
	}
	b->start_ns = det_mono_ns();

	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);

	b->workers = calloc((size_t)opts->workers, sizeof(*b->workers));
	if (!b->workers) {
		rc = -ENOMEM;
		set_err(err, errlen, "%s", "batcher: out of memory");
		goto fail;
	}
	b->n_workers = opts->workers;
	for (int i = 0; i < b->n_workers; i++) {
		struct worker *w = &b->workers[i];
		w->b = b;
		w->out = calloc(ENG_BATCH_MAX, sizeof(*w->out));
		if (!w->out) {
			rc = -ENOMEM;
			set_err(err, errlen, "%s", "batcher: out of memory");
			goto fail;
		}
		if (b->primary_is_cpu) {
			rc = eng_ctx_create(opts->model, cpu, b->o.threads, &w->primary, err,
					    errlen);
			if (rc < 0)
				goto fail;
			w->cpu = w->primary;
			continue;
		}
		rc = eng_ctx_create(opts->model, cpu, b->o.threads, &w->cpu, err, errlen);
		if (rc < 0)
			goto fail;
		/* A device backend that cannot open (no card, wrong xclbin) is not
		 * fatal: the health path reports it and cpu serves until a probe
		 * opens it. */
		char why[256] = "";
		rc = eng_ctx_create_opts(opts->model, b->o.backend, &b->o.backend_opts,
					 b->o.threads, &w->primary, why, sizeof(why));
		if (rc < 0) {
			char line[200];
			snprintf(line, sizeof(line), "open: %s", why[0] ? why : strerror(-rc));
			w->primary = NULL;
			if (i == 0)
				eng_health_failed(b->health, ENG_HEALTH_OPEN_FAILED, line,
						  det_mono_ns());
			rc = 0;
		}
	}

	/* Workers must not take the daemon's signals: block them all while
	 * the threads are created (they inherit the mask). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < b->n_workers; i++) {
		rc = -pthread_create(&b->workers[i].thread, NULL, worker_main, &b->workers[i]);
		if (rc < 0) {
			set_err(err, errlen, "batcher: cannot start a worker: %s", strerror(-rc));
			break;
		}
		b->workers[i].started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	eng_batcher_destroy(b);
	return rc;
}

int64_t eng_batcher_worker_busy_ns(struct eng_batcher *b, int i, int64_t now_ns)
{
	if (!b || i < 0 || i >= b->n_workers)
		return 0;
	int64_t since = atomic_load(&b->workers[i].busy_since_ns);
	return since > 0 && now_ns > since ? now_ns - since : 0;
}

void eng_batcher_stop(struct eng_batcher *b, bool drain)
{
	if (!b)
		return;
	struct det_frame *drop[ENG_BATCHER_STREAMS_MAX];
	int n_drop = 0;
	pthread_mutex_lock(&b->mu);
	if (b->joined) {
		pthread_mutex_unlock(&b->mu);
		return;
	}
	if (!b->stopping) {
		b->stopping = true;
		b->drain = drain;
	}
	if (!b->drain) {
		for (int i = 0; i < b->n_streams; i++) {
			struct stream *s = b->streams[i];
			if (s->slot) {
				drop[n_drop++] = s->slot;
				s->slot = NULL;
				b->waiting--;
				count_drop(b, s, ENG_DROP_SHUTDOWN);
			}
		}
	}
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < n_drop; i++)
		det_frame_unref(drop[i]);

	for (int i = 0; i < b->n_workers; i++) {
		if (b->workers[i].started) {
			pthread_join(b->workers[i].thread, NULL);
			b->workers[i].started = false;
		}
	}

	/* Nothing can be waiting after a drain, but be exact about it. */
	n_drop = 0;
	pthread_mutex_lock(&b->mu);
	for (int i = 0; i < b->n_streams; i++) {
		struct stream *s = b->streams[i];
		if (s->slot) {
			drop[n_drop++] = s->slot;
			s->slot = NULL;
			b->waiting--;
			count_drop(b, s, ENG_DROP_SHUTDOWN);
		}
	}
	b->joined = true;
	pthread_mutex_unlock(&b->mu);
	for (int i = 0; i < n_drop; i++)
		det_frame_unref(drop[i]);
}

void eng_batcher_destroy(struct eng_batcher *b)
{
	if (!b)
		return;
	eng_batcher_stop(b, false);
	for (int i = 0; i < b->n_workers; i++) {
		struct worker *w = &b->workers[i];
		if (w->cpu != w->primary)
			eng_ctx_destroy(w->cpu);
		eng_ctx_destroy(w->primary);
		free(w->out);
	}
	free(b->workers);
	for (int i = 0; i < b->n_streams; i++)
		stream_free(b->streams[i]);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	eng_health_destroy(b->health);
	free(b->xclbin);
	free(b);
}

void eng_batcher_set_min_score(struct eng_batcher *b, double min_score)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	b->o.min_score = min_score;
	pthread_mutex_unlock(&b->mu);
}

int eng_batcher_add_stream(struct eng_batcher *b, const char *stream_id)
{
	if (!b || !stream_id || !stream_id[0] || strlen(stream_id) >= DET_STREAM_ID_MAX)
		return -EINVAL;
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	int rc = eng_state_create(b->o.model, &s->state);
	if (rc < 0) {
		free(s);
		return rc;
	}
	snprintf(s->id, sizeof(s->id), "%s", stream_id);
	pthread_mutex_lock(&b->mu);
	if (find_stream(b, stream_id) >= 0)
		rc = -EEXIST;
	else if (b->n_streams >= ENG_BATCHER_STREAMS_MAX)
		rc = -ENOSPC;
	else
		b->streams[b->n_streams++] = s;
	pthread_mutex_unlock(&b->mu);
	if (rc < 0)
		stream_free(s);
	return rc;
}

int eng_batcher_remove_stream(struct eng_batcher *b, const char *stream_id)
{
	if (!b || !stream_id)
		return -EINVAL;
	struct stream *gone = NULL;
	struct det_frame *drop = NULL;
	pthread_mutex_lock(&b->mu);
	int i = find_stream(b, stream_id);
	if (i < 0) {
		pthread_mutex_unlock(&b->mu);
		return -ENOENT;
	}
	struct stream *s = b->streams[i];
	memmove(&b->streams[i], &b->streams[i + 1],
		(size_t)(b->n_streams - i - 1) * sizeof(b->streams[0]));
	b->n_streams--;
	if (b->rr > i)
		b->rr--;
	if (b->n_streams == 0 || b->rr >= b->n_streams)
		b->rr = 0;
	if (s->slot) {
		drop = s->slot;
		s->slot = NULL;
		b->waiting--;
		count_drop(b, s, ENG_DROP_NO_STREAM);
	}
	if (s->in_flight)
		s->removed = true; /* the worker frees it when the frame is done */
	else
		gone = s;
	pthread_mutex_unlock(&b->mu);
	det_frame_unref(drop);
	stream_free(gone);
	return 0;
}

int eng_batcher_submit(struct eng_batcher *b, struct det_frame *frame)
{
	if (!b || !frame) {
		det_frame_unref(frame);
		return -EINVAL;
	}
	struct det_frame *old = NULL;
	int rc = 0;
	int64_t now = det_mono_ns();
	pthread_mutex_lock(&b->mu);
	int i = find_stream(b, frame->stream_id);
	if (i < 0) {
		count_drop(b, NULL, ENG_DROP_NO_STREAM);
		rc = -ENOENT;
		old = frame;
	} else if (b->stopping) {
		struct stream *s = b->streams[i];
		s->submitted++;
		b->submitted++;
		count_drop(b, s, ENG_DROP_SHUTDOWN);
		rc = -ESHUTDOWN;
		old = frame;
	} else {
		struct stream *s = b->streams[i];
		s->submitted++;
		b->submitted++;
		frame->enqueue_mono_ns = now;
		if (s->slot) {
			old = s->slot;
			count_drop(b, s, ENG_DROP_STALE);
		} else {
			s->slot_since_ns = now;
			b->waiting++;
		}
		s->slot = frame;
		pthread_cond_signal(&b->cv);
	}
	pthread_mutex_unlock(&b->mu);
	det_frame_unref(old);
	return rc;
}

int eng_batcher_stats(struct eng_batcher *b, struct eng_batcher_stats *st)
{
	if (!b || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	float *ri = malloc(sizeof(b->infer_ms)), *rl = malloc(sizeof(b->latency_ms));
	if (!ri || !rl) {
		free(ri);
		free(rl);
		return -ENOMEM;
	}
	uint64_t ni, nl;
	int64_t now = det_mono_ns();
	pthread_mutex_lock(&b->mu);
	st->batches = b->batches;
	st->frames_run = b->frames_run;
	st->mean_batch = b->batches ? (double)b->frames_run / (double)b->batches : 0;
	st->submitted = b->submitted;
	st->results = b->results;
	memcpy(st->drops, b->drops, sizeof(st->drops));
	st->queue_depth = b->waiting;
	st->in_flight = b->in_flight;
	st->n_streams = b->n_streams;
	st->primary_is_cpu = b->primary_is_cpu;
	st->have_device = b->have_dev;
	st->device = b->dev;
	st->fps = fps_rate(b, now);
	memcpy(ri, b->infer_ms, sizeof(b->infer_ms));
	memcpy(rl, b->latency_ms, sizeof(b->latency_ms));
	ni = b->n_infer;
	nl = b->n_latency;
	pthread_mutex_unlock(&b->mu);
	eng_health_snapshot(b->health, now, &st->primary);
	percentiles(ri, ni, INFER_RING, &st->infer_ms_p50, &st->infer_ms_p99);
	percentiles(rl, nl, LATENCY_RING, &st->latency_ms_p50, &st->latency_ms_p99);
	free(ri);
	free(rl);
	return 0;
}

static void snapshot(const struct stream *s, struct eng_stream_stats *st)
{
	memset(st, 0, sizeof(*st));
	memcpy(st->stream_id, s->id, sizeof(st->stream_id));
	st->submitted = s->submitted;
	st->results = s->results;
	memcpy(st->drops, s->drops, sizeof(st->drops));
	st->last_seq = s->last_seq;
	st->waiting = s->slot ? 1 : 0;
	st->in_flight = s->in_flight;
	st->state_resets = s->state_resets;
}

int eng_batcher_stream_stats(struct eng_batcher *b, const char *stream_id,
			     struct eng_stream_stats *st)
{
	if (!b || !stream_id || !st)
		return -EINVAL;
	pthread_mutex_lock(&b->mu);
	int i = find_stream(b, stream_id);
	if (i >= 0)
		snapshot(b->streams[i], st);
	pthread_mutex_unlock(&b->mu);
	return i >= 0 ? 0 : -ENOENT;
}

void eng_batcher_foreach_stream(struct eng_batcher *b,
				void (*fn)(const struct eng_stream_stats *st, void *user),
				void *user)
{
	if (!b || !fn)
		return;
	struct eng_stream_stats *all = NULL;
	pthread_mutex_lock(&b->mu);
	int n = b->n_streams;
	all = calloc((size_t)(n ? n : 1), sizeof(*all));
	if (all)
		for (int i = 0; i < n; i++)
			snapshot(b->streams[i], &all[i]);
	pthread_mutex_unlock(&b->mu);
	if (!all)
		return;
	for (int i = 0; i < n; i++)
		fn(&all[i], user);
	free(all);
}
