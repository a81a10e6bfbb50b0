/*
 * http.c — evhttp server, route table, /status sections, JSON replies.
 *
 * Owns the evhttp instance, its listening socket and two small tables
 * (routes, status sections).  Runs on the main loop thread only.
 * /healthz and /status themselves are registered by daemon.c, which owns
 * what they report.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "config.h"
#include "log.h"

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

struct http {
	struct evhttp *ev;
	struct evhttp_bound_socket *bound;
	int port;
	size_t max_header_bytes;
	size_t max_body_bytes;
	size_t n_routes;
	struct route routes[MAX_ROUTES];
	size_t n_sections;
	struct section sections[MAX_SECTIONS];
};

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
	char msg[512];
	va_list ap;
	struct json_object *root = json_object_new_object(), *err = json_object_new_object();

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
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

bool http_request_is_loopback(struct evhttp_request *req)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	int fd;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!c)
		return false;
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c));
	if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
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

static const struct route *match(const struct http *h, const char *path)
{
	const struct route *best = NULL;
	for (size_t i = 0; i < h->n_routes; i++) {
		const struct route *r = &h->routes[i];
		if (!(r->flags & HTTP_ROUTE_PREFIX)) {
			if (strcmp(r->path, path) == 0)
				return r; /* exact wins */
		} else if (strncmp(r->path, path, r->len) == 0 && (!best || r->len > best->len)) {
			best = r;
		}
	}
	return best;
}

static void dispatch(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = http_request_path(req);
	const struct route *r;

	if (header_bytes(req) > h->max_header_bytes) {
		http_reply_error(req, 431, "request headers larger than %zu bytes",
				 h->max_header_bytes);
		return;
	}
	if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > h->max_body_bytes) {
		http_reply_error(req, 413, "request body larger than %zu bytes", h->max_body_bytes);
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
		    (h->routes[i].flags & HTTP_ROUTE_PREFIX) == (flags & HTTP_ROUTE_PREFIX))
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
	h->ev = evhttp_new(base);
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
	evhttp_set_timeout(h->ev, 30); /* idle/slow clients do not hold sockets forever */
	evhttp_set_gencb(h->ev, dispatch, h);

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
	fd = evhttp_bound_socket_get_fd(h->bound);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	r = http_route_add(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, "/status", 0, status_handler, h);
	if (r < 0)
		goto fail;
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
