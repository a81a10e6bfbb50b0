/*
 * http.c — evhttp server, route table, /status sections, JSON replies.
 *
 * Owns the evhttp instance, its listening socket and two small tables
 * (routes, status sections).  Runs on the main loop thread only.
 * /healthz and /status themselves are registered by daemon.c, which owns
 * what they report.
 *
 * Connection policy (issue 15; README "Security policy").  evhttp has no
 * per-connection accept hook, so the connections are tracked beside it:
 * our bufferevent factory (evhttp_set_bevcb) notes each new connection, a
 * deferred check reads its fd and peer and refuses it (shutdown(), evhttp
 * then frees it) past http.max_connections or max_connections_per_ip.  Each
 * admitted connection has ONE absolute deadline: idle_timeout_s while no
 * request is in progress, header_timeout_s from the first byte of a request
 * until it is complete; no deadline while a handler owns it (SSE).  Bytes
 * trickling in never move a deadline.  A connection is known to be gone
 * when its fd no longer refers to the same socket (fd number + inode), so
 * nothing here has to hook evhttp's frees.  accept() errors (EMFILE,
 * ENFILE) pause the listener for 100 ms instead of spinning.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "config.h"
#include "frame.h" /* det_mono_ns() */
#include "log.h"
#include "utf8.h"

#define MAX_ROUTES 64
#define MAX_SECTIONS 32

struct route {
	char *path;
	size_t len;
	unsigned methods;
	unsigned flags;
	http_handler_fn fn;
	void *ud;
};

struct section {
	char *name;
	http_status_fn fill;
	void *ud;
};

enum conn_state {
	CONN_NEW,     /* created by evhttp, not yet checked */
	CONN_IDLE,    /* waiting for the first byte of a request */
	CONN_READING, /* a request is arriving */
	CONN_BUSY,    /* a handler owns it (reply pending, SSE) */
	CONN_CLOSING, /* refused or timed out: shut down, evhttp will free it */
};

struct conn {
	uint64_t id;
	struct bufferevent *bev; /* CONN_NEW only (we hold a reference) */
	int fd;
	ino_t ino;
	enum conn_state state;
	int64_t deadline_ns; /* 0: none */
	char peer[INET6_ADDRSTRLEN];
};

struct http {
	struct http *next_instance; /* see instance_of() */
	struct evhttp *ev;
	struct evhttp_bound_socket *bound;
	int port;
	size_t max_header_bytes;
	size_t max_body_bytes;
	size_t n_routes;
	struct route routes[MAX_ROUTES];
	size_t n_sections;
	struct section sections[MAX_SECTIONS];
	/* connection policy */
	struct event_base *base;
	int max_conns, max_per_ip;
	int64_t header_ns, idle_ns;
	struct conn *conns;
	size_t n_conns, cap_conns;
	uint64_t next_conn_id;
	struct event *check_ev, *sweep_ev, *resume_ev;
	uint64_t refused, timed_out, accept_pauses;
	int64_t last_pause_log;
};

/* The listener's error callback only gets evhttp's pointer: find ours.
 * Loop thread only, like everything here. */
static struct http *instances;

static struct http *instance_of(const struct evhttp *ev)
{
	for (struct http *h = instances; h; h = h->next_instance)
		if (h->ev == ev)
			return h;
	return NULL;
}

static const struct {
	unsigned bit;
	const char *name;
} methods[] = {
	{EVHTTP_REQ_GET, "GET"},   {EVHTTP_REQ_HEAD, "HEAD"},	{EVHTTP_REQ_POST, "POST"},
	{EVHTTP_REQ_PUT, "PUT"},   {EVHTTP_REQ_DELETE, "DELETE"}, {EVHTTP_REQ_PATCH, "PATCH"},
	{EVHTTP_REQ_OPTIONS, "OPTIONS"}, {EVHTTP_REQ_TRACE, "TRACE"}, {EVHTTP_REQ_CONNECT, "CONNECT"},
};

/* ---- replies ------------------------------------------------------------------ */

