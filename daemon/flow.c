/*
 * flow.c — the data path of the daemon (see flow.h): owns the model, the
 * batcher and its workers, the pipeline sources and the result queue.
 *
 * Threads: flow_* on the loop; frame_cb on GStreamer streaming threads
 * (submit + optional dump); worker_result on inference workers (push to the
 * queue); loop_result on the loop.
 */
#include "flow.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "engine.h"
#include "log.h"
#include "pipeline.h"
#include "results.h"

#define TOPIC "flow"

struct flow {
	struct flow_opts o;
	char *dump_dir;
	struct eng_model *model;
	const struct eng_model_info *mi;
	char backend_name[32];
	int workers, max_batch; /* copied: the config may be replaced by a reload */
	int deadline_ms;
	int64_t stall_limit_ns; /* flow_watchdog_arm(); 0: no watchdog */
	struct eng_batcher *batcher;
	struct results *results;
	struct pipe_sources *sources;
	atomic_bool threads_stopped; /* may be set by the stopper thread */
	bool stopped;
};

/* ---- printing ---- */

void flow_print_text(const struct det_result *r, FILE *to)
{
	for (int i = 0; i < r->n_objects; i++) {
		const struct det_object *o = &r->objects[i];
		fprintf(to, "%s #%" PRIu64 " %s %.2f [%d,%d %d,%d]\n", r->stream_id, r->seq,
			o->label, o->score, (int)(o->box_px[0] + 0.5f), (int)(o->box_px[1] + 0.5f),
			(int)(o->box_px[2] + 0.5f), (int)(o->box_px[3] + 0.5f));
	}
	fflush(to);
}

static struct json_object *floats(const float *v, int n)
{
	struct json_object *a = json_object_new_array_ext(n);
	for (int i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_double((double)v[i]));
	return a;
}

void flow_print_json(const struct det_result *r, FILE *to)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "stream", json_object_new_string(r->stream_id));
	json_object_object_add(o, "seq", json_object_new_uint64(r->seq));
	json_object_object_add(o, "pts_ns", json_object_new_int64(r->pts_ns));
	json_object_object_add(o, "width", json_object_new_int(r->orig_width));
	json_object_object_add(o, "height", json_object_new_int(r->orig_height));
	json_object_object_add(o, "backend", json_object_new_string(r->backend));
	json_object_object_add(o, "capture_ns", json_object_new_int64(r->t.capture_mono_ns));
	json_object_object_add(o, "infer_end_ns", json_object_new_int64(r->t.infer_end_mono_ns));
	struct json_object *objs = json_object_new_array_ext(r->n_objects);
	for (int i = 0; i < r->n_objects; i++) {
		const struct det_object *d = &r->objects[i];
		struct json_object *j = json_object_new_object();
		json_object_object_add(j, "class_id", json_object_new_int(d->class_id));
		json_object_object_add(j, "label", json_object_new_string(d->label));
		json_object_object_add(j, "score", json_object_new_double((double)d->score));
		json_object_object_add(j, "box_norm", floats(d->box_norm, 4));
		json_object_object_add(j, "box_px", floats(d->box_px, 4));
		json_object_array_add(objs, j);
	}
	json_object_object_add(o, "objects", objs);
	fprintf(to, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(to);
	json_object_put(o);
}

/* ---- the path of a frame ---- */

