/*
 * ipc.c — see ipc.h.  Loop thread only.
 *
 * A client is a bufferevent plus an optional bus subscription.  Input is cut
 * into lines (at most IPC_MAX_LINE bytes; longer lines are discarded with one
 * error), each line is one JSON request.  Output goes through the
 * bus_flow policy: messages are added by reference (the serialized bytes are
 * shared by every client), so a client's memory is its queue of references,
 * bounded by client_buffer_bytes.
 *
 * Lifetimes: a client is never freed inside one of its own callbacks (nor
 * inside a bus delivery, which may come from another client's request): it
 * is marked closing, unlinked from the bus and freed by the reaper event.
 */
#include "ipc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "detd-build.h"
#include "log.h"
#include "metrics.h"
#include "utf8.h"

#define TOPIC "ipc"

struct client {
	struct ipc_server *srv;
	struct bufferevent *bev;
	struct bus_sub *sub;
	struct bus_flow flow;
	uint64_t id;
	bool closing;
	bool discarding;   /* inside an over-long line: skip to its newline */
	bool flush_close;  /* close once the output is written (rejections) */
	bool read_eof;
	struct client *prev, *next;
	struct client *next_dead;
};

struct ipc_server {
	struct event_base *base;
	struct bus *bus;
	struct metrics *metrics;
	struct evconnlistener *listener;
	struct event *reaper;
	struct event *sweeper;
	struct event *resume; /* re-enables accepting after EMFILE */
	char *path;           /* the socket file we created, NULL if inherited */
	dev_t dev;
	ino_t ino;
	int max_clients;
	size_t soft, hard;
	double timeout_s;
	struct client *clients;
	struct client *dead;
	uint64_t next_id;
	struct ipc_stats st;
};

static void client_close(struct client *c, const char *why);

/* ---- output ---- */

static void unref_cleanup(const void *data, size_t len, void *extra)
{
	bus_msg_unref(extra);
}

static size_t queued(struct client *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void note_queued(struct client *c)
{
	size_t q = queued(c);
	if (q > c->srv->st.max_queued)
		c->srv->st.max_queued = q;
}

/* Queue a message by reference; does not look at the soft limit. */
static void push_msg(struct client *c, struct bus_msg *m)
{
	bus_msg_ref(m);
	if (evbuffer_add_reference(bufferevent_get_output(c->bev), m->data, m->len, unref_cleanup,
				   m) < 0)
		bus_msg_unref(m);
	note_queued(c);
}

/* Control replies (hello, pong, errors, notices) bypass the soft limit but
 * not the hard one. */
static void send_ctl(struct client *c, struct json_object *o)
{
	if (c->closing) {
		json_object_put(o);
		return;
	}
	struct bus_msg *m = bus_msg_from_json(o);
	json_object_put(o);
	if (!m) {
		client_close(c, "out of memory");
		return;
	}
	push_msg(c, m);
	bus_msg_unref(m);
	if (queued(c) > c->srv->hard) {
		c->srv->st.slow_disconnects++;
		client_close(c, "output over the hard limit");
	}
}

static void send_error(struct client *c, const char *code, const char *msg, struct json_object *id)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "code", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(msg));
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	c->srv->st.errors_sent++;
	log_debug(TOPIC, "client %llu: %s: %s", (unsigned long long)c->id, code, msg);
	send_ctl(c, o);
}

static void send_notice(struct client *c)
{
	struct bus_msg *n = bus_flow_take_notice(&c->flow);
	if (n) {
		push_msg(c, n);
		bus_msg_unref(n);
	}
}

/* bus delivery: the slow-consumer policy lives here */
static void deliver(void *ud, struct bus_msg *m)
{
	struct client *c = ud;
	struct ipc_server *srv = c->srv;
	if (c->closing)
		return;
	switch (bus_flow_offer(&c->flow, queued(c), m->len, det_mono_ns())) {
	case BUS_FLOW_SEND:
		send_notice(c);
		push_msg(c, m);
		break;
	case BUS_FLOW_DROP:
		srv->st.dropped++;
		if (srv->metrics)
			metrics_counter_add(srv->metrics, "detd_messages_dropped_total", 1,
					    "transport", "ipc", NULL);
		break;
	case BUS_FLOW_DISCONNECT:
		srv->st.dropped++;
		srv->st.slow_disconnects++;
		log_warn(TOPIC, "client %llu: too slow (%llu messages dropped), disconnecting",
			 (unsigned long long)c->id, (unsigned long long)c->flow.total_drops);
		client_close(c, "slow consumer");
		break;
	}
}

