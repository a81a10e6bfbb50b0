/* test_daemon.c — module lifecycle: start order, reload hooks, reverse and pending stops, timeouts. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"
#include "log.h"
#include "testutil.h"

static char trace[1024];
static char cfg_path[256];
static struct daemon *the_daemon;

static void note(const char *what, const char *name)
{
	size_t len = strlen(trace);
	snprintf(trace + len, sizeof(trace) - len, "%s%s:%s", len ? "," : "", what, name);
}

static void write_config(const char *level)
{
	FILE *f = fopen(cfg_path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"{\"log\":{\"level\":\"%s\"},\"model\":{\"path\":\"/nonexistent.tflite\"},"
		"\"http\":{\"port\":0},\"ipc\":{\"enabled\":false}}",
		level);
	fclose(f);
}

static void setup(void)
{
	trace[0] = '\0';
	snprintf(cfg_path, sizeof(cfg_path), "/tmp/detd-test-daemon-%d.json", (int)getpid());
	write_config("warn");
}

static void teardown(void)
{
	unlink(cfg_path);
}

struct mod {
	const char *name;
	int start_ret;
	int stop_ret; /* DAEMON_STOP_PENDING: report later (or never if never_done) */
	bool never_done;
	struct event *later;
	char seen_levels[64];
};

static void stopped_later(evutil_socket_t fd, short what, void *arg)
{
	struct mod *m = arg;
	note("done", m->name);
	daemon_module_stopped(the_daemon, m->name);
}

static int mod_start(struct daemon *d, void *ud)
{
	struct mod *m = ud;
	note("start", m->name);
	return m->start_ret;
}

static int mod_reload(struct daemon *d, const struct cfg *old, const struct cfg *nw, void *ud)
{
	struct mod *m = ud;
	note("reload", m->name);
	snprintf(m->seen_levels, sizeof(m->seen_levels), "%s->%s", old->log.level, nw->log.level);
	ck_assert_ptr_eq(daemon_cfg(d), nw);
	return 0;
}

static int mod_stop(struct daemon *d, void *ud)
{
	struct mod *m = ud;
	note("stop", m->name);
	if (m->stop_ret == DAEMON_STOP_PENDING && !m->never_done) {
		struct timeval tv = {0, 50000};
		m->later = evtimer_new(daemon_base(d), stopped_later, m);
		evtimer_add(m->later, &tv);
	}
	return m->stop_ret;
}

static void add(struct daemon *d, struct mod *m)
{
	struct daemon_module dm = {.name = m->name,
				   .start = mod_start,
				   .reload = mod_reload,
				   .stop = mod_stop,
				   .ud = m};
	ck_assert_int_eq(daemon_module_add(d, &dm), 0);
}

static void do_hup(evutil_socket_t fd, short what, void *arg)
{
	write_config("debug");
	raise(SIGHUP);
}

static void do_stop(evutil_socket_t fd, short what, void *arg)
{
	daemon_stop(the_daemon, 0);
}

START_TEST(order_reload_and_pending_stop)
{
	struct daemon_opts o = {.config_path = cfg_path};
	struct mod a = {.name = "a"}, b = {.name = "b"},
		   c = {.name = "c", .stop_ret = DAEMON_STOP_PENDING};
	struct timeval t1 = {0, 50000}, t2 = {0, 300000};

	ck_assert_int_eq(daemon_create(&o, &the_daemon), 0);
	add(the_daemon, &a);
	add(the_daemon, &b);
	add(the_daemon, &c);
	struct event *hup = evtimer_new(daemon_base(the_daemon), do_hup, NULL);
	struct event *stop = evtimer_new(daemon_base(the_daemon), do_stop, NULL);
	evtimer_add(hup, &t1);
	evtimer_add(stop, &t2);

	ck_assert_int_eq(daemon_run(the_daemon), 0);
	ck_assert_str_eq(trace, "start:a,start:b,start:c,reload:a,reload:b,reload:c,"
				"stop:c,stop:b,stop:a,done:c");
	ck_assert_str_eq(a.seen_levels, "warn->debug");
	ck_assert_str_eq(daemon_cfg(the_daemon)->log.level, "debug");
	ck_assert(daemon_stopping(the_daemon));
	event_free(hup);
	event_free(stop);
	event_free(c.later);
	daemon_destroy(the_daemon);
	log_set_level(LOG_LVL_INFO);
}
END_TEST