void http_reply_json(struct evhttp_request *req, int code, struct json_object *body)
{
	struct evbuffer *buf = evbuffer_new();
	const char *reason = NULL;

	if (!body)
		body = json_object_new_object();
	if (buf) {
		const char *s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN |
									JSON_C_TO_STRING_NOSLASHESCAPE);
		evbuffer_add_printf(buf, "%s\n", s ? s : "{}");
	}
	json_object_put(body);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	switch (code) {
	case 431:
		reason = "Request Header Fields Too Large";
		break;
	case 413:
		reason = "Payload Too Large";
		break;
	case 409:
		reason = "Conflict";
		break;
	case 422:
		reason = "Unprocessable Entity";
		break;
	default:
		break; /* evhttp knows the common ones */
	}
	evhttp_send_reply(req, code, reason, buf);
	if (buf)
		evbuffer_free(buf);
}

void http_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
	char raw[512], msg[512];
	va_list ap;
	struct json_object *root = json_object_new_object(), *err = json_object_new_object();

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* messages quote paths, ids and query keys the client sent */
	utf8_sanitize(msg, sizeof(msg), raw);
	if (root && err) {
		json_object_object_add(err, "code", json_object_new_int(code));
		json_object_object_add(err, "message", json_object_new_string(msg));
		json_object_object_add(root, "error", err);
		err = NULL;
	}
	json_object_put(err);
	http_reply_json(req, code, root);
}

const char *http_request_path(struct evhttp_request *req)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *p = u ? evhttp_uri_get_path(u) : NULL;
	return p && *p ? p : "/";
}

/* The connection's peer (getpeername) or local (getsockname) address is
 * loopback; a Unix socket counts as local. */
static bool conn_addr_is_loopback(struct evhttp_request *req, bool local)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	int fd;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!c)
		return false;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c));
	if (fd < 0 || (local ? getsockname(fd, (struct sockaddr *)&ss, &len)
			     : getpeername(fd, (struct sockaddr *)&ss, &len)) < 0)
		return false;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return ss.ss_family == AF_UNIX;
}

bool http_request_is_loopback(struct evhttp_request *req)
{
	return conn_addr_is_loopback(req, false);
}

/* Same address, textually or as parsed IPv4/IPv6. */
static bool same_ip(const char *a, const char *b)
{
	unsigned char x[16], y[16];
	if (strcasecmp(a, b) == 0)
		return true;
	if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
		return memcmp(x, y, 4) == 0;
	if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
		return memcmp(x, y, 16) == 0;
	return false;
}

/* The address the request arrived on (getsockname), as text; "" if unknown. */
static void local_addr(struct evhttp_request *req, char *out, size_t cap)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = c ? bufferevent_getfd(evhttp_connection_get_bufferevent(c)) : -1;
	out[0] = '\0';
	if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

/*
 * DNS rebinding defence: a page on evil.example whose name later resolves to
 * 127.0.0.1 is "same origin" for the browser, but its requests still say
 * Host: evil.example.  Names that cannot be rebound: localhost and
 * *.localhost, loopback literals, the configured listen address and the
 * address the connection actually arrived on (each with an optional port).
 */
bool http_request_host_ok(struct evhttp_request *req, const char *host, const char *address)
{
	char h[256], local[INET6_ADDRSTRLEN];
	const char *port = NULL, *end;
	if (host[0] == '[') { /* [v6]:port */
		host++;
		if (!(end = strchr(host, ']')) || (end[1] && end[1] != ':'))
			return false;
		port = end[1] ? end + 2 : NULL;
	} else {
		end = strchr(host, ':');
		if (end && strchr(end + 1, ':'))
			return false; /* a bare IPv6 literal must be bracketed */
		port = end ? end + 1 : NULL;
		if (!end)
			end = host + strlen(host);
	}
	if (end == host || (size_t)(end - host) >= sizeof(h))
		return false;
	memcpy(h, host, (size_t)(end - host));
	h[end - host] = '\0';
	if (port && (!*port || strspn(port, "0123456789") != strlen(port)))
		return false;
	unsigned char v4[4];
	struct in6_addr v6;
	size_t hl = strlen(h);
	if (strcasecmp(h, "localhost") == 0 ||
	    (hl > 10 && strcasecmp(h + hl - 10, ".localhost") == 0)) /* RFC 6761 */
		return true;
	if (inet_pton(AF_INET, h, v4) == 1 && v4[0] == 127)
		return true;
	if (inet_pton(AF_INET6, h, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6))
		return true;
	if (address && same_ip(h, address))
		return true;
	local_addr(req, local, sizeof(local));
	return local[0] && same_ip(h, local);
}

