/*
 * metrics.c — see metrics.h.  Families are kept in declaration order so the
 * exposition is stable; series in creation order inside a family.  Label
 * sets are stored already rendered ({a="x",b="y"}) because that is both the
 * lookup key and what the output needs.
 */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABEL_PAIRS 4

struct series {
	char *labels; /* "" or "a=\"x\",b=\"y\"" (without braces) */
	double value; /* counter / gauge; histogram: sum */
	unsigned long long count;  /* histogram */
	unsigned long long *le;    /* histogram: cumulative per bucket is computed at render */
};

struct family {
	char *name;
	char *help;
	enum metrics_type type;
	double *buckets;
	size_t n_buckets;
	struct series *series;
	size_t n_series, cap_series;
};

struct collector {
	metrics_collect_fn fn;
	void *ud;
};

struct metrics {
	pthread_mutex_t lock;
	struct family *fam;
	size_t n_fam, cap_fam;
	struct collector *col;
	size_t n_col, cap_col;
};

/* A growable string with sticky failure: render is all or nothing. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Prometheus number formatting: integers plainly, +Inf/-Inf/NaN by name. */
static void sb_num(struct sbuf *b, double v)
{
	if (isnan(v))
		sb_str(b, "NaN");
	else if (isinf(v))
		sb_str(b, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		sb_printf(b, "%.0f", v);
	else
		sb_printf(b, "%.9g", v);
}

static bool valid_name(const char *s)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
			  (p != s && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

struct metrics *metrics_create(void)
{
	struct metrics *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

static void series_free(struct series *s)
{
	free(s->labels);
	free(s->le);
}

void metrics_destroy(struct metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_fam; i++) {
		struct family *f = &m->fam[i];
		for (size_t j = 0; j < f->n_series; j++)
			series_free(&f->series[j]);
		free(f->series);
		free(f->name);
		free(f->help);
		free(f->buckets);
	}
	free(m->fam);
	free(m->col);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static struct family *find_family(struct metrics *m, const char *name)
{
	for (size_t i = 0; i < m->n_fam; i++)
		if (strcmp(m->fam[i].name, name) == 0)
			return &m->fam[i];
	return NULL;
}

int metrics_define(struct metrics *m, const char *name, enum metrics_type type,
		   const char *help, const double *buckets, size_t n_buckets)
{
	if (!m || !valid_name(name) || (type == METRICS_HISTOGRAM && (!buckets || !n_buckets)))
		return -EINVAL;
	for (size_t i = 1; type == METRICS_HISTOGRAM && i < n_buckets; i++)
		if (!(buckets[i] > buckets[i - 1]))
			return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&m->lock);
	struct family *f = find_family(m, name);
	if (f) {
		rc = f->type == type ? 0 : -EEXIST;
		goto out;
	}
	if (m->n_fam == m->cap_fam) {
		size_t cap = m->cap_fam ? m->cap_fam * 2 : 16;
		struct family *p = realloc(m->fam, cap * sizeof(*p));
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		m->fam = p;
		m->cap_fam = cap;
	}
	f = &m->fam[m->n_fam];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	if (type == METRICS_HISTOGRAM) {
		f->buckets = malloc(n_buckets * sizeof(double));
		if (f->buckets)
			memcpy(f->buckets, buckets, n_buckets * sizeof(double));
		f->n_buckets = n_buckets;
	}
	if (!f->name || !f->help || (type == METRICS_HISTOGRAM && !f->buckets)) {
		free(f->name);
		free(f->help);
		free(f->buckets);
		rc = -ENOMEM;
		goto out;
	}
	m->n_fam++;
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Render label pairs from ap into buf; escapes \, " and newline as the format requires. */
static int render_labels(char *buf, size_t cap, va_list ap)
{
	struct sbuf b = {0};
	int pairs = 0;
	for (;;) {
		const char *k = va_arg(ap, const char *);
		if (!k)
			break;
		const char *v = va_arg(ap, const char *);
		if (!v || !valid_name(k) || ++pairs > MAX_LABEL_PAIRS) {
			free(b.p);
			return -EINVAL;
		}
		if (b.len)
			sb_str(&b, ",");
		sb_str(&b, k);
		sb_str(&b, "=\"");
		for (const char *p = v; *p; p++) {
			if (*p == '\\')
				sb_str(&b, "\\\\");
			else if (*p == '"')
				sb_str(&b, "\\\"");
			else if (*p == '\n')
				sb_str(&b, "\\n");
			else
				sb_add(&b, p, 1);
		}
		sb_str(&b, "\"");
	}
	int rc = 0;
	if (b.oom)
		rc = -ENOMEM;
	else if (b.len >= cap)
		rc = -E2BIG;
	else
		memcpy(buf, b.p ? b.p : "", b.len + 1);
	free(b.p);
	return rc;
}

static struct series *get_series(struct family *f, const char *labels)
{
	for (size_t i = 0; i < f->n_series; i++)
		if (strcmp(f->series[i].labels, labels) == 0)
			return &f->series[i];
	if (f->n_series == f->cap_series) {
		size_t cap = f->cap_series ? f->cap_series * 2 : 8;
		struct series *p = realloc(f->series, cap * sizeof(*p));
		if (!p)
			return NULL;
		f->series = p;
		f->cap_series = cap;
	}
	struct series *s = &f->series[f->n_series];
	memset(s, 0, sizeof(*s));
	s->labels = strdup(labels);
	if (f->type == METRICS_HISTOGRAM)
		s->le = calloc(f->n_buckets, sizeof(*s->le));
	if (!s->labels || (f->type == METRICS_HISTOGRAM && !s->le)) {
		series_free(s);
		return NULL;
	}
	f->n_series++;
	return s;
}

static int update(struct metrics *m, const char *name, enum metrics_type type, double v,
		  va_list ap, bool set)
{
	char labels[512];
	if (!m || !name)
		return -EINVAL;
	int rc = render_labels(labels, sizeof(labels), ap);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&m->lock);
	struct family *f = find_family(m, name);
	struct series *s = NULL;
	if (!f || f->type != type) {
		rc = -EINVAL;
		goto out;
	}
	s = get_series(f, labels);
	if (!s) {
		rc = -ENOMEM;
		goto out;
	}
	switch (type) {
	case METRICS_COUNTER:
		if (set)
			s->value = v >= 0 ? v : 0;
		else if (v > 0) /* counters only go up */
			s->value += v;
		break;
	case METRICS_GAUGE:
		s->value = v;
		break;
	case METRICS_HISTOGRAM:
		s->value += v;
		s->count++;
		for (size_t i = 0; i < f->n_buckets; i++)
			if (v <= f->buckets[i]) {
				s->le[i]++;
				break;
			}
		break;
	}
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int metrics_counter_add(struct metrics *m, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	int rc = update(m, name, METRICS_COUNTER, v, ap, false);
	va_end(ap);
	return rc;
}

int metrics_counter_set(struct metrics *m, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	int rc = update(m, name, METRICS_COUNTER, v, ap, true);
	va_end(ap);
	return rc;
}

int metrics_gauge_set(struct metrics *m, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	int rc = update(m, name, METRICS_GAUGE, v, ap, false);
	va_end(ap);
	return rc;
}

int metrics_observe(struct metrics *m, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	int rc = update(m, name, METRICS_HISTOGRAM, v, ap, false);
	va_end(ap);
	return rc;
}

void metrics_forget(struct metrics *m, const char *label, const char *value)
{
	char needle[512];
	if (!m || !label || !value)
		return;
	/* value escaping as in render_labels; ids are plain [A-Za-z0-9_.-] anyway */
	snprintf(needle, sizeof(needle), "%s=\"%s\"", label, value);
	size_t nl = strlen(needle);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_fam; i++) {
		struct family *f = &m->fam[i];
		for (size_t j = 0; j < f->n_series;) {
			const char *l = f->series[j].labels;
			const char *hit = strstr(l, needle);
			/* a whole pair: starts the set or follows a comma */
			if (hit && (hit == l || hit[-1] == ',') && (hit[nl] == '\0' || hit[nl] == ',')) {
				series_free(&f->series[j]);
				memmove(&f->series[j], &f->series[j + 1],
					(f->n_series - j - 1) * sizeof(struct series));
				f->n_series--;
			} else {
				j++;
			}
		}
	}
	pthread_mutex_unlock(&m->lock);
}

int metrics_add_collector(struct metrics *m, metrics_collect_fn fn, void *ud)
{
	if (!m || !fn)
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&m->lock);
	if (m->n_col == m->cap_col) {
		size_t cap = m->cap_col ? m->cap_col * 2 : 4;
		struct collector *p = realloc(m->col, cap * sizeof(*p));
		if (!p) {
			rc = -ENOMEM;
			goto out;
		}
		m->col = p;
		m->cap_col = cap;
	}
	m->col[m->n_col++] = (struct collector){fn, ud};
out:
	pthread_mutex_unlock(&m->lock);
	return rc;
}

void metrics_remove_collector(struct metrics *m, metrics_collect_fn fn, void *ud)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_col; i++)
		if (m->col[i].fn == fn && m->col[i].ud == ud) {
			memmove(&m->col[i], &m->col[i + 1], (m->n_col - i - 1) * sizeof(*m->col));
			m->n_col--;
			break;
		}
	pthread_mutex_unlock(&m->lock);
}