static void dump_frame(const char *dir, const struct det_frame *fr)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s-%" PRIu32 "-%" PRIu64 ".rgb", dir, fr->stream_id,
		 fr->stream_gen, fr->seq);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_warn(TOPIC, "dump %s: %s", path, strerror(errno));
		return;
	}
	size_t off = 0;
	while (off < fr->size) {
		ssize_t n = write(fd, fr->data + off, fr->size - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
}

/* GStreamer streaming thread. */
static void frame_cb(struct det_frame *fr, void *ud)
{
	struct flow *f = ud;
	if (f->dump_dir)
		dump_frame(f->dump_dir, fr); /* debug only: file I/O on the streaming thread */
	eng_batcher_submit(f->batcher, fr);
}

/* Pipeline thread. */
static void state_cb(const char *id, enum pipe_state old_state, enum pipe_state new_state,
		     const char *error, void *ud)
{
	struct flow *f = ud;
	if (f->o.on_state)
		f->o.on_state(id, (int)old_state, (int)new_state, error, f->o.ud);
}

/* Worker thread. */
static void worker_result(struct det_result *r, void *ud)
{
	struct flow *f = ud;
	results_push(f->results, r);
}

/* Loop thread. */
static void loop_result(struct det_result *r, void *ud)
{
	struct flow *f = ud;
	if (f->o.print == FLOW_PRINT_TEXT)
		flow_print_text(r, stdout);
	else if (f->o.print == FLOW_PRINT_JSON)
		flow_print_json(r, stdout);
	if (f->o.on_result)
		f->o.on_result(r, f->o.ud);
}

/* ---- lifecycle ---- */

int flow_check_model(const struct cfg *cfg, struct cfg_errors *errs)
{
	enum eng_format fmt;
	struct eng_model *m = NULL;
	char err[CFG_ERROR_LEN - 32] = "";

	if (eng_format_from_name(cfg->model.format, &fmt) < 0) {
		cfg_errors_add(errs, "model.format: unknown format '%s'", cfg->model.format);
		return -EINVAL;
	}
	struct eng_model_opts mo = {.path = cfg->model.path, .labels_path = cfg->model.labels,
				    .format = fmt};
	int rc = eng_model_load(&mo, &m, err, sizeof(err));
	eng_model_destroy(m);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		/* The engine says which file failed by its prefix. */
		const char *key = "model.path", *msg = err;
		if (strncmp(err, "labels: ", 8) == 0) {
			key = "model.labels";
			msg += 8;
		} else if (strncmp(err, "model: ", 7) == 0) {
			msg += 7;
		}
		cfg_errors_add(errs, "%s: %s", key, msg[0] ? msg : strerror(-rc));
		return -EINVAL;
	}
	return 0;
}

