/*
 * api.c — see api.h.  Loop thread only.
 *
 * SSE: a connection gets evhttp_send_reply_start() and then one chunk per
 * message ("event: <type>\ndata: <json>\n\n").  The JSON bytes are the
 * bus's shared serialization, added by reference.  Its backlog is the
 * connection's bufferevent output; the bus_flow policy decides send, drop or
 * cut.  A cut connection is freed from the reaper event, never from inside a
 * delivery; a connection the peer closed is only forgotten (evhttp frees it).
 */
#include "api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "bus.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define TOPIC "api"

struct sse {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct bus_sub *sub;
	struct bus_flow flow;
	bool closing;
	bool peer_gone; /* evhttp frees the connection itself */
	struct sse *prev, *next, *next_dead;
};

struct api {
	struct event_base *base;
	struct http *http;
	struct bus *bus;
	struct metrics *metrics;
	struct api_hooks hooks;
	bool allow_mutations;
	char *token;
	char *address; /* the configured listen address, for the Host check */
	size_t soft, hard;
	double timeout_s;
	size_t max_sse;
	double keepalive_s;
	int64_t last_keepalive;
	struct sse *sse;
	size_t n_sse;
	struct sse *dead;
	struct event *reaper, *ticker;
	uint64_t sse_dropped;
};

static const char *const routes[] = {"/streams", "/streams/", "/detections/latest", "/events",
				     "/metrics", "/reload"};

/* ---- helpers ---- */

static void reply_raw(struct evhttp_request *req, int code, const char *ctype,
		      struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	evhttp_send_reply(req, code, NULL, body);
}

static void unref_cleanup(const void *data, size_t len, void *extra)
{
	bus_msg_unref(extra);
}

/* Add msg's JSON (without its newline) by reference. */
static void add_msg(struct evbuffer *b, struct bus_msg *m)
{
	bus_msg_ref(m);
	if (evbuffer_add_reference(b, m->data, m->len - 1, unref_cleanup, m) < 0)
		bus_msg_unref(m);
}

static int errno_status(int rc)
{
	switch (rc) {
	case -EINVAL:
		return 400;
	case -ENOENT:
		return 404;
	case -EEXIST:
		return 409;
	case -ENOTSUP:
		return 501;
	case -EPERM:
		return 403;
	default:
		return 500;
	}
}

/* Constant time for equal lengths: a wrong token does not leak its prefix. */
static bool token_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;
	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* "application/json", optionally with parameters ("; charset=utf-8"). */
static bool is_json_type(const char *ct)
{
	static const char want[] = "application/json";
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
		return false;
	ct += sizeof(want) - 1;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/*
 * The mutation policy (README "Security policy"), in this order:
 *  1. http.allow_mutations, else 403;
 *  2. Host must be a name that cannot be rebound (http_request_host_ok), else 403;
 *  3. an Origin header, if present, must be this very origin, else 403 (a
 *     browser always sends Origin on cross-origin POSTs);
 *  4. POST needs Content-Type: application/json, DELETE none or that, else
 *     415: a web page can send text/plain or form bodies without a CORS
 *     preflight, but not application/json;
 *  5. the bearer token: required from every peer when http.token is set;
 *     without a token only loopback peers may mutate (judged by the peer's
 *     address, not by the listen address: a socket-activated 0.0.0.0
 *     listener must not open mutations to the network).
 */
static bool authorized(struct api *a, struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	if (!a->allow_mutations) {
		http_reply_error(req, 403, "mutating endpoints are disabled (http.allow_mutations)");
		return false;
	}
	const char *host = evhttp_find_header(in, "Host");
	if (!host || !http_request_host_ok(req, host, a->address)) {
		http_reply_error(req, 403, "mutations need a Host that is localhost, a loopback "
					   "address or the listen address");
		return false;
	}
	const char *origin = evhttp_find_header(in, "Origin");
	if (origin) {
		static const char scheme[] = "http://";
		if (strncasecmp(origin, scheme, sizeof(scheme) - 1) != 0 ||
		    strcasecmp(origin + sizeof(scheme) - 1, host) != 0) {
			http_reply_error(req, 403, "cross-origin mutations are refused");
			return false;
		}
	}
	const char *ct = evhttp_find_header(in, "Content-Type");
	bool post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
	if (ct ? !is_json_type(ct) : post) {
		http_reply_error(req, 415, "mutations need Content-Type: application/json");
		return false;
	}
	bool have_token = a->token && *a->token;
	if (!have_token) {
		if (http_request_is_loopback(req))
			return true;
		http_reply_error(req, 403, "mutations from other hosts need http.token, and none "
					   "is configured");
		return false;
	}
	const char *h = evhttp_find_header(in, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !token_eq(h + 7, a->token)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Bearer realm=\"detd\"");
		http_reply_error(req, 401, "missing or wrong bearer token");
		return false;
	}
	return true;
}

