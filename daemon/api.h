/*
 * api.h — detd's HTTP API for detections, streams and metrics, on top of
 * the route table of http.h:
 *
 *   GET    /streams               every stream: state, rates, last seq (+ config via a hook)
 *   GET    /streams/{id}          one stream
 *   POST   /streams               add a stream (body: one stream's config object)
 *   DELETE /streams/{id}          remove a stream
 *   GET    /detections/latest     the latest detections message of each stream (?stream=ID: one)
 *   GET    /events                Server-Sent Events (?stream=&label=&min_score=)
 *   GET    /metrics               Prometheus text exposition 0.0.4
 *   POST   /reload                reload the configuration
 *
 * Mutations (POST/DELETE) are refused when http.allow_mutations is false,
 * when Host is not localhost / a loopback literal / the listen address, when
 * an Origin header names another origin, when the Content-Type is not
 * application/json (POST needs it; DELETE may omit it), and then need
 * "Authorization: Bearer <http.token>" from every peer once a token is set;
 * without a token only loopback *peers* may mutate.  (README "Security
 * policy".)
 *
 * Owns: the SSE connections (each a bus subscription behind the same
 * slow-consumer policy as the Unix socket: ipc.client_buffer_bytes,
 * client_hard_limit_bytes, slow_client_timeout_s).
 *
 * Thread: the libevent loop thread only.
 */
#ifndef DETD_API_H
#define DETD_API_H

#include <stddef.h>

struct event_base;
struct http;
struct bus;
struct metrics;
struct cfg_http;
struct cfg_ipc;
struct json_object;
struct api;

/*
 * What other modules do for the mutating endpoints.  Each returns 0 or
 * -errno with a reason in err: -EINVAL → 400, -ENOENT → 404, -EEXIST → 409,
 * -ENOTSUP → 501, anything else → 500.  A NULL hook answers 501.
 */
struct api_hooks {
	int (*stream_add)(const char *body, size_t len, char *id_out, size_t id_len, char *err,
			  size_t errlen, void *ud);
	int (*stream_remove)(const char *id, char *err, size_t errlen, void *ud);
	/* 0: reloaded; 1: accepted, runs asynchronously (202). */
	int (*reload)(char *err, size_t errlen, void *ud);
	/* Add fields (e.g. the stream's config) to a /streams entry; may be NULL. */
	void (*stream_describe)(const char *id, struct json_object *entry, void *ud);
	void *ud;
};

struct api_opts {
	struct bus *bus;
	struct metrics *metrics;
	const struct cfg_http *http; /* copied: allow_mutations, token, address */
	const struct cfg_ipc *ipc;   /* copied: the slow-client limits for SSE */
	struct api_hooks hooks;
	double sse_keepalive_s;      /* comment line interval; 0 = 15 s */
};

int api_create(struct event_base *base, struct http *h, const struct api_opts *o, struct api **out);
/* Ends every SSE stream (final chunk), removes the routes. NULL-safe. */
void api_destroy(struct api *a);
/* Reloadable settings: mutations, token, SSE limits. */
int api_reload(struct api *a, const struct cfg_http *http, const struct cfg_ipc *ipc);
size_t api_sse_count(const struct api *a);

#endif
