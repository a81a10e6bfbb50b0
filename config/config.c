/*
 * config.c — the JSON config loader: file → validated struct cfg.
 *
 * Table driven: every key of every section is one row of a table (JSON type,
 * range, default, reloadable, flags) and one generic routine applies a table
 * to a JSON object and a struct.  The same tables serve defaults, copying a
 * stream, diffing two configs and keeping non-reloadable fields on reload,
 * so a new key is one new row.  Unknown keys are errors.  Parsing never stops
 * at the first problem: every error is collected with its JSON path.
 *
 * Owns nothing global; runs on whatever thread calls it (the main loop).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <json-c/json.h>

#include "detd-build.h"

/* ---- errors ---------------------------------------------------------------- */

void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
{
	va_list ap;
	if (!e)
		return;
	if (e->n >= CFG_MAX_ERRORS) {
		e->dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(e->msg[e->n], CFG_ERROR_LEN, fmt, ap);
	va_end(ap);
	e->n++;
}

void cfg_errors_print(const struct cfg_errors *e, const char *prefix, FILE *to)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->n; i++)
		fprintf(to, "%s%s%s\n", prefix ? prefix : "", prefix ? ": " : "", e->msg[i]);
	if (e->dropped)
		fprintf(to, "%s%s(%zu more errors not shown)\n", prefix ? prefix : "",
			prefix ? ": " : "", e->dropped);
}

/* ---- enum name tables ------------------------------------------------------ */

static const char *const kind_names[] = {"uri", "v4l2", "gst", "test", NULL};
static const char *const transport_names[] = {"auto", "tcp", "udp", NULL};
static const char *const aspect_names[] = {"stretch", "letterbox", NULL};
static const char *const format_names[] = {"auto", "tflite", "codenet", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};

const char *cfg_source_kind_name(enum cfg_source_kind k)
{
	return (unsigned)k < 4 ? kind_names[k] : "?";
}
const char *cfg_rtsp_transport_name(enum cfg_rtsp_transport t)
{
	return (unsigned)t < 3 ? transport_names[t] : "?";
}
const char *cfg_aspect_name(enum cfg_aspect a)
{
	return (unsigned)a < 2 ? aspect_names[a] : "?";
}

/* ---- the tables ------------------------------------------------------------- */

enum key_type {
	T_BOOL,
	T_INT,    /* int */
	T_SIZE,   /* size_t, from a JSON integer */
	T_DOUBLE, /* double, from a JSON number */
	T_STRING, /* char *, heap */
	T_ENUM,   /* enum (int) from one of names[] */
	T_SENUM,  /* char * restricted to names[] */
	T_MODE,   /* int from an octal string "0660" */
	T_OBJECT, /* a nested section, parsed by its own row of sections[] */
	T_STRLIST, /* struct cfg_strlist from an array of non-empty strings */
};

enum key_flags {
	F_RELOAD = 1 << 0,   /* a SIGHUP reload applies it */
	F_MIN_EXCL = 1 << 1, /* range (min, max] instead of [min, max] */
	F_ZERO_OK = 1 << 2,  /* 0 allowed besides the range (means "off"/"unlimited") */
	F_REQUIRED = 1 << 3,
	F_NULLABLE = 1 << 4, /* JSON null allowed: string stays NULL */
	F_PATH = 1 << 5,     /* relative path: resolve against the config's directory */
	F_URI = 1 << 6,      /* like F_PATH, but only without a scheme; becomes file:// */
	F_IDENT = 1 << 7,    /* [A-Za-z0-9_.-]{1,63} */
};

struct key {
	const char *name;
	enum key_type type;
	size_t off;
	unsigned flags;
	double min, max;
	double def_num;
	const char *def_str;
	const char *const *names;
};

#define NUMK(n, t, st, f, fl, lo, hi, d)                                                           \
	{                                                                                          \
		.name = n, .type = t, .off = offsetof(st, f), .flags = fl, .min = lo, .max = hi,   \
		.def_num = d                                                                       \
	}
#define STRK(n, t, st, f, fl, d, nm)                                                               \
	{                                                                                          \
		.name = n, .type = t, .off = offsetof(st, f), .flags = fl, .def_str = d,           \
		.names = nm                                                                        \
	}

#define ENUMK(n, st, f, fl, d, nm)                                                                  \
	{                                                                                          \
		.name = n, .type = T_ENUM, .off = offsetof(st, f), .flags = fl, .def_num = d,      \
		.names = nm                                                                        \
	}

static const struct key log_keys[] = {
	STRK("level", T_SENUM, struct cfg_log, level, F_RELOAD, "info", level_names),
};

static const struct key model_keys[] = {
	STRK("path", T_STRING, struct cfg_model, path, F_REQUIRED | F_PATH, NULL, NULL),
	STRK("labels", T_STRING, struct cfg_model, labels, F_NULLABLE | F_PATH, NULL, NULL),
	STRK("format", T_SENUM, struct cfg_model, format, 0, "auto", format_names),
};

static const struct key engine_keys[] = {
	STRK("backend", T_STRING, struct cfg_engine, backend, F_IDENT, "cpu", NULL),
	NUMK("workers", T_INT, struct cfg_engine, workers, 0, 1, 16, 1),
	NUMK("threads", T_INT, struct cfg_engine, threads, 0, 1, 64, 1),
	NUMK("max_batch", T_INT, struct cfg_engine, max_batch, 0, 1, 64, 4),
	NUMK("max_wait_ms", T_INT, struct cfg_engine, max_wait_ms, 0, 0, 10000, 10),
	NUMK("deadline_ms", T_INT, struct cfg_engine, deadline_ms, 0, 0, 600000, 0),
	NUMK("min_score", T_DOUBLE, struct cfg_engine, min_score, F_RELOAD, 0, 1, 0.5),
	NUMK("test_delay_ms", T_INT, struct cfg_engine, test_delay_ms, 0, 0, 60000, 0),
	NUMK("test_fail", T_BOOL, struct cfg_engine, test_fail, 0, 0, 1, 0),
	{.name = "xrt", .type = T_OBJECT},
};

/* engine.xrt: the FPGA device and its bitstream (backends "xrt", "xrt-sim"). */
static const struct key xrt_keys[] = {
	NUMK("device", T_INT, struct cfg_xrt, device, 0, 0, 63, 0),
	STRK("xclbin", T_STRING, struct cfg_xrt, xclbin, F_NULLABLE | F_PATH, NULL, NULL),
	NUMK("timeout_ms", T_INT, struct cfg_xrt, timeout_ms, 0, 1, 60000, 1000),
};