/* The {id} of /streams/{id}; NULL (and 404 sent) when empty or nested. */
static const char *stream_id_of(struct evhttp_request *req)
{
	const char *p = http_request_path(req) + strlen("/streams/");
	if (!*p || strchr(p, '/')) {
		http_reply_error(req, 404, "no such resource: %s", http_request_path(req));
		return NULL;
	}
	return p;
}

/* ---- /streams ---- */

static struct json_object *stream_entry(struct api *a, const char *id)
{
	struct json_object *o = bus_stream_json(a->bus, id);
	if (o && a->hooks.stream_describe)
		a->hooks.stream_describe(id, o, a->hooks.ud);
	return o;
}

static void h_streams(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		if (!authorized(a, req))
			return;
		if (!a->hooks.stream_add) {
			http_reply_error(req, 501, "adding streams is not available");
			return;
		}
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		size_t len = evbuffer_get_length(in);
		char *body = malloc(len + 1);
		if (!body) {
			http_reply_error(req, 500, "out of memory");
			return;
		}
		evbuffer_copyout(in, body, len);
		body[len] = '\0';
		char id[DET_STREAM_ID_MAX] = "", err[512] = "";
		int rc = a->hooks.stream_add(body, len, id, sizeof(id), err, sizeof(err),
					     a->hooks.ud);
		free(body);
		if (rc < 0) {
			http_reply_error(req, errno_status(rc), "%s", err[0] ? err : strerror(-rc));
			return;
		}
		struct json_object *o = stream_entry(a, id);
		if (!o) {
			o = json_object_new_object();
			json_object_object_add(o, "id", json_object_new_string(id));
		}
		char loc[128];
		snprintf(loc, sizeof(loc), "/streams/%s", id);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
		http_reply_json(req, 201, o);
		return;
	}
	struct json_object *root = json_object_new_object();
	struct json_object *arr = bus_streams_json(a->bus);
	if (a->hooks.stream_describe)
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *e = json_object_array_get_idx(arr, i);
			a->hooks.stream_describe(json_object_get_string(
							 json_object_object_get(e, "id")),
						 e, a->hooks.ud);
		}
	json_object_object_add(root, "streams", arr);
	http_reply_json(req, 200, root);
}

static void h_stream(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	const char *id = stream_id_of(req);
	if (!id)
		return;
	if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
		if (!authorized(a, req))
			return;
		if (!a->hooks.stream_remove) {
			http_reply_error(req, 501, "removing streams is not available");
			return;
		}
		char err[512] = "";
		int rc = a->hooks.stream_remove(id, err, sizeof(err), a->hooks.ud);
		if (rc < 0) {
			http_reply_error(req, errno_status(rc), "%s", err[0] ? err : strerror(-rc));
			return;
		}
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "removed", json_object_new_string(id));
		http_reply_json(req, 200, o);
		return;
	}
	struct json_object *o = stream_entry(a, id);
	if (!o) {
		http_reply_error(req, 404, "no such stream: %s", id);
		return;
	}
	http_reply_json(req, 200, o);
}