static void do_raise_hup(evutil_socket_t fd, short what, void *arg)
{
	raise(SIGHUP);
}

START_TEST(invalid_reload_keeps_old_config)
{
	struct daemon_opts o = {.config_path = cfg_path};
	struct mod a = {.name = "a"};
	struct timeval t1 = {0, 50000}, t2 = {0, 200000};

	ck_assert_int_eq(daemon_create(&o, &the_daemon), 0);
	add(the_daemon, &a);
	const struct cfg *before = daemon_cfg(the_daemon);
	FILE *f = fopen(cfg_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("{\"model\":{\"path\":\"/m\"},\"engine\":{\"workers\":99}}", f);
	fclose(f);
	struct event *hup = evtimer_new(daemon_base(the_daemon), do_raise_hup, NULL);
	struct event *stop = evtimer_new(daemon_base(the_daemon), do_stop, NULL);
	evtimer_add(hup, &t1);
	evtimer_add(stop, &t2);
	ck_assert_int_eq(daemon_run(the_daemon), 0);
	ck_assert_ptr_eq(daemon_cfg(the_daemon), before);
	ck_assert_str_eq(daemon_cfg(the_daemon)->log.level, "warn");
	ck_assert_str_eq(trace, "start:a,stop:a"); /* no reload hook on a bad file */
	event_free(hup);
	event_free(stop);
	daemon_destroy(the_daemon);
}
END_TEST

START_TEST(stop_times_out)
{
	struct daemon_opts o = {.config_path = cfg_path};
	struct mod a = {.name = "stuck", .stop_ret = DAEMON_STOP_PENDING, .never_done = true};
	struct timeval t = {0, 20000};

	ck_assert_int_eq(daemon_create(&o, &the_daemon), 0);
	add(the_daemon, &a);
	struct event *stop = evtimer_new(daemon_base(the_daemon), do_stop, NULL);
	evtimer_add(stop, &t);
	ck_assert_int_eq(daemon_run(the_daemon), DAEMON_EXIT_FORCED);
	event_free(stop);
	daemon_destroy(the_daemon); /* safe here: the stuck module owns no thread */
}
END_TEST

START_TEST(failed_start_stops_the_started)
{
	struct daemon_opts o = {.config_path = cfg_path};
	struct mod a = {.name = "a"}, b = {.name = "b", .start_ret = -EIO}, c = {.name = "c"};

	ck_assert_int_eq(daemon_create(&o, &the_daemon), 0);
	add(the_daemon, &a);
	add(the_daemon, &b);
	add(the_daemon, &c);
	ck_assert_int_eq(daemon_run(the_daemon), EXIT_FAILURE);
	ck_assert_str_eq(trace, "start:a,start:b,stop:a");
	daemon_destroy(the_daemon);
}
END_TEST

START_TEST(bad_config_is_einval)
{
	struct daemon_opts o = {.config_path = cfg_path};
	struct daemon *d = NULL;
	FILE *f = fopen(cfg_path, "w");
	fputs("{\"nope\":1}", f);
	fclose(f);
	ck_assert_int_eq(daemon_create(&o, &d), -EINVAL);
	ck_assert_ptr_null(d);
	daemon_destroy(NULL);
}
END_TEST

/* ---- the watchdog follows the registered liveness check ---- */

static bool dead;
static int alive_calls;

static int test_alive(void *ud, char *why, size_t whylen)
{
	(void)ud;
	alive_calls++;
	if (!dead)
		return 0;
	snprintf(why, whylen, "test worker stuck");
	return -ETIMEDOUT;
}

/* Reads the notifications as they come (the sender blocks once the
 * datagram queue is full) and keeps one letter per message:
 * R ready, W ping, H STATUS=hung, S the normal STATUS=, X stopping. */
struct reader {
	int fd;
	char seq[8192];
	size_t len;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char buf[512];
	ssize_t n;
	while ((n = recv(r->fd, buf, sizeof(buf) - 1, 0)) > 0 && r->len + 1 < sizeof(r->seq)) {
		buf[n] = '\0';
		char c = strncmp(buf, "READY=1", 7) == 0 ? 'R'
			 : strcmp(buf, "WATCHDOG=1") == 0 ? 'W'
			 : strcmp(buf, "STATUS=hung: test worker stuck") == 0 ? 'H'
			 : strncmp(buf, "STATUS=running", 14) == 0 ? 'S'
			 : strcmp(buf, "STOPPING=1") == 0 ? 'X' : '?';
		r->seq[r->len++] = c;
		if (c == 'X')
			break;
	}
	return NULL;
}

static int live_start(struct daemon *d, void *ud)
{
	ck_assert_uint_eq(daemon_watchdog_usec(d), 40000);
	daemon_set_liveness(d, test_alive, ud);
	return 0;
}

static void set_dead(evutil_socket_t fd, short what, void *arg)
{
	dead = arg != NULL;
}

START_TEST(liveness_gates_watchdog)
{
	/* A real notification socket; WATCHDOG_USEC 40 ms → a tick every 20 ms.
	 * Check runs each test in its own process: the environment stays here. */
	char sock[108];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct reader r = {.len = 0};
	pthread_t th;
	snprintf(sock, sizeof(sock), "/tmp/detd-test-notify-%d.sock", (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	unlink(sock);
	r.fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ge(r.fd, 0);
	ck_assert_int_eq(bind(r.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, reader_main, &r), 0);
	setenv("NOTIFY_SOCKET", sock, 1);
	setenv("WATCHDOG_USEC", "40000", 1);
	unsetenv("WATCHDOG_PID");

	struct daemon_opts o = {.config_path = cfg_path};
	struct daemon_module m = {.name = "live", .start = live_start};
	struct timeval t_dead = {0, 150000}, t_alive = {0, 300000}, t_stop = {0, 450000};
	dead = false;
	alive_calls = 0;
	ck_assert_int_eq(daemon_create(&o, &the_daemon), 0);
	ck_assert_int_eq(daemon_module_add(the_daemon, &m), 0);
	struct event_base *base = daemon_base(the_daemon);
	struct event *e1 = evtimer_new(base, set_dead, "dead");
	struct event *e2 = evtimer_new(base, set_dead, NULL);
	struct event *e3 = evtimer_new(base, do_stop, NULL);
	evtimer_add(e1, &t_dead);
	evtimer_add(e2, &t_alive);
	evtimer_add(e3, &t_stop);
	ck_assert_int_eq(daemon_run(the_daemon), 0);
	event_free(e1);
	event_free(e2);
	event_free(e3);
	daemon_destroy(the_daemon);
	pthread_join(th, NULL); /* STOPPING=1 ended it */
	close(r.fd);
	unlink(sock);

	const char *seq = r.seq;
	ck_assert_int_gt(alive_calls, 10);
	/* ready, pings, one hung notice and silence, the old STATUS back, pings, stop */
	ck_assert_msg(strspn(seq, "RWHSX") == strlen(seq), "unexpected message in %s", seq);
	const char *h = strchr(seq, 'H');
	ck_assert_msg(h && strchr(h + 1, 'H') == NULL, "exactly one STATUS=hung: %s", seq);
	ck_assert_msg(h[1] == 'S', "after the stall the next message restores STATUS=: %s", seq);
	ck_assert_msg(seq[0] == 'R' && h - seq >= 4, "pings before the stall: %s", seq);
	ck_assert_msg(strspn(h + 2, "W") >= 4, "pings after the recovery: %s", seq);
	ck_assert_msg(seq[r.len - 1] == 'X', "stopping last: %s", seq);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *t = tcase_create("daemon");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 20);
	tcase_add_test(t, order_reload_and_pending_stop);
	tcase_add_test(t, invalid_reload_keeps_old_config);
	tcase_add_test(t, stop_times_out);
	tcase_add_test(t, failed_start_stops_the_started);
	tcase_add_test(t, bad_config_is_einval);
	tcase_add_test(t, liveness_gates_watchdog);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	log_set_level(LOG_LVL_WARN);
	return run_suite(suite());
}