int flow_create(const struct flow_opts *opts, struct flow **out, char *err, size_t errlen)
{
	*out = NULL;
	const struct cfg *cfg = opts->cfg;
	struct flow *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	int rc;
	f->o = *opts;
	f->o.cfg = NULL; /* valid during create only (a reload frees it) */
	f->workers = cfg->engine.workers;
	f->max_batch = cfg->engine.max_batch;
	f->deadline_ms = cfg->engine.deadline_ms;
	if (opts->dump_dir && !(f->dump_dir = strdup(opts->dump_dir))) {
		rc = -ENOMEM;
		goto fail;
	}

	enum eng_format fmt;
	rc = eng_format_from_name(cfg->model.format, &fmt);
	if (rc < 0) {
		snprintf(err, errlen, "model.format: unknown format '%s'", cfg->model.format);
		goto fail;
	}
	struct eng_model_opts mo = {.path = cfg->model.path, .labels_path = cfg->model.labels,
				    .format = fmt};
	rc = eng_model_load(&mo, &f->model, err, errlen);
	if (rc < 0)
		goto fail;
	f->mi = eng_model_info(f->model);
	log_info(TOPIC, "model %s: %s %dx%dx%d, %d classes, %.3f GMAC", f->mi->name,
		 f->mi->format, f->mi->input_width, f->mi->input_height, f->mi->input_channels,
		 f->mi->n_classes, f->mi->gmac);

	const struct eng_backend_ops *be = eng_backend_find(cfg->engine.backend);
	if (!be) {
		snprintf(err, errlen, "engine.backend: unknown backend \"%s\"",
			 cfg->engine.backend ? cfg->engine.backend : "");
		rc = -EINVAL;
		goto fail;
	}
	snprintf(f->backend_name, sizeof(f->backend_name), "%s", eng_backend_name(be));
	struct eng_batcher_opts bo = {
		.model = f->model, .backend = be, .workers = cfg->engine.workers,
		.threads = cfg->engine.threads, .max_batch = cfg->engine.max_batch,
		.max_wait_ms = cfg->engine.max_wait_ms, .deadline_ms = cfg->engine.deadline_ms,
		.min_score = cfg->engine.min_score, .test_delay_ms = cfg->engine.test_delay_ms,
		.test_fail = cfg->engine.test_fail, .on_result = worker_result, .user = f,
		.backend_opts = {.device = cfg->engine.xrt.device,
				 .xclbin = cfg->engine.xrt.xclbin,
				 .timeout_ms = cfg->engine.xrt.timeout_ms}};
	rc = results_create(opts->base, opts->result_queue ? opts->result_queue : 256, loop_result,
			    f, &f->results);
	if (rc < 0) {
		snprintf(err, errlen, "result queue: %s", strerror(-rc));
		goto fail;
	}
	rc = eng_batcher_create(&bo, &f->batcher, err, errlen);
	if (rc < 0)
		goto fail;

	struct pipe_callbacks cb = {.on_frame = frame_cb, .on_state = state_cb, .ud = f};
	rc = pipe_sources_create(f->mi->input_width, f->mi->input_height, &cb, &f->sources);
	if (rc < 0) {
		snprintf(err, errlen, "pipeline: %s", strerror(-rc));
		goto fail;
	}
	for (size_t i = 0; i < cfg->n_streams; i++) {
		rc = flow_stream_add(f, &cfg->streams[i]);
		if (rc < 0) {
			snprintf(err, errlen, "streams[%zu] (%s): %s", i, cfg->streams[i].id,
				 strerror(-rc));
			goto fail;
		}
	}
	log_info(TOPIC, "%zu streams, backend %s, %d workers, batch %d, wait %d ms",
		 cfg->n_streams, f->backend_name, cfg->engine.workers, cfg->engine.max_batch,
		 cfg->engine.max_wait_ms);
	*out = f;
	return 0;
fail:
	flow_destroy(f);
	return rc;
}

void flow_stop_threads(struct flow *f)
{
	if (!f || f->threads_stopped)
		return;
	f->threads_stopped = true;
	/* 1. sources to NULL: no new frames (joins the GStreamer threads) */
	pipe_sources_destroy(f->sources);
	f->sources = NULL;
	/* 2. workers finish the batches they hold and are joined; frames still
	 * waiting in slots are stale by now and counted as shutdown drops, so a
	 * slow backend delays the stop by one batch at most */
	eng_batcher_stop(f->batcher, false);
}

void flow_stop(struct flow *f)
{
	if (!f || f->stopped)
		return;
	flow_stop_threads(f);
	f->stopped = true;
	/* 3. what the workers produced reaches the loop's consumers */
	results_flush(f->results);
}

void flow_destroy(struct flow *f)
{
	if (!f)
		return;
	flow_stop(f);
	eng_batcher_destroy(f->batcher);
	results_destroy(f->results);
	eng_model_destroy(f->model);
	free(f->dump_dir);
	free(f);
}

int flow_stream_add(struct flow *f, const struct cfg_stream *cfg)
{
	if (f->stopped || f->threads_stopped)
		return -ESHUTDOWN;
	int rc = eng_batcher_add_stream(f->batcher, cfg->id);
	if (rc < 0)
		return rc;
	rc = pipe_sources_add(f->sources, cfg);
	if (rc < 0) {
		eng_batcher_remove_stream(f->batcher, cfg->id);
		return rc;
	}
	return 0;
}

int flow_stream_remove(struct flow *f, const char *id)
{
	if (f->stopped || f->threads_stopped)
		return -ESHUTDOWN;
	int rc = pipe_sources_remove(f->sources, id);
	/* After pipe_sources_remove() returns no frame of id arrives any more. */
	int rc2 = eng_batcher_remove_stream(f->batcher, id);
	results_forget(f->results, id);
	return rc < 0 ? rc : rc2;
}