/* Backends this build has (the engine's table says the same at run time). */
static const char *const backend_names[] = {
	"cpu",
	"xrt-sim",
#if DETD_HAVE_XRT
	"xrt",
#endif
	NULL,
};

static const struct key http_keys[] = {
	NUMK("enabled", T_BOOL, struct cfg_http, enabled, 0, 0, 1, 1),
	STRK("address", T_STRING, struct cfg_http, address, 0, "127.0.0.1", NULL),
	NUMK("port", T_INT, struct cfg_http, port, 0, 0, 65535, 8080),
	NUMK("allow_mutations", T_BOOL, struct cfg_http, allow_mutations, F_RELOAD, 0, 1, 0),
	STRK("token", T_STRING, struct cfg_http, token, F_RELOAD | F_NULLABLE, NULL, NULL),
	NUMK("max_body_bytes", T_SIZE, struct cfg_http, max_body_bytes, 0, 256, 64 << 20, 1 << 20),
	NUMK("max_header_bytes", T_SIZE, struct cfg_http, max_header_bytes, 0, 512, 1 << 20, 8192),
	NUMK("max_viewers", T_INT, struct cfg_http, max_viewers, F_RELOAD, 0, 256, 8),
	NUMK("max_viewer_fps", T_DOUBLE, struct cfg_http, max_viewer_fps, F_RELOAD | F_MIN_EXCL, 0,
	     30, 5),
	NUMK("allow_gst_streams", T_BOOL, struct cfg_http, allow_gst_streams, F_RELOAD, 0, 1, 0),
	NUMK("max_connections", T_INT, struct cfg_http, max_connections, 0, 1, 65536, 256),
	NUMK("max_connections_per_ip", T_INT, struct cfg_http, max_connections_per_ip, 0, 1, 65536,
	     32),
	NUMK("header_timeout_s", T_DOUBLE, struct cfg_http, header_timeout_s, F_MIN_EXCL, 0, 3600,
	     10),
	NUMK("idle_timeout_s", T_DOUBLE, struct cfg_http, idle_timeout_s, F_MIN_EXCL, 0, 3600, 30),
};

static const struct key ipc_keys[] = {
	NUMK("enabled", T_BOOL, struct cfg_ipc, enabled, 0, 0, 1, 1),
	STRK("path", T_STRING, struct cfg_ipc, path, F_PATH, "/run/detd/detd.sock", NULL),
	NUMK("mode", T_MODE, struct cfg_ipc, mode, 0, 0, 0777, 0660),
	STRK("group", T_STRING, struct cfg_ipc, group, F_NULLABLE, NULL, NULL),
	NUMK("max_clients", T_INT, struct cfg_ipc, max_clients, F_RELOAD, 1, 4096, 64),
	NUMK("client_buffer_bytes", T_SIZE, struct cfg_ipc, client_buffer_bytes, F_RELOAD, 4096,
	     1 << 30, 1 << 20),
	NUMK("client_hard_limit_bytes", T_SIZE, struct cfg_ipc, client_hard_limit_bytes, F_RELOAD,
	     4096, 1 << 30, 4 << 20),
	NUMK("slow_client_timeout_s", T_DOUBLE, struct cfg_ipc, slow_client_timeout_s,
	     F_RELOAD | F_MIN_EXCL, 0, 3600, 10),
	NUMK("replay_ring", T_INT, struct cfg_ipc, replay_ring, 0, 0, 4096, 64),
};

#define LISTK(n, st, f, fl, maxn)                                                                  \
	{                                                                                          \
		.name = n, .type = T_STRLIST, .off = offsetof(st, f), .flags = fl, .max = maxn     \
	}

/* Broker and identity need a restart (a new session); what is published reloads. */
static const struct key mqtt_keys[] = {
	NUMK("enabled", T_BOOL, struct cfg_mqtt, enabled, 0, 0, 1, 0),
	STRK("broker", T_STRING, struct cfg_mqtt, broker, 0, "mqtt://127.0.0.1:1883", NULL),
	STRK("ca_file", T_STRING, struct cfg_mqtt, ca_file, F_NULLABLE | F_PATH, NULL, NULL),
	STRK("cert_file", T_STRING, struct cfg_mqtt, cert_file, F_NULLABLE | F_PATH, NULL, NULL),
	STRK("key_file", T_STRING, struct cfg_mqtt, key_file, F_NULLABLE | F_PATH, NULL, NULL),
	STRK("username", T_STRING, struct cfg_mqtt, username, F_NULLABLE, NULL, NULL),
	STRK("password_file", T_STRING, struct cfg_mqtt, password_file, F_NULLABLE | F_PATH, NULL,
	     NULL),
	STRK("client_id", T_STRING, struct cfg_mqtt, client_id, F_NULLABLE | F_IDENT, NULL, NULL),
	STRK("topic_prefix", T_STRING, struct cfg_mqtt, topic_prefix, F_NULLABLE, NULL, NULL),
	NUMK("qos", T_INT, struct cfg_mqtt, qos, 0, 0, 1, 0),
	NUMK("keepalive_s", T_INT, struct cfg_mqtt, keepalive_s, 0, 5, 3600, 30),
	NUMK("reconnect_min_s", T_DOUBLE, struct cfg_mqtt, reconnect_min_s, F_MIN_EXCL, 0, 600, 1),
	NUMK("reconnect_max_s", T_DOUBLE, struct cfg_mqtt, reconnect_max_s, F_MIN_EXCL, 0, 3600,
	     30),
	NUMK("queue_messages", T_SIZE, struct cfg_mqtt, queue_messages, 0, 1, 1000000, 1000),
	NUMK("queue_bytes", T_SIZE, struct cfg_mqtt, queue_bytes, 0, 4096, 1 << 30, 8 << 20),
	LISTK("streams", struct cfg_mqtt, streams, F_RELOAD | F_IDENT, CFG_MAX_STREAMS),
	LISTK("labels", struct cfg_mqtt, labels, F_RELOAD, 256),
	NUMK("min_score", T_DOUBLE, struct cfg_mqtt, min_score, F_RELOAD, 0, 1, 0),
	NUMK("only_with_objects", T_BOOL, struct cfg_mqtt, only_with_objects, F_RELOAD, 0, 1, 0),
	NUMK("stats_interval_s", T_DOUBLE, struct cfg_mqtt, stats_interval_s,
	     F_RELOAD | F_MIN_EXCL | F_ZERO_OK, 0.1, 86400, 30),
	NUMK("snapshot_interval_s", T_DOUBLE, struct cfg_mqtt, snapshot_interval_s,
	     F_RELOAD | F_MIN_EXCL | F_ZERO_OK, 0.5, 86400, 0),
	NUMK("ha_discovery", T_BOOL, struct cfg_mqtt, ha_discovery, 0, 0, 1, 0),
	STRK("ha_prefix", T_STRING, struct cfg_mqtt, ha_prefix, 0, "homeassistant", NULL),
};