/* ---- connection policy --------------------------------------------------------- */

static struct conn *conn_by_id(struct http *h, uint64_t id)
{
	for (size_t i = 0; i < h->n_conns; i++)
		if (h->conns[i].id == id)
			return &h->conns[i];
	return NULL;
}

static void conn_forget(struct http *h, size_t i)
{
	if (h->conns[i].bev)
		bufferevent_decref(h->conns[i].bev);
	h->conns[i] = h->conns[--h->n_conns];
}

static void conn_shut(struct http *h, struct conn *c)
{
	(void)h;
	/* evhttp sees EOF at its next read and frees the connection itself */
	shutdown(c->fd, SHUT_RDWR);
	c->state = CONN_CLOSING;
	c->deadline_ns = 0;
}

/* evbuffer callback of a connection's input: the first byte of a request
 * starts its header deadline.  arg is the id (the conn may be gone). */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	struct http *h = NULL;
	if (info->n_added == 0)
		return;
	uint64_t id = (uint64_t)(uintptr_t)arg;
	for (struct http *x = instances; x && !h; x = x->next_instance)
		if (conn_by_id(x, id))
			h = x;
	struct conn *c = h ? conn_by_id(h, id) : NULL;
	if (c && c->state == CONN_IDLE) {
		c->state = CONN_READING;
		c->deadline_ns = det_mono_ns() + h->header_ns;
	}
}

/* evhttp's bufferevent factory: called for every accepted connection,
 * before evhttp gives the bufferevent its fd. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct http *h = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		return NULL; /* evhttp makes its own; that connection goes untracked */
	if (h->n_conns == h->cap_conns) {
		size_t cap = h->cap_conns ? h->cap_conns * 2 : 64;
		struct conn *n = realloc(h->conns, cap * sizeof(*n));
		if (!n)
			return bev;
		h->conns = n;
		h->cap_conns = cap;
	}
	uint64_t id = ++h->next_conn_id;
	bufferevent_incref(bev); /* alive until check_conns() has read its fd */
	h->conns[h->n_conns++] = (struct conn){.id = id, .bev = bev, .fd = -1, .state = CONN_NEW};
	evbuffer_add_cb(bufferevent_get_input(bev), on_input, (void *)(uintptr_t)id);
	event_active(h->check_ev, 0, 0);
	return bev;
}

static void peer_name(int fd, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	snprintf(out, cap, "?");
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
	else
		snprintf(out, cap, "local");
}

/* Deferred (same loop iteration as the accept): admit or refuse the new ones. */
static void check_conns(evutil_socket_t fd_, short what, void *arg)
{
	(void)fd_;
	(void)what;
	struct http *h = arg;
	int64_t now = det_mono_ns();
	for (size_t i = 0; i < h->n_conns;) {
		struct conn *c = &h->conns[i];
		if (c->state != CONN_NEW) {
			i++;
			continue;
		}
		struct stat st;
		int fd = bufferevent_getfd(c->bev);
		if (fd < 0 || fstat(fd, &st) < 0) {
			conn_forget(h, i);
			continue;
		}
		/* An older entry with this fd number is a connection already
		 * closed.  Mark it for the sweeper rather than removing it here:
		 * a swap-remove would move an unchecked entry behind i. */
		for (size_t j = 0; j < h->n_conns; j++)
			if (j != i && h->conns[j].state != CONN_NEW && h->conns[j].fd == fd) {
				h->conns[j].state = CONN_CLOSING;
				h->conns[j].fd = -1; /* fstat() fails: forgotten at the next sweep */
				h->conns[j].deadline_ns = 0;
				break;
			}
		bufferevent_decref(c->bev);
		c->bev = NULL;
		c->fd = fd;
		c->ino = st.st_ino;
		peer_name(fd, c->peer, sizeof(c->peer));
		int total = 0, same = 0;
		for (size_t j = 0; j < h->n_conns; j++) {
			const struct conn *o = &h->conns[j];
			if (j == i || o->state == CONN_NEW || o->state == CONN_CLOSING)
				continue;
			total++;
			same += strcmp(o->peer, c->peer) == 0;
		}
		if (total >= h->max_conns || same >= h->max_per_ip) {
			h->refused++;
			if (h->refused < 10 || h->refused % 1000 == 0)
				log_warn("http", "refusing a connection from %s: %s (%llu refused so far)",
					 c->peer,
					 total >= h->max_conns ? "http.max_connections reached"
							       : "http.max_connections_per_ip reached",
					 (unsigned long long)h->refused);
			conn_shut(h, c);
		} else {
			c->state = CONN_IDLE;
			c->deadline_ns = now + h->idle_ns;
		}
		i++;
	}
}