/* ---- requests ---- */

static bool only_keys(struct client *c, struct json_object *req, const char *const *allowed,
		      struct json_object *id)
{
	json_object_object_foreach(req, key, val)
	{
		(void)val;
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, key) == 0;
		if (!ok) {
			char msg[160];
			snprintf(msg, sizeof(msg), "unknown field \"%.*s\"", utf8_cut(key, 64), key);
			send_error(c, "unknown_field", msg, id);
			return false;
		}
	}
	return true;
}

static void do_subscribe(struct client *c, struct json_object *req, struct json_object *id)
{
	static const char *const keys[] = {"type", "id", "streams", "labels", "min_score", "since",
					   NULL};
	if (!only_keys(c, req, keys, id))
		return;
	char err[256];
	struct bus_filter f;
	if (bus_filter_from_json(&f, req, err, sizeof(err)) < 0) {
		send_error(c, "bad_filter", err, id);
		return;
	}
	struct json_object *since = NULL;
	if (json_object_object_get_ex(req, "since", &since) &&
	    !json_object_is_type(since, json_type_null)) {
		if (!json_object_is_type(since, json_type_object)) {
			send_error(c, "bad_filter", "since: expected an object {stream: seq}", id);
			goto fail;
		}
		json_object_object_foreach(since, sk, sv)
		{
			if (!json_object_is_type(sv, json_type_int) || json_object_get_int64(sv) < 0) {
				snprintf(err, sizeof(err),
					 "since.%.*s: expected a non-negative integer", utf8_cut(sk, 64),
					 sk);
				send_error(c, "bad_filter", err, id);
				goto fail;
			}
		}
	} else {
		since = NULL;
	}
	struct json_object *ack = bus_filter_to_json(&f);
	json_object_object_add(ack, "type", json_object_new_string("subscribed"));
	if (id)
		json_object_object_add(ack, "id", json_object_get(id));
	if (c->sub) {
		bus_sub_set_filter(c->sub, &f);
	} else {
		c->sub = bus_subscribe(c->srv->bus, &f, deliver, c);
		if (!c->sub) {
			json_object_put(ack);
			send_error(c, "internal", "out of memory", id);
			goto fail;
		}
	}
	send_ctl(c, ack);
	if (since && c->sub && !c->closing) {
		json_object_object_foreach(since, sk2, sv2)
			bus_replay(c->sub, sk2, (uint64_t)json_object_get_int64(sv2));
	}
	return;
fail:
	bus_filter_clear(&f);
}