/* Stream keys are all reloadable: the sources module restarts just that stream. */
static const struct key stream_keys[] = {
	STRK("id", T_STRING, struct cfg_stream, id, F_REQUIRED | F_IDENT | F_RELOAD, NULL, NULL),
	ENUMK("type", struct cfg_stream, kind, F_RELOAD, CFG_SRC_URI, kind_names),
	STRK("uri", T_STRING, struct cfg_stream, uri, F_RELOAD | F_URI, NULL, NULL),
	STRK("device", T_STRING, struct cfg_stream, device, F_RELOAD, NULL, NULL),
	STRK("caps", T_STRING, struct cfg_stream, caps, F_RELOAD | F_NULLABLE, NULL, NULL),
	STRK("pipeline", T_STRING, struct cfg_stream, pipeline, F_RELOAD, NULL, NULL),
	STRK("pattern", T_STRING, struct cfg_stream, pattern, F_RELOAD, NULL, NULL),
	ENUMK("rtsp_transport", struct cfg_stream, rtsp_transport, F_RELOAD, CFG_RTSP_AUTO,
	      transport_names),
	NUMK("latency_ms", T_INT, struct cfg_stream, latency_ms, F_RELOAD, 0, 10000, 200),
	NUMK("fps", T_DOUBLE, struct cfg_stream, fps, F_RELOAD | F_MIN_EXCL | F_ZERO_OK, 0, 120, 0),
	NUMK("loop", T_BOOL, struct cfg_stream, loop, F_RELOAD, 0, 1, 0),
	ENUMK("aspect", struct cfg_stream, aspect, F_RELOAD, CFG_ASPECT_STRETCH, aspect_names),
	NUMK("stall_timeout_s", T_DOUBLE, struct cfg_stream, stall_timeout_s,
	     F_RELOAD | F_MIN_EXCL, 0, 3600, 10),
	NUMK("backoff_initial_s", T_DOUBLE, struct cfg_stream, backoff_initial_s,
	     F_RELOAD | F_MIN_EXCL, 0, 600, 1),
	NUMK("backoff_max_s", T_DOUBLE, struct cfg_stream, backoff_max_s, F_RELOAD | F_MIN_EXCL, 0,
	     3600, 30),
	NUMK("enabled", T_BOOL, struct cfg_stream, enabled, F_RELOAD, 0, 1, 1),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct section {
	const char *name;
	const struct key *keys;
	size_t n_keys;
	size_t off; /* of the section struct inside struct cfg */
};

static const struct section sections[] = {
	{"log", log_keys, N(log_keys), offsetof(struct cfg, log)},
	{"model", model_keys, N(model_keys), offsetof(struct cfg, model)},
	{"engine", engine_keys, N(engine_keys), offsetof(struct cfg, engine)},
	{"engine.xrt", xrt_keys, N(xrt_keys), offsetof(struct cfg, engine.xrt)},
	{"http", http_keys, N(http_keys), offsetof(struct cfg, http)},
	{"ipc", ipc_keys, N(ipc_keys), offsetof(struct cfg, ipc)},
	{"mqtt", mqtt_keys, N(mqtt_keys), offsetof(struct cfg, mqtt)},
};

/* ---- field access ------------------------------------------------------------ */

#define FIELD(base, k, T) ((T *)((char *)(base) + (k)->off))
#define CFIELD(base, k, T) ((const T *)((const char *)(base) + (k)->off))

static void set_default(void *base, const struct key *k)
{
	switch (k->type) {
	case T_BOOL:
		*FIELD(base, k, bool) = k->def_num != 0;
		break;
	case T_INT:
	case T_MODE:
	case T_ENUM:
		*FIELD(base, k, int) = (int)k->def_num;
		break;
	case T_SIZE:
		*FIELD(base, k, size_t) = (size_t)k->def_num;
		break;
	case T_DOUBLE:
		*FIELD(base, k, double) = k->def_num;
		break;
	case T_STRING:
	case T_SENUM:
		/* strdup failing leaves NULL; the caller checks required strings */
		*FIELD(base, k, char *) = k->def_str ? strdup(k->def_str) : NULL;
		break;
	case T_OBJECT:
		break;
	case T_STRLIST:
		*FIELD(base, k, struct cfg_strlist) = (struct cfg_strlist){0};
		break;
	}
}

static void strlist_free(struct cfg_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct cfg_strlist){0};
}

bool cfg_strlist_has(const struct cfg_strlist *l, const char *s)
{
	for (size_t i = 0; l && s && i < l->n; i++)
		if (strcmp(l->v[i], s) == 0)
			return true;
	return false;
}

static void free_fields(void *base, const struct key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (keys[i].type == T_STRING || keys[i].type == T_SENUM) {
			char **p = FIELD(base, &keys[i], char *);
			free(*p);
			*p = NULL;
		} else if (keys[i].type == T_STRLIST) {
			strlist_free(FIELD(base, &keys[i], struct cfg_strlist));
		}
	}
}

static bool field_equal(const void *a, const void *b, const struct key *k)
{
	switch (k->type) {
	case T_BOOL:
		return *CFIELD(a, k, bool) == *CFIELD(b, k, bool);
	case T_INT:
	case T_MODE:
	case T_ENUM:
		return *CFIELD(a, k, int) == *CFIELD(b, k, int);
	case T_SIZE:
		return *CFIELD(a, k, size_t) == *CFIELD(b, k, size_t);
	case T_DOUBLE:
		return *CFIELD(a, k, double) == *CFIELD(b, k, double);
	case T_STRING:
	case T_SENUM: {
		const char *x = *CFIELD(a, k, char *), *y = *CFIELD(b, k, char *);
		if (!x || !y)
			return x == y;
		return strcmp(x, y) == 0;
	}
	case T_OBJECT:
		return true; /* its keys are compared through their own section */
	case T_STRLIST: {
		const struct cfg_strlist *x = CFIELD(a, k, struct cfg_strlist),
					 *y = CFIELD(b, k, struct cfg_strlist);
		if (x->n != y->n)
			return false;
		for (size_t i = 0; i < x->n; i++)
			if (strcmp(x->v[i], y->v[i]) != 0)
				return false;
		return true;
	}
	}
	return false;
}

