/*
 * metrics.h — a small Prometheus-style registry: counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4 for
 * GET /metrics.
 *
 * Owns: the families and their series.  Other modules feed it by metric name
 * and label pairs; families are declared once with metrics_define() (the
 * help text, the type and, for histograms, the bucket bounds).
 *
 * Threads: every function may be called from any thread (one mutex; the
 * lookup is a short linear scan, fine for the few dozen series detd has).
 * Collectors run on the thread that renders (the loop thread for /metrics):
 * they are for values cheaper to read at scrape time than to push (queue
 * depths, subscriber counts).
 */
#ifndef DETD_METRICS_H
#define DETD_METRICS_H

#include <stddef.h>

enum metrics_type { METRICS_COUNTER = 0, METRICS_GAUGE, METRICS_HISTOGRAM };

struct metrics;

struct metrics *metrics_create(void);
void metrics_destroy(struct metrics *m); /* NULL-safe */

/*
 * Declare a family.  name must match [a-zA-Z_:][a-zA-Z0-9_:]*; buckets (upper
 * bounds, ascending, +Inf implied) only for histograms.  Declaring the same
 * name again with the same type is a no-op.  0, -EINVAL, -EEXIST (other
 * type), -ENOMEM.
 */
int metrics_define(struct metrics *m, const char *name, enum metrics_type type,
		   const char *help, const double *buckets, size_t n_buckets);

/*
 * Update a series.  The variadic part is label name/value pairs ended by
 * NULL: metrics_counter_add(m, "detd_frames_dropped_total", 1, "stream",
 * "cam0", "reason", "queue_full", NULL).  At most 4 pairs.  Values are
 * escaped on output.  Undeclared names, wrong types: -EINVAL (and nothing
 * happens).
 */
int metrics_counter_add(struct metrics *m, const char *name, double v, ...)
	__attribute__((sentinel));
int metrics_gauge_set(struct metrics *m, const char *name, double v, ...)
	__attribute__((sentinel));
/* For collectors that mirror a cumulative count kept elsewhere: sets the
 * counter to v (a smaller v is a counter reset, which Prometheus handles). */
int metrics_counter_set(struct metrics *m, const char *name, double v, ...)
	__attribute__((sentinel));
int metrics_observe(struct metrics *m, const char *name, double v, ...)
	__attribute__((sentinel));
/* Drop every series of a family that has this label pair (a removed stream). */
void metrics_forget(struct metrics *m, const char *label, const char *value);

/* Called before each render (without the registry lock held). */
typedef void (*metrics_collect_fn)(struct metrics *m, void *ud);
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *ud);
void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn, void *ud);

/* The whole exposition as a malloc'd NUL-terminated string (*len without NUL). */
char *metrics_render(struct metrics *m, size_t *len);

#endif