void flow_reload_engine(struct flow *f, const struct cfg_engine *e)
{
	eng_batcher_set_min_score(f->batcher, e->min_score);
}

struct det_result *flow_latest(struct flow *f, const char *stream_id)
{
	struct results_stream rs;
	if (results_stream(f->results, stream_id, &rs) < 0)
		return NULL;
	return rs.latest;
}

void flow_input_size(const struct flow *f, int *w, int *h)
{
	*w = f->mi->input_width;
	*h = f->mi->input_height;
}

/* ---- /status ---- */

static struct json_object *drops_json(const uint64_t *drops)
{
	struct json_object *d = json_object_new_object();
	for (int r = 0; r < ENG_DROP__COUNT; r++)
		json_object_object_add(d, eng_drop_reason_name((enum eng_drop_reason)r),
				       json_object_new_uint64(drops[r]));
	return d;
}

static struct json_object *dbl(double v)
{
	/* three decimals are plenty for rates and milliseconds */
	char buf[32];
	snprintf(buf, sizeof(buf), "%.3f", v);
	return json_object_new_double_s(v, buf);
}

/* ---- worker liveness (service watchdog) ---- */

void flow_watchdog_arm(struct flow *f, uint64_t watchdog_usec)
{
	/* Half the interval leaves systemd's other half for the last ping to
	 * age out, so a hung worker is killed within about 1.5 x WatchdogSec.
	 * A batch may legitimately run up to deadline_ms on the primary backend
	 * and then once more on cpu: never call that hung. */
	int64_t limit = (int64_t)(watchdog_usec / 2) * 1000;
	int64_t by_deadline = 2LL * f->deadline_ms * 1000000LL;
	f->stall_limit_ns = watchdog_usec && by_deadline > limit ? by_deadline : limit;
}

int flow_check_alive(struct flow *f, char *why, size_t whylen)
{
	int64_t now = det_mono_ns(), worst = 0;
	int worst_i = -1;
	if (f->stall_limit_ns <= 0 || atomic_load(&f->threads_stopped))
		return 0;
	for (int i = 0; i < f->workers; i++) {
		int64_t busy = eng_batcher_worker_busy_ns(f->batcher, i, now);
		if (busy > f->stall_limit_ns && busy > worst) {
			worst = busy;
			worst_i = i;
		}
	}
	if (worst_i < 0)
		return 0;
	if (why && whylen)
		snprintf(why, whylen, "inference worker %d busy for %lld ms (limit %lld ms)", worst_i,
			 (long long)(worst / 1000000), (long long)(f->stall_limit_ns / 1000000));
	return -ETIMEDOUT;
}

static struct json_object *liveness_json(struct flow *f)
{
	struct json_object *o = json_object_new_object(), *a = json_object_new_array();
	int64_t now = det_mono_ns();
	bool stalled = false;
	for (int i = 0; i < f->workers; i++) {
		int64_t busy = eng_batcher_worker_busy_ns(f->batcher, i, now);
		stalled |= f->stall_limit_ns > 0 && busy > f->stall_limit_ns;
		json_object_array_add(a, json_object_new_int64(busy / 1000000));
	}
	json_object_object_add(o, "busy_ms", a);
	json_object_object_add(o, "stall_limit_ms",
			       f->stall_limit_ns ? json_object_new_int64(f->stall_limit_ns / 1000000)
						 : NULL);
	json_object_object_add(o, "stalled", json_object_new_boolean(stalled));
	return o;
}