/* Copy one field src → dst (dst's old string is freed).  0 or -ENOMEM. */
static int field_copy(void *dst, const void *src, const struct key *k)
{
	if (k->type == T_STRING || k->type == T_SENUM) {
		const char *s = *CFIELD(src, k, char *);
		char *d = NULL;
		if (s && !(d = strdup(s)))
			return -ENOMEM;
		free(*FIELD(dst, k, char *));
		*FIELD(dst, k, char *) = d;
		return 0;
	}
	if (k->type == T_OBJECT)
		return 0;
	if (k->type == T_STRLIST) {
		const struct cfg_strlist *sl = CFIELD(src, k, struct cfg_strlist);
		struct cfg_strlist d = {0};
		if (sl->n && !(d.v = calloc(sl->n, sizeof(*d.v))))
			return -ENOMEM;
		for (; d.n < sl->n; d.n++) {
			if (!(d.v[d.n] = strdup(sl->v[d.n]))) {
				strlist_free(&d);
				return -ENOMEM;
			}
		}
		strlist_free(FIELD(dst, k, struct cfg_strlist));
		*FIELD(dst, k, struct cfg_strlist) = d;
		return 0;
	}
	size_t sz = k->type == T_BOOL	? sizeof(bool)
		    : k->type == T_SIZE	? sizeof(size_t)
		    : k->type == T_DOUBLE ? sizeof(double)
					  : sizeof(int);
	memcpy((char *)dst + k->off, (const char *)src + k->off, sz);
	return 0;
}

/* ---- parsing helpers ------------------------------------------------------------ */

struct pctx {
	struct cfg_errors *errs;
	const char *base_dir; /* NULL: relative paths stay as they are */
	bool oom;
};

static const char *json_type_word(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
		return "a non-integer number";
	case json_type_int:
		return "an integer";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "?";
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%g", v);
}

static void range_error(struct pctx *p, const char *path, const struct key *k, const char *what)
{
	char lo[32], hi[32];
	fmt_num(lo, sizeof(lo), k->min);
	fmt_num(hi, sizeof(hi), k->max);
	cfg_errors_add(p->errs, "%s: must be %s in %s%s, %s]%s", path, what,
		       (k->flags & F_MIN_EXCL) ? "(" : "[", lo, hi,
		       (k->flags & F_ZERO_OK) ? " or 0 (off)" : "");
}

static bool in_range(const struct key *k, double v)
{
	if ((k->flags & F_ZERO_OK) && v == 0)
		return true;
	if ((k->flags & F_MIN_EXCL) ? !(v > k->min) : !(v >= k->min))
		return false;
	return v <= k->max;
}

