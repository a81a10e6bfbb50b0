/*
 * mqtt.c — see mqtt.h.  The MQTT sink.
 *
 * Two threads, one job each:
 *   loop thread   — turns bus messages into MQTT messages, keeps the bounded
 *                   queue and hands messages to libmosquitto while connected
 *                   (mosquitto_publish in threaded mode only queues and wakes
 *                   the network thread, it never writes to the socket here);
 *   "mqtt" thread — connects (DNS and TCP connect may block: here, never on
 *                   the loop), runs mosquitto_loop(), reconnects with
 *                   exponential backoff and jitter, and reports connects,
 *                   disconnects and publish confirmations to the loop through
 *                   a mutex-protected mailbox and event_active().
 *
 * Accounting (all loop thread): every message made is "offered" and ends as
 * exactly one of published (confirmed by libmosquitto: written for QoS 0,
 * PUBACK for QoS 1), dropped (queue full: the oldest goes), lost (handed to
 * libmosquitto but a disconnect came first at QoS 0, or unconfirmed for
 * MQTT_INFLIGHT_TIMEOUT_S), or is still queued / in flight:
 *   offered = published + dropped + lost + queued + inflight.
 */
#include "mqtt.h"

#include <errno.h>
#include <event2/event.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "daemon.h"
#include "detd-build.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "view.h"

#define TOPIC "mqtt"

#if DETD_HAVE_MQTT

#include <mosquitto.h>

#define MQTT_INFLIGHT_MAX 64         /* handed to libmosquitto, not yet confirmed */
#define MQTT_INFLIGHT_TIMEOUT_S 30.0 /* connected yet unconfirmed this long: lost */
#define MQTT_FLUSH_MS 500            /* at stop: time to send "offline" and the queue */
#define MQTT_PROTOCOL 1              /* the detections schema (docs/PROTOCOL.md) */
#define MQTT_CONFIRM_RING 256
#define TOPIC_LEN 512
#define MOSQ_ERR_TIMEOUT_LOCAL (-1000) /* ours: no CONNACK within keepalive */

enum mqtt_state { ST_CONNECTING = 0, ST_CONNECTED, ST_DISCONNECTED, ST_REFUSED, ST_STOPPED };
static const char *const state_names[] = {"connecting", "connected", "disconnected", "refused",
					  "stopped"};

struct qmsg {
	struct qmsg *next;
	char *topic;
	char *payload;
	size_t len;
	bool retain;
};

struct inflight {
	int mid;
	int64_t since_ns;
};

struct label_state {
	char label[64]; /* as the model names it */
	char slug[72];  /* the topic level */
	int count;      /* in the latest frame, -1 = not published yet */
	bool dirty;
	bool announced; /* HA discovery sent on this connection */
};

struct stream_state {
	struct stream_state *next;
	struct mqtt *m;
	int64_t next_snapshot_ns;
	bool snapshot_pending; /* a view_snapshot_request() of ours is out */
	char id[DET_STREAM_ID_MAX];
	struct label_state *labels;
	size_t n_labels, cap_labels;
	int occupied; /* -1 unknown */
	bool occ_dirty, occ_announced;
	char state[32];
};

/* What the network thread tells the loop (under lock). */
struct mailbox {
	bool connected_ev, disconnected_ev, refused_ev, stopped;
	char error[400];
	int confirmed[MQTT_CONFIRM_RING];
	size_t n_confirmed;
	uint64_t confirm_overflow;
};

struct mqtt {
	struct daemon *d;
	struct publish *pub;
	struct view *view;
	struct bus_sub *sub;
	struct mosquitto *mosq;
	bool lib_init;
	const struct cfg_mqtt *cfg; /* daemon_cfg(d)->mqtt, refreshed on reload */
	int qos;
	char node[64];
	char client_id[128];
	char prefix[160];
	char ha_node[72];
	char host[256];
	int port;
	bool tls;
	double rc_min, rc_max;
	int keepalive;

	pthread_t thread;
	bool thread_running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;          /* loop → thread */
	bool net_connected; /* the network thread's own view (its callbacks set it) */
	struct mailbox mb;

	struct event *wake_ev;
	struct event *tick_ev;
	int64_t next_stats_ns;
	bool stopping, reported;

	enum mqtt_state state;
	char last_error[400];
	struct qmsg *head, *tail;
	size_t queued, queued_bytes;
	struct inflight inflight[MQTT_INFLIGHT_MAX];
	size_t n_inflight;
	uint64_t offered, published, dropped, lost, errors, connects, disconnects;
	struct stream_state *streams;
};