void flow_status_engine(struct json_object *o, void *ud)
{
	struct flow *f = ud;
	struct eng_batcher_stats st;
	if (eng_batcher_stats(f->batcher, &st) < 0)
		return;
	json_object_object_add(o, "backend", json_object_new_string(f->backend_name));
	json_object_object_add(o, "model", json_object_new_string(f->mi->name));
	json_object_object_add(o, "model_format", json_object_new_string(f->mi->format));
	struct json_object *in = json_object_new_array_ext(3);
	json_object_array_add(in, json_object_new_int(f->mi->input_width));
	json_object_array_add(in, json_object_new_int(f->mi->input_height));
	json_object_array_add(in, json_object_new_int(f->mi->input_channels));
	json_object_object_add(o, "input", in);
	json_object_object_add(o, "workers", json_object_new_int(f->workers));
	json_object_object_add(o, "max_batch", json_object_new_int(f->max_batch));
	json_object_object_add(o, "batches", json_object_new_uint64(st.batches));
	json_object_object_add(o, "frames", json_object_new_uint64(st.frames_run));
	json_object_object_add(o, "mean_batch_size", dbl(st.mean_batch));
	json_object_object_add(o, "inference_ms_p50", dbl(st.infer_ms_p50));
	json_object_object_add(o, "inference_ms_p99", dbl(st.infer_ms_p99));
	json_object_object_add(o, "latency_ms_p50", dbl(st.latency_ms_p50));
	json_object_object_add(o, "latency_ms_p99", dbl(st.latency_ms_p99));
	json_object_object_add(o, "fps", dbl(st.fps));
	json_object_object_add(o, "submitted", json_object_new_uint64(st.submitted));
	json_object_object_add(o, "results", json_object_new_uint64(st.results));
	json_object_object_add(o, "drops", drops_json(st.drops));
	json_object_object_add(o, "queue_depth", json_object_new_int(st.queue_depth));
	json_object_object_add(o, "in_flight", json_object_new_int(st.in_flight));

	struct json_object *h = json_object_new_object();
	json_object_object_add(h, "name", json_object_new_string(st.primary.name));
	json_object_object_add(h, "healthy", json_object_new_boolean(st.primary.healthy));
	json_object_object_add(h, "failures", json_object_new_uint64(st.primary.failures));
	json_object_object_add(h, "deadline_misses",
			       json_object_new_uint64(st.primary.deadline_misses));
	json_object_object_add(h, "fallback_runs", json_object_new_uint64(st.primary.fallback_runs));
	json_object_object_add(h, "open_failures", json_object_new_uint64(st.primary.open_failures));
	json_object_object_add(h, "probes", json_object_new_uint64(st.primary.probes));
	if (!st.primary.healthy)
		json_object_object_add(h, "next_probe_ms",
				       json_object_new_int64(st.primary.next_probe_ms));
	if (st.primary.last_error[0])
		json_object_object_add(h, "last_error",
				       json_object_new_string(st.primary.last_error));
	if (st.have_device) {
		/* what the device backend says about itself and where nodes run */
		const struct eng_backend_info *di = &st.device;
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "backend", json_object_new_string(di->backend));
		json_object_object_add(d, "name", json_object_new_string(di->device));
		json_object_object_add(d, "xclbin_uuid", json_object_new_string(di->xclbin_uuid));
		json_object_object_add(d, "runs", json_object_new_uint64(di->runs));
		json_object_object_add(d, "failures", json_object_new_uint64(di->failures));
		json_object_object_add(d, "ms_per_run", dbl(di->ms_per_run));
		struct json_object *pl = json_object_new_object();
		json_object_object_add(pl, "device_nodes", json_object_new_int(di->nodes_device));
		json_object_object_add(pl, "cpu_nodes", json_object_new_int(di->nodes_cpu));
		json_object_object_add(pl, "kernel_calls_per_frame",
				       json_object_new_int(di->blocks));
		json_object_object_add(d, "placement", pl);
		json_object_object_add(h, "device", d);
	}
	json_object_object_add(o, "backend_health", h);
	json_object_object_add(o, "worker_liveness", liveness_json(f));

	struct results_stats rs;
	results_stats(f->results, &rs);
	struct json_object *q = json_object_new_object();
	json_object_object_add(q, "capacity", json_object_new_uint64(rs.capacity));
	json_object_object_add(q, "depth", json_object_new_uint64(rs.depth));
	json_object_object_add(q, "high_water", json_object_new_uint64(rs.high_water));
	json_object_object_add(q, "delivered", json_object_new_uint64(rs.delivered));
	json_object_object_add(q, "dropped_full", json_object_new_uint64(rs.dropped_full));
	json_object_object_add(o, "result_queue", q);
}