/* ---- /detections/latest ---- */

static void h_latest(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	struct evkeyvalq q = {0};
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query && evhttp_parse_query_str(query, &q) < 0) {
		http_reply_error(req, 400, "malformed query string");
		return;
	}
	const char *stream = evhttp_find_header(&q, "stream");
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_clear_headers(&q);
		http_reply_error(req, 500, "out of memory");
		return;
	}
	if (stream) {
		struct bus_msg *m = bus_latest(a->bus, stream);
		if (!m) {
			http_reply_error(req, 404, bus_stream_exists(a->bus, stream)
							   ? "stream %s has no detections yet"
							   : "no such stream: %s",
					 stream);
			goto out;
		}
		add_msg(b, m);
		evbuffer_add(b, "\n", 1);
	} else {
		/* concatenated from the stored messages: nothing is re-serialized */
		evbuffer_add_printf(b, "{\"detections\":[");
		struct json_object *ids = bus_stream_ids_json(a->bus);
		bool first = true;
		for (size_t i = 0; i < json_object_array_length(ids); i++) {
			struct bus_msg *m = bus_latest(
				a->bus, json_object_get_string(json_object_array_get_idx(ids, i)));
			if (!m)
				continue;
			if (!first)
				evbuffer_add(b, ",", 1);
			first = false;
			add_msg(b, m);
		}
		json_object_put(ids);
		evbuffer_add_printf(b, "]}\n");
	}
	reply_raw(req, 200, "application/json", b);
out:
	evbuffer_free(b);
	evhttp_clear_headers(&q);
}

/* ---- /metrics ---- */

