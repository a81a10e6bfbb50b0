/*
 * fuzz_ipc.c — libFuzzer target: the Unix-socket protocol (daemon/ipc.c):
 * line framing, JSON parsing with strict UTF-8, requests, filters, replies.
 * A real ipc server listens on a socket in a temporary directory; each input
 * is written as it is over a real connection, followed by a newline and a
 * ping whose pong marks that every line before it was handled.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/un.h>

#include "bus.h"
#include "config.h"
#include "fuzz_loop.h"
#include "ipc.h"
#include "log.h"
#include "metrics.h"

#define END_MARK "fuzz-end-7c1f"

static struct event_base *base;
static char sock_path[108];
static uint8_t *buf;
static size_t buf_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	static char dir[] = "/tmp/detd-fuzz-ipc.XXXXXX";
	static struct cfg_ipc cfg;
	struct ipc_server *srv;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LVL_ERROR);
	if (!mkdtemp(dir))
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/detd.sock", dir);
	cfg = (struct cfg_ipc){.enabled = true, .path = sock_path, .mode = 0600, .max_clients = 8,
			       .client_buffer_bytes = 64 * 1024,
			       .client_hard_limit_bytes = 256 * 1024,
			       .slow_client_timeout_s = 5, .replay_ring = 8};
	base = event_base_new();
	struct metrics *m = metrics_create();
	struct bus *bus = bus_create(8, m);
	if (!base || !m || !bus || ipc_create(base, &cfg, bus, m, -1, &srv) < 0)
		abort();
	bus_stream_add(bus, "cam0");
	bus_stream_add(bus, "cam1");
	/* the socket file and directory are left for the OS: libFuzzer exits
	 * without a hook, and they are tiny */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char tail[] = "\n{\"type\":\"ping\",\"id\":\"" END_MARK "\"}\n";
	size_t n = size + sizeof(tail) - 1;
	if (n > buf_cap) {
		free(buf);
		buf_cap = n;
		if (!(buf = malloc(buf_cap)))
			abort();
	}
	memcpy(buf, data, size);
	memcpy(buf + size, tail, sizeof(tail) - 1);

	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		abort();
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	/* the pong carries the mark; an overlong line makes the server close */
	fz_exchange(base, fd, buf, n, false, END_MARK, 500);
	return 0;
}
