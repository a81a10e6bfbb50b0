/* test_api.c — the HTTP API on a real evhttp server (http.c) on a free
 * loopback port: REST endpoints over raw TCP clients, /events with a real
 * `curl -N` child process and with a client that never reads.  Results are
 * injected through the bus. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>

#include "api.h"
#include "bus.h"
#include "config.h"
#include "http.h"
#include "metrics.h"
#include "pubtest.h"
#include "testutil.h"

struct hooks_log {
	int adds, removes, reloads;
	char last_body[256];
};

static int t_add(const char *body, size_t len, char *id, size_t idl, char *err, size_t el, void *ud)
{
	struct hooks_log *l = ud;
	l->adds++;
	snprintf(l->last_body, sizeof(l->last_body), "%.*s", (int)len, body);
	if (strstr(body, "\"bad\"")) {
		snprintf(err, el, "type: unknown source type");
		return -EINVAL;
	}
	snprintf(id, idl, "new0");
	return 0;
}

static int t_remove(const char *id, char *err, size_t el, void *ud)
{
	struct hooks_log *l = ud;
	l->removes++;
	if (strcmp(id, "cam0") != 0) {
		snprintf(err, el, "no such stream: %s", id);
		return -ENOENT;
	}
	return 0;
}

static int t_reload(char *err, size_t el, void *ud)
{
	((struct hooks_log *)ud)->reloads++;
	return 0;
}

struct fx {
	struct event_base *base;
	struct metrics *m;
	struct bus *bus;
	struct http *http;
	struct api *api;
	struct cfg_http hc;
	struct cfg_ipc ic;
	struct hooks_log log;
	int port;
};

static void fx_init(struct fx *f, const char *addr, bool mutations, const char *token)
{
	memset(f, 0, sizeof(*f));
	signal(SIGPIPE, SIG_IGN);
	f->base = event_base_new();
	f->m = metrics_create();
	f->bus = bus_create(8, f->m);
	f->hc = (struct cfg_http){.enabled = true, .address = (char *)addr, .port = 0,
				  .allow_mutations = mutations, .token = (char *)token,
				  .max_body_bytes = 65536, .max_header_bytes = 8192};
	f->ic = (struct cfg_ipc){.client_buffer_bytes = 32 * 1024,
				 .client_hard_limit_bytes = 128 * 1024, .slow_client_timeout_s = 1};
	ck_assert_int_eq(http_create(f->base, &f->hc, -1, &f->http), 0);
	f->port = http_port(f->http);
	struct api_opts o = {.bus = f->bus, .metrics = f->m, .http = &f->hc, .ipc = &f->ic,
			     .hooks = {.stream_add = t_add, .stream_remove = t_remove,
				       .reload = t_reload, .ud = &f->log}};
	ck_assert_int_eq(api_create(f->base, f->http, &o, &f->api), 0);
	bus_stream_add(f->bus, "cam0");
	bus_stream_add(f->bus, "cam1");
}

static void fx_fini(struct fx *f)
{
	api_destroy(f->api);
	http_destroy(f->http);
	bus_destroy(f->bus);
	metrics_destroy(f->m);
	event_base_free(f->base);
}

static struct pt_client *tcp_connect_buf(int port, int rcvbuf)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* before connect(): the window is negotiated from it, so a slow client
	 * fills up (and later drains) after a few hundred KB, not megabytes */
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return pt_client_fd(fd);
}

static struct pt_client *tcp_connect(int port)
{
	return tcp_connect_buf(port, 0);
}

struct resp {
	int status;
	char *headers;
	char *body;
};

static void resp_free(struct resp *r)
{
	free(r->headers);
	free(r->body);
}

/* One request with Connection: close; reads to EOF. */
static struct resp req(struct fx *f, const char *method, const char *path, const char *hdrs,
		       const char *body)
{
	struct pt_client *c = tcp_connect(f->port);
	char head[1024];
	/* what a well-behaved local client sends (curl, detctl); the tests of
	 * the mutation guards pass their own Host / Content-Type */
	bool own_host = hdrs && strcasestr(hdrs, "Host:");
	bool own_type = hdrs && strcasestr(hdrs, "Content-Type:");
	snprintf(head, sizeof(head),
		 "%s %s HTTP/1.1\r\n%sConnection: close\r\n%s%sContent-Length: %zu\r\n\r\n",
		 method, path, own_host ? "" : "Host: 127.0.0.1\r\n", hdrs ? hdrs : "",
		 own_type || strcmp(method, "POST") ? "" : "Content-Type: application/json\r\n",
		 body ? strlen(body) : 0);
	pt_send(f->base, c, head);
	if (body)
		pt_send(f->base, c, body);
	int64_t end = pt_ms() + 5000;
	while (!c->eof && pt_ms() < end)
		pt_pump(f->base, &c, 1, 1);
	ck_assert_msg(c->eof, "no complete response to %s %s", method, path);
	c->buf[c->len] = '\0';
	struct resp r = {0};
	ck_assert_int_eq(sscanf(c->buf, "HTTP/1.1 %d", &r.status), 1);
	char *sep = strstr(c->buf, "\r\n\r\n");
	ck_assert_ptr_nonnull(sep);
	r.headers = strndup(c->buf, (size_t)(sep - c->buf));
	r.body = strdup(sep + 4);
	pt_client_free(c);
	return r;
}

