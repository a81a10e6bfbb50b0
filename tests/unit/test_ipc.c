/* test_ipc.c — the Unix-socket server with real client sockets in a temp
 * directory; the server's event loop runs in the test thread and is pumped
 * while the clients read.  Results are injected through the bus API (the
 * engine is not part of these tests). */
#include <signal.h>
#include <sys/resource.h>
#include <grp.h>
#include <sys/stat.h>

#include "bus.h"
#include "config.h"
#include "ipc.h"
#include "metrics.h"
#include "pubtest.h"
#include "testutil.h"

struct fx {
	char *dir;
	char path[256];
	struct cfg_ipc cfg;
	struct event_base *base;
	struct metrics *m;
	struct bus *bus;
	struct ipc_server *srv;
};

static void fx_init(struct fx *f, int ring)
{
	memset(f, 0, sizeof(*f));
	f->dir = pt_tmpdir();
	snprintf(f->path, sizeof(f->path), "%s/detd.sock", f->dir);
	f->cfg = (struct cfg_ipc){.enabled = true, .path = f->path, .mode = 0660,
				  .max_clients = 64, .client_buffer_bytes = 256 * 1024,
				  .client_hard_limit_bytes = 1024 * 1024,
				  .slow_client_timeout_s = 5, .replay_ring = ring};
	f->base = event_base_new();
	f->m = metrics_create();
	f->bus = bus_create(ring, f->m);
	ck_assert_ptr_nonnull(f->base);
}

static void fx_start(struct fx *f)
{
	int rc = ipc_create(f->base, &f->cfg, f->bus, f->m, -1, &f->srv);
	ck_assert_msg(rc == 0, "ipc_create: %s", strerror(-rc));
}

static void fx_fini(struct fx *f)
{
	ipc_destroy(f->srv);
	struct stat st;
	ck_assert_int_ne(stat(f->path, &st), 0); /* the socket file is removed */
	bus_destroy(f->bus);
	metrics_destroy(f->m);
	event_base_free(f->base);
	pt_rmdir(f->dir);
}

static size_t n_clients(struct fx *f)
{
	struct ipc_stats st;
	ipc_get_stats(f->srv, &st);
	return st.clients;
}

static void publish(struct fx *f, const char *stream, uint64_t seq, int nobj)
{
	struct det_result *r = pt_result(stream, seq, nobj);
	bus_publish(f->bus, r);
	det_result_unref(r);
}

static struct pt_client *hello(struct fx *f)
{
	struct pt_client *c = pt_connect(f->path);
	struct json_object *o = pt_expect(f->base, c, "hello");
	ck_assert_int_eq(pt_int(o, "protocol"), 1);
	json_object_put(o);
	return c;
}

static void subscribe(struct fx *f, struct pt_client *c, const char *req)
{
	pt_send(f->base, c, req);
	json_object_put(pt_expect(f->base, c, "subscribed"));
}