static void handle_request(struct client *c, const char *line, size_t len)
{
	if (memchr(line, '\0', len)) {
		send_error(c, "invalid_json", "NUL byte in request", NULL);
		return;
	}
	/* Strictly, before json-c (whose check lets overlongs, surrogates and
	 * code points past U+10FFFF through): whatever we echo (ids, filters,
	 * field names) is then valid UTF-8. */
	if (!utf8_valid(line, len)) {
		send_error(c, "invalid_utf8", "invalid UTF-8: the request is not strict UTF-8 "
					      "(overlong form, surrogate or beyond U+10FFFF)", NULL);
		return;
	}
	/* json-c's depth counts every container, the request object too:
	 * + 1 accepts exactly IPC_MAX_DEPTH levels inside it */
	struct json_tokener *tok = json_tokener_new_ex(IPC_MAX_DEPTH + 1);
	if (!tok) {
		client_close(c, "out of memory");
		return;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *req = json_tokener_parse_ex(tok, line, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr != json_tokener_success || !req) {
		char msg[160];
		bool utf8 = jerr == json_tokener_error_parse_utf8_string;
		snprintf(msg, sizeof(msg), "%s: %s", utf8 ? "invalid UTF-8" : "invalid JSON",
			 jerr == json_tokener_continue ? "unexpected end of line"
						       : json_tokener_error_desc(jerr));
		send_error(c, utf8 ? "invalid_utf8" : "invalid_json", msg, NULL);
		json_object_put(req);
		return;
	}
	for (; end < len; end++)
		if (line[end] != ' ' && line[end] != '\t') {
			send_error(c, "invalid_json", "invalid JSON: trailing data after the object",
				   NULL);
			json_object_put(req);
			return;
		}
	struct json_object *type = NULL, *id = NULL;
	if (!json_object_is_type(req, json_type_object)) {
		send_error(c, "bad_request", "a request is a JSON object", NULL);
		goto out;
	}
	json_object_object_get_ex(req, "id", &id);
	if (!json_object_object_get_ex(req, "type", &type) ||
	    !json_object_is_type(type, json_type_string)) {
		send_error(c, "bad_request", "missing \"type\" (a string)", id);
		goto out;
	}
	const char *t = json_object_get_string(type);
	static const char *const plain[] = {"type", "id", NULL};
	if (strcmp(t, "subscribe") == 0) {
		do_subscribe(c, req, id);
	} else if (strcmp(t, "unsubscribe") == 0) {
		if (!only_keys(c, req, plain, id))
			goto out;
		bus_unsubscribe(c->sub);
		c->sub = NULL;
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "type", json_object_new_string("unsubscribed"));
		if (id)
			json_object_object_add(o, "id", json_object_get(id));
		send_ctl(c, o);
	} else if (strcmp(t, "ping") == 0) {
		if (!only_keys(c, req, plain, id))
			goto out;
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "type", json_object_new_string("pong"));
		if (id)
			json_object_object_add(o, "id", json_object_get(id));
		send_ctl(c, o);
	} else if (strcmp(t, "streams") == 0) {
		if (!only_keys(c, req, plain, id))
			goto out;
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "type", json_object_new_string("streams"));
		if (id)
			json_object_object_add(o, "id", json_object_get(id));
		json_object_object_add(o, "streams", bus_streams_json(c->srv->bus));
		send_ctl(c, o);
	} else {
		char msg[128];
		snprintf(msg, sizeof(msg), "unknown type \"%.*s\"", utf8_cut(t, 48), t);
		send_error(c, "unknown_type", msg, id);
	}
out:
	json_object_put(req);
}

/* ---- client callbacks ---- */

/*
 * After a read EOF: did the peer close completely, or only shut its sending
 * side?  On a Unix stream socket POLLHUP means both directions are shut: the
 * peer is gone, and a subscriber whose filter matches nothing would
 * otherwise hold its slot forever (nothing is ever written to fail).
 */
