/*
 * test_http.c — the route table and /status sections of daemon/http.c.
 * The server runs on the test's loop (port 0); a client thread speaks raw
 * HTTP/1.0 over a socket and stops the loop when done.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <json-c/json.h>

#include "config.h"
#include "http.h"
#include "testutil.h"

static struct event_base *base;
static struct http *srv;
static int port;

static void setup(void)
{
	struct cfg_http c = {.enabled = true,
			     .address = "127.0.0.1",
			     .port = 0,
			     .max_body_bytes = 1024,
			     .max_header_bytes = 2048};
	ck_assert_int_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(http_create(base, &c, -1, &srv), 0);
	port = http_port(srv);
	ck_assert_int_gt(port, 0);
}

static void teardown(void)
{
	http_destroy(srv);
	event_base_free(base);
}

/* ---- client thread ---- */

struct exchange {
	const char *request;
	char response[8192];
};

struct client {
	struct exchange *ex;
	size_t n;
};

static void *client_main(void *arg)
{
	struct client *cl = arg;
	for (size_t i = 0; i < cl->n; i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		size_t got = 0;
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			break;
		ssize_t w = write(fd, cl->ex[i].request, strlen(cl->ex[i].request));
		(void)w;
		for (;;) {
			ssize_t n = read(fd, cl->ex[i].response + got,
					 sizeof(cl->ex[i].response) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		cl->ex[i].response[got] = '\0';
		close(fd);
	}
	event_base_loopexit(base, NULL);
	return NULL;
}

static void run(struct exchange *ex, size_t n)
{
	struct client cl = {ex, n};
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, client_main, &cl), 0);
	event_base_dispatch(base);
	pthread_join(t, NULL);
}

static int status_code(const char *resp)
{
	int code = 0;
	sscanf(resp, "HTTP/1.%*d %d", &code);
	return code;
}

static const char *body(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");
	return b ? b + 4 : "";
}

/* ---- handlers ---- */

static void say(struct evhttp_request *req, void *ud)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "who", json_object_new_string(ud));
	json_object_object_add(o, "path", json_object_new_string(http_request_path(req)));
	http_reply_json(req, 200, o);
}

static void fill_a(struct json_object *s, void *ud)
{
	json_object_object_add(s, "n", json_object_new_int(*(int *)ud));
}

static void fill_root(struct json_object *s, void *ud)
{
	json_object_object_add(s, "top", json_object_new_boolean(1));
}

START_TEST(routes_exact_prefix_and_errors)
{
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_GET, "/streams", 0, say, "exact"), 0);
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_GET | EVHTTP_REQ_DELETE, "/streams/",
					HTTP_ROUTE_PREFIX, say, "prefix"),
			 0);
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_POST, "/streams/special/",
					HTTP_ROUTE_PREFIX, say, "longer"),
			 0);
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_GET, "/streams", 0, say, "dup"), -EEXIST);
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_GET, "relative", 0, say, "x"), -EINVAL);
	ck_assert_int_eq(http_route_add(srv, EVHTTP_REQ_GET, "/gone", 0, say, "gone"), 0);
	ck_assert_int_eq(http_route_remove(srv, "/gone"), 0);
	ck_assert_int_eq(http_route_remove(srv, "/gone"), -ENOENT);

	struct exchange ex[] = {
		{"GET /streams HTTP/1.0\r\n\r\n", ""},
		{"GET /streams/cam0 HTTP/1.0\r\n\r\n", ""},
		{"DELETE /streams/cam0 HTTP/1.0\r\n\r\n", ""},
		{"POST /streams/special/x HTTP/1.0\r\nContent-Length: 0\r\n\r\n", ""},
		{"GET /streams/special/x HTTP/1.0\r\n\r\n", ""}, /* longer prefix wins: POST only */
		{"GET /gone HTTP/1.0\r\n\r\n", ""},
		{"PUT /streams HTTP/1.0\r\nContent-Length: 0\r\n\r\n", ""},
		{"GET /streams?x=1 HTTP/1.0\r\n\r\n", ""},
	};
	run(ex, sizeof(ex) / sizeof(ex[0]));
	ck_assert_int_eq(status_code(ex[0].response), 200);
	ck_assert_ptr_nonnull(strstr(body(ex[0].response), "\"who\":\"exact\""));
	ck_assert_int_eq(status_code(ex[1].response), 200);
	ck_assert_ptr_nonnull(strstr(body(ex[1].response), "\"who\":\"prefix\""));
	ck_assert_ptr_nonnull(strstr(body(ex[1].response), "\"path\":\"/streams/cam0\""));
	ck_assert_int_eq(status_code(ex[2].response), 200);
	ck_assert_int_eq(status_code(ex[3].response), 200);
	ck_assert_ptr_nonnull(strstr(body(ex[3].response), "\"who\":\"longer\""));
	ck_assert_int_eq(status_code(ex[4].response), 405);
	ck_assert_ptr_nonnull(strstr(ex[4].response, "Allow: POST"));
	ck_assert_int_eq(status_code(ex[5].response), 404);
	ck_assert_ptr_nonnull(strstr(body(ex[5].response), "\"error\":{\"code\":404"));
	ck_assert_int_eq(status_code(ex[6].response), 405);
	ck_assert_int_eq(status_code(ex[7].response), 200); /* query is not part of the path */
	ck_assert_ptr_nonnull(strstr(body(ex[7].response), "\"path\":\"/streams\""));
}
END_TEST

