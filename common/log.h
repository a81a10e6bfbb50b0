/*
 * log.h — the one logger of detd.
 *
 * Every module logs through these macros with a topic (usually its file's
 * module name).  The level is checked before anything is formatted, so a
 * disabled debug line costs one comparison.  When stderr is the systemd
 * journal (JOURNAL_STREAM matches stderr) lines carry a "<N>" priority prefix
 * instead of a timestamp, so journald files them at the right priority.
 *
 * Thread safety: all functions may be called from any thread; a line is
 * written with a single write(2) so lines from different threads never mix.
 */
#ifndef DETD_LOG_H
#define DETD_LOG_H

#include <stdarg.h>
#include <stdatomic.h>

enum log_level {
	LOG_LVL_ERROR = 3, /* values are syslog priorities on purpose */
	LOG_LVL_WARN = 4,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Current threshold; lines above it are skipped.  Written by the loop (start,
 * SIGHUP) and read by every thread, so it is atomic: relaxed order is enough
 * (a thread may log one more line at the old level), but a plain or volatile
 * int would be a data race.  Use log_get_level() to read it. */
extern _Atomic int log_threshold;

static inline enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

/* Set from a name ("error", "warn", "info", "debug"); returns 0 or -EINVAL. */
int log_set_level_name(const char *name);
void log_set_level(enum log_level lvl);
const char *log_level_name(enum log_level lvl);

/* Detect the journal from JOURNAL_STREAM; called once by main(), tests may skip it. */
void log_init(void);

void log_write(enum log_level lvl, const char *topic, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level lvl, const char *topic, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#define LOG_AT(lvl, topic, ...)                                                \
	do {                                                                   \
		if ((int)(lvl) <= (int)log_get_level())                        \
			log_write((lvl), (topic), __VA_ARGS__);                \
	} while (0)

#define log_error(topic, ...) LOG_AT(LOG_LVL_ERROR, topic, __VA_ARGS__)
#define log_warn(topic, ...) LOG_AT(LOG_LVL_WARN, topic, __VA_ARGS__)
#define log_info(topic, ...) LOG_AT(LOG_LVL_INFO, topic, __VA_ARGS__)
#define log_debug(topic, ...) LOG_AT(LOG_LVL_DEBUG, topic, __VA_ARGS__)

#endif