static bool peer_gone(struct client *c)
{
	struct pollfd p = {.fd = bufferevent_getfd(c->bev), .events = POLLOUT};
	if (p.fd < 0)
		return true;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static void on_read(struct bufferevent *bev, void *ud)
{
	struct client *c = ud;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line = NULL;
	while (!c->closing && evbuffer_get_length(in) > 0) {
		size_t eol_len = 0;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		if (c->discarding) {
			if (p.pos < 0) {
				evbuffer_drain(in, evbuffer_get_length(in));
				break;
			}
			evbuffer_drain(in, (size_t)p.pos + eol_len);
			c->discarding = false;
			continue;
		}
		if (p.pos < 0 || (size_t)p.pos > IPC_MAX_LINE) {
			if (p.pos < 0 && evbuffer_get_length(in) <= IPC_MAX_LINE)
				break; /* wait for the rest of the line */
			char msg[96];
			snprintf(msg, sizeof(msg), "request line longer than %d bytes, discarded",
				 IPC_MAX_LINE);
			send_error(c, "line_too_long", msg, NULL);
			if (p.pos < 0) {
				evbuffer_drain(in, evbuffer_get_length(in));
				c->discarding = true;
				break;
			}
			evbuffer_drain(in, (size_t)p.pos + eol_len);
			continue;
		}
		size_t n = (size_t)p.pos;
		if (!line && !(line = malloc(IPC_MAX_LINE + 1))) {
			client_close(c, "out of memory");
			break;
		}
		evbuffer_remove(in, line, n);
		evbuffer_drain(in, eol_len);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		line[n] = '\0';
		size_t ws = 0;
		while (ws < n && (line[ws] == ' ' || line[ws] == '\t'))
			ws++;
		if (ws == n)
			continue; /* blank lines are keep-alives */
		handle_request(c, line, n);
	}
	free(line);
	if (c->read_eof && !c->closing && !c->sub)
		client_close(c, "end of input");
}

static void on_write(struct bufferevent *bev, void *ud)
{
	struct client *c = ud;
	if (c->closing)
		return;
	if (c->flush_close) {
		if (queued(c) == 0)
			client_close(c, "rejected");
		return;
	}
	/* drained below the low watermark: the drop run is over, report it */
	bus_flow_drained(&c->flow);
	send_notice(c);
}

static void on_event(struct bufferevent *bev, short what, void *ud)
{
	struct client *c = ud;
	if (c->closing)
		return;
	if (what & BEV_EVENT_EOF) {
		/* The peer shut its sending side.  A subscriber may still read (a
		 * half-closed client); one without a subscription has nothing left
		 * to do, nor has a peer that closed completely.  One that closes
		 * later is found by the sweeper. */
		c->read_eof = true;
		bufferevent_disable(bev, EV_READ);
		if (!c->sub || c->flush_close || peer_gone(c))
			client_close(c, "closed by peer");
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		if (what & BEV_EVENT_ERROR)
			log_debug(TOPIC, "client %llu: %s error: %s", (unsigned long long)c->id,
				  (what & BEV_EVENT_READING) ? "read" : "write",
				  strerror(EVUTIL_SOCKET_ERROR()));
		client_close(c, (what & BEV_EVENT_TIMEOUT) ? "timeout" : "socket error");
	}
}

static void client_free(struct client *c)
{
	bufferevent_free(c->bev);
	free(c);
}

static void client_close(struct client *c, const char *why)
{
	if (c->closing)
		return;
	struct ipc_server *srv = c->srv;
	c->closing = true;
	log_debug(TOPIC, "client %llu: closing (%s)", (unsigned long long)c->id, why);
	if (srv->metrics && strcmp(why, "slow consumer") == 0)
		metrics_counter_add(srv->metrics, "detd_clients_disconnected_total", 1, "transport",
				    "ipc", "reason", "slow", NULL);
	bus_unsubscribe(c->sub);
	c->sub = NULL;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->st.clients--;
	c->next_dead = srv->dead;
	srv->dead = c;
	event_active(srv->reaper, 0, 0);
}

static void reap(evutil_socket_t fd, short what, void *ud)
{
	struct ipc_server *srv = ud;
	while (srv->dead) {
		struct client *c = srv->dead;
		srv->dead = c->next_dead;
		client_free(c);
	}
}

static void sweep(evutil_socket_t fd, short what, void *ud)
{
	struct ipc_server *srv = ud;
	int64_t now = det_mono_ns();
	for (struct client *c = srv->clients, *n; c; c = n) {
		n = c->next;
		if (c->read_eof && peer_gone(c)) {
			client_close(c, "closed by peer");
			continue;
		}
		if (bus_flow_expired(&c->flow, queued(c), now)) {
			srv->st.slow_disconnects++;
			log_warn(TOPIC, "client %llu: stuck for %.1f s (%llu messages dropped), "
					"disconnecting",
				 (unsigned long long)c->id, srv->timeout_s,
				 (unsigned long long)c->flow.total_drops);
			client_close(c, "slow consumer");
		}
	}
}

static void send_hello(struct client *c)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("hello"));
	json_object_object_add(o, "protocol", json_object_new_int(IPC_PROTOCOL));
	json_object_object_add(o, "version", json_object_new_string(DETD_VERSION));
	json_object_object_add(o, "streams", bus_stream_ids_json(c->srv->bus));
	json_object_object_add(o, "max_line_bytes", json_object_new_int(IPC_MAX_LINE));
	send_ctl(c, o);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *ud)
{
	struct ipc_server *srv = ud;
	struct client *c = calloc(1, sizeof(*c));
	struct bufferevent *bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !bev) {
		log_warn(TOPIC, "out of memory accepting a client");
		free(c);
		if (bev)
			bufferevent_free(bev);
		else
			close(fd);
		return;
	}
	c->srv = srv;
	c->bev = bev;
	c->id = ++srv->next_id;
	bus_flow_init(&c->flow, srv->soft, srv->hard, srv->timeout_s);
	c->next = srv->clients;
	if (srv->clients)
		srv->clients->prev = c;
	srv->clients = c;
	srv->st.clients++;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	/* writecb when the queue is down to half the soft limit: time to send
	 * the dropped notice and end the run of drops */
	bufferevent_setwatermark(bev, EV_WRITE, srv->soft / 2, 0);
	/* at most one max line plus a read chunk is ever held per client */
	bufferevent_setwatermark(bev, EV_READ, 0, IPC_MAX_LINE + 4096);
	if ((int)srv->st.clients > srv->max_clients) {
		srv->st.rejected++;
		c->flush_close = true;
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		struct timeval tv = {2, 0};
		bufferevent_set_timeouts(bev, NULL, &tv);
		bufferevent_enable(bev, EV_WRITE);
		send_error(c, "too_many_clients", "the server has its maximum number of clients",
			   NULL);
		log_warn(TOPIC, "rejecting a client: max_clients (%d) reached", srv->max_clients);
		return;
	}
	srv->st.accepted++;
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	send_hello(c);
}

