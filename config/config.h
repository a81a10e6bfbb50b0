/*
 * config.h — detd's configuration: typed structs and the JSON loader.
 *
 * The loader (config.c) is table driven: one row per key with its JSON type,
 * range, default and whether a SIGHUP reload may change it.  Unknown keys are
 * errors; every error names the JSON path and the reason, and all errors of a
 * file are reported at once.
 *
 * A loaded struct cfg is read-only: the main loop owns it, other threads get
 * copies of what they need (the pipeline gets its stream's struct cfg_stream
 * at creation).  Reload parses into a new struct and swaps only when the whole
 * file is valid.
 */
#ifndef DETD_CONFIG_H
#define DETD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cfg_source_kind { CFG_SRC_URI = 0, CFG_SRC_V4L2, CFG_SRC_GST, CFG_SRC_TEST };
enum cfg_rtsp_transport { CFG_RTSP_AUTO = 0, CFG_RTSP_TCP, CFG_RTSP_UDP };
enum cfg_aspect { CFG_ASPECT_STRETCH = 0, CFG_ASPECT_LETTERBOX };

struct cfg_stream {
	char *id;                 /* [A-Za-z0-9_.-]{1,63}, unique */
	enum cfg_source_kind kind;
	char *uri;                /* uri: file://, rtsp://, http(s):// */
	char *device;             /* v4l2: /dev/videoN */
	char *caps;               /* v4l2: optional caps string */
	char *pipeline;           /* gst: gst-launch fragment ending in raw video */
	char *pattern;            /* test: videotestsrc pattern name */
	enum cfg_rtsp_transport rtsp_transport;
	int latency_ms;           /* rtsp jitterbuffer latency */
	double fps;               /* rate limit, (0, 120]; 0 = as the source delivers */
	bool loop;                /* file EOS: loop instead of stop */
	enum cfg_aspect aspect;
	double stall_timeout_s;   /* no frame this long → stalled */
	double backoff_initial_s; /* reconnect backoff, doubled up to backoff_max_s, with jitter */
	double backoff_max_s;
	bool enabled;
};

struct cfg_model {
	char *path;
	char *labels; /* may be NULL */
	char *format; /* "auto" | "tflite" | "codenet" */
};

/* engine.xrt: the FPGA device (backends "xrt" and "xrt-sim"). */
struct cfg_xrt {
	int device;             /* XRT device index, default 0 */
	char *xclbin;           /* bitstream with the detd_accel kernel; NULL: none configured */
	int timeout_ms;         /* one kernel run longer than this is a failure */
};

struct cfg_engine {
	char *backend;          /* "cpu" | "xrt-sim" | "xrt" (when built with XRT) */
	int workers;            /* inference worker threads */
	int threads;            /* compute threads per worker */
	int max_batch;
	int max_wait_ms;
	int deadline_ms;        /* a run slower than this marks the backend unhealthy; 0 = none */
	double min_score;       /* results below are not published */
	int test_delay_ms;      /* test only: a deliberately slow backend */
	bool test_fail;         /* test only: a failing backend */
	struct cfg_xrt xrt;
};

struct cfg_http {
	bool enabled;
	char *address;          /* listen address, default 127.0.0.1 */
	int port;               /* default 8080; 0 = any free port (tests) */
	bool allow_mutations;   /* POST/DELETE endpoints */
	char *token;            /* bearer token for mutations when not loopback; may be NULL */
	size_t max_body_bytes;
	size_t max_header_bytes;
	int max_viewers;        /* MJPEG live views at once (all streams) */
	double max_viewer_fps;  /* frames per second per live view, at most */
	bool allow_gst_streams;     /* POST /streams may add "type":"gst" (any pipeline) */
	int max_connections;        /* open HTTP connections, all peers */
	int max_connections_per_ip; /* open HTTP connections from one peer address */
	double header_timeout_s;    /* a request must be complete this long after its first byte */
	double idle_timeout_s;      /* a connection without a request in progress is closed */
};

struct cfg_ipc {
	bool enabled;
	char *path;             /* default /run/detd/detd.sock */
	int mode;               /* default 0660 */
	char *group;            /* may be NULL */
	int max_clients;
	size_t client_buffer_bytes; /* soft limit: past it messages are dropped and counted */
	size_t client_hard_limit_bytes; /* past it the client is disconnected */
	double slow_client_timeout_s;
	int replay_ring;        /* results kept per stream for resume */
};

struct cfg_log {
	char *level;            /* error | warn | info | debug */
};

/* A JSON array of strings ([] and absent: empty). */
struct cfg_strlist {
	size_t n;
	char **v;
};

