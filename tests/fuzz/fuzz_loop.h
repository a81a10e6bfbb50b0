/*
 * fuzz_loop.h — for the fuzz targets that drive a real server (HTTP, Unix
 * socket) inside the fuzzer's process: send one input over a real
 * connection and run the server's libevent loop until the peer has answered
 * and closed, or a short deadline passes.  Single-threaded: the loop runs
 * here, between inputs nothing runs.
 */
#ifndef DETD_FUZZ_LOOP_H
#define DETD_FUZZ_LOOP_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

struct fz_conn {
	struct event_base *base;
	int fd;
	const uint8_t *out;
	size_t out_len, sent;
	bool shut;           /* shutdown(SHUT_WR) after the last byte */
	const char *until;   /* stop once this string was received (NULL: at EOF) */
	char tail[256];      /* the end of what was received, to find `until` */
	size_t tail_len;
	bool done;
};

static void fz_conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fz_conn *c = arg;
	if (what & EV_TIMEOUT) {
		c->done = true;
		return;
	}
	if ((what & EV_WRITE) && c->sent < c->out_len) {
		ssize_t n = send(fd, c->out + c->sent, c->out_len - c->sent, MSG_NOSIGNAL);
		if (n > 0)
			c->sent += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			c->sent = c->out_len; /* the server closed: stop writing */
		if (c->sent == c->out_len && c->shut)
			shutdown(fd, SHUT_WR);
	}
	if (what & EV_READ) {
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			c->done = true;
			return;
		}
		if (n > 0 && c->until) {
			/* keep the last bytes so a marker split over two reads is found */
			size_t keep = sizeof(c->tail) - 1;
			for (ssize_t i = 0; i < n; i++) {
				if (c->tail_len == keep) {
					memmove(c->tail, c->tail + keep / 2, keep - keep / 2);
					c->tail_len = keep - keep / 2;
				}
				c->tail[c->tail_len++] = buf[i];
			}
			c->tail[c->tail_len] = 0;
			if (memmem(c->tail, c->tail_len, c->until, strlen(c->until)))
				c->done = true;
		}
	}
}

/* Send buf over the connected non-blocking fd and run base until done or
 * timeout_ms passed; then close fd and let the server see the close. */
static inline void fz_exchange(struct event_base *base, int fd, const uint8_t *buf, size_t len,
			       bool shut, const char *until, int timeout_ms)
{
	struct fz_conn c = {.base = base, .fd = fd, .out = buf, .out_len = len, .shut = shut,
			    .until = until};
	if (len == 0 && shut)
		shutdown(fd, SHUT_WR);
	struct event *ev = event_new(base, fd, EV_READ | EV_WRITE | EV_PERSIST, fz_conn_cb, &c);
	struct event *to = evtimer_new(base, fz_conn_cb, &c);
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	event_add(ev, NULL);
	evtimer_add(to, &tv);
	bool reading_only = false;
	while (!c.done) {
		if (!reading_only && c.sent == c.out_len) { /* all written: wait for reads only */
			event_del(ev);
			event_assign(ev, base, fd, EV_READ | EV_PERSIST, fz_conn_cb, &c);
			event_add(ev, NULL);
			reading_only = true;
		}
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	}
	event_free(ev);
	event_free(to);
	close(fd);
	/* let the server notice the close and free the client */
	for (int i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

#endif