static void on_resume(evutil_socket_t fd, short what, void *ud)
{
	struct ipc_server *srv = ud;
	evconnlistener_enable(srv->listener);
}

static void on_accept_error(struct evconnlistener *l, void *ud)
{
	struct ipc_server *srv = ud;
	int err = EVUTIL_SOCKET_ERROR();
	log_warn(TOPIC, "accept: %s; pausing the listener for 100 ms", strerror(err));
	/* EMFILE and friends: a busy loop of failing accepts helps nobody */
	evconnlistener_disable(l);
	struct timeval tv = {0, 100000};
	event_add(srv->resume, &tv);
}

/* ---- socket file ---- */

static int prepare_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		log_error(TOPIC, "%s exists and is not a socket; not touching it", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	close(fd);
	if (rc == 0) {
		log_error(TOPIC, "%s: another process is listening on it", path);
		return -EADDRINUSE;
	}
	if (err != ECONNREFUSED) {
		log_error(TOPIC, "%s: connect test failed: %s", path, strerror(err));
		return -err;
	}
	log_info(TOPIC, "%s: removing the stale socket of a previous run", path);
	return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int bind_path(struct ipc_server *srv, const struct cfg_ipc *cfg, int *out_fd)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(cfg->path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, cfg->path);
	int rc = prepare_path(cfg->path);
	if (rc < 0)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc < 0 && errno == ENOENT) {
		/* outside systemd (no RuntimeDirectory=) the directory may be missing */
		char dir[sizeof(sa.sun_path)];
		snprintf(dir, sizeof(dir), "%s", cfg->path);
		char *slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = '\0';
			if (mkdir(dir, 0755) == 0)
				log_info(TOPIC, "created %s", dir);
		}
		rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (rc < 0) {
		rc = -errno;
		log_error(TOPIC, "bind %s: %s", cfg->path, strerror(errno));
		goto fail;
	}
	/* chmod/chown before listen(): nobody can connect to a socket that is
	 * not listening yet, so there is no window with the umask's mode */
	if (chmod(cfg->path, (mode_t)cfg->mode) < 0) {
		rc = -errno;
		log_error(TOPIC, "chmod %s: %s", cfg->path, strerror(errno));
		goto fail_unlink;
	}
	if (cfg->group && *cfg->group) {
		struct group gr, *res = NULL;
		char buf[4096];
		int e = getgrnam_r(cfg->group, &gr, buf, sizeof(buf), &res);
		if (e || !res) {
			rc = e ? -e : -ENOENT;
			log_error(TOPIC, "group %s: %s", cfg->group, e ? strerror(e) : "no such group");
			goto fail_unlink;
		}
		if (chown(cfg->path, (uid_t)-1, res->gr_gid) < 0) {
			rc = -errno;
			log_error(TOPIC, "chown %s to group %s: %s", cfg->path, cfg->group,
				  strerror(errno));
			goto fail_unlink;
		}
	}
	struct stat st;
	if (stat(cfg->path, &st) == 0) {
		srv->dev = st.st_dev;
		srv->ino = st.st_ino;
	}
	if (listen(fd, 128) < 0) {
		rc = -errno;
		goto fail_unlink;
	}
	*out_fd = fd;
	return 0;
fail_unlink:
	unlink(cfg->path);
fail:
	close(fd);
	return rc;
}

/* ---- server ---- */

static void collect(struct metrics *m, void *ud)
{
	struct ipc_server *srv = ud;
	metrics_gauge_set(m, "detd_subscribers", (double)srv->st.clients, "transport", "ipc",
			  NULL);
}

