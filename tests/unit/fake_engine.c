/* fake_engine.c — test double of the engine for test_batcher (see fake_engine.h). */
#include "fake_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

struct eng_model {
	struct eng_model_info info;
};
struct eng_state {
	int frames;
};
struct eng_backend_ops {
	const char *name;
	bool fails;
	bool opens_on_demand; /* its context opens only while fake_set_device(true) */
};
struct eng_ctx {
	const struct eng_backend_ops *be;
};

static const struct eng_backend_ops be_cpu = {"cpu", false, false};
static const struct eng_backend_ops be_bad = {"bad", true, false};
static const struct eng_backend_ops be_dev = {"dev", false, true};
static const char *const be_names[] = {"cpu", "bad", "dev", NULL};

static struct eng_model model = {
	.info = {.name = "fake", .format = "tflite", .input_width = FAKE_W,
		 .input_height = FAKE_H, .input_channels = 3, .n_classes = 3,
		 .max_detections = 2},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool gate;
static int started, delay_ms;
static bool device_present;
static int open_tries;
static unsigned char log_bytes[FAKE_LOG_MAX];
static int n_log;
static int batch_sizes[FAKE_LOG_MAX];
static int n_batches;

struct eng_model *fake_model(void)
{
	return &model;
}

void fake_gate_hold(bool hold)
{
	pthread_mutex_lock(&mu);
	gate = hold;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

bool fake_wait_runs_started(int n)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&mu);
	int rc = 0;
	while (started < n && rc == 0)
		rc = pthread_cond_timedwait(&cv, &mu, &ts);
	bool ok = started >= n;
	pthread_mutex_unlock(&mu);
	return ok;
}

void fake_reset(void)
{
	pthread_mutex_lock(&mu);
	gate = false;
	started = 0;
	delay_ms = 0;
	device_present = false;
	open_tries = 0;
	n_log = 0;
	n_batches = 0;
	pthread_mutex_unlock(&mu);
}

void fake_set_delay_ms(int ms)
{
	delay_ms = ms;
}

void fake_set_device(bool present)
{
	pthread_mutex_lock(&mu);
	device_present = present;
	pthread_mutex_unlock(&mu);
}

int fake_open_tries(void)
{
	pthread_mutex_lock(&mu);
	int n = open_tries;
	pthread_mutex_unlock(&mu);
	return n;
}

int fake_log(unsigned char *bytes, int max)
{
	pthread_mutex_lock(&mu);
	int n = n_log < max ? n_log : max;
	memcpy(bytes, log_bytes, (size_t)n);
	pthread_mutex_unlock(&mu);
	return n;
}

int fake_batches(int *sizes, int max)
{
	pthread_mutex_lock(&mu);
	int n = n_batches < max ? n_batches : max;
	memcpy(sizes, batch_sizes, (size_t)n * sizeof(int));
	pthread_mutex_unlock(&mu);
	return n;
}

const struct eng_model_info *eng_model_info(const struct eng_model *m)
{
	return &m->info;
}

const char *eng_model_label(const struct eng_model *m, int class_id)
{
	(void)m;
	static const char *const names[] = {"sedan", "pickup_suv_van", "large_veh_bus"};
	return class_id >= 0 && class_id < 3 ? names[class_id] : "other";
}

int eng_state_create(const struct eng_model *m, struct eng_state **out)
{
	(void)m;
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void eng_state_reset(struct eng_state *s)
{
	if (s)
		s->frames = 0;
}

void eng_state_destroy(struct eng_state *s)
{
	free(s);
}

const struct eng_backend_ops *eng_backend_find(const char *name)
{
	if (!name || strcmp(name, "cpu") == 0)
		return &be_cpu;
	if (strcmp(name, "bad") == 0)
		return &be_bad;
	if (strcmp(name, "dev") == 0)
		return &be_dev;
	return NULL;
}

const char *eng_backend_name(const struct eng_backend_ops *b)
{
	return b ? b->name : "cpu";
}

const char *const *eng_backend_names(void)
{
	return be_names;
}

int eng_ctx_create_opts(const struct eng_model *m, const struct eng_backend_ops *backend,
			const struct eng_backend_opts *bo, int threads, struct eng_ctx **out,
			char *err, size_t errlen)
{
	(void)bo;
	return eng_ctx_create(m, backend, threads, out, err, errlen);
}

int eng_ctx_create(const struct eng_model *m, const struct eng_backend_ops *backend, int threads,
		   struct eng_ctx **out, char *err, size_t errlen)
{
	(void)m;
	(void)threads;
	*out = NULL;
	if (backend && backend != &be_cpu) {
		pthread_mutex_lock(&mu);
		open_tries++;
		bool present = device_present || !backend->opens_on_demand;
		pthread_mutex_unlock(&mu);
		if (!present) {
			snprintf(err, errlen, "fake: no device");
			return -ENODEV;
		}
	}
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->be = backend ? backend : &be_cpu;
	return 0;
}

void eng_ctx_destroy(struct eng_ctx *c)
{
	free(c);
}

int eng_ctx_backend_info(const struct eng_ctx *c, struct eng_backend_info *out)
{
	(void)c;
	(void)out;
	return -ENOTSUP; /* the fake backends have no device */
}

int eng_run(struct eng_ctx *c, int n, const uint8_t *const *inputs, struct eng_state *const *states,
	    struct eng_detections *out)
{
	pthread_mutex_lock(&mu);
	started++;
	pthread_cond_broadcast(&cv);
	while (gate)
		pthread_cond_wait(&cv, &mu);
	if (!c->be->fails) {
		if (n_batches < FAKE_LOG_MAX)
			batch_sizes[n_batches++] = n;
		for (int i = 0; i < n && n_log < FAKE_LOG_MAX; i++)
			log_bytes[n_log++] = inputs[i][0];
	}
	int d = delay_ms;
	pthread_mutex_unlock(&mu);
	if (d > 0) {
		struct timespec ts = {.tv_sec = d / 1000, .tv_nsec = (long)(d % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (c->be->fails)
		return -EIO;
	for (int i = 0; i < n; i++) {
		int frames = 0;
		if (states[i])
			frames = ++states[i]->frames;
		out[i].n = 2;
		out[i].d[0] = (struct eng_detection){.box = {0.1f, 0.2f, 0.5f, 0.6f},
						    .class_id = frames, .score = 0.9f};
		out[i].d[1] = (struct eng_detection){.box = {0, 0, 1, 1}, .class_id = 0,
						    .score = 0.01f};
	}
	return 0;
}