/* The MQTT sink (daemon/mqtt.c).  Broker fields need a restart; filters reload. */
struct cfg_mqtt {
	bool enabled;
	char *broker;           /* mqtt://host[:port] or mqtts://host[:port] */
	char *ca_file;          /* mqtts: CA bundle; NULL = system default paths */
	char *cert_file;        /* mqtts: client certificate (with key_file) */
	char *key_file;
	char *username;         /* may be NULL */
	char *password_file;    /* first line is the password; never logged */
	char *client_id;        /* NULL: detd-<hostname> */
	char *topic_prefix;     /* NULL: detd/<hostname> */
	int qos;                /* 0 or 1 */
	int keepalive_s;
	double reconnect_min_s;
	double reconnect_max_s;
	size_t queue_messages;  /* bounded queue while the broker is slow or away */
	size_t queue_bytes;
	struct cfg_strlist streams; /* empty: all */
	struct cfg_strlist labels;  /* empty: all */
	double min_score;
	bool only_with_objects; /* <prefix>/<stream>/detections only for frames with objects */
	double stats_interval_s; /* <prefix>/stats period; 0 = off */
	double snapshot_interval_s; /* <prefix>/<stream>/snapshot period; 0 = off */
	bool ha_discovery;
	char *ha_prefix;        /* Home Assistant discovery prefix */
};

struct cfg {
	char *source_path;      /* the file this came from */
	struct cfg_log log;
	struct cfg_model model;
	struct cfg_engine engine;
	struct cfg_http http;
	struct cfg_ipc ipc;
	struct cfg_mqtt mqtt;
	size_t n_streams;
	struct cfg_stream *streams;
};

/* ---- loader API (config.c) ------------------------------------------------
 * Threads: all functions are pure (no globals) and may run on any thread;
 * the daemon calls them on the main loop (start-up, SIGHUP, POST /streams).
 *
 * Paths: relative file paths in the file (model.path, model.labels, a
 * stream "uri" without a scheme, ipc.path) are resolved against the
 * directory of the config file, so a config and its models can move
 * together.  A stream uri without a scheme becomes file:///abs/path.
 */

#define CFG_MAX_ERRORS 32
#define CFG_ERROR_LEN 256
#define CFG_MAX_STREAMS 64

/* All errors of one parse, each "json.path: reason". */
struct cfg_errors {
	size_t n;
	size_t dropped; /* errors beyond CFG_MAX_ERRORS, counted only */
	char msg[CFG_MAX_ERRORS][CFG_ERROR_LEN];
};

void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print one error per line with a prefix (e.g. the file name). */
void cfg_errors_print(const struct cfg_errors *e, const char *prefix, FILE *to);

/*
 * Load and validate a file.  Returns 0 and a new struct cfg, or
 * -EINVAL with every problem in errs (or -errno when the file cannot be
 * read; errs then says so too).  errs may be NULL.
 */
int cfg_load(const char *path, struct cfg **out, struct cfg_errors *errs);
/* Same from a string; base_dir resolves relative paths (NULL: the cwd). */
int cfg_load_string(const char *json, const char *base_dir, struct cfg **out,
		    struct cfg_errors *errs);
void cfg_free(struct cfg *c); /* NULL-safe */

/*
 * Parse ONE stream object (the body of POST /streams).  Validated exactly
 * like an element of "streams"; errors are reported with paths relative
 * to the object ("fps: ...").  When cur is given, the id must not be used
 * by a stream of cur, and relative paths resolve against cur's directory.
 * On success *out is filled (release with cfg_stream_clear()).
 */
int cfg_stream_parse(const char *json, size_t len, const struct cfg *cur, struct cfg_stream *out,
		     struct cfg_errors *errs);
/* Deep copy (for threads that keep their own copy) and release. */
int cfg_stream_copy(struct cfg_stream *dst, const struct cfg_stream *src);
void cfg_stream_clear(struct cfg_stream *s); /* NULL-safe; leaves *s zeroed */
const struct cfg_stream *cfg_stream_find(const struct cfg *c, const char *id);

/* Names used in the file for the enums (for /status and messages). */
const char *cfg_source_kind_name(enum cfg_source_kind k);
const char *cfg_rtsp_transport_name(enum cfg_rtsp_transport t);
const char *cfg_aspect_name(enum cfg_aspect a);

/* mqtt.broker split into its parts: 0, or -EINVAL for a malformed URL.
 * host is copied into host[hostlen]; port 0 in the URL means the default
 * (1883, or 8883 with tls). */
int cfg_mqtt_broker_parse(const char *url, char *host, size_t hostlen, int *port, bool *tls);
bool cfg_strlist_has(const struct cfg_strlist *l, const char *s);

/*
 * What changed between two configs.  Each change names its path
 * ("engine.workers", "streams[cam1]" for an added/removed stream,
 * "streams[cam0].fps") and whether the running daemon can apply it
 * (restart = false) or only a restart can (restart = true).
 */
struct cfg_change {
	char path[96];
	const char *what; /* "changed" | "added" | "removed" */
	bool restart;
};
struct cfg_changes {
	size_t n;
	size_t n_restart;
	struct cfg_change *v;
};
int cfg_diff(const struct cfg *old, const struct cfg *nw, struct cfg_changes *out);
void cfg_changes_free(struct cfg_changes *ch); /* NULL-safe; leaves *ch zeroed */

/*
 * For a reload: copy every non-reloadable field of old into nw, so that
 * the swapped-in config describes what is really in effect until the next
 * restart.  Returns 0 or -ENOMEM.
 */
int cfg_keep_restart_fields(struct cfg *nw, const struct cfg *old);

/* Exit code for a bad config (sysexits EX_CONFIG). */
#define CFG_EXIT_CONFIG 78

#endif