/* Every 100 ms: forget closed connections, cut the ones past their deadline. */
static void sweep_conns(evutil_socket_t fd_, short what, void *arg)
{
	(void)fd_;
	(void)what;
	struct http *h = arg;
	int64_t now = det_mono_ns();
	for (size_t i = 0; i < h->n_conns;) {
		struct conn *c = &h->conns[i];
		struct stat st;
		if (c->state == CONN_NEW) {
			i++;
			continue;
		}
		if (fstat(c->fd, &st) < 0 || st.st_ino != c->ino) {
			conn_forget(h, i);
			continue;
		}
		if (c->deadline_ns && now >= c->deadline_ns) {
			h->timed_out++;
			log_debug("http", "closing a connection from %s: %s timeout", c->peer,
				  c->state == CONN_READING ? "request" : "idle");
			conn_shut(h, c);
		}
		i++;
	}
}

static struct conn *conn_of_request(struct http *h, struct evhttp_request *req)
{
	struct evhttp_connection *ec = evhttp_request_get_connection(req);
	int fd = ec ? bufferevent_getfd(evhttp_connection_get_bufferevent(ec)) : -1;
	for (size_t i = 0; fd >= 0 && i < h->n_conns; i++)
		if (h->conns[i].fd == fd && h->conns[i].state != CONN_NEW)
			return &h->conns[i];
	return NULL;
}

/* evhttp: the response of a request was sent; the connection is kept alive. */
static void on_complete(struct evhttp_request *req, void *arg)
{
	(void)req;
	uint64_t id = (uint64_t)(uintptr_t)arg;
	for (struct http *h = instances; h; h = h->next_instance) {
		struct conn *c = conn_by_id(h, id);
		if (c && c->state == CONN_BUSY) {
			c->state = CONN_IDLE;
			c->deadline_ns = det_mono_ns() + h->idle_ns;
		}
	}
}

static void on_resume(evutil_socket_t fd_, short what, void *arg)
{
	(void)fd_;
	(void)what;
	struct http *h = arg;
	evconnlistener_enable(evhttp_bound_socket_get_listener(h->bound));
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS...): retrying at once would spin
 * the loop at 100% and flood the log; pause, as the Unix socket does. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
	struct http *h = instance_of(arg);
	int err = EVUTIL_SOCKET_ERROR();
	evconnlistener_disable(l);
	if (!h)
		return;
	h->accept_pauses++;
	int64_t now = det_mono_ns();
	if (now - h->last_pause_log > 10 * (int64_t)1000000000) {
		h->last_pause_log = now;
		log_warn("http", "accept: %s; pausing the listener for 100 ms (%llu pauses so far)",
			 strerror(err), (unsigned long long)h->accept_pauses);
	}
	struct timeval tv = {0, 100000};
	event_add(h->resume_ev, &tv);
}

static void conn_status(struct json_object *o, void *arg)
{
	struct http *h = arg;
	int open = 0;
	for (size_t i = 0; i < h->n_conns; i++)
		open += h->conns[i].state != CONN_NEW && h->conns[i].state != CONN_CLOSING;
	json_object_object_add(o, "connections", json_object_new_int(open));
	json_object_object_add(o, "max_connections", json_object_new_int(h->max_conns));
	json_object_object_add(o, "max_connections_per_ip", json_object_new_int(h->max_per_ip));
	json_object_object_add(o, "refused", json_object_new_uint64(h->refused));
	json_object_object_add(o, "timed_out", json_object_new_uint64(h->timed_out));
	json_object_object_add(o, "accept_pauses", json_object_new_uint64(h->accept_pauses));
}

