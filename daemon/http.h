/*
 * http.h — detd's HTTP JSON API server (libevent evhttp) and the route table
 * other modules plug their endpoints into.
 *
 * Threads: everything here runs on the main loop thread only (create,
 * route_add, handlers, status fillers).  Handlers must never block; a
 * handler that answers later (e.g. Server-Sent Events) keeps the request
 * and replies from a later loop callback.
 *
 * Routes: an exact path ("/status") or a prefix ("/streams/" with
 * HTTP_ROUTE_PREFIX).  Exact matches win over prefixes, longer prefixes over
 * shorter.  A path that matches but with another method gets 405 with an
 * Allow header; no match gets 404.  All errors have a JSON body
 * {"error":{"code":N,"message":"..."}}.
 *
 * Limits: requests whose headers exceed http.max_header_bytes get 431 and
 * bodies above http.max_body_bytes get 413, both with JSON bodies.  evhttp
 * itself enforces a hard cap at 4x these (it answers with its own plain
 * error page and closes), so memory stays bounded even for bigger abuse.
 */
#ifndef DETD_HTTP_H
#define DETD_HTTP_H

#include <stdarg.h>
#include <stdbool.h>

#include <event2/http.h>

struct event_base;
struct json_object;
struct cfg_http;
struct http;

/* Method bits are libevent's enum evhttp_cmd_type values (EVHTTP_REQ_GET, ...). */
#define HTTP_ROUTE_PREFIX 1u
/* e.g. "/streams/{*}/mjpeg" (written with a bare star): each '*' matches one path segment; exact routes win
 * over patterns, patterns over prefixes. */
#define HTTP_ROUTE_PATTERN 2u

typedef void (*http_handler_fn)(struct evhttp_request *req, void *ud);
/* Fill one section object of /status (already created, empty). */
typedef void (*http_status_fn)(struct json_object *section, void *ud);

/*
 * Listen on cfg->address:cfg->port (port 0: any free port), or on
 * inherited_fd when >= 0 (socket activation; the server takes the fd).
 */
int http_create(struct event_base *base, const struct cfg_http *cfg, int inherited_fd,
		struct http **out);
void http_destroy(struct http *h); /* NULL-safe; closes the listener and open requests */

/* The bound port (useful with port 0) and address as configured. */
int http_port(const struct http *h);

/* Add a route; path is copied.  -EEXIST when the same path and kind exist. */
int http_route_add(struct http *h, unsigned methods, const char *path, unsigned flags,
		   http_handler_fn fn, void *ud);
/* Remove the route with that path (e.g. when a module stops).  0 or -ENOENT. */
int http_route_remove(struct http *h, const char *path);

/*
 * Contribute a section to GET /status.  name "" merges into the top
 * object (the daemon's version/pid/uptime use this).  Sections appear in the
 * order they were added.
 */
int http_status_add(struct http *h, const char *name, http_status_fn fill, void *ud);
int http_status_remove(struct http *h, const char *name);
/* The /status document as GET /status returns it (new reference; NULL on ENOMEM). */
struct json_object *http_status_json(struct http *h);

/* Replies.  http_reply_json takes ownership of body (may be NULL: empty object). */
void http_reply_json(struct evhttp_request *req, int code, struct json_object *body);
void http_reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The request's decoded path without the query ("/streams/cam0"), or NULL. */
const char *http_request_path(struct evhttp_request *req);
/* True when the peer is a loopback address (for mutation authorisation). */
bool http_request_is_loopback(struct evhttp_request *req);
/*
 * True when a Host header value names this server in a way DNS rebinding
 * cannot fake: localhost or *.localhost, a loopback literal, address (the
 * configured listen address; may be NULL) or the address the connection
 * arrived on, each with an optional port.  Every request on a loopback
 * listener is held to it; mutations on any listener.
 */
bool http_request_host_ok(struct evhttp_request *req, const char *host, const char *address);

#endif
