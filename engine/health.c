/*
 * health.c — the primary backend's health and the re-probe backoff (see
 * health.h).  Owns nothing but its counters; its mutex is a leaf lock (no
 * other lock is taken while it is held).
 */
#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"

#define TOPIC "health"

struct eng_health {
	pthread_mutex_t mu;
	struct eng_backend_health s; /* name, counters, last_error */
	int64_t backoff_ns;          /* next wait after a failed probe */
	int64_t probe_at_ns;         /* unhealthy: no primary run before this */
	bool probing;                /* a probe is out: nobody else tries */
};

int eng_health_create(const char *name, struct eng_health **out)
{
	*out = NULL;
	struct eng_health *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	snprintf(h->s.name, sizeof(h->s.name), "%s", name ? name : "?");
	h->s.healthy = true;
	h->backoff_ns = ENG_HEALTH_BACKOFF_INITIAL_NS;
	*out = h;
	return 0;
}

void eng_health_destroy(struct eng_health *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	free(h);
}

bool eng_health_begin(struct eng_health *h, int64_t now_ns)
{
	pthread_mutex_lock(&h->mu);
	bool go = h->s.healthy;
	if (!go && !h->probing && now_ns >= h->probe_at_ns) {
		h->probing = true;
		h->s.probes++;
		go = true;
	}
	pthread_mutex_unlock(&h->mu);
	return go;
}

void eng_health_ok(struct eng_health *h)
{
	pthread_mutex_lock(&h->mu);
	bool was = h->s.healthy;
	h->s.healthy = true;
	h->probing = false;
	h->backoff_ns = ENG_HEALTH_BACKOFF_INITIAL_NS;
	pthread_mutex_unlock(&h->mu);
	if (!was)
		log_info(TOPIC, "backend %s healthy again", h->s.name);
}

void eng_health_failed(struct eng_health *h, enum eng_health_event ev, const char *why,
		       int64_t now_ns)
{
	pthread_mutex_lock(&h->mu);
	bool was = h->s.healthy;
	h->s.healthy = false;
	switch (ev) {
	case ENG_HEALTH_OPEN_FAILED:
		h->s.open_failures++;
		break;
	case ENG_HEALTH_RUN_FAILED:
		h->s.failures++;
		break;
	case ENG_HEALTH_DEADLINE:
		h->s.deadline_misses++;
		break;
	}
	snprintf(h->s.last_error, sizeof(h->s.last_error), "%s", why ? why : "failed");
	/* The first failure waits the initial backoff, each failed probe twice
	 * the previous wait, so a dead device costs one batch per interval.  A
	 * straggler (another worker's run that began while healthy) does not
	 * move the schedule. */
	int64_t wait = h->probe_at_ns - now_ns;
	if (was || h->probing) {
		wait = h->backoff_ns;
		h->probe_at_ns = now_ns + wait;
		h->backoff_ns *= 2;
		if (h->backoff_ns > ENG_HEALTH_BACKOFF_MAX_NS)
			h->backoff_ns = ENG_HEALTH_BACKOFF_MAX_NS;
	}
	h->probing = false;
	char msg[sizeof(h->s.last_error)];
	memcpy(msg, h->s.last_error, sizeof(msg));
	pthread_mutex_unlock(&h->mu);
	if (was)
		log_warn(TOPIC, "backend %s unhealthy (%s); batches run on cpu, re-probing with "
			 "backoff", h->s.name, msg);
	else
		log_debug(TOPIC, "backend %s still unhealthy (%s); next probe in %lld ms",
			  h->s.name, msg, (long long)(wait / 1000000));
}

void eng_health_fallback(struct eng_health *h)
{
	pthread_mutex_lock(&h->mu);
	h->s.fallback_runs++;
	pthread_mutex_unlock(&h->mu);
}

bool eng_health_healthy(struct eng_health *h)
{
	pthread_mutex_lock(&h->mu);
	bool ok = h->s.healthy;
	pthread_mutex_unlock(&h->mu);
	return ok;
}

void eng_health_snapshot(struct eng_health *h, int64_t now_ns, struct eng_backend_health *out)
{
	pthread_mutex_lock(&h->mu);
	*out = h->s;
	out->next_probe_ms =
		h->s.healthy || h->probe_at_ns <= now_ns ? 0 : (h->probe_at_ns - now_ns) / 1000000;
	pthread_mutex_unlock(&h->mu);
}