static bool is_ident(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

static bool has_scheme(const char *s)
{
	/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
	if (!isalpha((unsigned char)s[0]))
		return false;
	for (const char *c = s; *c; c++) {
		if (*c == ':')
			return c[1] == '/';
		if (!isalnum((unsigned char)*c) && *c != '+' && *c != '-' && *c != '.')
			return false;
	}
	return false;
}

/* Resolve a relative path against base_dir; returns a new string or NULL (ENOMEM). */
static char *resolve_path(const char *base_dir, const char *s, bool as_uri)
{
	char *out = NULL, cwd[4096];
	int r;
	if (!base_dir && s[0] != '/')
		base_dir = getcwd(cwd, sizeof(cwd)); /* NULL on error: kept relative */
	if (s[0] == '/' || !base_dir)
		r = as_uri ? asprintf(&out, "file://%s", s) : asprintf(&out, "%s", s);
	else
		r = as_uri ? asprintf(&out, "file://%s/%s", base_dir, s)
			   : asprintf(&out, "%s/%s", base_dir, s);
	return r < 0 ? NULL : out;
}

static int parse_mode(const char *s, int *out)
{
	char *end;
	if (!*s || strlen(s) > 4)
		return -EINVAL;
	for (const char *c = s; *c; c++)
		if (*c < '0' || *c > '7')
			return -EINVAL;
	long v = strtol(s, &end, 8);
	if (*end || v < 0 || v > 0777)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static void enum_error(struct pctx *p, const char *path, const char *const *names)
{
	char list[160] = "";
	size_t len = 0;
	for (size_t i = 0; names[i]; i++) {
		int w = snprintf(list + len, sizeof(list) - len, "%s\"%s\"", i ? ", " : "",
				 names[i]);
		if (w < 0 || (size_t)w >= sizeof(list) - len)
			break;
		len += (size_t)w;
	}
	cfg_errors_add(p->errs, "%s: must be one of %s", path, list);
}

/* Parse one value into its field.  The field already holds its default. */
static void parse_value(struct pctx *p, void *base, const struct key *k, struct json_object *v,
			const char *path)
{
	enum json_type t = json_object_get_type(v);

	if (t == json_type_null && (k->flags & F_NULLABLE)) {
		char **sp = FIELD(base, k, char *);
		free(*sp);
		*sp = NULL;
		return;
	}
	switch (k->type) {
	case T_BOOL:
		if (t != json_type_boolean) {
			cfg_errors_add(p->errs, "%s: must be a boolean (true or false), not %s",
				       path, json_type_word(v));
			return;
		}
		*FIELD(base, k, bool) = json_object_get_boolean(v);
		return;
	case T_INT:
	case T_SIZE: {
		if (t != json_type_int) {
			range_error(p, path, k, "an integer");
			return;
		}
		errno = 0;
		int64_t x = json_object_get_int64(v);
		if (errno == EINVAL || !in_range(k, (double)x)) {
			range_error(p, path, k, "an integer");
			return;
		}
		if (k->type == T_INT)
			*FIELD(base, k, int) = (int)x;
		else
			*FIELD(base, k, size_t) = (size_t)x;
		return;
	}
	case T_DOUBLE: {
		if (t != json_type_int && t != json_type_double) {
			range_error(p, path, k, "a number");
			return;
		}
		double x = json_object_get_double(v);
		if (!isfinite(x) || !in_range(k, x)) {
			range_error(p, path, k, "a number");
			return;
		}
		*FIELD(base, k, double) = x;
		return;
	}
	case T_MODE: {
		int m;
		if (t != json_type_string || parse_mode(json_object_get_string(v), &m) < 0) {
			cfg_errors_add(p->errs,
				       "%s: must be an octal permission string such as \"0660\"",
				       path);
			return;
		}
		*FIELD(base, k, int) = m;
		return;
	}
	case T_OBJECT:
		return; /* its section row parses it and reports a non-object */
	case T_ENUM:
	case T_SENUM: {
		const char *const *names = k->names;
		if (t != json_type_string) {
			enum_error(p, path, names);
			return;
		}
		const char *s = json_object_get_string(v);
		for (int i = 0; names[i]; i++) {
			if (strcmp(names[i], s) == 0) {
				if (k->type == T_ENUM) {
					*FIELD(base, k, int) = i;
				} else {
					char *d = strdup(s);
					if (!d) {
						p->oom = true;
						return;
					}
					free(*FIELD(base, k, char *));
					*FIELD(base, k, char *) = d;
				}
				return;
			}
		}
		enum_error(p, path, names);
		return;
	}
	case T_STRING: {
		if (t != json_type_string) {
			cfg_errors_add(p->errs, "%s: must be a string%s, not %s", path,
				       (k->flags & F_NULLABLE) ? " or null" : "",
				       json_type_word(v));
			return;
		}
		const char *s = json_object_get_string(v);
		if (!*s) {
			cfg_errors_add(p->errs, "%s: must not be empty", path);
			return;
		}
		if ((k->flags & F_IDENT) && !is_ident(s)) {
			cfg_errors_add(p->errs,
				       "%s: must be 1 to 63 characters of A-Z a-z 0-9 _ . -", path);
			return;
		}
		char *d;
		if (k->flags & F_PATH)
			d = resolve_path(p->base_dir, s, false);
		else if ((k->flags & F_URI) && !has_scheme(s))
			d = resolve_path(p->base_dir, s, true);
		else
			d = strdup(s);
		if (!d) {
			p->oom = true;
			return;
		}
		free(*FIELD(base, k, char *));
		*FIELD(base, k, char *) = d;
		return;
	}
	case T_STRLIST: {
		size_t n = t == json_type_array ? json_object_array_length(v) : 0;
		if (t != json_type_array || n > (size_t)k->max) {
			cfg_errors_add(p->errs, "%s: must be an array of at most %.0f strings", path,
				       k->max);
			return;
		}
		struct cfg_strlist l = {0};
		if (n && !(l.v = calloc(n, sizeof(*l.v)))) {
			p->oom = true;
			return;
		}
		for (size_t i = 0; i < n; i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			const char *es = json_object_is_type(e, json_type_string)
						 ? json_object_get_string(e)
						 : NULL;
			if (!es || !*es || ((k->flags & F_IDENT) && !is_ident(es)) ||
			    strlen(es) > 63) {
				cfg_errors_add(p->errs, "%s[%zu]: must be %s", path, i,
					       (k->flags & F_IDENT)
						       ? "1 to 63 characters of A-Z a-z 0-9 _ . -"
						       : "a non-empty string of at most 63 bytes");
				continue;
			}
			if (!(l.v[l.n] = strdup(es))) {
				p->oom = true;
				break;
			}
			l.n++;
		}
		strlist_free(FIELD(base, k, struct cfg_strlist));
		*FIELD(base, k, struct cfg_strlist) = l;
		return;
	}
	}
}

/* Apply a key table to a JSON object: defaults, then every key present. */
static void parse_object(struct pctx *p, void *base, const struct key *keys, size_t n,
			 struct json_object *obj, const char *path)
{
	char sub[160];
	const char *dot = *path ? "." : "";

	for (size_t i = 0; i < n; i++)
		set_default(base, &keys[i]);

	if (!json_object_is_type(obj, json_type_object)) {
		cfg_errors_add(p->errs, "%s: must be an object, not %s", *path ? path : "(top)",
			       json_type_word(obj));
		return;
	}
	json_object_object_foreach(obj, name, val)
	{
		size_t i;
		snprintf(sub, sizeof(sub), "%s%s%s", path, dot, name);
		for (i = 0; i < n; i++)
			if (strcmp(keys[i].name, name) == 0)
				break;
		if (i == n) {
			cfg_errors_add(p->errs, "%s: unknown key", sub);
			continue;
		}
		parse_value(p, base, &keys[i], val, sub);
	}
	for (size_t i = 0; i < n; i++) {
		if ((keys[i].flags & F_REQUIRED) && !json_object_object_get_ex(obj, keys[i].name, NULL)) {
			snprintf(sub, sizeof(sub), "%s%s%s", path, dot, keys[i].name);
			cfg_errors_add(p->errs, "%s: required", sub);
		}
	}
}

/* Checks across the keys of one stream. */
static void check_stream(struct pctx *p, struct cfg_stream *s, struct json_object *obj,
			 const char *path)
{
	static const struct {
		const char *key;
		enum cfg_source_kind kind;
	} only[] = {
		{"uri", CFG_SRC_URI},	     {"device", CFG_SRC_V4L2}, {"caps", CFG_SRC_V4L2},
		{"pipeline", CFG_SRC_GST}, {"pattern", CFG_SRC_TEST},
	};
	const char *dot = *path ? "." : "";

	if (!json_object_is_type(obj, json_type_object))
		return;
	/* With an invalid "type" (already reported) the kind rules would only
	 * add noise about keys of a kind the user never meant. */
	struct json_object *tv;
	if (json_object_object_get_ex(obj, "type", &tv)) {
		bool known = false;
		for (size_t i = 0; kind_names[i] && json_object_is_type(tv, json_type_string); i++)
			known |= strcmp(kind_names[i], json_object_get_string(tv)) == 0;
		if (!known)
			return;
	}
	for (size_t i = 0; i < N(only); i++) {
		if (json_object_object_get_ex(obj, only[i].key, NULL) && s->kind != only[i].kind)
			cfg_errors_add(p->errs, "%s%s%s: only allowed with \"type\": \"%s\"", path,
				       dot, only[i].key, kind_names[only[i].kind]);
	}
	switch (s->kind) {
	case CFG_SRC_URI:
		if (!json_object_object_get_ex(obj, "uri", NULL))
			cfg_errors_add(p->errs, "%s%suri: required with \"type\": \"uri\"", path,
				       dot);
		break;
	case CFG_SRC_V4L2:
		if (!json_object_object_get_ex(obj, "device", NULL)) {
			s->device = strdup("/dev/video0");
			if (!s->device)
				p->oom = true;
		}
		break;
	case CFG_SRC_GST:
		if (!json_object_object_get_ex(obj, "pipeline", NULL))
			cfg_errors_add(p->errs, "%s%spipeline: required with \"type\": \"gst\"",
				       path, dot);
		break;
	case CFG_SRC_TEST:
		if (!json_object_object_get_ex(obj, "pattern", NULL)) {
			s->pattern = strdup("smpte");
			if (!s->pattern)
				p->oom = true;
		}
		break;
	}
	if (s->backoff_max_s < s->backoff_initial_s)
		cfg_errors_add(p->errs, "%s%sbackoff_max_s: must be >= backoff_initial_s (%g)", path,
			       dot, s->backoff_initial_s);
	if (s->kind == CFG_SRC_URI && s->loop && s->uri && strncmp(s->uri, "file:", 5) != 0)
		cfg_errors_add(p->errs, "%s%sloop: only meaningful for file sources", path, dot);
}

static void parse_stream(struct pctx *p, struct cfg_stream *s, struct json_object *obj,
			 const char *path)
{
	parse_object(p, s, stream_keys, N(stream_keys), obj, path);
	check_stream(p, s, obj, path);
}

void cfg_stream_clear(struct cfg_stream *s)
{
	if (!s)
		return;
	free_fields(s, stream_keys, N(stream_keys));
	memset(s, 0, sizeof(*s));
}

int cfg_stream_copy(struct cfg_stream *dst, const struct cfg_stream *src)
{
	memset(dst, 0, sizeof(*dst));
	for (size_t i = 0; i < N(stream_keys); i++) {
		if (field_copy(dst, src, &stream_keys[i]) < 0) {
			cfg_stream_clear(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

const struct cfg_stream *cfg_stream_find(const struct cfg *c, const char *id)
{
	if (!c || !id)
		return NULL;
	for (size_t i = 0; i < c->n_streams; i++)
		if (c->streams[i].id && strcmp(c->streams[i].id, id) == 0)
			return &c->streams[i];
	return NULL;
}

void cfg_free(struct cfg *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < N(sections); i++)
		free_fields((char *)c + sections[i].off, sections[i].keys, sections[i].n_keys);
	for (size_t i = 0; i < c->n_streams; i++)
		cfg_stream_clear(&c->streams[i]);
	free(c->streams);
	free(c->source_path);
	free(c);
}

/* Parse text with json-c; on a syntax error report line and reason. */
static struct json_object *parse_json(const char *text, size_t len, struct cfg_errors *errs)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *root;
	enum json_tokener_error jerr;

	if (!tok)
		return NULL;
	/* Strict: no trailing commas, comments or single quotes, so a file that
	 * detd accepts is plain JSON any other tool reads the same way. */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!root || jerr != json_tokener_success) {
		size_t off = json_tokener_get_parse_end(tok), line = 1;
		for (size_t i = 0; i < off && i < len; i++)
			line += text[i] == '\n';
		cfg_errors_add(errs, "line %zu: invalid JSON: %s", line,
			       jerr == json_tokener_continue ? "unexpected end of input"
							     : json_tokener_error_desc(jerr));
		json_object_put(root);
		root = NULL;
	} else if (json_tokener_get_parse_end(tok) < len) {
		/* trailing garbage after the top object */
		const char *rest = text + json_tokener_get_parse_end(tok);
		while (*rest && isspace((unsigned char)*rest))
			rest++;
		if (*rest) {
			cfg_errors_add(errs, "invalid JSON: unexpected text after the top object");
			json_object_put(root);
			root = NULL;
		}
	}
	json_tokener_free(tok);
	return root;
}

/* The value of a section, "engine.xrt" being root.engine.xrt; NULL when
 * absent or when a parent level is not an object (the parent reports that). */
static struct json_object *section_json(struct json_object *root, const char *name)
{
	char part[32];
	struct json_object *o = root;
	while (*name) {
		size_t n = strcspn(name, ".");
		if (n >= sizeof(part) || !json_object_is_type(o, json_type_object))
			return NULL;
		memcpy(part, name, n);
		part[n] = '\0';
		if (!json_object_object_get_ex(o, part, &o))
			return NULL;
		name += n + (name[n] == '.');
	}
	return o;
}

/* engine.backend must name a backend this build has; "xrt" without XRT is
 * a config error here, not a failure at start. */
static void check_engine(struct pctx *p, const struct cfg_engine *e)
{
	if (!e->backend)
		return;
	for (size_t i = 0; backend_names[i]; i++)
		if (strcmp(backend_names[i], e->backend) == 0)
			return;
	if (strcmp(e->backend, "xrt") == 0) {
		cfg_errors_add(p->errs,
			       "engine.backend: \"xrt\" is not available: this detd was built "
			       "without XRT (meson -Dxrt=enabled with libxrt-dev installed)");
		return;
	}
	char list[128] = "";
	for (size_t i = 0; backend_names[i]; i++) {
		size_t l = strlen(list);
		snprintf(list + l, sizeof(list) - l, "%s\"%s\"", i ? ", " : "", backend_names[i]);
	}
	cfg_errors_add(p->errs, "engine.backend: unknown backend \"%s\" (one of %s)", e->backend,
		       list);
}

int cfg_mqtt_broker_parse(const char *url, char *host, size_t hostlen, int *port, bool *tls)
{
	const char *h;
	if (!url)
		return -EINVAL;
	if (strncmp(url, "mqtt://", 7) == 0) {
		*tls = false;
		h = url + 7;
	} else if (strncmp(url, "mqtts://", 8) == 0) {
		*tls = true;
		h = url + 8;
	} else {
		return -EINVAL;
	}
	/* host is a name, an IPv4 literal or a bracketed IPv6 literal */
	const char *end, *rest;
	if (*h == '[') {
		if (!(end = strchr(h, ']')))
			return -EINVAL;
		h++;
		rest = end + 1;
	} else {
		end = h + strcspn(h, ":/");
		rest = end;
	}
	size_t n = (size_t)(end - h);
	if (n == 0 || n >= hostlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)h[i]) && !strchr("-._:", h[i]))
			return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = 0;
	if (*rest == ':') {
		char *e;
		long v = strtol(rest + 1, &e, 10);
		if (e == rest + 1 || v < 1 || v > 65535)
			return -EINVAL;
		*port = (int)v;
		rest = e;
	}
	if (*rest == '/')
		rest++;
	return *rest ? -EINVAL : 0;
}

/* Checks across the mqtt keys (only what can be known without the broker). */
static void check_mqtt(struct cfg_errors *errs, const struct cfg_mqtt *m)
{
	char host[256];
	int port;
	bool tls = false;
	if (m->enabled && !DETD_HAVE_MQTT)
		cfg_errors_add(errs, "mqtt.enabled: this detd was built without MQTT (libmosquitto)");
	if (cfg_mqtt_broker_parse(m->broker, host, sizeof(host), &port, &tls) < 0)
		cfg_errors_add(errs, "mqtt.broker: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
	else if (!tls && (m->ca_file || m->cert_file || m->key_file))
		cfg_errors_add(errs, "mqtt.ca_file: TLS files need an mqtts:// broker");
	if (!m->cert_file != !m->key_file)
		cfg_errors_add(errs, "mqtt.key_file: cert_file and key_file go together");
	if (m->password_file && !m->username)
		cfg_errors_add(errs, "mqtt.password_file: needs mqtt.username");
	if (m->reconnect_max_s < m->reconnect_min_s)
		cfg_errors_add(errs, "mqtt.reconnect_max_s: must be >= reconnect_min_s (%g)",
			       m->reconnect_min_s);
	if (m->topic_prefix) {
		const char *t = m->topic_prefix;
		size_t n = strlen(t);
		if (strpbrk(t, "+#") || t[0] == '/' || t[n - 1] == '/' || strstr(t, "//") ||
		    n > 128)
			cfg_errors_add(errs, "mqtt.topic_prefix: must be 1 to 128 bytes without "
					     "+ # or empty levels (leading, trailing or double /)");
	}
	if (m->ha_prefix && (strpbrk(m->ha_prefix, "+#/") || strlen(m->ha_prefix) > 64))
		cfg_errors_add(errs, "mqtt.ha_prefix: must be one topic level (no + # /)");
}

static int build(struct json_object *root, const char *base_dir, struct cfg **out,
		 struct cfg_errors *errs)
{
	struct pctx p = {.errs = errs, .base_dir = base_dir};
	struct cfg *c = calloc(1, sizeof(*c));
	size_t errs_before = errs->n + errs->dropped;
	char path[64];

	if (!c)
		return -ENOMEM;
	if (!json_object_is_type(root, json_type_object)) {
		cfg_errors_add(errs, "(top): must be an object, not %s", json_type_word(root));
		cfg_free(c);
		return -EINVAL;
	}
	/* Sections: missing ones take every default (model.path is required). */
	for (size_t i = 0; i < N(sections); i++) {
		struct json_object *sec = section_json(root, sections[i].name);
		void *base = (char *)c + sections[i].off;
		if (sec) {
			parse_object(&p, base, sections[i].keys, sections[i].n_keys, sec,
				     sections[i].name);
		} else {
			struct json_object *empty = json_object_new_object();
			if (!empty) {
				p.oom = true;
				continue;
			}
			parse_object(&p, base, sections[i].keys, sections[i].n_keys, empty,
				     sections[i].name);
			json_object_put(empty);
		}
	}
	json_object_object_foreach(root, name, val)
	{
		bool known = strcmp(name, "streams") == 0;
		for (size_t i = 0; i < N(sections) && !known; i++)
			known = strcmp(name, sections[i].name) == 0;
		if (!known)
			cfg_errors_add(errs, "%s: unknown key", name);
		(void)val;
	}

	struct json_object *arr = NULL;
	if (json_object_object_get_ex(root, "streams", &arr)) {
		if (!json_object_is_type(arr, json_type_array)) {
			cfg_errors_add(errs, "streams: must be an array, not %s", json_type_word(arr));
		} else if (json_object_array_length(arr) > CFG_MAX_STREAMS) {
			cfg_errors_add(errs, "streams: at most %d streams", CFG_MAX_STREAMS);
		} else if (json_object_array_length(arr) > 0) {
			size_t n = json_object_array_length(arr);
			c->streams = calloc(n, sizeof(*c->streams));
			if (!c->streams) {
				cfg_free(c);
				return -ENOMEM;
			}
			c->n_streams = n;
			for (size_t i = 0; i < n; i++) {
				snprintf(path, sizeof(path), "streams[%zu]", i);
				parse_stream(&p, &c->streams[i], json_object_array_get_idx(arr, i),
					     path);
				for (size_t j = 0; j < i && c->streams[i].id; j++) {
					if (c->streams[j].id &&
					    strcmp(c->streams[j].id, c->streams[i].id) == 0)
						cfg_errors_add(errs,
							       "%s.id: \"%s\" is already used by "
							       "streams[%zu]",
							       path, c->streams[i].id, j);
				}
			}
		}
	}
	check_engine(&p, &c->engine);
	if (c->ipc.client_hard_limit_bytes < c->ipc.client_buffer_bytes)
		cfg_errors_add(errs, "ipc.client_hard_limit_bytes: must be >= "
				     "ipc.client_buffer_bytes (%zu)",
			       c->ipc.client_buffer_bytes);
	if (c->ipc.path && strlen(c->ipc.path) >= 108) /* sizeof(sun_path) */
		cfg_errors_add(errs, "ipc.path: longer than a Unix socket path may be (107)");
	check_mqtt(errs, &c->mqtt);
	/* A literal only: a host name would be resolved at bind time (DNS at
	 * start, maybe another address than the operator meant), and a typo
	 * must fail --check-config, not the start. */
	if (c->http.address) {
		unsigned char a[sizeof(struct in6_addr)];
		if (inet_pton(AF_INET, c->http.address, a) != 1 &&
		    inet_pton(AF_INET6, c->http.address, a) != 1)
			cfg_errors_add(errs, "http.address: \"%.64s\" is not an IPv4 or IPv6 "
					     "address literal", c->http.address);
	}

	if (p.oom) {
		cfg_free(c);
		return -ENOMEM;
	}
	if (errs->n + errs->dropped > errs_before) {
		cfg_free(c);
		return -EINVAL;
	}
	*out = c;
	return 0;
}

int cfg_load_string(const char *json, const char *base_dir, struct cfg **out,
		    struct cfg_errors *errs)
{
	struct cfg_errors local;
	struct json_object *root;
	int r;

	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	*out = NULL;
	root = parse_json(json, strlen(json), errs);
	if (!root)
		return errs->n ? -EINVAL : -ENOMEM;
	r = build(root, base_dir, out, errs);
	json_object_put(root);
	return r;
}

static int read_file(const char *path, char **text, struct cfg_errors *errs)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int r;

	if (!f) {
		r = -errno;
		cfg_errors_add(errs, "%s: cannot open: %s", path, strerror(-r));
		return r;
	}
	for (;;) {
		if (len + 4097 > cap) {
			/* a config is small; refuse absurd files rather than eat memory */
			if (cap > (4u << 20)) {
				cfg_errors_add(errs, "%s: larger than 4 MiB", path);
				r = -EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap);
			if (!nb) {
				r = -ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
		if (got == 0) {
			if (ferror(f)) {
				r = -EIO;
				cfg_errors_add(errs, "%s: read error", path);
				goto fail;
			}
			break;
		}
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		cfg_errors_add(errs, "%s: contains a NUL byte", path);
		r = -EINVAL;
		goto fail;
	}
	fclose(f);
	*text = buf;
	return 0;
fail:
	free(buf);
	fclose(f);
	return r;
}

int cfg_load(const char *path, struct cfg **out, struct cfg_errors *errs)
{
	struct cfg_errors local;
	char *text = NULL, *dir = NULL, *abs = NULL;
	int r;

	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	*out = NULL;
	r = read_file(path, &text, errs);
	if (r < 0)
		return r;
	/* Resolve relative paths against the config's own directory. */
	abs = realpath(path, NULL);
	if (!abs) {
		r = -errno;
		cfg_errors_add(errs, "%s: %s", path, strerror(-r));
		goto out;
	}
	dir = strdup(abs);
	if (!dir) {
		r = -ENOMEM;
		goto out;
	}
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	r = cfg_load_string(text, dir, out, errs);
	if (r == 0) {
		(*out)->source_path = abs;
		abs = NULL;
	}
out:
	free(text);
	free(dir);
	free(abs);
	return r;
}

int cfg_stream_parse(const char *json, size_t len, const struct cfg *cur, struct cfg_stream *out,
		     struct cfg_errors *errs)
{
	struct cfg_errors local;
	struct json_object *root;
	char *dir = NULL;
	struct pctx p;

	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	memset(out, 0, sizeof(*out));
	root = parse_json(json, len, errs);
	if (!root)
		return errs->n ? -EINVAL : -ENOMEM;
	if (cur && cur->source_path) {
		dir = strdup(cur->source_path);
		if (!dir) {
			json_object_put(root);
			return -ENOMEM;
		}
		char *slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
	}
	p = (struct pctx){.errs = errs, .base_dir = dir};
	parse_stream(&p, out, root, "");
	if (out->id && cfg_stream_find(cur, out->id))
		cfg_errors_add(errs, "id: \"%s\" is already used by another stream", out->id);
	json_object_put(root);
	free(dir);
	if (p.oom || errs->n || errs->dropped) {
		cfg_stream_clear(out);
		return p.oom ? -ENOMEM : -EINVAL;
	}
	return 0;
}

/* ---- diff and reload ------------------------------------------------------------ */

static int add_change(struct cfg_changes *ch, const char *what, bool restart, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static int add_change(struct cfg_changes *ch, const char *what, bool restart, const char *fmt,
		      ...)
{
	va_list ap;
	struct cfg_change *v = realloc(ch->v, (ch->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	ch->v = v;
	va_start(ap, fmt);
	vsnprintf(v[ch->n].path, sizeof(v[ch->n].path), fmt, ap);
	va_end(ap);
	v[ch->n].what = what;
	v[ch->n].restart = restart;
	ch->n++;
	ch->n_restart += restart;
	return 0;
}

void cfg_changes_free(struct cfg_changes *ch)
{
	if (!ch)
		return;
	free(ch->v);
	memset(ch, 0, sizeof(*ch));
}

int cfg_diff(const struct cfg *old, const struct cfg *nw, struct cfg_changes *out)
{
	int r = 0;
	memset(out, 0, sizeof(*out));
	for (size_t s = 0; s < N(sections) && r == 0; s++) {
		const struct section *sec = &sections[s];
		const char *a = (const char *)old + sec->off, *b = (const char *)nw + sec->off;
		for (size_t i = 0; i < sec->n_keys && r == 0; i++) {
			const struct key *k = &sec->keys[i];
			if (!field_equal(a, b, k))
				r = add_change(out, "changed", !(k->flags & F_RELOAD), "%s.%s",
					       sec->name, k->name);
		}
	}
	for (size_t i = 0; i < old->n_streams && r == 0; i++) {
		const struct cfg_stream *so = &old->streams[i];
		const struct cfg_stream *sn = cfg_stream_find(nw, so->id);
		if (!sn) {
			r = add_change(out, "removed", false, "streams[%s]", so->id);
			continue;
		}
		for (size_t k = 0; k < N(stream_keys) && r == 0; k++)
			if (!field_equal(so, sn, &stream_keys[k]))
				r = add_change(out, "changed",
					       !(stream_keys[k].flags & F_RELOAD), "streams[%s].%s",
					       so->id, stream_keys[k].name);
	}
	for (size_t i = 0; i < nw->n_streams && r == 0; i++)
		if (!cfg_stream_find(old, nw->streams[i].id))
			r = add_change(out, "added", false, "streams[%s]", nw->streams[i].id);
	if (r < 0)
		cfg_changes_free(out);
	return r;
}

int cfg_keep_restart_fields(struct cfg *nw, const struct cfg *old)
{
	for (size_t s = 0; s < N(sections); s++) {
		const struct section *sec = &sections[s];
		for (size_t i = 0; i < sec->n_keys; i++) {
			if (sec->keys[i].flags & F_RELOAD)
				continue;
			int r = field_copy((char *)nw + sec->off, (const char *)old + sec->off,
					   &sec->keys[i]);
			if (r < 0)
				return r;
		}
	}
	return 0;
}
