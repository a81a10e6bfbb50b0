/*
 * test_notify.c — the service-manager protocols of daemon/notify.c.  Built
 * twice: against the daemon library (libsystemd when available) and with
 * notify.c compiled in with DETD_NOTIFY_OWN (detd's own implementation), so
 * both code paths are checked against a real datagram socket.
 */
#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "testutil.h"

static int listener(char *path, size_t len, bool abstract)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t salen;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	if (abstract) {
		snprintf(path, len, "@detd-test-notify-%d", (int)getpid());
		memcpy(sa.sun_path + 1, path + 1, strlen(path) - 1);
		salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	} else {
		snprintf(path, len, "/tmp/detd-test-notify-%d.sock", (int)getpid());
		unlink(path);
		strcpy(sa.sun_path, path);
		salen = sizeof(sa);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, salen), 0);
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void expect_msg(int fd, const char *want)
{
	char buf[1024];
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

static void messages_to(bool abstract)
{
	char path[108];
	int fd = listener(path, sizeof(path), abstract);
	setenv("NOTIFY_SOCKET", path, 1);
	notify_send("READY=1\nSTATUS=%s", "hello");
	notify_send("WATCHDOG=1");
	notify_send("STOPPING=1");
	expect_msg(fd, "READY=1\nSTATUS=hello");
	expect_msg(fd, "WATCHDOG=1");
	expect_msg(fd, "STOPPING=1");
	close(fd);
	if (!abstract)
		unlink(path);
}

START_TEST(send_to_path_socket)
{
	messages_to(false);
}
END_TEST

START_TEST(send_to_abstract_socket)
{
	messages_to(true);
}
END_TEST

START_TEST(no_socket_is_a_noop)
{
	unsetenv("NOTIFY_SOCKET");
	notify_send("READY=1"); /* must not fail or block */
}
END_TEST

START_TEST(watchdog_interval)
{
	char pid[32];
	unsetenv("WATCHDOG_PID");
	unsetenv("WATCHDOG_USEC");
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "30000000", 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 30000000);
	setenv("WATCHDOG_PID", "1", 1); /* for another process */
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "garbage", 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
}
END_TEST

START_TEST(listen_fds_by_name)
{
	char pid[32];
	char **names = NULL;
	int a[2], b[2];

	/* fds 3 and 4 must be the passed sockets, as the protocol says */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
	ck_assert_int_eq(dup2(a[0], 3), 3);
	ck_assert_int_eq(dup2(b[0], 4), 4);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "2", 1);
	setenv("LISTEN_FDNAMES", "http:ipc", 1);
	ck_assert_int_eq(notify_listen_fds(&names), 2);
	ck_assert_ptr_nonnull(names);
	ck_assert_str_eq(names[0], "http");
	ck_assert_str_eq(names[1], "ipc");
	ck_assert_ptr_null(names[2]);
	ck_assert_int_eq(fcntl(3, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_ptr_null(getenv("LISTEN_FDS")); /* not inherited by children */
	notify_free_names(names);

	/* meant for another process: nothing */
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "2", 1);
	ck_assert_int_eq(notify_listen_fds(&names), 0);
	ck_assert_ptr_null(names);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	close(3);
	close(4);
	close(a[1]);
	close(b[1]);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("notify");
	TCase *t = tcase_create("notify");
	tcase_add_test(t, send_to_path_socket);
	tcase_add_test(t, send_to_abstract_socket);
	tcase_add_test(t, no_socket_is_a_noop);
	tcase_add_test(t, watchdog_interval);
	tcase_add_test(t, listen_fds_by_name);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
