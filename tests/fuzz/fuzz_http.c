/*
 * fuzz_http.c — libFuzzer target: the HTTP request path.  A real evhttp
 * server (daemon/http.c) with the real API routes (daemon/api.c: /streams,
 * /streams/{id}, /detections/latest, /events, /metrics, /reload, /status)
 * listens on 127.0.0.1; each input is sent as the raw bytes of a request
 * (method, path, query, headers, body as the fuzzer made them) over a real
 * TCP connection and the loop runs until the server has answered and closed.
 * Mutations are allowed from loopback; the stream-add hook parses the body
 * with the real cfg_stream_parse() (no pipeline behind it: the data path is
 * not what this target tests).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api.h"
#include "bus.h"
#include "config.h"
#include "fuzz_loop.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

static struct event_base *base;
static struct http *http;
static int port;

static int h_add(const char *body, size_t len, char *id, size_t idl, char *err, size_t el,
		 void *ud)
{
	(void)ud;
	struct cfg_errors *errs = calloc(1, sizeof(*errs));
	struct cfg_stream cs = {0};
	if (!errs)
		return -ENOMEM;
	int r = cfg_stream_parse(body, len, NULL, &cs, errs);
	if (r < 0)
		snprintf(err, el, "%s", errs->n ? errs->msg[0] : "invalid stream");
	else
		snprintf(id, idl, "%s", cs.id);
	cfg_stream_clear(&cs);
	free(errs);
	return r;
}

static int h_remove(const char *id, char *err, size_t el, void *ud)
{
	(void)ud;
	if (strcmp(id, "cam0") == 0)
		return 0;
	snprintf(err, el, "no such stream: %s", id);
	return -ENOENT;
}

static int h_reload(char *err, size_t el, void *ud)
{
	(void)err;
	(void)el;
	(void)ud;
	return 0;
}

static void status_fill(struct json_object *o, void *ud)
{
	(void)ud;
	json_object_object_add(o, "name", json_object_new_string("detd-fuzz"));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static struct cfg_http hc = {.enabled = true, .address = "127.0.0.1", .port = 0,
				     .allow_mutations = true, .max_body_bytes = 4096,
				     .max_header_bytes = 2048};
	static struct cfg_ipc ic = {.client_buffer_bytes = 32 * 1024,
				    .client_hard_limit_bytes = 128 * 1024,
				    .slow_client_timeout_s = 1};
	static struct api *api;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LVL_ERROR);
	base = event_base_new();
	struct metrics *m = metrics_create();
	struct bus *bus = bus_create(8, m);
	if (!base || !m || !bus || http_create(base, &hc, -1, &http) < 0)
		abort();
	port = http_port(http);
	struct api_opts o = {.bus = bus, .metrics = m, .http = &hc, .ipc = &ic,
			     .hooks = {.stream_add = h_add, .stream_remove = h_remove,
				       .reload = h_reload}};
	if (api_create(base, http, &o, &api) < 0 || http_status_add(http, "", status_fill, NULL) < 0)
		abort();
	bus_stream_add(bus, "cam0");
	bus_stream_add(bus, "cam1");
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		abort();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		/* After some 10^5 connections a loopback SYN now and then goes
		 * unanswered until its retransmit a second later, and libFuzzer's
		 * timer signal interrupts the blocking connect: finish it instead
		 * of reporting the server gone. */
		int e = errno, soe = 0;
		socklen_t sl = sizeof(soe);
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int pr = 0;
		if (e == EINTR)
			while ((pr = poll(&p, 1, 10000)) < 0 && errno == EINTR)
				;
		if (e != EINTR || pr != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soe, &sl) != 0 ||
		    soe != 0) {
			fprintf(stderr, "fuzz_http: connect: %s\n", strerror(soe ? soe : e));
			abort(); /* the listener must always be there */
		}
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* SHUT_WR after the bytes: the server sees the end of the request;
	 * /events streams forever and ends by the deadline. */
	fz_exchange(base, fd, data, size, true, NULL, 150);
	return 0;
}