int ipc_create(struct event_base *base, const struct cfg_ipc *cfg, struct bus *bus,
	       struct metrics *metrics, int inherited_fd, struct ipc_server **out)
{
	*out = NULL;
	if (!base || !cfg || !bus || (inherited_fd < 0 && (!cfg->path || !*cfg->path)))
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	struct ipc_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	int rc = -ENOMEM, fd = -1;
	srv->base = base;
	srv->bus = bus;
	srv->metrics = metrics;
	srv->max_clients = cfg->max_clients > 0 ? cfg->max_clients : 64;
	srv->soft = cfg->client_buffer_bytes ? cfg->client_buffer_bytes : 1 << 20;
	srv->hard = cfg->client_hard_limit_bytes > srv->soft ? cfg->client_hard_limit_bytes
							     : 2 * srv->soft;
	srv->timeout_s = cfg->slow_client_timeout_s > 0 ? cfg->slow_client_timeout_s : 10;
	srv->reaper = event_new(base, -1, 0, reap, srv);
	srv->resume = evtimer_new(base, on_resume, srv);
	srv->sweeper = event_new(base, -1, EV_PERSIST, sweep, srv);
	if (!srv->reaper || !srv->resume || !srv->sweeper)
		goto fail;
	if (inherited_fd >= 0) {
		fd = inherited_fd;
		evutil_make_socket_nonblocking(fd);
		log_info(TOPIC, "listening on the inherited socket (fd %d)", fd);
	} else {
		if ((rc = bind_path(srv, cfg, &fd)) < 0)
			goto fail;
		if (!(srv->path = strdup(cfg->path))) {
			rc = -ENOMEM;
			goto fail;
		}
		log_info(TOPIC, "listening on %s (mode %04o%s%s)", cfg->path, cfg->mode,
			 cfg->group ? ", group " : "", cfg->group ? cfg->group : "");
	}
	srv->listener = evconnlistener_new(base, on_accept, srv,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!srv->listener) {
		rc = -ENOMEM;
		close(fd);
		goto fail;
	}
	evconnlistener_set_error_cb(srv->listener, on_accept_error);
	/* stuck clients are also cut when nothing is published */
	double half = srv->timeout_s / 2 < 1 ? srv->timeout_s / 2 : 1;
	struct timeval tv = {(time_t)half, (suseconds_t)((half - (double)(time_t)half) * 1e6)};
	event_add(srv->sweeper, &tv);
	if (metrics) {
		metrics_define(metrics, "detd_subscribers", METRICS_GAUGE,
			       "Connected subscribers per transport", NULL, 0);
		metrics_define(metrics, "detd_messages_dropped_total", METRICS_COUNTER,
			       "Messages dropped for slow subscribers", NULL, 0);
		metrics_define(metrics, "detd_clients_disconnected_total", METRICS_COUNTER,
			       "Subscribers disconnected by the server", NULL, 0);
		metrics_add_collector(metrics, collect, srv);
	}
	*out = srv;
	return 0;
fail:
	ipc_destroy(srv); /* removes the socket file if we created it */
	return rc;
}

void ipc_destroy(struct ipc_server *srv)
{
	if (!srv)
		return;
	if (srv->metrics)
		metrics_remove_collector(srv->metrics, collect, srv);
	while (srv->clients)
		client_close(srv->clients, "shutdown");
	reap(-1, 0, srv);
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->path) {
		/* only our own file: a new daemon may already have replaced it */
		struct stat st;
		if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev && st.st_ino == srv->ino)
			unlink(srv->path);
		free(srv->path);
	}
	if (srv->reaper)
		event_free(srv->reaper);
	if (srv->resume)
		event_free(srv->resume);
	if (srv->sweeper)
		event_free(srv->sweeper);
	free(srv);
}

void ipc_reload(struct ipc_server *srv, const struct cfg_ipc *cfg)
{
	if (!srv || !cfg)
		return;
	srv->max_clients = cfg->max_clients > 0 ? cfg->max_clients : 64;
	srv->soft = cfg->client_buffer_bytes ? cfg->client_buffer_bytes : 1 << 20;
	srv->hard = cfg->client_hard_limit_bytes > srv->soft ? cfg->client_hard_limit_bytes
							     : 2 * srv->soft;
	srv->timeout_s = cfg->slow_client_timeout_s > 0 ? cfg->slow_client_timeout_s : 10;
	for (struct client *c = srv->clients; c; c = c->next) {
		c->flow.soft = srv->soft;
		c->flow.hard = srv->hard;
		c->flow.timeout_ns = (int64_t)(srv->timeout_s * 1e9);
		bufferevent_setwatermark(c->bev, EV_WRITE, c->flush_close ? 0 : srv->soft / 2, 0);
	}
}

void ipc_get_stats(const struct ipc_server *srv, struct ipc_stats *st)
{
	*st = srv->st;
}