static void h_metrics(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	size_t len = 0;
	char *txt = metrics_render(a->metrics, &len);
	struct evbuffer *b = evbuffer_new();
	if (!txt || !b) {
		free(txt);
		if (b)
			evbuffer_free(b);
		http_reply_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(b, txt, len);
	free(txt);
	reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", b);
	evbuffer_free(b);
}

/* ---- /reload ---- */

static void h_reload(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	if (!authorized(a, req))
		return;
	if (!a->hooks.reload) {
		http_reply_error(req, 501, "reload is not available");
		return;
	}
	char err[512] = "";
	int rc = a->hooks.reload(err, sizeof(err), a->hooks.ud);
	if (rc < 0) {
		http_reply_error(req, rc == -EINVAL ? 422 : errno_status(rc), "%s",
				 err[0] ? err : strerror(-rc));
		return;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "reload", json_object_new_string(rc == 0 ? "done" : "requested"));
	http_reply_json(req, rc == 0 ? 200 : 202, o);
}

/* ---- /events (SSE) ---- */

static void sse_close(struct sse *s, const char *why);

static struct evbuffer *sse_out(struct sse *s)
{
	return bufferevent_get_output(evhttp_connection_get_bufferevent(s->conn));
}

static void sse_chunk(struct sse *s, const char *event, struct bus_msg *m, const char *raw)
{
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return;
	if (m) {
		evbuffer_add_printf(b, "event: %s\ndata: ", event);
		add_msg(b, m);
		evbuffer_add(b, "\n\n", 2);
	} else {
		evbuffer_add(b, raw, strlen(raw));
	}
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
}

/* Every bus message starts with {"type":"<type>" (we write them all). */
static void msg_type(const struct bus_msg *m, char *out, size_t cap)
{
	static const char pre[] = "{\"type\":\"";
	snprintf(out, cap, "message");
	if (m->len > sizeof(pre) && memcmp(m->data, pre, sizeof(pre) - 1) == 0) {
		const char *t = m->data + sizeof(pre) - 1;
		const char *e = memchr(t, '"', m->len - (sizeof(pre) - 1));
		if (e && (size_t)(e - t) < cap)
			snprintf(out, cap, "%.*s", (int)(e - t), t);
	}
}

static void sse_notice(struct sse *s)
{
	struct bus_msg *n = bus_flow_take_notice(&s->flow);
	if (n) {
		sse_chunk(s, "dropped", n, NULL);
		bus_msg_unref(n);
	}
}

static void sse_deliver(void *ud, struct bus_msg *m)
{
	struct sse *s = ud;
	struct api *a = s->api;
	if (s->closing)
		return;
	switch (bus_flow_offer(&s->flow, evbuffer_get_length(sse_out(s)), m->len + 32,
			       det_mono_ns())) {
	case BUS_FLOW_SEND: {
		char type[32];
		msg_type(m, type, sizeof(type));
		sse_notice(s);
		sse_chunk(s, type, m, NULL);
		break;
	}
	case BUS_FLOW_DROP:
		a->sse_dropped++;
		if (a->metrics)
			metrics_counter_add(a->metrics, "detd_messages_dropped_total", 1,
					    "transport", "sse", NULL);
		break;
	case BUS_FLOW_DISCONNECT:
		sse_close(s, "slow consumer");
		break;
	}
}

/* evhttp: the peer went away.  evhttp frees the connection; the request,
 * still open on our side, is detached and ours to end (see reap). */
static void sse_on_close(struct evhttp_connection *conn, void *ud)
{
	struct sse *s = ud;
	s->peer_gone = true;
	sse_close(s, "closed by peer");
}

static void sse_close(struct sse *s, const char *why)
{
	if (s->closing)
		return;
	struct api *a = s->api;
	s->closing = true;
	log_debug(TOPIC, "SSE client closing (%s)", why);
	if (a->metrics && strcmp(why, "slow consumer") == 0)
		metrics_counter_add(a->metrics, "detd_clients_disconnected_total", 1, "transport",
				    "sse", "reason", "slow", NULL);
	bus_unsubscribe(s->sub);
	s->sub = NULL;
	if (s->prev)
		s->prev->next = s->next;
	else
		a->sse = s->next;
	if (s->next)
		s->next->prev = s->prev;
	a->n_sse--;
	s->next_dead = a->dead;
	a->dead = s;
	event_active(a->reaper, 0, 0);
}

static void reap(evutil_socket_t fd, short what, void *ud)
{
	struct api *a = ud;
	while (a->dead) {
		struct sse *s = a->dead;
		a->dead = s->next_dead;
		if (!s->peer_gone) {
			/* we cut it: drop the close callback first, it would find s freed */
			evhttp_connection_set_closecb(s->conn, NULL, NULL);
			evhttp_connection_free(s->conn);
		} else {
			/* evhttp detached our unfinished request from the dead connection
			 * and left it to us: ending it is what frees it */
			evhttp_send_reply_end(s->req);
		}
		free(s);
	}
}

static void tick(evutil_socket_t fd, short what, void *ud)
{
	struct api *a = ud;
	int64_t now = det_mono_ns();
	bool keepalive = (double)(now - a->last_keepalive) / 1e9 >= a->keepalive_s;
	if (keepalive)
		a->last_keepalive = now;
	for (struct sse *s = a->sse, *n; s; s = n) {
		n = s->next;
		size_t q = evbuffer_get_length(sse_out(s));
		if (bus_flow_expired(&s->flow, q, now)) {
			log_warn(TOPIC, "SSE client stuck (%llu messages dropped), disconnecting",
				 (unsigned long long)s->flow.total_drops);
			sse_close(s, "slow consumer");
			continue;
		}
		if (q <= s->flow.soft / 2) {
			bus_flow_drained(&s->flow);
			sse_notice(s);
		}
		if (keepalive) /* lets proxies and the peer see the stream is alive */
			sse_chunk(s, NULL, NULL, ": keepalive\n\n");
	}
}

static int parse_list(struct bus_filter *f, const char *v, bool streams, char *err, size_t errlen)
{
	char *dup = strdup(v), *save = NULL;
	if (!dup)
		return -ENOMEM;
	int rc = 0;
	for (char *t = strtok_r(dup, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save))
		rc = streams ? bus_filter_add_stream(f, t, err, errlen)
			     : bus_filter_add_label(f, t, err, errlen);
	free(dup);
	return rc;
}

static int parse_sse_query(struct evhttp_request *req, struct bus_filter *f, char *err,
			   size_t errlen)
{
	memset(f, 0, sizeof(*f));
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (!query)
		return 0;
	struct evkeyvalq q = {0};
	if (evhttp_parse_query_str(query, &q) < 0) {
		snprintf(err, errlen, "malformed query string");
		return -EINVAL;
	}
	int rc = 0;
	for (struct evkeyval *kv = q.tqh_first; kv && rc == 0; kv = kv->next.tqe_next) {
		if (strcmp(kv->key, "stream") == 0 || strcmp(kv->key, "streams") == 0) {
			rc = parse_list(f, kv->value, true, err, errlen);
		} else if (strcmp(kv->key, "label") == 0 || strcmp(kv->key, "labels") == 0) {
			rc = parse_list(f, kv->value, false, err, errlen);
		} else if (strcmp(kv->key, "min_score") == 0) {
			char *end = NULL;
			double d = strtod(kv->value, &end);
			if (!*kv->value || *end || !(d >= 0 && d <= 1)) {
				snprintf(err, errlen, "min_score: expected a number in [0, 1]");
				rc = -EINVAL;
			}
			f->min_score = d;
		} else {
			snprintf(err, errlen, "unknown query parameter \"%.*s\"",
				 utf8_cut(kv->key, 64), kv->key);
			rc = -EINVAL;
		}
	}
	evhttp_clear_headers(&q);
	if (rc < 0)
		bus_filter_clear(f);
	return rc;
}

static void h_events(struct evhttp_request *req, void *ud)
{
	struct api *a = ud;
	struct bus_filter f;
	char err[256];
	if (a->n_sse >= a->max_sse) {
		http_reply_error(req, 503, "too many event streams (ipc.max_clients = %zu)",
				 a->max_sse);
		return;
	}
	if (parse_sse_query(req, &f, err, sizeof(err)) < 0) {
		http_reply_error(req, 400, "%s", err);
		return;
	}
	struct sse *s = calloc(1, sizeof(*s));
	if (!s) {
		bus_filter_clear(&f);
		http_reply_error(req, 500, "out of memory");
		return;
	}
	s->api = a;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	bus_flow_init(&s->flow, a->soft, a->hard, a->timeout_s);
	s->sub = bus_subscribe(a->bus, &f, sse_deliver, s);
	if (!s->sub) {
		bus_filter_clear(&f);
		free(s);
		http_reply_error(req, 500, "out of memory");
		return;
	}
	s->next = a->sse;
	if (a->sse)
		a->sse->prev = s;
	a->sse = s;
	a->n_sse++;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	/* Bound the kernel's share too: TCP autotuning would otherwise let
	 * megabytes of stale events sit in the socket before the soft limit
	 * of the output buffer ever sees a slow consumer. */
	int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(s->conn));
	int sndbuf = a->soft < 65536 ? 65536 : a->soft > (1 << 22) ? (1 << 22) : (int)a->soft;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	evhttp_send_reply_start(req, 200, "OK");
	evhttp_connection_set_closecb(s->conn, sse_on_close, s);
	sse_chunk(s, NULL, NULL, "retry: 2000\n\n");
}