/* ---- dispatch ----------------------------------------------------------------- */

static size_t header_bytes(struct evhttp_request *req)
{
	struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
	const char *uri = evhttp_request_get_uri(req);
	size_t n = uri ? strlen(uri) + 16 : 16; /* request line */
	for (struct evkeyval *kv = hdrs->tqh_first; kv; kv = kv->next.tqe_next)
		n += strlen(kv->key) + strlen(kv->value) + 4; /* ": " and CRLF */
	return n;
}

/* A pattern: every '*' stands for one non-empty path segment (no '/'). */
static bool pattern_match(const char *pat, const char *path)
{
	while (*pat) {
		if (*pat == '*') {
			size_t n = strcspn(path, "/");
			if (!n)
				return false;
			path += n;
			pat++;
		} else if (*pat++ != *path++) {
			return false;
		}
	}
	return !*path;
}

static const struct route *match(const struct http *h, const char *path)
{
	const struct route *best = NULL, *pattern = NULL;
	for (size_t i = 0; i < h->n_routes; i++) {
		const struct route *r = &h->routes[i];
		if (r->flags & HTTP_ROUTE_PATTERN) {
			if (!pattern && pattern_match(r->path, path))
				pattern = r;
		} else if (!(r->flags & HTTP_ROUTE_PREFIX)) {
			if (strcmp(r->path, path) == 0)
				return r; /* exact wins */
		} else if (strncmp(r->path, path, r->len) == 0 && (!best || r->len > best->len)) {
			best = r;
		}
	}
	return pattern ? pattern : best; /* a pattern is more precise than a prefix */
}

static void dispatch(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = http_request_path(req);
	const struct route *r;
	struct conn *c = conn_of_request(h, req);

	if (c && c->state != CONN_CLOSING) {
		/* complete: the handler owns the connection now (an SSE stream
		 * lives as long as it likes); the idle clock restarts once the
		 * response has been sent */
		c->state = CONN_BUSY;
		c->deadline_ns = 0;
		evhttp_request_set_on_complete_cb(req, on_complete, (void *)(uintptr_t)c->id);
	}
	if (header_bytes(req) > h->max_header_bytes) {
		http_reply_error(req, 431, "request headers larger than %zu bytes",
				 h->max_header_bytes);
		return;
	}
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > h->max_body_bytes) {
		http_reply_error(req, 413, "request body larger than %zu bytes", h->max_body_bytes);
		return;
	}
	/* A loopback listener is reachable only from this machine, where
	 * clients say localhost or an address; any other name is a web page
	 * that had its DNS name rebound to 127.0.0.1 to read the API (and the
	 * camera pictures) with the browser's permission.  Non-browser clients
	 * that send no Host are let through. */
	const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
	if (host && conn_addr_is_loopback(req, true) && !http_request_host_ok(req, host, NULL)) {
		http_reply_error(req, 403, "Host \"%.64s\" is refused: a loopback listener "
					   "answers only localhost and loopback addresses",
				 host);
		return;
	}
	r = match(h, path);
	if (!r) {
		http_reply_error(req, 404, "no such resource: %s", path);
		return;
	}
	if (!(r->methods & (unsigned)m)) {
		char allow[96] = "";
		size_t len = 0;
		for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
			if (!(r->methods & methods[i].bit))
				continue;
			int w = snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "",
					 methods[i].name);
			if (w > 0 && (size_t)w < sizeof(allow) - len)
				len += (size_t)w;
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
		http_reply_error(req, 405, "method not allowed on %s (allowed: %s)", path, allow);
		return;
	}
	r->fn(req, r->ud);
}

/* ---- routes and sections ------------------------------------------------------ */

