/*
 * log.c — formatting and writing of log lines (see log.h).
 * Runs on whichever thread logs; owns no state but the threshold and the
 * journal flag, both set at start-up.
 */
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_threshold = LOG_LVL_INFO;
static bool to_journal;

static const struct {
	const char *name;
	enum log_level lvl;
} levels[] = {
	{"error", LOG_LVL_ERROR},
	{"warn", LOG_LVL_WARN},
	{"info", LOG_LVL_INFO},
	{"debug", LOG_LVL_DEBUG},
};

int log_set_level_name(const char *name)
{
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
		if (strcmp(levels[i].name, name) == 0) {
			atomic_store_explicit(&log_threshold, (int)levels[i].lvl,
					      memory_order_relaxed);
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_level(enum log_level lvl)
{
	atomic_store_explicit(&log_threshold, (int)lvl, memory_order_relaxed);
}

const char *log_level_name(enum log_level lvl)
{
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (levels[i].lvl == lvl)
			return levels[i].name;
	return "?";
}

void log_init(void)
{
	/* JOURNAL_STREAM is "device:inode" of the journal's stream socket;
	 * only trust it when it matches what our stderr actually is. */
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;

	to_journal = false;
	if (js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0)
		to_journal = (unsigned long long)st.st_dev == dev &&
			     (unsigned long long)st.st_ino == ino;
}

void log_vwrite(enum log_level lvl, const char *topic, const char *fmt, va_list ap)
{
	char line[2048];
	int n;
	int saved = errno;

	if (to_journal) {
		n = snprintf(line, sizeof(line), "<%d>%s: ", (int)lvl, topic);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %-5s %s: ", tm.tm_hour,
			     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, log_level_name(lvl), topic);
	}
	if (n < 0)
		n = 0;
	if ((size_t)n < sizeof(line)) {
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		if (m > 0)
			n += m;
	}
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2; /* truncated: keep the newline */
	line[n++] = '\n';
	/* One write per line: lines of different threads never interleave. */
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
	errno = saved;
}

void log_write(enum log_level lvl, const char *topic, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(lvl, topic, fmt, ap);
	va_end(ap);
}
