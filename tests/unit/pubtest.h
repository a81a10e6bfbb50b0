/*
 * pubtest.h — helpers shared by the publishing tests (bus, ipc, api): fake
 * results, a temp directory, and line-oriented test clients on real sockets
 * that are read while the server's event loop is pumped in the same thread.
 */
#ifndef DETD_PUBTEST_H
#define DETD_PUBTEST_H

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static inline struct det_result *pt_result(const char *stream, uint64_t seq, int n_objects)
{
	struct det_result *r = det_result_new(NULL, n_objects);
	ck_assert_ptr_nonnull(r);
	snprintf(r->stream_id, sizeof(r->stream_id), "%s", stream);
	r->seq = seq;
	r->pts_ns = (int64_t)seq * 40000000;
	r->capture_wall_ns = det_wall_ns();
	r->orig_width = 1280;
	r->orig_height = 720;
	int64_t now = det_mono_ns();
	r->t.capture_mono_ns = now - 30000000;
	r->t.enqueue_mono_ns = now - 25000000;
	r->t.infer_start_mono_ns = now - 20000000;
	r->t.infer_end_mono_ns = now - 1000000;
	snprintf(r->backend, sizeof(r->backend), "cpu");
	static const char *const labels[] = {"car", "person", "pickup_suv_van", "bus"};
	for (int i = 0; i < n_objects; i++) {
		struct det_object *o = &r->objects[i];
		o->class_id = i % 4;
		snprintf(o->label, sizeof(o->label), "%s", labels[i % 4]);
		o->score = 0.3f + 0.2f * (float)(i % 4); /* 0.3 0.5 0.7 0.9 */
		o->box_px[0] = 100.0f + (float)i;
		o->box_px[1] = 50.0f;
		o->box_px[2] = 300.0f;
		o->box_px[3] = 250.5f;
	}
	return r;
}

static inline char *pt_tmpdir(void)
{
	char tmpl[] = "/tmp/detd-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	ck_assert_ptr_nonnull(d);
	return strdup(d);
}

static inline void pt_rmdir(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(dir);
}

static inline int64_t pt_ms(void)
{
	return det_mono_ns() / 1000000;
}

/* A client that accumulates what it receives; lines are taken from the front. */
struct pt_client {
	int fd;
	char *buf;
	size_t len, cap;
	bool eof;
	int err; /* errno when the connection ended with an error */
	size_t total;
};

static inline void pt_sun(struct sockaddr_un *sa, const char *path)
{
	size_t n = strlen(path);
	ck_assert_uint_lt(n, sizeof(sa->sun_path));
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, n + 1);
}

static inline int pt_unix_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa;
	pt_sun(&sa, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -errno;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

static inline struct pt_client *pt_client_fd(int fd)
{
	struct pt_client *c = calloc(1, sizeof(*c));
	c->fd = fd;
	return c;
}

static inline struct pt_client *pt_connect(const char *path)
{
	int fd = pt_unix_connect(path);
	ck_assert_msg(fd >= 0, "connect %s: %s", path, strerror(-fd));
	return pt_client_fd(fd);
}

static inline void pt_client_free(struct pt_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	free(c);
}

/* Read what is available (non-blocking).  Returns bytes read. */
static inline size_t pt_read(struct pt_client *c)
{
	size_t got = 0;
	for (;;) {
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap);
			ck_assert_ptr_nonnull(c->buf);
		}
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (n > 0) {
			c->len += (size_t)n;
			c->total += (size_t)n;
			got += (size_t)n;
			continue;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->eof = true; /* closed, or reset: gone either way */
			c->err = n < 0 ? errno : 0;
		}
		break;
	}
	return got;
}

/* Run the loop without blocking, feed the given clients, sleep a little. */
static inline void pt_pump(struct event_base *base, struct pt_client **cl, size_t n, int ms)
{
	int64_t end = pt_ms() + ms;
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		for (size_t i = 0; i < n; i++)
			if (cl[i])
				pt_read(cl[i]);
		if (ms > 0)
			usleep(1000);
	} while (pt_ms() < end);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* The next complete line as JSON (NULL on EOF/timeout), pumping meanwhile. */
static inline struct json_object *pt_line(struct event_base *base, struct pt_client *c,
					  int timeout_ms)
{
	int64_t end = pt_ms() + timeout_ms;
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			*nl = '\0';
			struct json_object *o = json_tokener_parse(c->buf);
			ck_assert_msg(o != NULL, "server sent invalid JSON: %.200s", c->buf);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return o;
		}
		if (c->eof || pt_ms() > end)
			return NULL;
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!pt_read(c))
			usleep(500);
	}
}

static inline const char *pt_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static inline int64_t pt_int(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v))
		return -1;
	return json_object_get_int64(v);
}

/* Expect the next line to be of type; returns it (caller puts). */
static inline struct json_object *pt_expect(struct event_base *base, struct pt_client *c,
					    const char *type)
{
	struct json_object *o = pt_line(base, c, 5000);
	ck_assert_msg(o != NULL, "expected a %s message, got nothing", type);
	ck_assert_msg(strcmp(pt_str(o, "type"), type) == 0, "expected %s, got %s", type,
		      json_object_to_json_string(o));
	return o;
}

static inline void pt_send(struct event_base *base, struct pt_client *c, const char *s)
{
	size_t len = strlen(s), off = 0;
	while (off < len) {
		ssize_t n = write(c->fd, s + off, len - off);
		if (n > 0)
			off += (size_t)n;
		else
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
}

#endif