/* ---- create / destroy ---- */

static void collect(struct metrics *m, void *ud)
{
	struct api *a = ud;
	metrics_gauge_set(m, "detd_subscribers", (double)a->n_sse, "transport", "sse", NULL);
}

int api_reload(struct api *a, const struct cfg_http *http, const struct cfg_ipc *ipc)
{
	if (http) {
		char *tok = http->token ? strdup(http->token) : NULL;
		if (http->token && !tok)
			return -ENOMEM;
		char *addr = http->address ? strdup(http->address) : NULL;
		if (http->address && !addr) {
			free(tok);
			return -ENOMEM;
		}
		free(a->token);
		a->token = tok;
		free(a->address);
		a->address = addr;
		a->allow_mutations = http->allow_mutations;
	}
	if (ipc) {
		a->soft = ipc->client_buffer_bytes ? ipc->client_buffer_bytes : 1 << 20;
		a->hard = ipc->client_hard_limit_bytes > a->soft ? ipc->client_hard_limit_bytes
								 : 2 * a->soft;
		a->timeout_s = ipc->slow_client_timeout_s > 0 ? ipc->slow_client_timeout_s : 10;
		a->max_sse = ipc->max_clients > 0 ? (size_t)ipc->max_clients : 64;
	}
	return 0;
}