START_TEST(hello_and_mode)
{
	struct fx f;
	fx_init(&f, 4);
	bus_stream_add(f.bus, "cam0");
	bus_stream_add(f.bus, "cam1");
	fx_start(&f);
	struct stat st;
	ck_assert_int_eq(stat(f.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0660);
	struct pt_client *c = pt_connect(f.path);
	struct json_object *o = pt_expect(f.base, c, "hello");
	ck_assert_int_eq(pt_int(o, "protocol"), 1);
	ck_assert_ptr_nonnull(pt_str(o, "version"));
	struct json_object *s = json_object_object_get(o, "streams");
	ck_assert_int_eq(json_object_array_length(s), 2);
	ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(s, 1)), "cam1");
	json_object_put(o);
	pt_send(f.base, c, "{\"type\":\"ping\",\"id\":7}\n");
	o = pt_expect(f.base, c, "pong");
	ck_assert_int_eq(pt_int(o, "id"), 7);
	json_object_put(o);
	pt_send(f.base, c, "{\"type\":\"streams\"}\r\n\n   \n");
	o = pt_expect(f.base, c, "streams");
	s = json_object_object_get(o, "streams");
	ck_assert_str_eq(pt_str(json_object_array_get_idx(s, 0), "state"), "starting");
	json_object_put(o);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(filters_over_socket)
{
	struct fx f;
	fx_init(&f, 4);
	fx_start(&f);
	struct pt_client *all = hello(&f), *cam1 = hello(&f), *cars = hello(&f), *hi = hello(&f);
	subscribe(&f, all, "{\"type\":\"subscribe\"}\n");
	subscribe(&f, cam1, "{\"type\":\"subscribe\",\"streams\":[\"cam1\"]}\n");
	subscribe(&f, cars, "{\"type\":\"subscribe\",\"labels\":[\"car\",\"bus\"]}\n");
	subscribe(&f, hi, "{\"type\":\"subscribe\",\"min_score\":0.6}\n");
	publish(&f, "cam0", 1, 4);
	publish(&f, "cam1", 1, 2); /* car .3 person .5 */
	publish(&f, "cam1", 2, 0);
	bus_stream_state(f.bus, "cam1", "stalled", "no frame for 5 s");
	/* all: 3 detections + 1 status */
	const char *types[] = {"detections", "detections", "detections", "status"};
	for (int i = 0; i < 4; i++)
		json_object_put(pt_expect(f.base, all, types[i]));
	struct json_object *o = pt_expect(f.base, cam1, "detections");
	ck_assert_str_eq(pt_str(o, "stream"), "cam1");
	json_object_put(o);
	json_object_put(pt_expect(f.base, cam1, "detections"));
	o = pt_expect(f.base, cam1, "status");
	ck_assert_str_eq(pt_str(o, "state"), "stalled");
	ck_assert_str_eq(pt_str(o, "error"), "no frame for 5 s");
	json_object_put(o);
	o = pt_expect(f.base, cars, "detections");
	ck_assert_int_eq(json_object_array_length(json_object_object_get(o, "objects")), 2);
	json_object_put(o);
	o = pt_expect(f.base, cars, "detections");
	ck_assert_int_eq(pt_int(o, "seq"), 1);
	ck_assert_str_eq(pt_str(o, "stream"), "cam1");
	json_object_put(o);
	json_object_put(pt_expect(f.base, cars, "status"));
	o = pt_expect(f.base, hi, "detections");
	ck_assert_int_eq(json_object_array_length(json_object_object_get(o, "objects")), 2);
	json_object_put(o);
	json_object_put(pt_expect(f.base, hi, "status")); /* cam1 had nothing ≥ 0.6 */
	/* unsubscribe stops delivery; re-subscribe replaces the filter */
	pt_send(f.base, all, "{\"type\":\"unsubscribe\"}\n");
	json_object_put(pt_expect(f.base, all, "unsubscribed"));
	subscribe(&f, cam1, "{\"type\":\"subscribe\",\"streams\":[\"cam0\"]}\n");
	publish(&f, "cam1", 3, 1);
	publish(&f, "cam0", 2, 1);
	o = pt_expect(f.base, cam1, "detections");
	ck_assert_str_eq(pt_str(o, "stream"), "cam0");
	json_object_put(o);
	pt_send(f.base, all, "{\"type\":\"ping\"}\n");
	json_object_put(pt_expect(f.base, all, "pong"));
	struct pt_client *cl[] = {all, cam1, cars, hi};
	for (int i = 0; i < 4; i++)
		pt_client_free(cl[i]);
	fx_fini(&f);
}
END_TEST

static void expect_error(struct fx *f, struct pt_client *c, const char *req, const char *code)
{
	pt_send(f->base, c, req);
	struct json_object *o = pt_expect(f->base, c, "error");
	ck_assert_msg(strcmp(pt_str(o, "code"), code) == 0, "%s: expected %s, got %s", req, code,
		      json_object_to_json_string(o));
	ck_assert(strlen(pt_str(o, "message")) > 0);
	json_object_put(o);
}