static void render_sample(struct sbuf *b, const char *name, const char *suffix,
			  const char *labels, const char *extra, double v)
{
	sb_str(b, name);
	sb_str(b, suffix);
	if (*labels || extra) {
		sb_str(b, "{");
		sb_str(b, labels);
		if (extra) {
			if (*labels)
				sb_str(b, ",");
			sb_str(b, extra);
		}
		sb_str(b, "}");
	}
	sb_str(b, " ");
	sb_num(b, v);
	sb_str(b, "\n");
}

char *metrics_render(struct metrics *m, size_t *len)
{
	if (!m)
		return NULL;
	/* Collectors take the lock themselves (they call metrics_gauge_set), so
	 * copy the list and run them unlocked. */
	pthread_mutex_lock(&m->lock);
	size_t n_col = m->n_col;
	struct collector *col = n_col ? malloc(n_col * sizeof(*col)) : NULL;
	if (col)
		memcpy(col, m->col, n_col * sizeof(*col));
	else
		n_col = 0;
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n_col; i++)
		col[i].fn(m, col[i].ud);
	free(col);

	struct sbuf b = {0};
	sb_str(&b, "");
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->n_fam; i++) {
		struct family *f = &m->fam[i];
		static const char *const tn[] = {"counter", "gauge", "histogram"};
		sb_printf(&b, "# HELP %s ", f->name);
		for (const char *p = f->help; *p; p++) {
			if (*p == '\\')
				sb_str(&b, "\\\\");
			else if (*p == '\n')
				sb_str(&b, "\\n");
			else
				sb_add(&b, p, 1);
		}
		sb_printf(&b, "\n# TYPE %s %s\n", f->name, tn[f->type]);
		for (size_t j = 0; j < f->n_series; j++) {
			struct series *s = &f->series[j];
			if (f->type != METRICS_HISTOGRAM) {
				render_sample(&b, f->name, "", s->labels, NULL, s->value);
				continue;
			}
			unsigned long long cum = 0;
			char le[64];
			for (size_t k = 0; k < f->n_buckets; k++) {
				cum += s->le[k];
				snprintf(le, sizeof(le), "le=\"%.9g\"", f->buckets[k]);
				render_sample(&b, f->name, "_bucket", s->labels, le, (double)cum);
			}
			render_sample(&b, f->name, "_bucket", s->labels, "le=\"+Inf\"",
				      (double)s->count);
			render_sample(&b, f->name, "_sum", s->labels, NULL, s->value);
			render_sample(&b, f->name, "_count", s->labels, NULL, (double)s->count);
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	if (len)
		*len = b.len;
	return b.p;
}