START_TEST(status_sections_and_limits)
{
	int n = 42;
	ck_assert_int_eq(http_status_add(srv, "", fill_root, NULL), 0);
	ck_assert_int_eq(http_status_add(srv, "alpha", fill_a, &n), 0);
	ck_assert_int_eq(http_status_add(srv, "alpha", fill_a, &n), -EEXIST);
	ck_assert_int_eq(http_status_add(srv, "beta", fill_a, &n), 0);
	ck_assert_int_eq(http_status_remove(srv, "beta"), 0);
	ck_assert_int_eq(http_status_remove(srv, "beta"), -ENOENT);

	char big[4096];
	memset(big, 'h', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	char req_hdr[4200];
	snprintf(req_hdr, sizeof(req_hdr), "GET /status HTTP/1.0\r\nX-Big: %s\r\n\r\n", big);
	char req_body[1400] = "POST /status HTTP/1.0\r\nContent-Length: 1100\r\n\r\n";
	size_t l = strlen(req_body);
	memset(req_body + l, 'b', 1100);
	req_body[l + 1100] = '\0';

	struct exchange ex[] = {
		{"GET /status HTTP/1.0\r\n\r\n", ""},
		{req_hdr, ""},
		{req_body, ""},
	};
	run(ex, 3);
	ck_assert_int_eq(status_code(ex[0].response), 200);
	struct json_object *o = json_tokener_parse(body(ex[0].response));
	ck_assert_ptr_nonnull(o);
	struct json_object *v;
	ck_assert(json_object_object_get_ex(o, "top", &v));
	ck_assert(json_object_object_get_ex(o, "alpha", &v));
	ck_assert_int_eq(json_object_get_int(json_object_object_get(v, "n")), 42);
	ck_assert(!json_object_object_get_ex(o, "beta", &v));
	json_object_put(o);
	ck_assert_int_eq(status_code(ex[1].response), 431);
	ck_assert_ptr_nonnull(strstr(body(ex[1].response), "\"code\":431"));
	ck_assert_int_eq(status_code(ex[2].response), 413);
	ck_assert_ptr_nonnull(strstr(body(ex[2].response), "\"code\":413"));
}
END_TEST

/* ---- connection policy (issue 15 #1): same-thread clients, loop pumped ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pump(struct event_base *b, int ms)
{
	int64_t end = now_ms() + ms;
	do {
		event_base_loop(b, EVLOOP_NONBLOCK);
		usleep(2000);
	} while (now_ms() < end);
}

/* A non-blocking loopback client from the given source address. */
static int connect_from(const char *src, int to_port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in me = {.sin_family = AF_INET}, sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, src, &me.sin_addr);
	sa.sin_port = htons((uint16_t)to_port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* 1: the server closed it (EOF or reset), 0: still open, nothing to read. */
static int closed_by_server(int fd)
{
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n == 0 || (n < 0 && errno != EAGAIN))
		return 1;
	return 0;
}

START_TEST(connection_caps_and_deadlines)
{
	struct cfg_http c = {.enabled = true, .address = "127.0.0.1", .port = 0,
			     .max_body_bytes = 1024, .max_header_bytes = 2048,
			     .max_connections = 3, .max_connections_per_ip = 2,
			     .header_timeout_s = 0.6, .idle_timeout_s = 0.6};
	struct event_base *b = event_base_new();
	struct http *h = NULL;
	ck_assert_int_eq(http_create(b, &c, -1, &h), 0);
	int p = http_port(h);
	/* per peer: the third from 127.0.0.1 is closed at once */
	int a1 = connect_from("127.0.0.1", p), a2 = connect_from("127.0.0.1", p);
	int a3 = connect_from("127.0.0.1", p);
	pump(b, 150);
	ck_assert_int_eq(closed_by_server(a1), 0);
	ck_assert_int_eq(closed_by_server(a2), 0);
	ck_assert_int_eq(closed_by_server(a3), 1);
	/* in all: a third peer address fits, a fourth connection does not */
	int b1 = connect_from("127.0.0.2", p), b2 = connect_from("127.0.0.3", p);
	pump(b, 150);
	ck_assert_int_eq(closed_by_server(b1), 0);
	ck_assert_int_eq(closed_by_server(b2), 1);
	/* idle deadline: all three are gone 0.6 s after accept (+ the 100 ms sweep) */
	pump(b, 700);
	ck_assert_int_eq(closed_by_server(a1), 1);
	ck_assert_int_eq(closed_by_server(a2), 1);
	ck_assert_int_eq(closed_by_server(b1), 1);
	/* a trickle does not move the header deadline */
	int t = connect_from("127.0.0.1", p);
	ck_assert_int_eq(write(t, "GET /status HTTP/1.0\r\n", 22), 22);
	int64_t t0 = now_ms(), cut = -1;
	while (now_ms() - t0 < 3000 && cut < 0) {
		if (write(t, "X", 1) < 0 || closed_by_server(t))
			cut = now_ms() - t0;
		pump(b, 50);
	}
	ck_assert_msg(cut >= 500 && cut < 2000, "trickle cut after %lld ms", (long long)cut);
	/* and a normal request still works, with the counters */
	int q = connect_from("127.0.0.1", p);
	static const char get[] = "GET /status HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(write(q, get, sizeof(get) - 1), (ssize_t)sizeof(get) - 1);
	char resp[8192];
	size_t got = 0;
	int64_t end = now_ms() + 3000;
	while (now_ms() < end) {
		pump(b, 10);
		ssize_t n = read(q, resp + got, sizeof(resp) - 1 - got);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	resp[got] = '\0';
	char *body = strstr(resp, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	struct json_object *o = json_tokener_parse(body + 4), *hs;
	ck_assert_ptr_nonnull(o);
	ck_assert(json_object_object_get_ex(o, "http", &hs));
	ck_assert_int_eq(json_object_get_int(json_object_object_get(hs, "refused")), 2);
	ck_assert_int_eq(json_object_get_int(json_object_object_get(hs, "timed_out")), 4);
	json_object_put(o);
	int fds[] = {a1, a2, a3, b1, b2, t, q};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
	http_destroy(h);
	event_base_free(b);
}
END_TEST

START_TEST(bind_failure_reported)
{
	struct cfg_http c = {.enabled = true,
			     .address = "127.0.0.1",
			     .port = port, /* taken by the fixture's server */
			     .max_body_bytes = 1024,
			     .max_header_bytes = 2048};
	struct http *h = NULL;
	ck_assert_int_lt(http_create(base, &c, -1, &h), 0);
	ck_assert_ptr_null(h);
	http_destroy(NULL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("http");
	TCase *t = tcase_create("http");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 20);
	tcase_add_test(t, routes_exact_prefix_and_errors);
	tcase_add_test(t, status_sections_and_limits);
	tcase_add_test(t, bind_failure_reported);
	tcase_add_test(t, connection_caps_and_deadlines);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
