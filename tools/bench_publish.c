/*
 * detd-bench-publish — cost of the publishing fan-out on the loop thread:
 * N results with K objects each go through bus_publish() to S Unix-socket
 * subscribers (real sockets, ipc.c) read by the same process between
 * publishes, like the unit tests do.  Prints results/s, messages/s and the
 * serializations per result (1 when all subscribers share one filter).
 *
 *   detd-bench-publish [-n RESULTS] [-k OBJECTS] [-s SUBSCRIBERS] [-f]
 *     -f  half of the subscribers filter labels (two distinct serializations)
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "frame.h"
#include "ipc.h"
#include "log.h"

static int sub_connect(const char *path, const char *req)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		return -1;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

int main(int argc, char **argv)
{
	long n = 20000;
	int k = 8, s = 4, opt;
	bool filt = false;
	while ((opt = getopt(argc, argv, "n:k:s:f")) != -1) {
		if (opt == 'n')
			n = atol(optarg);
		else if (opt == 'k')
			k = atoi(optarg);
		else if (opt == 's')
			s = atoi(optarg);
		else if (opt == 'f')
			filt = true;
		else {
			fprintf(stderr, "usage: detd-bench-publish [-n N] [-k K] [-s S] [-f]\n");
			return 2;
		}
	}
	log_set_level(LOG_LVL_WARN);
	char dir[] = "/tmp/detd-bench-XXXXXX", path[128];
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/b.sock", dir);
	struct cfg_ipc cfg = {.enabled = true, .path = path, .mode = 0600, .max_clients = 1024,
			      .client_buffer_bytes = 64 << 20, .client_hard_limit_bytes = 128 << 20,
			      .slow_client_timeout_s = 60, .replay_ring = 64};
	struct event_base *base = event_base_new();
	struct bus *bus = bus_create(cfg.replay_ring, NULL);
	struct ipc_server *srv;
	if (ipc_create(base, &cfg, bus, NULL, -1, &srv) < 0)
		return 1;
	int *fds = calloc((size_t)s, sizeof(int));
	for (int i = 0; i < s; i++) {
		fds[i] = sub_connect(path, filt && (i & 1)
						   ? "{\"type\":\"subscribe\",\"labels\":[\"car\"]}\n"
						   : "{\"type\":\"subscribe\"}\n");
		if (fds[i] < 0)
			return 1;
	}
	for (int i = 0; i < 50; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	static char buf[1 << 20];
	uint64_t bytes = 0;
	int64_t t_pub = 0, t0 = det_mono_ns();
	for (long i = 1; i <= n; i++) {
		struct det_result *r = det_result_new(NULL, k);
		snprintf(r->stream_id, sizeof(r->stream_id), "cam%ld", i % 4);
		r->seq = (uint64_t)(i / 4 + 1);
		r->orig_width = 960;
		r->orig_height = 540;
		r->capture_wall_ns = det_wall_ns();
		for (int j = 0; j < k; j++) {
			snprintf(r->objects[j].label, DET_LABEL_MAX, "%s", j & 1 ? "car" : "person");
			r->objects[j].score = 0.5f + 0.01f * (float)j;
			r->objects[j].box_px[2] = 100.5f + (float)j;
		}
		int64_t a = det_mono_ns();
		bus_publish(bus, r);
		t_pub += det_mono_ns() - a;
		det_result_unref(r);
		event_base_loop(base, EVLOOP_NONBLOCK);
		for (int c = 0; c < s; c++)
			for (ssize_t got; (got = read(fds[c], buf, sizeof(buf))) > 0;)
				bytes += (uint64_t)got;
	}
	for (int i = 0; i < 100; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		for (int c = 0; c < s; c++)
			for (ssize_t got; (got = read(fds[c], buf, sizeof(buf))) > 0;)
				bytes += (uint64_t)got;
	}
	double secs = (double)(det_mono_ns() - t0) / 1e9;
	struct ipc_stats st;
	ipc_get_stats(srv, &st);
	printf("results %ld, objects/result %d, subscribers %d%s\n", n, k, s,
	       filt ? " (half filter labels)" : "");
	printf("end to end: %.0f results/s, %.0f messages/s delivered, %.1f MB/s read by clients\n",
	       (double)n / secs, (double)n * s / secs, (double)bytes / secs / 1e6);
	printf("bus_publish (serialize + fan-out + ring): %.2f us per result\n",
	       (double)t_pub / 1e3 / (double)n);
	printf("dropped %llu, largest client queue %zu bytes\n", (unsigned long long)st.dropped,
	       st.max_queued);
	for (int c = 0; c < s; c++)
		close(fds[c]);
	ipc_destroy(srv);
	bus_destroy(bus);
	event_base_free(base);
	rmdir(dir);
	free(fds);
	return 0;
}
