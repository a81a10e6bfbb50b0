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

struct cfg_engine {
	char *backend;          /* "cpu" | "xrt" | … (eng_backend_names()) */
	int workers;            /* inference worker threads */
	int threads;            /* compute threads per worker */
	int max_batch;
	int max_wait_ms;
	int deadline_ms;        /* a run slower than this marks the backend unhealthy; 0 = none */
	double min_score;       /* results below are not published */
	int test_delay_ms;      /* test only: a deliberately slow backend */
	bool test_fail;         /* test only: a failing backend */
};

struct cfg_http {
	bool enabled;
	char *address;          /* listen address, default 127.0.0.1 */
	int port;               /* default 8080; 0 = any free port (tests) */
	bool allow_mutations;   /* POST/DELETE endpoints */
	char *token;            /* bearer token for mutations when not loopback; may be NULL */
	size_t max_body_bytes;
	size_t max_header_bytes;
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

struct cfg {
	char *source_path;      /* the file this came from */
	struct cfg_log log;
	struct cfg_model model;
	struct cfg_engine engine;
	struct cfg_http http;
	struct cfg_ipc ipc;
	size_t n_streams;
	struct cfg_stream *streams;
};

/* Exit code for a bad config (sysexits EX_CONFIG). */
#define CFG_EXIT_CONFIG 78

#endif