static struct json_object *jbody(struct resp *r)
{
	struct json_object *o = json_tokener_parse(r->body);
	ck_assert_msg(o != NULL, "not JSON: %s", r->body);
	return o;
}

static int err_code(struct resp *r)
{
	struct json_object *o = jbody(r), *e;
	ck_assert(json_object_object_get_ex(o, "error", &e));
	ck_assert(strlen(pt_str(e, "message")) > 0);
	int c = (int)pt_int(e, "code");
	json_object_put(o);
	return c;
}

static void publish(struct fx *f, const char *stream, uint64_t seq, int n)
{
	struct det_result *r = pt_result(stream, seq, n);
	bus_publish(f->bus, r);
	det_result_unref(r);
}

START_TEST(rest_endpoints)
{
	struct fx f;
	fx_init(&f, "127.0.0.1", true, NULL);
	publish(&f, "cam0", 5, 2);
	struct resp r = req(&f, "GET", "/streams", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	struct json_object *o = jbody(&r), *a = json_object_object_get(o, "streams");
	ck_assert_int_eq(json_object_array_length(a), 2);
	ck_assert_int_eq(pt_int(json_object_array_get_idx(a, 0), "last_seq"), 5);
	json_object_put(o);
	resp_free(&r);

	r = req(&f, "GET", "/streams/cam1", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	o = jbody(&r);
	ck_assert_str_eq(pt_str(o, "state"), "starting");
	json_object_put(o);
	resp_free(&r);
	r = req(&f, "GET", "/streams/nope", NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	ck_assert_int_eq(err_code(&r), 404);
	resp_free(&r);

	r = req(&f, "GET", "/detections/latest?stream=cam0", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	o = jbody(&r);
	ck_assert_int_eq(pt_int(o, "seq"), 5);
	json_object_put(o);
	resp_free(&r);
	r = req(&f, "GET", "/detections/latest?stream=cam1", NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	r = req(&f, "GET", "/detections/latest", NULL, NULL);
	o = jbody(&r);
	a = json_object_object_get(o, "detections");
	ck_assert_int_eq(json_object_array_length(a), 1);
	ck_assert_str_eq(pt_str(json_object_array_get_idx(a, 0), "stream"), "cam0");
	json_object_put(o);
	resp_free(&r);

	r = req(&f, "GET", "/metrics", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_nonnull(strcasestr(r.headers, "content-type: text/plain; version=0.0.4"));
	ck_assert_ptr_nonnull(strstr(r.body, "detd_results_total{stream=\"cam0\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(r.body, "detd_subscribers{transport=\"sse\"} 0\n"));
	resp_free(&r);

	/* mutations from loopback, allowed */
	r = req(&f, "POST", "/streams", NULL, "{\"id\":\"new0\",\"type\":\"test\"}");
	ck_assert_int_eq(r.status, 201);
	ck_assert_ptr_nonnull(strcasestr(r.headers, "location: /streams/new0"));
	ck_assert_str_eq(f.log.last_body, "{\"id\":\"new0\",\"type\":\"test\"}");
	resp_free(&r);
	r = req(&f, "POST", "/streams", NULL, "{\"type\":\"bad\"}");
	ck_assert_int_eq(r.status, 400);
	ck_assert_int_eq(err_code(&r), 400);
	resp_free(&r);
	r = req(&f, "DELETE", "/streams/cam0", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	r = req(&f, "DELETE", "/streams/zzz", NULL, NULL);
	ck_assert_int_eq(r.status, 404);
	resp_free(&r);
	r = req(&f, "POST", "/reload", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	r = req(&f, "GET", "/reload", NULL, NULL);
	ck_assert_int_eq(r.status, 405);
	resp_free(&r);
	ck_assert_int_eq(f.log.adds, 2);
	ck_assert_int_eq(f.log.removes, 2);
	ck_assert_int_eq(f.log.reloads, 1);
	fx_fini(&f);
}
END_TEST

START_TEST(mutation_auth)
{
	struct fx f;
	/* mutations disabled */
	fx_init(&f, "127.0.0.1", false, NULL);
	struct resp r = req(&f, "POST", "/reload", NULL, NULL);
	ck_assert_int_eq(r.status, 403);
	ck_assert_int_eq(err_code(&r), 403);
	resp_free(&r);
	fx_fini(&f);
	/* not a loopback listener, no token configured: the peer decides, and
	 * this one is loopback (tests/integration/http_mutations.sh has the
	 * non-loopback peer) */
	fx_init(&f, "0.0.0.0", true, NULL);
	r = req(&f, "DELETE", "/streams/cam0", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	fx_fini(&f);
	/* a token is configured: needed from every peer, loopback too */
	fx_init(&f, "127.0.0.1", true, "s3cret");
	r = req(&f, "DELETE", "/streams/cam0", NULL, NULL);
	ck_assert_int_eq(r.status, 401);
	resp_free(&r);
	ck_assert_int_eq(f.log.removes, 0);
	fx_fini(&f);
	/* not loopback, token configured */
	fx_init(&f, "0.0.0.0", true, "s3cret");
	r = req(&f, "POST", "/reload", NULL, NULL);
	ck_assert_int_eq(r.status, 401);
	ck_assert_ptr_nonnull(strcasestr(r.headers, "www-authenticate: Bearer"));
	resp_free(&r);
	r = req(&f, "POST", "/reload", "Authorization: Bearer s3cre\r\n", NULL);
	ck_assert_int_eq(r.status, 401);
	resp_free(&r);
	r = req(&f, "POST", "/reload", "Authorization: Bearer s3cret\r\n", NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(f.log.reloads, 1);
	/* reads need no token */
	r = req(&f, "GET", "/streams", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	fx_fini(&f);
}
END_TEST

/* Issue 15 #2: what a web page in a local browser can send must not mutate. */
START_TEST(mutation_guards)
{
	struct fx f;
	fx_init(&f, "127.0.0.1", true, NULL);
	static const char *const refused[][2] = {
		/* simple (no preflight) cross-origin requests a page can make */
		{"Content-Type: text/plain\r\nOrigin: http://evil.example\r\n", "403"},
		{"Content-Type: text/plain\r\n", "415"},
		{"Content-Type: application/x-www-form-urlencoded\r\n", "415"},
		{"Content-Type: multipart/form-data; boundary=x\r\n", "415"},
		{"Content-Type: application/jsonx\r\n", "415"},
		/* JSON, but from another origin */
		{"Origin: http://evil.example\r\n", "403"},
		{"Origin: null\r\n", "403"},
		{"Origin: https://127.0.0.1\r\n", "403"},
		/* DNS rebinding: the page's own name now resolves to 127.0.0.1 */
		{"Host: evil.example\r\n", "403"},
		{"Host: evil.example:8080\r\nOrigin: http://evil.example:8080\r\n", "403"},
		{"Host: 127.0.0.1.evil.example\r\n", "403"},
		{"Host: 127.0.0.1:80x\r\n", "403"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		struct resp r = req(&f, "POST", "/streams", refused[i][0],
				    "{\"id\":\"new0\",\"type\":\"test\"}");
		ck_assert_msg(r.status == atoi(refused[i][1]), "%s-> %d", refused[i][0], r.status);
		ck_assert_int_eq(err_code(&r), r.status);
		resp_free(&r);
		r = req(&f, "POST", "/reload", refused[i][0], NULL);
		ck_assert_msg(r.status == atoi(refused[i][1]), "reload %s-> %d", refused[i][0],
			      r.status);
		resp_free(&r);
	}
	ck_assert_int_eq(f.log.adds, 0);
	ck_assert_int_eq(f.log.reloads, 0);
	/* POST without any Content-Type: refused too */
	struct pt_client *c = tcp_connect(f.port);
	pt_send(f.base, c, "POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
			   "Content-Length: 0\r\n\r\n");
	while (!c->eof)
		pt_pump(f.base, &c, 1, 1);
	c->buf[c->len] = '\0';
	ck_assert_ptr_nonnull(strstr(c->buf, "HTTP/1.1 415"));
	pt_client_free(c);
	/* DELETE: no body, so no Content-Type is fine, but not a form type */
	struct resp r = req(&f, "DELETE", "/streams/cam0", "Content-Type: text/plain\r\n", NULL);
	ck_assert_int_eq(r.status, 415);
	resp_free(&r);
	ck_assert_int_eq(f.log.removes, 0);
	/* the legitimate ones */
	char host[64], both[160];
	snprintf(host, sizeof(host), "Host: localhost:%d\r\n", f.port);
	snprintf(both, sizeof(both), "Host: 127.0.0.1:%d\r\nOrigin: http://127.0.0.1:%d\r\n",
		 f.port, f.port);
	const char *good[] = {host, both, "Host: [::1]:8080\r\n",
			      "Content-Type: application/json; charset=utf-8\r\n"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		r = req(&f, "POST", "/streams", good[i], "{\"id\":\"new0\",\"type\":\"test\"}");
		ck_assert_msg(r.status == 201, "%s-> %d %s", good[i], r.status, r.body);
		resp_free(&r);
	}
	r = req(&f, "DELETE", "/streams/cam0", NULL, NULL);
	ck_assert_int_eq(r.status, 200);
	resp_free(&r);
	ck_assert_int_eq(f.log.adds, 4);
	ck_assert_int_eq(f.log.removes, 1);
	fx_fini(&f);
}
END_TEST

/* Issue 15 #6: client bytes quoted in HTTP error messages stay valid UTF-8. */
START_TEST(error_bodies_are_utf8)
{
	struct fx f;
	fx_init(&f, "127.0.0.1", false, NULL);
	static const char *const paths[] = {"/streams/a%C0%AFb", "/streams/%ED%A0%80",
					    "/detections/latest?stream=%F4%90%80%80",
					    "/events?%C0%AF=1", "/nosuch%ED%A0%80"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct resp r = req(&f, "GET", paths[i], NULL, NULL);
		ck_assert_msg(r.status == 404 || r.status == 400, "%s -> %d", paths[i], r.status);
		/* json-c's strict parser checks UTF-8 on this document */
		struct json_tokener *tok = json_tokener_new();
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		struct json_object *o = json_tokener_parse_ex(tok, r.body, (int)strlen(r.body));
		json_tokener_free(tok);
		ck_assert_msg(o != NULL, "%s: body not strict JSON: %s", paths[i], r.body);
		json_object_put(o);
		for (const unsigned char *p = (const unsigned char *)r.body; *p; p++) {
			ck_assert_msg(*p != 0xC0 && *p != 0xF4, "%s: raw bad byte in %s", paths[i],
				      r.body);
			ck_assert_msg(!(p[0] == 0xED && p[1] >= 0xA0), "%s: surrogate in %s",
				      paths[i], r.body);
		}
		resp_free(&r);
	}
	fx_fini(&f);
}
END_TEST

/* Read SSE events "event: T\ndata: J\n\n" from a client buffer. */
static struct json_object *sse_next(struct fx *f, struct pt_client *c, char *type, size_t tl,
				    int timeout_ms)
{
	int64_t end = pt_ms() + timeout_ms;
	for (;;) {
		if (c->len) {
			c->buf[c->len] = '\0';
			char *ev = strstr(c->buf, "event: ");
			char *fin = ev ? strstr(ev, "\n\n") : NULL;
			if (ev && fin) {
				char *data = strstr(ev, "\ndata: ");
				ck_assert_ptr_nonnull(data);
				snprintf(type, tl, "%.*s", (int)strcspn(ev + 7, "\n"), ev + 7);
				*fin = '\0';
				struct json_object *o = json_tokener_parse(data + 7);
				ck_assert_ptr_nonnull(o);
				size_t used = (size_t)(fin + 2 - c->buf);
				memmove(c->buf, fin + 2, c->len - used);
				c->len -= used;
				return o;
			}
		}
		if (c->eof || pt_ms() > end)
			return NULL;
		pt_pump(f->base, &c, 1, 1);
	}
}

START_TEST(sse_with_curl)
{
	struct fx f;
	fx_init(&f, "127.0.0.1", false, NULL);
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		char url[128];
		snprintf(url, sizeof(url),
			 "http://127.0.0.1:%d/events?stream=cam0&label=car,bus&min_score=0.2", f.port);
		execlp("curl", "curl", "-sN", url, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	struct pt_client *c = pt_client_fd(pfd[0]);
	int64_t end = pt_ms() + 5000;
	while (api_sse_count(f.api) == 0 && pt_ms() < end)
		pt_pump(f.base, &c, 1, 2);
	ck_assert_uint_eq(api_sse_count(f.api), 1);
	publish(&f, "cam1", 1, 4); /* other stream: filtered out */
	publish(&f, "cam0", 1, 2); /* car .3 person .5: car only */
	publish(&f, "cam0", 2, 4);
	bus_stream_state(f.bus, "cam0", "stalled", NULL);
	char type[32];
	struct json_object *o = sse_next(&f, c, type, sizeof(type), 5000);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(type, "detections");
	ck_assert_int_eq(pt_int(o, "seq"), 1);
	ck_assert_int_eq(json_object_array_length(json_object_object_get(o, "objects")), 1);
	json_object_put(o);
	o = sse_next(&f, c, type, sizeof(type), 5000);
	ck_assert_int_eq(json_object_array_length(json_object_object_get(o, "objects")), 2);
	json_object_put(o);
	o = sse_next(&f, c, type, sizeof(type), 5000);
	ck_assert_str_eq(type, "status");
	ck_assert_str_eq(pt_str(o, "state"), "stalled");
	json_object_put(o);
	/* curl goes away: the subscription goes with it */
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	end = pt_ms() + 5000;
	while (api_sse_count(f.api) > 0 && pt_ms() < end) {
		publish(&f, "cam0", 10, 1);
		pt_pump(f.base, NULL, 0, 5);
	}
	ck_assert_uint_eq(api_sse_count(f.api), 0);
	ck_assert_uint_eq(bus_sub_count(f.bus), 0);
	pt_client_free(c);
	/* bad filters are 400 */
	struct resp r = req(&f, "GET", "/events?min_score=2", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	r = req(&f, "GET", "/events?colour=red", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	r = req(&f, "GET", "/events?stream=a%20b", NULL, NULL);
	ck_assert_int_eq(r.status, 400);
	resp_free(&r);
	/* at most ipc.max_clients event streams */
	f.ic.max_clients = 1;
	api_reload(f.api, NULL, &f.ic);
	struct pt_client *one = tcp_connect(f.port);
	pt_send(f.base, one, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
	end = pt_ms() + 5000;
	while (api_sse_count(f.api) == 0 && pt_ms() < end)
		pt_pump(f.base, &one, 1, 2);
	r = req(&f, "GET", "/events", NULL, NULL);
	ck_assert_int_eq(r.status, 503);
	ck_assert_int_eq(err_code(&r), 503);
	resp_free(&r);
	pt_client_free(one);
	fx_fini(&f);
}
END_TEST

START_TEST(sse_slow_client)
{
	struct fx f;
	fx_init(&f, "127.0.0.1", false, NULL);
	struct pt_client *fast = tcp_connect(f.port), *slow = tcp_connect_buf(f.port, 16384);
	pt_send(f.base, fast, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
	pt_send(f.base, slow, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n");
	int64_t end = pt_ms() + 5000;
	while (api_sse_count(f.api) < 2 && pt_ms() < end)
		pt_pump(f.base, &fast, 1, 2);
	ck_assert_uint_eq(api_sse_count(f.api), 2);
	uint64_t seq = 0;
	size_t seen = 0;
	end = pt_ms() + 20000;
	while (api_sse_count(f.api) == 2 && pt_ms() < end) {
		publish(&f, "cam0", ++seq, 8);
		pt_pump(f.base, &fast, 1, 0);
	}
	ck_assert_uint_eq(api_sse_count(f.api), 1); /* the slow one was cut */
	/* the fast one saw every message, in order */
	char type[32];
	struct json_object *o;
	while ((o = sse_next(&f, fast, type, sizeof(type), 2000))) {
		ck_assert_str_eq(type, "detections");
		ck_assert_int_eq(pt_int(o, "seq"), (int64_t)++seen);
		json_object_put(o);
		if (seen == seq)
			break;
	}
	ck_assert_uint_eq(seen, seq);
	size_t len;
	char *txt = metrics_render(f.m, &len);
	ck_assert_ptr_nonnull(strstr(txt, "detd_clients_disconnected_total{transport=\"sse\",reason=\"slow\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(txt, "detd_messages_dropped_total{transport=\"sse\"}"));
	free(txt);
	/* the slow one gets EOF once it reads (what the kernel still held, then FIN) */
	end = pt_ms() + 30000;
	while (!slow->eof && pt_ms() < end) {
		slow->len = 0;
		pt_pump(f.base, &slow, 1, 2);
	}
	ck_assert(slow->eof);
	fprintf(stderr, "slow SSE client: %zu bytes, then %s\n", slow->total, slow->err ? strerror(slow->err) : "EOF");
	pt_client_free(slow);
	pt_client_free(fast);
	fx_fini(&f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("api");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, rest_endpoints);
	tcase_add_test(tc, mutation_auth);
	tcase_add_test(tc, mutation_guards);
	tcase_add_test(tc, error_bodies_are_utf8);
	tcase_add_test(tc, sse_with_curl);
	tcase_add_test(tc, sse_slow_client);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
