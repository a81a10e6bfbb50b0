/*
 * health.h — internal to engine/: the health of the configured (primary)
 * backend and the one fallback policy of detd.
 *
 * Every way a non-cpu backend can let a batch down ends here: its context
 * could not be opened (no device, wrong xclbin, missing kernel), a run
 * failed, or a run took longer than the deadline.  The state decides
 * whether the next batch tries the primary backend or goes straight to cpu:
 * after a failure the primary is left alone and re-probed with exponential
 * backoff (1 s doubling to 60 s), one probe at a time; a successful run makes
 * it healthy again and resets the backoff.  The batcher is the only user:
 * it re-runs a failed batch on cpu and counts that with
 * eng_health_fallback().
 *
 * Threads: all functions lock the object's own mutex and may be called from
 * any thread (workers and the stats reader).
 */
#ifndef DETD_ENGINE_HEALTH_H
#define DETD_ENGINE_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

struct eng_backend_health;
struct eng_health;

enum eng_health_event {
	ENG_HEALTH_OPEN_FAILED, /* the backend's context could not be created */
	ENG_HEALTH_RUN_FAILED,  /* a run returned an error */
	ENG_HEALTH_DEADLINE,    /* a run finished, later than the deadline */
};

#define ENG_HEALTH_BACKOFF_INITIAL_NS (1000LL * 1000000LL)
#define ENG_HEALTH_BACKOFF_MAX_NS (60000LL * 1000000LL)

/* name: shown in /status (e.g. "xrt", "cpu+test-fail"). -ENOMEM. */
int eng_health_create(const char *name, struct eng_health **out);
void eng_health_destroy(struct eng_health *h); /* NULL-safe */

/*
 * Before a batch: true when it should run on the primary backend, i.e. the
 * backend is healthy or a re-probe is due (the probe is claimed: other
 * callers get false until it is reported with _ok or _failed).
 */
bool eng_health_begin(struct eng_health *h, int64_t now_ns);
/* A primary run succeeded (within the deadline). */
void eng_health_ok(struct eng_health *h);
/*
 * The primary let a batch down; why is one line for /status and the log.
 * Logs a warning on the transition to unhealthy only, so a dead device
 * does not flood the journal.
 */
void eng_health_failed(struct eng_health *h, enum eng_health_event ev, const char *why,
		       int64_t now_ns);
/* A batch the primary should have run was run on cpu. */
void eng_health_fallback(struct eng_health *h);
bool eng_health_healthy(struct eng_health *h);
void eng_health_snapshot(struct eng_health *h, int64_t now_ns, struct eng_backend_health *out);

#endif