int api_create(struct event_base *base, struct http *h, const struct api_opts *o, struct api **out)
{
	*out = NULL;
	if (!base || !h || !o || !o->bus || !o->metrics)
		return -EINVAL;
	struct api *a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	int rc = -ENOMEM;
	a->base = base;
	a->http = h;
	a->bus = o->bus;
	a->metrics = o->metrics;
	a->hooks = o->hooks;
	a->keepalive_s = o->sse_keepalive_s > 0 ? o->sse_keepalive_s : 15;
	a->last_keepalive = det_mono_ns();
	struct cfg_ipc defaults = {0};
	if ((rc = api_reload(a, o->http, o->ipc ? o->ipc : &defaults)) < 0)
		goto fail;
	rc = -ENOMEM;
	a->reaper = event_new(base, -1, 0, reap, a);
	a->ticker = event_new(base, -1, EV_PERSIST, tick, a);
	if (!a->reaper || !a->ticker)
		goto fail;
	struct timeval tv = {0, 250000};
	event_add(a->ticker, &tv);
	const unsigned GET = EVHTTP_REQ_GET | EVHTTP_REQ_HEAD;
	if ((rc = http_route_add(h, GET | EVHTTP_REQ_POST, "/streams", 0, h_streams, a)) < 0 ||
	    (rc = http_route_add(h, GET | EVHTTP_REQ_DELETE, "/streams/", HTTP_ROUTE_PREFIX,
				 h_stream, a)) < 0 ||
	    (rc = http_route_add(h, GET, "/detections/latest", 0, h_latest, a)) < 0 ||
	    (rc = http_route_add(h, EVHTTP_REQ_GET, "/events", 0, h_events, a)) < 0 ||
	    (rc = http_route_add(h, GET, "/metrics", 0, h_metrics, a)) < 0 ||
	    (rc = http_route_add(h, EVHTTP_REQ_POST, "/reload", 0, h_reload, a)) < 0)
		goto fail;
	metrics_define(a->metrics, "detd_subscribers", METRICS_GAUGE,
		       "Connected subscribers per transport", NULL, 0);
	metrics_define(a->metrics, "detd_messages_dropped_total", METRICS_COUNTER,
		       "Messages dropped for slow subscribers", NULL, 0);
	metrics_define(a->metrics, "detd_clients_disconnected_total", METRICS_COUNTER,
		       "Subscribers disconnected by the server", NULL, 0);
	metrics_add_collector(a->metrics, collect, a);
	*out = a;
	return 0;
fail:
	api_destroy(a);
	return rc;
}

void api_destroy(struct api *a)
{
	if (!a)
		return;
	metrics_remove_collector(a->metrics, collect, a);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		http_route_remove(a->http, routes[i]);
	/* end every event stream properly: the final chunk, then evhttp owns it */
	while (a->sse) {
		struct sse *s = a->sse;
		evhttp_connection_set_closecb(s->conn, NULL, NULL);
		bus_unsubscribe(s->sub);
		evhttp_send_reply_end(s->req);
		a->sse = s->next;
		free(s);
	}
	if (a->reaper) {
		reap(-1, 0, a);
		event_free(a->reaper);
	}
	if (a->ticker)
		event_free(a->ticker);
	free(a->token);
	free(a->address);
	free(a);
}

size_t api_sse_count(const struct api *a)
{
	return a ? a->n_sse : 0;
}