bool mqtt_available(void)
{
	return true;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A topic level made of what is safe everywhere (HA object ids too). */
static void slugify(char *out, size_t outlen, const char *s)
{
	size_t j = 0;
	for (; *s && j + 1 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '_';
		out[j++] = ok ? (char)c : '_';
	}
	out[j] = '\0';
	if (!j)
		snprintf(out, outlen, "_");
}

/* ---- the bounded queue (loop thread) ---------------------------------------- */

static void qmsg_free(struct qmsg *q)
{
	if (!q)
		return;
	free(q->topic);
	free(q->payload);
	free(q);
}

static struct qmsg *q_pop(struct mqtt *m)
{
	struct qmsg *q = m->head;
	if (!q)
		return NULL;
	m->head = q->next;
	if (!m->head)
		m->tail = NULL;
	m->queued--;
	m->queued_bytes -= q->len + strlen(q->topic);
	return q;
}

static void q_push_front(struct mqtt *m, struct qmsg *q)
{
	q->next = m->head;
	m->head = q;
	if (!m->tail)
		m->tail = q;
	m->queued++;
	m->queued_bytes += q->len + strlen(q->topic);
}

static void pump(struct mqtt *m);

/* Queue one message (topic and payload are copied).  Full: the oldest goes. */
static void enqueue(struct mqtt *m, const char *topic, const char *payload, size_t len,
		    bool retain)
{
	struct qmsg *q = calloc(1, sizeof(*q));
	m->offered++;
	if (!q || !(q->topic = strdup(topic)) || !(q->payload = malloc(len ? len : 1))) {
		qmsg_free(q);
		m->dropped++;
		return;
	}
	memcpy(q->payload, payload, len);
	q->len = len;
	q->retain = retain;
	size_t sz = len + strlen(topic);
	while (m->head && (m->queued + 1 > m->cfg->queue_messages ||
			   m->queued_bytes + sz > m->cfg->queue_bytes)) {
		qmsg_free(q_pop(m));
		m->dropped++;
	}
	if (sz > m->cfg->queue_bytes) { /* alone bigger than the whole queue */
		qmsg_free(q);
		m->dropped++;
		return;
	}
	if (m->tail)
		m->tail->next = q;
	else
		m->head = q;
	m->tail = q;
	m->queued++;
	m->queued_bytes += sz;
}

static void enqueue_str(struct mqtt *m, const char *topic, const char *s, bool retain)
{
	enqueue(m, topic, s, strlen(s), retain);
}

static void enqueue_json(struct mqtt *m, const char *topic, struct json_object *o, bool retain)
{
	size_t len;
	const char *s = json_object_to_json_string_length(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	if (s)
		enqueue(m, topic, s, len, retain);
	else
		m->offered++, m->dropped++;
}

/* Hand queued messages to libmosquitto while connected and below the cap. */
static void pump(struct mqtt *m)
{
	while (m->state == ST_CONNECTED && m->head && m->n_inflight < MQTT_INFLIGHT_MAX) {
		struct qmsg *q = q_pop(m);
		int mid = 0;
		int rc = mosquitto_publish(m->mosq, &mid, q->topic, (int)q->len, q->payload, m->qos,
					   q->retain);
		if (rc == MOSQ_ERR_SUCCESS) {
			m->inflight[m->n_inflight++] = (struct inflight){mid, mono_ns()};
			qmsg_free(q);
		} else if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
			q_push_front(m, q); /* the disconnect report is on its way */
			break;
		} else {
			m->errors++;
			m->lost++;
			log_debug(TOPIC, "publish to %s failed: %s", q->topic, mosquitto_strerror(rc));
			qmsg_free(q);
		}
	}
}

static void confirm(struct mqtt *m, int mid)
{
	for (size_t i = 0; i < m->n_inflight; i++) {
		if (m->inflight[i].mid == mid) {
			m->inflight[i] = m->inflight[--m->n_inflight];
			m->published++;
			return;
		}
	}
	/* already counted as lost: nothing */
}

static void lose_inflight(struct mqtt *m, int64_t older_than_ns)
{
	for (size_t i = 0; i < m->n_inflight;) {
		if (m->inflight[i].since_ns <= older_than_ns) {
			m->inflight[i] = m->inflight[--m->n_inflight];
			m->lost++;
		} else {
			i++;
		}
	}
}

/* ---- what is published ------------------------------------------------------ */

static struct stream_state *stream_get(struct mqtt *m, const char *id)
{
	struct stream_state *s;
	for (s = m->streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	if (!(s = calloc(1, sizeof(*s))))
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->m = m;
	s->occupied = -1;
	s->next = m->streams;
	m->streams = s;
	return s;
}

static struct label_state *label_get(struct stream_state *s, const char *label)
{
	for (size_t i = 0; i < s->n_labels; i++)
		if (strcmp(s->labels[i].label, label) == 0)
			return &s->labels[i];
	if (s->n_labels == 256) /* bounded: a model has at most this many we track */
		return NULL;
	if (s->n_labels == s->cap_labels) {
		size_t nc = s->cap_labels ? s->cap_labels * 2 : 8;
		struct label_state *nl = realloc(s->labels, nc * sizeof(*nl));
		if (!nl)
			return NULL;
		s->labels = nl;
		s->cap_labels = nc;
	}
	struct label_state *l = &s->labels[s->n_labels++];
	memset(l, 0, sizeof(*l));
	snprintf(l->label, sizeof(l->label), "%s", label);
	slugify(l->slug, sizeof(l->slug), label);
	/* the stream's own topics are not label names */
	if (!strcmp(l->slug, "detections") || !strcmp(l->slug, "state") ||
	    !strcmp(l->slug, "occupied") || !strcmp(l->slug, "snapshot"))
		strncat(l->slug, "_label", sizeof(l->slug) - strlen(l->slug) - 1);
	l->count = -1;
	return l;
}

static struct json_object *ha_device(struct mqtt *m)
{
	struct json_object *dev = json_object_new_object(), *ids = json_object_new_array();
	char id[96];
	snprintf(id, sizeof(id), "detd_%s", m->ha_node);
	json_object_array_add(ids, json_object_new_string(id));
	json_object_object_add(dev, "identifiers", ids);
	snprintf(id, sizeof(id), "detd %s", m->node);
	json_object_object_add(dev, "name", json_object_new_string(id));
	json_object_object_add(dev, "manufacturer", json_object_new_string("detd"));
	json_object_object_add(dev, "model", json_object_new_string("detd object detector"));
	json_object_object_add(dev, "sw_version", json_object_new_string(DETD_VERSION));
	return dev;
}

/* Home Assistant MQTT discovery: one retained config message per entity. */
static void ha_announce(struct mqtt *m, struct stream_state *s, struct label_state *l)
{
	char topic[TOPIC_LEN], sid[DET_STREAM_ID_MAX], uid[256], name[256], state_topic[TOPIC_LEN],
		avail[TOPIC_LEN];
	bool binary = !l;
	const char *what = binary ? "occupied" : l->slug;

	slugify(sid, sizeof(sid), s->id);
	snprintf(uid, sizeof(uid), "detd_%s_%s_%s", m->ha_node, sid, what);
	snprintf(topic, sizeof(topic), "%s/%s/%s/config", m->cfg->ha_prefix,
		 binary ? "binary_sensor" : "sensor", uid);
	snprintf(state_topic, sizeof(state_topic), "%s/%s/%s", m->prefix, s->id, what);
	snprintf(avail, sizeof(avail), "%s/status", m->prefix);

	struct json_object *o = json_object_new_object();
	snprintf(name, sizeof(name), "%s %s", s->id, binary ? "objects" : l->label);
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "unique_id", json_object_new_string(uid));
	json_object_object_add(o, "object_id", json_object_new_string(uid));
	json_object_object_add(o, "state_topic", json_object_new_string(state_topic));
	json_object_object_add(o, "availability_topic", json_object_new_string(avail));
	json_object_object_add(o, "payload_available", json_object_new_string("online"));
	json_object_object_add(o, "payload_not_available", json_object_new_string("offline"));
	if (binary) {
		json_object_object_add(o, "device_class", json_object_new_string("occupancy"));
		json_object_object_add(o, "payload_on", json_object_new_string("ON"));
		json_object_object_add(o, "payload_off", json_object_new_string("OFF"));
	} else {
		json_object_object_add(o, "state_class", json_object_new_string("measurement"));
		json_object_object_add(o, "unit_of_measurement", json_object_new_string("objects"));
		json_object_object_add(o, "icon", json_object_new_string("mdi:eye"));
	}
	json_object_object_add(o, "device", ha_device(m));
	enqueue_json(m, topic, o, true);
	json_object_put(o);
	if (binary)
		s->occ_announced = true;
	else
		l->announced = true;
}

/* Retained per-stream topics whose value changed (or all after a connect). */
static void flush_stream(struct mqtt *m, struct stream_state *s)
{
	char topic[TOPIC_LEN], v[32];
	bool ha = m->cfg->ha_discovery;
	if (ha && !s->occ_announced)
		ha_announce(m, s, NULL);
	if (s->occ_dirty && s->occupied >= 0) {
		snprintf(topic, sizeof(topic), "%s/%s/occupied", m->prefix, s->id);
		enqueue_str(m, topic, s->occupied ? "ON" : "OFF", true);
		s->occ_dirty = false;
	}
	for (size_t i = 0; i < s->n_labels; i++) {
		struct label_state *l = &s->labels[i];
		if (ha && !l->announced)
			ha_announce(m, s, l);
		if (!l->dirty || l->count < 0)
			continue;
		snprintf(topic, sizeof(topic), "%s/%s/%s", m->prefix, s->id, l->slug);
		snprintf(v, sizeof(v), "%d", l->count);
		enqueue_str(m, topic, v, true);
		l->dirty = false;
	}
}

static bool stream_wanted(struct mqtt *m, const char *id)
{
	return !m->cfg->streams.n || cfg_strlist_has(&m->cfg->streams, id);
}

static void on_detections(struct mqtt *m, struct json_object *msg, const char *stream)
{
	struct stream_state *s = stream_get(m, stream);
	struct json_object *objs = NULL, *kept = json_object_new_array();
	if (!s || !kept) {
		json_object_put(kept);
		return;
	}
	for (size_t i = 0; i < s->n_labels; i++)
		s->labels[i].count = s->labels[i].count < 0 ? -1 : 0;
	/* labels configured are published from the first frame on, also as 0 */
	for (size_t i = 0; i < m->cfg->labels.n; i++) {
		struct label_state *l = label_get(s, m->cfg->labels.v[i]);
		if (l && l->count < 0)
			l->count = 0, l->dirty = true;
	}
	size_t n = 0;
	if (json_object_object_get_ex(msg, "objects", &objs) &&
	    json_object_is_type(objs, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(objs); i++) {
			struct json_object *o = json_object_array_get_idx(objs, i), *lv, *sv;
			const char *label = json_object_object_get_ex(o, "label", &lv)
						    ? json_object_get_string(lv)
						    : NULL;
			double score = json_object_object_get_ex(o, "score", &sv)
					       ? json_object_get_double(sv)
					       : 0;
			if (!label || score < m->cfg->min_score ||
			    (m->cfg->labels.n && !cfg_strlist_has(&m->cfg->labels, label)))
				continue;
			json_object_array_add(kept, json_object_get(o));
			n++;
			struct label_state *l = label_get(s, label);
			if (l)
				l->count = (l->count < 0 ? 0 : l->count) + 1;
		}
	}
	int occ = n > 0;
	if (occ != s->occupied)
		s->occupied = occ, s->occ_dirty = true;

	if (n || !m->cfg->only_with_objects) {
		char topic[TOPIC_LEN];
		json_object_object_add(msg, "objects", kept);
		kept = NULL;
		json_object_object_add(msg, "protocol", json_object_new_int(MQTT_PROTOCOL));
		json_object_object_add(msg, "node", json_object_new_string(m->node));
		snprintf(topic, sizeof(topic), "%s/%s/detections", m->prefix, stream);
		enqueue_json(m, topic, msg, false);
	}
	json_object_put(kept);
}

/* Label counts are compared with what was last published. */
struct count_snapshot {
	int before[256];
};

static void deliver(void *ud, struct bus_msg *bm)
{
	struct mqtt *m = ud;
	struct json_object *msg = json_tokener_parse(bm->data), *tv, *sv;
	const char *type, *stream;

	if (!msg)
		return;
	type = json_object_object_get_ex(msg, "type", &tv) ? json_object_get_string(tv) : "";
	stream = json_object_object_get_ex(msg, "stream", &sv) ? json_object_get_string(sv) : NULL;
	if (!stream || !stream_wanted(m, stream)) {
		json_object_put(msg);
		return;
	}
	if (strcmp(type, "detections") == 0) {
		struct stream_state *s = stream_get(m, stream);
		struct count_snapshot snap;
		size_t n_before = s ? s->n_labels : 0;
		for (size_t i = 0; i < n_before; i++)
			snap.before[i] = s->labels[i].count;
		on_detections(m, msg, stream);
		if (s) {
			for (size_t i = 0; i < s->n_labels; i++)
				if (i >= n_before || snap.before[i] != s->labels[i].count)
					s->labels[i].dirty = true;
			flush_stream(m, s);
		}
	} else if (strcmp(type, "status") == 0) {
		struct json_object *st;
		struct stream_state *s = stream_get(m, stream);
		const char *state = json_object_object_get_ex(msg, "state", &st)
					    ? json_object_get_string(st)
					    : "";
		char topic[TOPIC_LEN];
		if (s)
			snprintf(s->state, sizeof(s->state), "%s", state);
		snprintf(topic, sizeof(topic), "%s/%s/state", m->prefix, stream);
		enqueue_str(m, topic, state, true);
	}
	json_object_put(msg);
	pump(m);
}

static void publish_stats(struct mqtt *m)
{
	char topic[TOPIC_LEN];
	struct http *h = daemon_http(m->d);
	struct json_object *o = h ? http_status_json(h) : json_object_new_object();
	if (!o)
		return;
	snprintf(topic, sizeof(topic), "%s/stats", m->prefix);
	enqueue_json(m, topic, o, false);
	json_object_put(o);
}

/* ---- the network thread ----------------------------------------------------- */

static void mb_post(struct mqtt *m)
{
	event_active(m->wake_ev, EV_READ, 0);
}

static void cb_connect(struct mosquitto *mosq, void *ud, int rc)
{
	struct mqtt *m = ud;
	(void)mosq;
	m->net_connected = rc == 0; /* callbacks run on the network thread */
	pthread_mutex_lock(&m->lock);
	if (rc == 0) {
		m->mb.connected_ev = true;
	} else {
		m->mb.refused_ev = true;
		snprintf(m->mb.error, sizeof(m->mb.error), "broker refused the connection: %s",
			 mosquitto_connack_string(rc));
	}
	pthread_mutex_unlock(&m->lock);
	mb_post(m);
}

static void cb_disconnect(struct mosquitto *mosq, void *ud, int rc)
{
	struct mqtt *m = ud;
	(void)mosq;
	pthread_mutex_lock(&m->lock);
	m->mb.disconnected_ev = true;
	if (rc != 0 && !m->stop && !m->mb.refused_ev)
		snprintf(m->mb.error, sizeof(m->mb.error), "connection lost: %s",
			 mosquitto_strerror(rc));
	pthread_mutex_unlock(&m->lock);
	mb_post(m);
}

static void cb_publish(struct mosquitto *mosq, void *ud, int mid)
{
	struct mqtt *m = ud;
	(void)mosq;
	pthread_mutex_lock(&m->lock);
	if (m->mb.n_confirmed < MQTT_CONFIRM_RING)
		m->mb.confirmed[m->mb.n_confirmed++] = mid;
	else
		m->mb.confirm_overflow++;
	pthread_mutex_unlock(&m->lock);
	mb_post(m);
}

static bool should_stop(struct mqtt *m)
{
	pthread_mutex_lock(&m->lock);
	bool s = m->stop;
	pthread_mutex_unlock(&m->lock);
	return s;
}

/* Sleep delay (with jitter: 50–100 %) unless asked to stop; doubles delay. */
static void backoff(struct mqtt *m, double *delay)
{
	double d = *delay * (0.5 + 0.5 * ((double)rand() / RAND_MAX));
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ns = (int64_t)(d * 1e9);
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec += ns % 1000000000;
	if (ts.tv_nsec >= 1000000000)
		ts.tv_sec++, ts.tv_nsec -= 1000000000;
	pthread_mutex_lock(&m->lock);
	while (!m->stop && pthread_cond_timedwait(&m->cond, &m->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&m->lock);
	*delay = *delay * 2 > m->rc_max ? m->rc_max : *delay * 2;
}

static void *net_main(void *arg)
{
	struct mqtt *m = arg;
	double delay = m->rc_min;

	daemon_block_signals();
	while (!should_stop(m)) {
		/* async: the TCP connect completes inside mosquitto_loop(), so a
		 * stop is seen within 100 ms even when the broker never answers */
		m->net_connected = false;
		int rc = mosquitto_connect_async(m->mosq, m->host, m->port, m->keepalive);
		if (rc != MOSQ_ERR_SUCCESS) {
			pthread_mutex_lock(&m->lock);
			m->mb.disconnected_ev = true;
			snprintf(m->mb.error, sizeof(m->mb.error), "cannot connect to %s:%d: %s",
				 m->host, m->port,
				 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
			pthread_mutex_unlock(&m->lock);
			mb_post(m);
			backoff(m, &delay);
			continue;
		}
		int64_t deadline = mono_ns() + (int64_t)m->keepalive * 1000000000;
		while (!should_stop(m) && (rc = mosquitto_loop(m->mosq, 100, 1)) == MOSQ_ERR_SUCCESS) {
			if (m->net_connected) {
				delay = m->rc_min;
			} else if (mono_ns() > deadline) {
				rc = MOSQ_ERR_TIMEOUT_LOCAL;
				break;
			}
		}
		if (should_stop(m)) {
			/* the loop queued "offline" and what it had: give them a moment */
			int64_t end = mono_ns() + (int64_t)MQTT_FLUSH_MS * 1000000;
			while (mono_ns() < end && mosquitto_want_write(m->mosq) &&
			       mosquitto_loop(m->mosq, 20, 1) == MOSQ_ERR_SUCCESS)
				;
			mosquitto_disconnect(m->mosq);
			for (int i = 0; i < 3 && mosquitto_loop(m->mosq, 20, 1) == MOSQ_ERR_SUCCESS; i++)
				;
			break;
		}
		/* the disconnect callback has reported it (or the loop died with rc) */
		m->net_connected = false;
		if (rc == MOSQ_ERR_TIMEOUT_LOCAL)
			mosquitto_disconnect(m->mosq);
		pthread_mutex_lock(&m->lock);
		m->mb.disconnected_ev = true;
		if (!m->mb.error[0])
			snprintf(m->mb.error, sizeof(m->mb.error), "connection lost: %s",
				 rc == MOSQ_ERR_TIMEOUT_LOCAL ? "no answer from the broker"
				 : rc == MOSQ_ERR_ERRNO	      ? strerror(errno)
							      : mosquitto_strerror(rc));
		pthread_mutex_unlock(&m->lock);
		mb_post(m);
		backoff(m, &delay);
	}
	pthread_mutex_lock(&m->lock);
	m->mb.stopped = true;
	pthread_mutex_unlock(&m->lock);
	mb_post(m);
	return NULL;
}

/* ---- loop side of the mailbox ----------------------------------------------- */

static void on_connected(struct mqtt *m)
{
	char topic[TOPIC_LEN];
	m->connects++;
	m->state = ST_CONNECTED;
	m->last_error[0] = '\0';
	log_info(TOPIC, "connected to %s:%d as %s (prefix %s)", m->host, m->port, m->client_id,
		 m->prefix);
	/* QoS 0 messages handed over before the drop are gone */
	if (m->qos == 0)
		lose_inflight(m, INT64_MAX);
	/* Retained state first: a broker that restarted without persistence has
	 * lost it, and a new subscriber wants it.  It goes ahead of the queue. */
	struct qmsg *rest = m->head, *rest_tail = m->tail;
	size_t rq = m->queued, rb = m->queued_bytes;
	m->head = m->tail = NULL;
	m->queued = m->queued_bytes = 0;
	snprintf(topic, sizeof(topic), "%s/status", m->prefix);
	enqueue_str(m, topic, "online", true);
	for (struct stream_state *s = m->streams; s; s = s->next) {
		s->occ_announced = false;
		s->occ_dirty = s->occupied >= 0;
		for (size_t i = 0; i < s->n_labels; i++) {
			s->labels[i].announced = false;
			s->labels[i].dirty = s->labels[i].count >= 0;
		}
		if (s->state[0]) {
			snprintf(topic, sizeof(topic), "%s/%s/state", m->prefix, s->id);
			enqueue_str(m, topic, s->state, true);
		}
		flush_stream(m, s);
	}
	/* then the backlog, less its oldest where the bounds require it: the
	 * retained state just queued is worth more than an old detection */
	while (rest && (m->queued + rq > m->cfg->queue_messages ||
			m->queued_bytes + rb > m->cfg->queue_bytes)) {
		struct qmsg *q = rest;
		rest = q->next;
		rq--;
		rb -= q->len + strlen(q->topic);
		qmsg_free(q);
		m->dropped++;
	}
	if (rest) {
		if (m->tail)
			m->tail->next = rest;
		else
			m->head = rest;
		m->tail = rest_tail;
		m->queued += rq;
		m->queued_bytes += rb;
	}
	daemon_status(m->d, "mqtt connected to %s:%d", m->host, m->port);
}

static void wake_cb(evutil_socket_t fd, short what, void *ud)
{
	struct mqtt *m = ud;
	struct mailbox mb;
	(void)fd, (void)what;

	pthread_mutex_lock(&m->lock);
	mb = m->mb;
	m->mb.connected_ev = m->mb.disconnected_ev = m->mb.refused_ev = false;
	m->mb.n_confirmed = 0;
	m->mb.error[0] = '\0';
	pthread_mutex_unlock(&m->lock);

	for (size_t i = 0; i < mb.n_confirmed; i++)
		confirm(m, mb.confirmed[i]);
	/* order: a report may hold a disconnect and the next connect */
	if (mb.disconnected_ev || mb.refused_ev) {
		if (m->state == ST_CONNECTED) {
			m->disconnects++;
			if (m->qos == 0)
				lose_inflight(m, INT64_MAX);
		}
		enum mqtt_state ns = mb.refused_ev ? ST_REFUSED : ST_DISCONNECTED;
		/* the close that follows a refusal says less than the refusal */
		bool keep = !mb.refused_ev && m->state == ST_REFUSED && !mb.connected_ev;
		if (!keep) {
			if (mb.error[0] && (strcmp(mb.error, m->last_error) != 0 || m->state != ns))
				log_warn(TOPIC, "%s; retrying with backoff", mb.error);
			if (mb.error[0])
				snprintf(m->last_error, sizeof(m->last_error), "%s", mb.error);
			m->state = ns;
		}
	}
	if (mb.connected_ev)
		on_connected(m);
	if (mb.stopped && m->thread_running) {
		pthread_join(m->thread, NULL);
		m->thread_running = false;
		m->state = ST_STOPPED;
		if (m->stopping && !m->reported) {
			m->reported = true;
			daemon_module_stopped(m->d, "mqtt");
		}
		return;
	}
	pump(m);
}

/* The view's JPEG of the latest frame with its boxes, retained per stream. */
static void snapshot_cb(const char *stream, uint64_t seq, const uint8_t *jpeg, size_t len,
			void *ud)
{
	struct stream_state *s = ud;
	struct mqtt *m = s->m;
	char topic[TOPIC_LEN];
	(void)stream, (void)seq;
	s->snapshot_pending = false;
	if (!jpeg || m->stopping)
		return;
	snprintf(topic, sizeof(topic), "%s/%s/snapshot", m->prefix, s->id);
	enqueue(m, topic, (const char *)jpeg, len, true);
	pump(m);
}

static void request_snapshots(struct mqtt *m, int64_t now)
{
	double iv = m->cfg->snapshot_interval_s;
	if (!(iv > 0) || !m->view)
		return;
	for (struct stream_state *s = m->streams; s; s = s->next) {
		if (s->snapshot_pending || now < s->next_snapshot_ns || !stream_wanted(m, s->id))
			continue;
		s->next_snapshot_ns = now + (int64_t)(iv * 1e9);
		if (view_snapshot_request(m->view, s->id, snapshot_cb, s) == 0)
			s->snapshot_pending = true;
	}
}

static void tick_cb(evutil_socket_t fd, short what, void *ud)
{
	struct mqtt *m = ud;
	int64_t now = mono_ns();
	(void)fd, (void)what;
	if (m->state == ST_CONNECTED)
		lose_inflight(m, now - (int64_t)(MQTT_INFLIGHT_TIMEOUT_S * 1e9));
	if (m->cfg->stats_interval_s > 0 && now >= m->next_stats_ns) {
		publish_stats(m);
		m->next_stats_ns = now + (int64_t)(m->cfg->stats_interval_s * 1e9);
	}
	request_snapshots(m, now);
	pump(m);
}

/* ---- /status, /metrics ---------------------------------------------------------- */

static void status_fill(struct json_object *o, void *ud)
{
	struct mqtt *m = ud;
	json_object_object_add(o, "state", json_object_new_string(state_names[m->state]));
	char b[300];
	snprintf(b, sizeof(b), "%s://%s:%d", m->tls ? "mqtts" : "mqtt", m->host, m->port);
	json_object_object_add(o, "broker", json_object_new_string(b));
	json_object_object_add(o, "client_id", json_object_new_string(m->client_id));
	json_object_object_add(o, "topic_prefix", json_object_new_string(m->prefix));
	json_object_object_add(o, "qos", json_object_new_int(m->qos));
	json_object_object_add(o, "connected", json_object_new_boolean(m->state == ST_CONNECTED));
	json_object_object_add(o, "connects", json_object_new_uint64(m->connects));
	json_object_object_add(o, "reconnects",
			       json_object_new_uint64(m->connects ? m->connects - 1 : 0));
	json_object_object_add(o, "disconnects", json_object_new_uint64(m->disconnects));
	json_object_object_add(o, "offered", json_object_new_uint64(m->offered));
	json_object_object_add(o, "published", json_object_new_uint64(m->published));
	json_object_object_add(o, "queued", json_object_new_uint64(m->queued));
	json_object_object_add(o, "queued_bytes", json_object_new_uint64(m->queued_bytes));
	json_object_object_add(o, "inflight", json_object_new_uint64(m->n_inflight));
	json_object_object_add(o, "dropped", json_object_new_uint64(m->dropped));
	json_object_object_add(o, "lost", json_object_new_uint64(m->lost));
	json_object_object_add(o, "errors", json_object_new_uint64(m->errors));
	json_object_object_add(o, "last_error", m->last_error[0]
							? json_object_new_string(m->last_error)
							: NULL);
}

static void metrics_collect(struct metrics *mt, void *ud)
{
	struct mqtt *m = ud;
	metrics_gauge_set(mt, "detd_mqtt_connected", m->state == ST_CONNECTED, NULL);
	metrics_counter_set(mt, "detd_mqtt_reconnects_total",
			    (double)(m->connects ? m->connects - 1 : 0), NULL);
	metrics_counter_set(mt, "detd_mqtt_published_total", (double)m->published, NULL);
	metrics_counter_set(mt, "detd_mqtt_dropped_total", (double)m->dropped, "reason",
			    "queue_full", NULL);
	metrics_counter_set(mt, "detd_mqtt_dropped_total", (double)m->lost, "reason",
			    "not_delivered", NULL);
	metrics_gauge_set(mt, "detd_mqtt_queued_messages", (double)m->queued, NULL);
	metrics_gauge_set(mt, "detd_mqtt_inflight_messages", (double)m->n_inflight, NULL);
}

/* ---- the module ----------------------------------------------------------------- */

static int read_password(const char *path, char *out, size_t outlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	if (!fgets(out, (int)outlen, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int setup_client(struct mqtt *m, const struct cfg_mqtt *c)
{
	char topic[TOPIC_LEN], pw[512] = "";
	int rc;

	if (mosquitto_lib_init() != MOSQ_ERR_SUCCESS)
		return -EIO;
	m->lib_init = true;
	/* A persistent session (clean_session false) lets QoS 1 messages in
	 * flight at a disconnect be delivered after the reconnect. */
	m->mosq = mosquitto_new(m->client_id, m->qos == 0, m);
	if (!m->mosq)
		return -ENOMEM;
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_threaded_set(m->mosq, true); /* our thread runs the network loop */
	mosquitto_max_inflight_messages_set(m->mosq, MQTT_INFLIGHT_MAX);
	mosquitto_connect_callback_set(m->mosq, cb_connect);
	mosquitto_disconnect_callback_set(m->mosq, cb_disconnect);
	mosquitto_publish_callback_set(m->mosq, cb_publish);
	snprintf(topic, sizeof(topic), "%s/status", m->prefix);
	if ((rc = mosquitto_will_set(m->mosq, topic, 7, "offline", 1, true)) != MOSQ_ERR_SUCCESS) {
		log_error(TOPIC, "cannot set the last will: %s", mosquitto_strerror(rc));
		return -EINVAL;
	}
	if (c->username) {
		if (c->password_file && (rc = read_password(c->password_file, pw, sizeof(pw))) < 0) {
			log_error(TOPIC, "mqtt.password_file: cannot read %s: %s", c->password_file,
				  strerror(-rc));
			return rc;
		}
		rc = mosquitto_username_pw_set(m->mosq, c->username, c->password_file ? pw : NULL);
		explicit_bzero(pw, sizeof(pw));
		if (rc != MOSQ_ERR_SUCCESS)
			return -EINVAL;
	}
	if (m->tls) {
		if (!c->ca_file)
			mosquitto_int_option(m->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
		rc = mosquitto_tls_set(m->mosq, c->ca_file, c->ca_file ? NULL : "/etc/ssl/certs",
				       c->cert_file, c->key_file, NULL);
		if (rc != MOSQ_ERR_SUCCESS) {
			log_error(TOPIC, "mqtt TLS set-up failed: %s", mosquitto_strerror(rc));
			return -EINVAL;
		}
	}
	return 0;
}

static int mod_start(struct daemon *d, void *ud)
{
	struct mqtt *m = ud;
	const struct cfg *cfg = daemon_cfg(d);
	const struct cfg_mqtt *c = &cfg->mqtt;
	char host[128] = "localhost";
	int rc;

	m->d = d;
	m->cfg = c;
	if (!c->enabled)
		return 0;
	gethostname(host, sizeof(host) - 1);
	slugify(m->node, sizeof(m->node), host);
	snprintf(m->ha_node, sizeof(m->ha_node), "%s", m->node);
	if (c->client_id)
		snprintf(m->client_id, sizeof(m->client_id), "%s", c->client_id);
	else
		snprintf(m->client_id, sizeof(m->client_id), "detd-%s", m->node);
	if (c->topic_prefix)
		snprintf(m->prefix, sizeof(m->prefix), "%s", c->topic_prefix);
	else
		snprintf(m->prefix, sizeof(m->prefix), "detd/%s", m->node);
	if (cfg_mqtt_broker_parse(c->broker, m->host, sizeof(m->host), &m->port, &m->tls) < 0)
		return -EINVAL; /* the loader checked it */
	if (!m->port)
		m->port = m->tls ? 8883 : 1883;
	m->qos = c->qos;
	m->keepalive = c->keepalive_s;
	m->rc_min = c->reconnect_min_s;
	m->rc_max = c->reconnect_max_s;

	if ((rc = setup_client(m, c)) < 0)
		return rc;
	struct event_base *base = daemon_base(d);
	m->wake_ev = event_new(base, -1, 0, wake_cb, m);
	m->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, m);
	if (!m->wake_ev || !m->tick_ev)
		return -ENOMEM;
	event_add(m->tick_ev, &(struct timeval){1, 0});
	m->next_stats_ns = mono_ns() + (int64_t)(c->stats_interval_s * 1e9);

	struct publish *p = m->pub;
	struct bus_filter f = {0};
	if (!(m->sub = bus_subscribe(publish_bus(p), &f, deliver, m)))
		return -ENOMEM;
	struct metrics *mt = publish_metrics(p);
	metrics_define(mt, "detd_mqtt_connected", METRICS_GAUGE, "1 while connected to the broker",
		       NULL, 0);
	metrics_define(mt, "detd_mqtt_reconnects_total", METRICS_COUNTER,
		       "connections to the broker after the first", NULL, 0);
	metrics_define(mt, "detd_mqtt_published_total", METRICS_COUNTER,
		       "MQTT messages the broker took", NULL, 0);
	metrics_define(mt, "detd_mqtt_dropped_total", METRICS_COUNTER,
		       "MQTT messages not delivered (queue_full: oldest dropped; not_delivered: "
		       "lost at a disconnect or refused)",
		       NULL, 0);
	metrics_define(mt, "detd_mqtt_queued_messages", METRICS_GAUGE,
		       "MQTT messages waiting for the broker", NULL, 0);
	metrics_define(mt, "detd_mqtt_inflight_messages", METRICS_GAUGE,
		       "MQTT messages handed to the client library, not yet confirmed", NULL, 0);
	metrics_add_collector(mt, metrics_collect, m);
	if (daemon_http(d))
		http_status_add(daemon_http(d), "mqtt", status_fill, m);

	if ((rc = -pthread_create(&m->thread, NULL, net_main, m)) < 0) {
		log_error(TOPIC, "cannot start the mqtt thread: %s", strerror(-rc));
		return rc;
	}
	m->thread_running = true;
	log_info(TOPIC, "publishing to %s as %s under %s/ (QoS %d)", c->broker, m->client_id,
		 m->prefix, m->qos);
	return 0;
}

static int mod_reload(struct daemon *d, const struct cfg *old, const struct cfg *nw, void *ud)
{
	struct mqtt *m = ud;
	(void)old;
	m->cfg = &nw->mqtt; /* the filters; the rest needs a restart (kept by the daemon) */
	if (nw->mqtt.stats_interval_s > 0)
		m->next_stats_ns = mono_ns() + (int64_t)(nw->mqtt.stats_interval_s * 1e9);
	(void)d;
	return 0;
}

static int mod_stop(struct daemon *d, void *ud)
{
	struct mqtt *m = ud;
	(void)d;
	m->stopping = true;
	for (struct stream_state *s = m->streams; s; s = s->next)
		view_snapshot_cancel(m->view, s);
	if (m->sub) {
		bus_unsubscribe(m->sub);
		m->sub = NULL;
	}
	if (m->tick_ev)
		event_del(m->tick_ev);
	if (!m->thread_running)
		return 0;
	if (m->state == ST_CONNECTED) {
		/* the will is for crashes: a clean stop says so itself */
		char topic[TOPIC_LEN];
		snprintf(topic, sizeof(topic), "%s/status", m->prefix);
		enqueue_str(m, topic, "offline", true);
		pump(m);
	}
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return DAEMON_STOP_PENDING;
}

int mqtt_module_add(struct daemon *d, struct publish *pub, struct view *view, struct mqtt **out)
{
	struct mqtt *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->pub = pub;
	m->view = view;
	m->cfg = &daemon_cfg(d)->mqtt;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	struct daemon_module mod = {.name = "mqtt", .start = mod_start, .reload = mod_reload,
				    .stop = mod_stop, .ud = m};
	int rc = daemon_module_add(d, &mod);
	if (rc < 0) {
		mqtt_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void mqtt_free(struct mqtt *m)
{
	if (!m)
		return;
	if (m->thread_running) { /* a start that failed half-way */
		pthread_mutex_lock(&m->lock);
		m->stop = true;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
	}
	bus_unsubscribe(m->sub);
	if (m->wake_ev)
		event_free(m->wake_ev);
	if (m->tick_ev)
		event_free(m->tick_ev);
	while (m->head)
		qmsg_free(q_pop(m));
	for (struct stream_state *s = m->streams, *n; s; s = n) {
		n = s->next;
		free(s->labels);
		free(s);
	}
	if (m->mosq)
		mosquitto_destroy(m->mosq);
	if (m->lib_init)
		mosquitto_lib_cleanup();
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

#else /* !DETD_HAVE_MQTT: the config loader refuses mqtt.enabled */

bool mqtt_available(void)
{
	return false;
}

int mqtt_module_add(struct daemon *d, struct publish *pub, struct view *view, struct mqtt **out)
{
	(void)d, (void)pub, (void)view;
	*out = NULL;
	return 0;
}

void mqtt_free(struct mqtt *m)
{
	(void)m;
}

#endif