START_TEST(malformed_requests)
{
	struct fx f;
	fx_init(&f, 4);
	fx_start(&f);
	struct pt_client *c = hello(&f);
	expect_error(&f, c, "hello there\n", "invalid_json");
	expect_error(&f, c, "{\"type\":\"ping\"\n", "invalid_json");
	expect_error(&f, c, "{\"type\":\"ping\"} {}\n", "invalid_json");
	expect_error(&f, c, "[1,2]\n", "bad_request");
	expect_error(&f, c, "{\"id\":1}\n", "bad_request");
	expect_error(&f, c, "{\"type\":42}\n", "bad_request");
	expect_error(&f, c, "{\"type\":\"launch\"}\n", "unknown_type");
	expect_error(&f, c, "{\"type\":\"ping\",\"colour\":\"red\"}\n", "unknown_field");
	expect_error(&f, c, "{\"type\":\"subscribe\",\"stream\":\"cam0\"}\n", "unknown_field");
	expect_error(&f, c, "{\"type\":\"subscribe\",\"min_score\":7}\n", "bad_filter");
	expect_error(&f, c, "{\"type\":\"subscribe\",\"streams\":\"cam0\"}\n", "bad_filter");
	expect_error(&f, c, "{\"type\":\"subscribe\",\"since\":{\"cam0\":-1}}\n", "bad_filter");
	expect_error(&f, c, "{\"type\":\"subscribe\",\"since\":[1]}\n", "bad_filter");
	expect_error(&f, c, "{\"type\":\"ping\",\"id\":\"\xff\xfe\"}\n", "invalid_utf8");
	expect_error(&f, c, "{\"type\":\"\xc3\x28\"}\n", "invalid_utf8");
	expect_error(&f, c, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
		     "invalid_json");
	/* issue 15 #7: exactly IPC_MAX_DEPTH levels are fine, one more is not */
	{
		char deep[256];
		for (int levels = IPC_MAX_DEPTH; levels <= IPC_MAX_DEPTH + 1; levels++) {
			/* "id" nested `levels` arrays deep inside the request object */
			int n = snprintf(deep, sizeof(deep), "{\"type\":\"ping\",\"id\":");
			for (int i = 0; i < levels; i++)
				deep[n++] = '[';
			for (int i = 0; i < levels; i++)
				deep[n++] = ']';
			snprintf(deep + n, sizeof(deep) - (size_t)n, "}\n");
			if (levels == IPC_MAX_DEPTH) {
				pt_send(f.base, c, deep);
				json_object_put(pt_expect(f.base, c, "pong"));
			} else {
				expect_error(&f, c, deep, "invalid_json");
			}
		}
	}
	/* valid UTF-8 outside ASCII is fine */
	pt_send(f.base, c, "{\"type\":\"ping\",\"id\":\"caf\xc3\xa9\"}\n");
	struct json_object *o = pt_expect(f.base, c, "pong");
	ck_assert_str_eq(pt_str(o, "id"), "caf\xc3\xa9");
	json_object_put(o);
	/* a NUL byte inside a line */
	static const char nul[] = "{\"type\":\"ping\"}\0garbage\n";
	ck_assert_int_eq(write(c->fd, nul, sizeof(nul) - 1), (ssize_t)sizeof(nul) - 1);
	json_object_put(pt_expect(f.base, c, "error"));
	/* still connected, still serving */
	pt_send(f.base, c, "{\"type\":\"ping\"}\n");
	json_object_put(pt_expect(f.base, c, "pong"));
	ck_assert_uint_eq(n_clients(&f), 1);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(ten_megabyte_line)
{
	struct fx f;
	fx_init(&f, 4);
	fx_start(&f);
	struct pt_client *c = hello(&f);
	size_t big = 10 * 1024 * 1024;
	char *chunk = malloc(65536);
	memset(chunk, 'A', 65536);
	size_t sent = 0;
	while (sent < big) {
		ssize_t n = write(c->fd, chunk, 65536);
		if (n > 0)
			sent += (size_t)n;
		event_base_loop(f.base, EVLOOP_NONBLOCK);
		pt_read(c);
	}
	free(chunk);
	pt_send(f.base, c, "tail of the long line\n{\"type\":\"ping\",\"id\":1}\n");
	struct json_object *o = pt_expect(f.base, c, "error");
	ck_assert_str_eq(pt_str(o, "code"), "line_too_long");
	json_object_put(o);
	o = pt_expect(f.base, c, "pong"); /* exactly one error, then business as usual */
	ck_assert_int_eq(pt_int(o, "id"), 1);
	json_object_put(o);
	/* a long line that arrives complete in one go is discarded the same way */
	size_t n = IPC_MAX_LINE + 100;
	char *line = malloc(n + 2);
	memset(line, ' ', n);
	line[n] = '\n';
	line[n + 1] = '\0';
	pt_send(f.base, c, line);
	free(line);
	o = pt_expect(f.base, c, "error");
	ck_assert_str_eq(pt_str(o, "code"), "line_too_long");
	json_object_put(o);
	pt_send(f.base, c, "{\"type\":\"ping\",\"id\":2}\n");
	json_object_put(pt_expect(f.base, c, "pong"));
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

/* One client that never reads and three that do: the three get every
 * message in order, the slow one gets dropped notices, then is cut; the
 * server's queue for it never passes the hard limit. */
START_TEST(slow_client)
{
	struct fx f;
	fx_init(&f, 4);
	f.cfg.client_buffer_bytes = 32 * 1024;
	f.cfg.client_hard_limit_bytes = 128 * 1024;
	f.cfg.slow_client_timeout_s = 2.5; /* generous: a loaded machine must not cut it in phase 1 */
	fx_start(&f);
	struct pt_client *n[3], *slow = hello(&f);
	int rcv = 4096; /* keep the kernel's share small so the server queue fills fast */
	setsockopt(slow->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	for (int i = 0; i < 3; i++) {
		n[i] = hello(&f);
		subscribe(&f, n[i], "{\"type\":\"subscribe\"}\n");
	}
	subscribe(&f, slow, "{\"type\":\"subscribe\"}\n");
	const int N = 500;
	for (int s = 1; s <= N; s++) {
		publish(&f, "cam0", (uint64_t)s, 8); /* ~1.7 KB each */
		pt_pump(f.base, n, 3, 0);
	}
	struct ipc_stats st;
	ipc_get_stats(f.srv, &st);
	ck_assert_uint_gt(st.dropped, 0);
	ck_assert_uint_le(st.max_queued, f.cfg.client_hard_limit_bytes);
	ck_assert_uint_eq(st.clients, 4);
	for (int i = 0; i < 3; i++)
		for (int s = 1; s <= N; s++) {
			struct json_object *o = pt_expect(f.base, n[i], "detections");
			ck_assert_int_eq(pt_int(o, "seq"), s);
			json_object_put(o);
		}
	/* the slow one reads now: old messages, then the dropped notice */
	uint64_t drops = 0;
	int64_t last = 0;
	struct json_object *o;
	while ((o = pt_line(f.base, slow, 2000))) {
		if (strcmp(pt_str(o, "type"), "dropped") == 0) {
			drops = (uint64_t)pt_int(o, "count");
			json_object_put(o);
			break;
		}
		ck_assert_str_eq(pt_str(o, "type"), "detections");
		ck_assert_int_gt(pt_int(o, "seq"), last);
		last = pt_int(o, "seq");
		json_object_put(o);
	}
	ck_assert_uint_eq(drops, st.dropped);
	ck_assert_int_lt(last, N);
	/* and stops reading again: it is disconnected after the timeout */
	int64_t end = pt_ms() + 10000;
	uint64_t seq = N;
	while (n_clients(&f) == 4 && pt_ms() < end) {
		publish(&f, "cam0", ++seq, 8);
		pt_pump(f.base, n, 3, 2);
	}
	ck_assert_uint_eq(n_clients(&f), 3);
	ipc_get_stats(f.srv, &st);
	ck_assert_uint_eq(st.slow_disconnects, 1);
	ck_assert_uint_le(st.max_queued, f.cfg.client_hard_limit_bytes);
	while (!slow->eof && pt_ms() < end + 5000) {
		slow->len = 0;
		pt_pump(f.base, &slow, 1, 5);
	}
	ck_assert(slow->eof);
	/* the normal clients still get everything */
	for (int i = 0; i < 3; i++)
		for (uint64_t s = N + 1; s <= seq; s++) {
			o = pt_expect(f.base, n[i], "detections");
			ck_assert_int_eq(pt_int(o, "seq"), (int64_t)s);
			json_object_put(o);
		}
	size_t len;
	char *txt = metrics_render(f.m, &len);
	ck_assert_ptr_nonnull(strstr(txt, "detd_clients_disconnected_total{transport=\"ipc\",reason=\"slow\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(txt, "detd_subscribers{transport=\"ipc\"} 3\n"));
	free(txt);
	pt_client_free(slow);
	for (int i = 0; i < 3; i++)
		pt_client_free(n[i]);
	fx_fini(&f);
}
END_TEST

/* Requests without reading the replies: the replies are not dropped, so the
 * hard limit cuts the client, and the server's queue for it stays bounded. */
START_TEST(request_flood_without_reading)
{
	struct fx f;
	fx_init(&f, 4);
	f.cfg.client_buffer_bytes = 16 * 1024;
	f.cfg.client_hard_limit_bytes = 64 * 1024;
	fx_start(&f);
	struct pt_client *c = hello(&f); /* accepted before the flood */
	int snd = 4096, rcv = 4096;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
	char chunk[4096];
	size_t one = strlen("{\"type\":\"ping\"}\n");
	for (size_t i = 0; i + one <= sizeof(chunk); i += one)
		memcpy(chunk + i, "{\"type\":\"ping\"}\n", one);
	size_t len = sizeof(chunk) / one * one;
	int64_t end = pt_ms() + 20000;
	while (n_clients(&f) > 0 && pt_ms() < end) {
		if (write(c->fd, chunk, len) < 0 && errno != EAGAIN)
			break; /* the server closed: EPIPE */
		event_base_loop(f.base, EVLOOP_NONBLOCK);
	}
	ck_assert_uint_eq(n_clients(&f), 0);
	struct ipc_stats st;
	ipc_get_stats(f.srv, &st);
	ck_assert_uint_le(st.max_queued, f.cfg.client_hard_limit_bytes + 64);
	ck_assert_uint_eq(st.slow_disconnects, 1);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(resume_with_since)
{
	struct fx f;
	fx_init(&f, 16);
	fx_start(&f);
	struct pt_client *c = hello(&f);
	subscribe(&f, c, "{\"type\":\"subscribe\",\"streams\":[\"cam0\"]}\n");
	for (uint64_t s = 1; s <= 10; s++)
		publish(&f, "cam0", s, 1);
	int64_t last = 0;
	for (int i = 0; i < 4; i++) { /* reads 4 messages, then the connection drops */
		struct json_object *o = pt_expect(f.base, c, "detections");
		last = pt_int(o, "seq");
		json_object_put(o);
	}
	pt_client_free(c);
	pt_pump(f.base, NULL, 0, 5);
	for (uint64_t s = 11; s <= 20; s++)
		publish(&f, "cam0", s, 1);
	/* reconnect: everything after the last seen seq, in order, no gap */
	c = hello(&f);
	char req[128];
	snprintf(req, sizeof(req), "{\"type\":\"subscribe\",\"streams\":[\"cam0\"],\"since\":{\"cam0\":%lld}}\n",
		 (long long)last);
	subscribe(&f, c, req);
	for (int64_t s = last + 1; s <= 20; s++) {
		struct json_object *o = pt_expect(f.base, c, "detections");
		ck_assert_int_eq(pt_int(o, "seq"), s);
		json_object_put(o);
	}
	publish(&f, "cam0", 21, 1);
	struct json_object *o = pt_expect(f.base, c, "detections");
	ck_assert_int_eq(pt_int(o, "seq"), 21);
	json_object_put(o);
	pt_client_free(c);
	/* too far back: a gap notice for what left the ring (ring = 16: 6..21 kept) */
	c = hello(&f);
	subscribe(&f, c, "{\"type\":\"subscribe\",\"since\":{\"cam0\":2,\"nosuch\":5}}\n");
	o = pt_expect(f.base, c, "gap");
	ck_assert_int_eq(pt_int(o, "from"), 3);
	ck_assert_int_eq(pt_int(o, "to"), 5);
	json_object_put(o);
	o = pt_expect(f.base, c, "detections");
	ck_assert_int_eq(pt_int(o, "seq"), 6);
	json_object_put(o);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(rapid_connects)
{
	struct fx f;
	fx_init(&f, 4);
	f.cfg.max_clients = 1000;
	fx_start(&f);
	int open_fds[64];
	for (int i = 0; i < 10000; i++) {
		int fd;
		while ((fd = pt_unix_connect(f.path)) == -EAGAIN)
			event_base_loop(f.base, EVLOOP_NONBLOCK);
		ck_assert_msg(fd >= 0, "connect %d: %s", i, strerror(-fd));
		switch (i % 4) {
		case 0: /* gone at once */
			break;
		case 1: /* half a request */
			ck_assert_int_gt(write(fd, "{\"type\":\"sub", 12), 0);
			break;
		case 2: /* a subscription, then gone */
			ck_assert_int_gt(write(fd, "{\"type\":\"subscribe\"}\n", 21), 0);
			break;
		case 3: /* reset while the hello is unread */
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0},
				   sizeof(struct linger));
			break;
		}
		open_fds[i % 64] = fd;
		if (i % 64 == 63) {
			event_base_loop(f.base, EVLOOP_NONBLOCK);
			for (int k = 0; k < 64; k++)
				close(open_fds[k]);
			event_base_loop(f.base, EVLOOP_NONBLOCK);
		}
		if (i % 256 == 0)
			publish(&f, "cam0", (uint64_t)i + 1, 2);
	}
	for (int k = 0; k < 10000 % 64; k++)
		close(open_fds[k]);
	/* subscribers that vanished are noticed on the next write */
	int64_t end = pt_ms() + 10000;
	uint64_t seq = 20000;
	struct ipc_stats st;
	for (;;) {
		ipc_get_stats(f.srv, &st);
		if ((st.clients == 0 && st.accepted == 10000) || pt_ms() > end)
			break;
		publish(&f, "cam0", ++seq, 1);
		pt_pump(f.base, NULL, 0, 2);
	}
	ck_assert_uint_eq(st.accepted, 10000);
	ck_assert_uint_eq(st.clients, 0);
	ck_assert_uint_eq(bus_sub_count(f.bus), 0);
	/* and it still serves */
	struct pt_client *c = hello(&f);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(half_closed)
{
	struct fx f;
	fx_init(&f, 4);
	fx_start(&f);
	/* subscribed, then shut its sending side: still receives */
	struct pt_client *c = hello(&f);
	subscribe(&f, c, "{\"type\":\"subscribe\"}\n");
	shutdown(c->fd, SHUT_WR);
	pt_pump(f.base, NULL, 0, 5);
	publish(&f, "cam0", 1, 1);
	json_object_put(pt_expect(f.base, c, "detections"));
	/* half-closed without a subscription: nothing left to do, the server closes */
	struct pt_client *d = hello(&f);
	pt_send(f.base, d, "{\"type\":\"ping\"}\n");
	shutdown(d->fd, SHUT_WR);
	json_object_put(pt_expect(f.base, d, "pong"));
	ck_assert_ptr_null(pt_line(f.base, d, 3000));
	ck_assert(d->eof);
	/* a request cut by the half-close is just dropped */
	struct pt_client *e = hello(&f);
	pt_send(f.base, e, "{\"type\":\"pi");
	shutdown(e->fd, SHUT_WR);
	ck_assert_ptr_null(pt_line(f.base, e, 3000));
	ck_assert(e->eof);
	ck_assert_uint_eq(n_clients(&f), 1);
	pt_client_free(c);
	pt_client_free(d);
	pt_client_free(e);
	fx_fini(&f);
}
END_TEST

START_TEST(max_clients)
{
	struct fx f;
	fx_init(&f, 4);
	f.cfg.max_clients = 2;
	fx_start(&f);
	struct pt_client *a = hello(&f), *b = hello(&f);
	struct pt_client *c = pt_connect(f.path);
	struct json_object *o = pt_expect(f.base, c, "error");
	ck_assert_str_eq(pt_str(o, "code"), "too_many_clients");
	json_object_put(o);
	ck_assert_ptr_null(pt_line(f.base, c, 3000));
	ck_assert(c->eof);
	pt_client_free(a);
	pt_pump(f.base, NULL, 0, 20);
	pt_client_free(c);
	c = hello(&f); /* room again */
	pt_client_free(b);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

/* Issue 15 #3: subscribers whose filter matches nothing disconnect; nothing
 * is ever written to them, yet their slots must come back. */
START_TEST(ghost_subscribers)
{
	struct fx f;
	fx_init(&f, 4);
	f.cfg.max_clients = 4;
	fx_start(&f);
	for (int i = 0; i < 2 * 4; i++) {
		struct pt_client *c = hello(&f);
		subscribe(&f, c, "{\"type\":\"subscribe\",\"streams\":[\"nosuch\"]}\n");
		if (i % 2)
			shutdown(c->fd, SHUT_WR); /* half-close first, then close */
		pt_pump(f.base, NULL, 0, 5);
		pt_client_free(c);
	}
	/* the sweeper runs at most every second */
	int64_t until = pt_ms() + 3000;
	while (n_clients(&f) > 0 && pt_ms() < until)
		pt_pump(f.base, NULL, 0, 50);
	ck_assert_uint_eq(n_clients(&f), 0);
	struct pt_client *c = hello(&f); /* not too_many_clients */
	pt_send(f.base, c, "{\"type\":\"ping\"}\n");
	json_object_put(pt_expect(f.base, c, "pong"));
	/* a half-closed subscriber is still kept and served */
	struct pt_client *h = hello(&f);
	subscribe(&f, h, "{\"type\":\"subscribe\"}\n");
	shutdown(h->fd, SHUT_WR);
	pt_pump(f.base, NULL, 0, 1500);
	ck_assert_uint_eq(n_clients(&f), 2);
	publish(&f, "cam0", 1, 1);
	json_object_put(pt_expect(f.base, h, "detections"));
	pt_client_free(h);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

/* An independent strict decoder (code points, not byte classes): minimal
 * length, no surrogates, at most U+10FFFF. */
static bool strict_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
					 : (c & 0xF8) == 0xF0 ? 4 : 0;
		if (!len || i + len > n)
			return false;
		unsigned cp = len == 1 ? c : c & (0xFF >> (len + 1));
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		static const unsigned min[] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return false;
		i += len;
	}
	return true;
}

/* Issue 15 #6: invalid UTF-8 is never echoed in subscribed/pong/error. */
START_TEST(invalid_utf8_never_echoed)
{
	struct fx f;
	fx_init(&f, 4);
	fx_start(&f);
	struct pt_client *c = hello(&f);
	static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
					  "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xed\xbf\xbf"};
	/* each request is pre + bad + post */
	static const char *const tmpl[][2] = {
		{"{\"type\":\"ping\",\"id\":\"a", "b\"}\n"},
		{"{\"type\":\"subscribe\",\"labels\":[\"a", "b\"]}\n"},
		{"{\"type\":\"subscribe\",\"streams\":[\"cam0\"],\"id\":[\"", "\"]}\n"},
		{"{\"type\":\"p", "\"}\n"},
		{"{\"type\":\"ping\",\"k", "\":1}\n"},
		{"{\"type\":\"subscribe\",\"since\":{\"c", "\":-1}}\n"},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (size_t t = 0; t < sizeof(tmpl) / sizeof(tmpl[0]); t++) {
			char req[256];
			snprintf(req, sizeof(req), "%s%s%s", tmpl[t][0], bad[i], tmpl[t][1]);
			pt_send(f.base, c, req);
			n++;
		}
	/* a byte-counted cut inside a character ("%.48s" of a 49-byte type) */
	pt_send(f.base, c, "{\"type\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9\"}\n");
	pt_send(f.base, c, "{\"type\":\"ping\",\"k\xc3\xa9xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			   "xxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9\":1}\n");
	n += 2;
	int64_t end = pt_ms() + 5000;
	size_t lines = 0;
	while (pt_ms() < end) {
		pt_pump(f.base, &c, 1, 10);
		lines = 0;
		for (size_t i = 0; i < c->len; i++)
			lines += c->buf[i] == '\n';
		if (lines >= n)
			break;
	}
	ck_assert_uint_eq(lines, n);
	ck_assert_msg(strict_utf8((const unsigned char *)c->buf, c->len),
		      "the server sent invalid UTF-8: %.*s", (int)c->len, c->buf);
	for (size_t i = 0; i < n - 2; i++) {
		struct json_object *o = pt_expect(f.base, c, "error");
		ck_assert_str_eq(pt_str(o, "code"), "invalid_utf8");
		json_object_put(o);
	}
	struct json_object *o = pt_expect(f.base, c, "error");
	ck_assert_str_eq(pt_str(o, "code"), "unknown_type");
	json_object_put(o);
	o = pt_expect(f.base, c, "error");
	ck_assert_str_eq(pt_str(o, "code"), "unknown_field");
	json_object_put(o);
	/* valid non-ASCII still round-trips, and \ud800 escapes come back as U+FFFD */
	pt_send(f.base, c, "{\"type\":\"ping\",\"id\":\"\xf0\x9f\x98\x80\\ud800\"}\n");
	o = pt_expect(f.base, c, "pong");
	ck_assert_str_eq(pt_str(o, "id"), "\xf0\x9f\x98\x80\xef\xbf\xbd");
	json_object_put(o);
	pt_client_free(c);
	fx_fini(&f);
}
END_TEST

START_TEST(socket_file_handling)
{
	struct fx f;
	fx_init(&f, 4);
	/* a stale socket file (nobody listening) is replaced */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa;
	pt_sun(&sa, f.path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	fx_start(&f);
	/* a second server on a live socket refuses */
	struct ipc_server *other = NULL;
	ck_assert_int_eq(ipc_create(f.base, &f.cfg, f.bus, NULL, -1, &other), -EADDRINUSE);
	ck_assert_ptr_null(other);
	struct pt_client *c = hello(&f); /* and the first one is untouched */
	pt_client_free(c);
	/* something that is not a socket is never removed */
	char path2[300];
	snprintf(path2, sizeof(path2), "%s/not-a-socket", f.dir);
	FILE *fp = fopen(path2, "w");
	fputs("precious", fp);
	fclose(fp);
	struct cfg_ipc cfg2 = f.cfg;
	cfg2.path = path2;
	ck_assert_int_eq(ipc_create(f.base, &cfg2, f.bus, NULL, -1, &other), -EEXIST);
	struct stat st;
	ck_assert_int_eq(stat(path2, &st), 0);
	ck_assert_int_eq(st.st_size, 8);
	/* a group that does not exist is an error, and leaves no file */
	char path3[300];
	snprintf(path3, sizeof(path3), "%s/g.sock", f.dir);
	cfg2.path = path3;
	cfg2.group = "no-such-group-detd";
	ck_assert_int_lt(ipc_create(f.base, &cfg2, f.bus, NULL, -1, &other), 0);
	ck_assert_int_ne(stat(path3, &st), 0);
	/* a group we belong to is applied to the file */
	struct group *gr = getgrgid(getgid());
	ck_assert_ptr_nonnull(gr);
	snprintf(path3, sizeof(path3), "%s/grp.sock", f.dir);
	cfg2.group = gr->gr_name;
	cfg2.mode = 0640;
	ck_assert_int_eq(ipc_create(f.base, &cfg2, f.bus, NULL, -1, &other), 0);
	ck_assert_int_eq(stat(path3, &st), 0);
	ck_assert_uint_eq(st.st_gid, getgid());
	ck_assert_int_eq(st.st_mode & 0777, 0640);
	ipc_destroy(other);
	ck_assert_int_ne(stat(path3, &st), 0);
	/* a missing parent directory is created (outside systemd's RuntimeDirectory=) */
	snprintf(path3, sizeof(path3), "%s/run-detd/d.sock", f.dir);
	cfg2.group = NULL;
	ck_assert_int_eq(ipc_create(f.base, &cfg2, f.bus, NULL, -1, &other), 0);
	ck_assert_int_eq(stat(path3, &st), 0);
	ipc_destroy(other);
	fx_fini(&f);
}
END_TEST

START_TEST(inherited_socket)
{
	struct fx f;
	fx_init(&f, 4);
	char path[300];
	snprintf(path, sizeof(path), "%s/activated.sock", f.dir);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa;
	pt_sun(&sa, path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(ipc_create(f.base, &f.cfg, f.bus, NULL, fd, &f.srv), 0);
	struct pt_client *c = pt_connect(path);
	json_object_put(pt_expect(f.base, c, "hello"));
	pt_client_free(c);
	ipc_destroy(f.srv);
	f.srv = NULL;
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0); /* not ours to remove */
	ck_assert_int_ne(stat(f.path, &st), 0);
	bus_destroy(f.bus);
	metrics_destroy(f.m);
	event_base_free(f.base);
	pt_rmdir(f.dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ipc");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, hello_and_mode);
	tcase_add_test(tc, filters_over_socket);
	tcase_add_test(tc, malformed_requests);
	tcase_add_test(tc, ten_megabyte_line);
	tcase_add_test(tc, slow_client);
	tcase_add_test(tc, request_flood_without_reading);
	tcase_add_test(tc, resume_with_since);
	tcase_add_test(tc, rapid_connects);
	tcase_add_test(tc, half_closed);
	tcase_add_test(tc, max_clients);
	tcase_add_test(tc, ghost_subscribers);
	tcase_add_test(tc, invalid_utf8_never_echoed);
	tcase_add_test(tc, socket_file_handling);
	tcase_add_test(tc, inherited_socket);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