int http_route_add(struct http *h, unsigned methods_mask, const char *path, unsigned flags,
		   http_handler_fn fn, void *ud)
{
	if (!h || !path || !fn || path[0] != '/')
		return -EINVAL;
	for (size_t i = 0; i < h->n_routes; i++)
		if (strcmp(h->routes[i].path, path) == 0 &&
		    (h->routes[i].flags & (HTTP_ROUTE_PREFIX | HTTP_ROUTE_PATTERN)) ==
			    (flags & (HTTP_ROUTE_PREFIX | HTTP_ROUTE_PATTERN)))
			return -EEXIST;
	if (h->n_routes == MAX_ROUTES)
		return -ENOSPC;
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	h->routes[h->n_routes++] = (struct route){
		.path = p, .len = strlen(p), .methods = methods_mask, .flags = flags, .fn = fn, .ud = ud};
	return 0;
}

int http_route_remove(struct http *h, const char *path)
{
	if (!h)
		return -EINVAL;
	for (size_t i = 0; i < h->n_routes; i++) {
		if (strcmp(h->routes[i].path, path) == 0) {
			free(h->routes[i].path);
			memmove(&h->routes[i], &h->routes[i + 1],
				(h->n_routes - i - 1) * sizeof(h->routes[0]));
			h->n_routes--;
			return 0;
		}
	}
	return -ENOENT;
}

int http_status_add(struct http *h, const char *name, http_status_fn fill, void *ud)
{
	if (!h || !name || !fill)
		return -EINVAL;
	if (h->n_sections == MAX_SECTIONS)
		return -ENOSPC;
	for (size_t i = 0; i < h->n_sections; i++)
		if (*name && strcmp(h->sections[i].name, name) == 0)
			return -EEXIST;
	char *n = strdup(name);
	if (!n)
		return -ENOMEM;
	h->sections[h->n_sections++] = (struct section){.name = n, .fill = fill, .ud = ud};
	return 0;
}

int http_status_remove(struct http *h, const char *name)
{
	if (!h)
		return -EINVAL;
	for (size_t i = 0; i < h->n_sections; i++) {
		if (strcmp(h->sections[i].name, name) == 0) {
			free(h->sections[i].name);
			memmove(&h->sections[i], &h->sections[i + 1],
				(h->n_sections - i - 1) * sizeof(h->sections[0]));
			h->n_sections--;
			return 0;
		}
	}
	return -ENOENT;
}

struct json_object *http_status_json(struct http *h)
{
	struct json_object *root = json_object_new_object();

	if (!root)
		return NULL;
	for (size_t i = 0; i < h->n_sections; i++) {
		struct section *s = &h->sections[i];
		if (!*s->name) {
			s->fill(root, s->ud);
			continue;
		}
		struct json_object *sec = json_object_new_object();
		if (!sec)
			continue;
		s->fill(sec, s->ud);
		json_object_object_add(root, s->name, sec);
	}
	return root;
}

static void status_handler(struct evhttp_request *req, void *ud)
{
	struct json_object *root = http_status_json(ud);

	if (!root) {
		http_reply_error(req, 500, "out of memory");
		return;
	}
	http_reply_json(req, 200, root);
}

/* ---- life --------------------------------------------------------------------- */

int http_create(struct event_base *base, const struct cfg_http *cfg, int inherited_fd,
		struct http **out)
{
	struct http *h = calloc(1, sizeof(*h));
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd, r;