static struct json_object *batcher_json(const struct eng_stream_stats *ss)
{
	struct json_object *b = json_object_new_object();
	json_object_object_add(b, "submitted", json_object_new_uint64(ss->submitted));
	json_object_object_add(b, "results", json_object_new_uint64(ss->results));
	json_object_object_add(b, "last_seq", json_object_new_uint64(ss->last_seq));
	json_object_object_add(b, "waiting", json_object_new_int(ss->waiting));
	json_object_object_add(b, "in_flight", json_object_new_boolean(ss->in_flight));
	json_object_object_add(b, "state_resets", json_object_new_uint64(ss->state_resets));
	json_object_object_add(b, "drops", drops_json(ss->drops));
	return b;
}

static void stream_stats_add(const struct eng_stream_stats *ss, void *ud)
{
	struct json_object *section = ud;
	struct json_object *s = NULL;
	if (!json_object_object_get_ex(section, ss->stream_id, &s)) {
		s = json_object_new_object();
		json_object_object_add(section, ss->stream_id, s);
	}
	json_object_object_add(s, "batcher", batcher_json(ss));
}

static struct json_object *results_json(const struct results_stream *rs)
{
	struct json_object *q = json_object_new_object();
	json_object_object_add(q, "delivered", json_object_new_uint64(rs->delivered));
	json_object_object_add(q, "dropped_full", json_object_new_uint64(rs->dropped_full));
	if (rs->latest) {
		json_object_object_add(q, "last_seq", json_object_new_uint64(rs->latest->seq));
		json_object_object_add(q, "last_objects", json_object_new_int(rs->latest->n_objects));
	}
	return q;
}

static void stream_results_add(const struct results_stream *rs, void *ud)
{
	struct json_object *section = ud, *s = NULL;
	if (!json_object_object_get_ex(section, rs->stream_id, &s))
		return; /* a stream gone from the pipeline */
	json_object_object_add(s, "result_queue", results_json(rs));
}

void flow_describe_stream(struct flow *f, const char *id, struct json_object *entry)
{
	struct pipe_stream_stats *ps = malloc(sizeof(*ps));
	if (ps && f->sources && pipe_sources_stats(f->sources, id, ps) == 0) {
		struct json_object *p = pipe_stats_to_json(ps);
		if (p)
			json_object_object_add(entry, "pipeline", p);
	}
	free(ps);
	struct eng_stream_stats ss;
	if (eng_batcher_stream_stats(f->batcher, id, &ss) == 0)
		json_object_object_add(entry, "batcher", batcher_json(&ss));
	struct results_stream rs;
	if (results_stream(f->results, id, &rs) == 0)
		json_object_object_add(entry, "result_queue", results_json(&rs));
}

void flow_status_streams(struct json_object *o, void *ud)
{
	struct flow *f = ud;
	if (f->sources) {
		struct pipe_stream_stats *all = NULL;
		size_t n = 0;
		if (pipe_sources_snapshot(f->sources, &all, &n) == 0) {
			for (size_t i = 0; i < n; i++) {
				struct json_object *s = json_object_new_object();
				struct json_object *p = pipe_stats_to_json(&all[i]);
				if (p)
					json_object_object_add(s, "pipeline", p);
				json_object_object_add(o, all[i].id, s);
			}
			free(all);
		}
	}
	eng_batcher_foreach_stream(f->batcher, stream_stats_add, o);
	results_foreach(f->results, stream_results_add, o);
}