	if (!h) {
		if (inherited_fd >= 0)
			close(inherited_fd);
		return -ENOMEM;
	}
	h->max_header_bytes = cfg->max_header_bytes;
	h->max_body_bytes = cfg->max_body_bytes;
	h->base = base;
	h->max_conns = cfg->max_connections > 0 ? cfg->max_connections : 256;
	h->max_per_ip = cfg->max_connections_per_ip > 0 ? cfg->max_connections_per_ip : 32;
	h->header_ns = (int64_t)((cfg->header_timeout_s > 0 ? cfg->header_timeout_s : 10) * 1e9);
	h->idle_ns = (int64_t)((cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : 30) * 1e9);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)h->max_conns > rl.rlim_cur / 2) {
		/* HTTP may use half the descriptors; the rest are for the Unix
		 * socket's clients, GStreamer (GLib aborts when it cannot make a
		 * pipe) and the model.  See LimitNOFILE= in detd.service. */
		int cap = rl.rlim_cur / 2 > 1 ? (int)(rl.rlim_cur / 2) : 1;
		log_warn("http", "http.max_connections %d is over half the descriptor limit "
				 "(RLIMIT_NOFILE %llu): using %d",
			 h->max_conns, (unsigned long long)rl.rlim_cur, cap);
		h->max_conns = cap;
	}
	h->next_instance = instances;
	instances = h;
	h->check_ev = event_new(base, -1, 0, check_conns, h);
	h->sweep_ev = event_new(base, -1, EV_PERSIST, sweep_conns, h);
	h->resume_ev = evtimer_new(base, on_resume, h);
	h->ev = evhttp_new(base);
	if (!h->check_ev || !h->sweep_ev || !h->resume_ev) {
		r = -ENOMEM;
		if (inherited_fd >= 0)
			close(inherited_fd);
		goto fail;
	}
	if (!h->ev) {
		r = -ENOMEM;
		if (inherited_fd >= 0)
			close(inherited_fd);
		goto fail;
	}
	/* We answer 405 ourselves with a JSON body, so let every method through. */
	evhttp_set_allowed_methods(h->ev, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						  EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						  EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	/* Hard caps well above the configured limits so that our own JSON 431/413
	 * answers the common case; evhttp's caps bound memory for the rest. */
	evhttp_set_max_headers_size(h->ev, (ev_ssize_t)(cfg->max_header_bytes * 4));
	evhttp_set_max_body_size(h->ev, (ev_ssize_t)(cfg->max_body_bytes * 4));
	/* evhttp's own timeout restarts with every byte: only a backstop behind
	 * our absolute deadlines (sweep_conns) */
	evhttp_set_timeout(h->ev, 30 + (int)((h->idle_ns > h->header_ns ? h->idle_ns : h->header_ns) /
					     1000000000));
	evhttp_set_gencb(h->ev, dispatch, h);
	evhttp_set_bevcb(h->ev, make_bev, h);

	if (inherited_fd >= 0) {
		/* systemd hands sockets over blocking; a blocking accept() would
		 * stall the whole loop once the backlog is empty. */
		evutil_make_socket_nonblocking(inherited_fd);
		evutil_make_socket_closeonexec(inherited_fd);
		h->bound = evhttp_accept_socket_with_handle(h->ev, inherited_fd);
		if (!h->bound) {
			close(inherited_fd);
			log_error("http", "cannot serve the inherited socket (fd %d)", inherited_fd);
			r = -EINVAL;
			goto fail;
		}
	} else {
		h->bound = evhttp_bind_socket_with_handle(h->ev, cfg->address, (ev_uint16_t)cfg->port);
		if (!h->bound) {
			r = errno ? -errno : -EADDRNOTAVAIL;
			log_error("http", "cannot listen on %s:%d: %s", cfg->address, cfg->port,
				  strerror(-r));
			goto fail;
		}
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(h->bound), on_accept_error);
	fd = evhttp_bound_socket_get_fd(h->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	r = http_route_add(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/status", 0, status_handler, h);
	if (r < 0 || (r = http_status_add(h, "http", conn_status, h)) < 0)
		goto fail;
	struct timeval sweep_tv = {0, 100000};
	event_add(h->sweep_ev, &sweep_tv);
	*out = h;
	return 0;
fail:
	http_destroy(h);
	return r;
}

void http_destroy(struct http *h)
{
	if (!h)
		return;
	if (h->ev)
		evhttp_free(h->ev); /* closes listeners and open connections */
	for (struct http **p = &instances; *p; p = &(*p)->next_instance)
		if (*p == h) {
			*p = h->next_instance;
			break;
		}
	while (h->n_conns)
		conn_forget(h, h->n_conns - 1);
	free(h->conns);
	if (h->check_ev)
		event_free(h->check_ev);
	if (h->sweep_ev)
		event_free(h->sweep_ev);
	if (h->resume_ev)
		event_free(h->resume_ev);
	for (size_t i = 0; i < h->n_routes; i++)
		free(h->routes[i].path);
	for (size_t i = 0; i < h->n_sections; i++)
		free(h->sections[i].name);
	free(h);
}

int http_port(const struct http *h)
{
	return h ? h->port : -1;
}
