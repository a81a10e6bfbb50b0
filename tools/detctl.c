/*
 * detctl — command-line client of detd.
 *
 *   detctl [--socket PATH | --http HOST:PORT] [--token T] COMMAND
 *     status                     daemon status
 *     streams                    streams with state, rate, last result number
 *     latest [--stream S]        the latest detections (JSON)
 *     subscribe [--stream S] [--label L] [--min-score X] [--since S=SEQ]
 *               [--count N] [--json]
 *                                follow detections: one readable line per object,
 *                                or the raw messages (NDJSON) with --json
 *     add-stream FILE            POST /streams (HTTP only)
 *     remove-stream ID           DELETE /streams/ID (HTTP only)
 *     reload                     POST /reload (HTTP only)
 *
 * Talks protocol v1 over the Unix socket (default $DETD_SOCKET or
 * /run/detd/detd.sock) or HTTP/1.1 (its own small blocking client: one
 * request per connection; chunked bodies are decoded, /events is read as
 * Server-Sent Events).  Exit codes: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/detd/detd.sock"
#define MAX_FILTER 32

struct opts {
	const char *socket_path;
	const char *http; /* host:port */
	const char *token;
	const char *streams[MAX_FILTER];
	int n_streams;
	const char *labels[MAX_FILTER];
	int n_labels;
	const char *since[MAX_FILTER]; /* "stream=seq" */
	int n_since;
	double min_score;
	bool has_min_score;
	bool json;
	long count; /* stop after this many detections messages; 0 = never */
	const char *output; /* snapshot: file to write (default: standard output) */
};

/* ---- buffered reading from a socket ---- */

struct rd {
	int fd;
	char buf[65536];
	size_t pos, len;
};

static int rd_fill(struct rd *r)
{
	if (r->pos < r->len)
		return 1;
	ssize_t n;
	do
		n = read(r->fd, r->buf, sizeof(r->buf));
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return (int)n;
	r->pos = 0;
	r->len = (size_t)n;
	return 1;
}

/* A line without its \n (and \r); malloc'd; NULL at EOF before any byte. */
static char *rd_line(struct rd *r)
{
	size_t cap = 256, n = 0;
	char *s = malloc(cap);
	if (!s)
		return NULL;
	for (;;) {
		if (rd_fill(r) <= 0) {
			if (n == 0) {
				free(s);
				return NULL;
			}
			break;
		}
		char c = r->buf[r->pos++];
		if (c == '\n')
			break;
		if (n + 2 > cap) {
			char *p = realloc(s, cap *= 2);
			if (!p) {
				free(s);
				return NULL;
			}
			s = p;
		}
		s[n++] = c;
	}
	if (n && s[n - 1] == '\r')
		n--;
	s[n] = '\0';
	return s;
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ---- output ---- */

static long seen_detections;

/* Print one protocol message; returns false when --count is reached. */
static bool print_msg(const struct opts *o, const char *line)
{
	struct json_object *m = json_tokener_parse(line);
	if (!m) {
		fprintf(stderr, "detctl: bad message from detd: %.200s\n", line);
		return true;
	}
	const char *type = json_object_get_string(json_object_object_get(m, "type"));
	bool is_det = type && strcmp(type, "detections") == 0;
	if (o->json) {
		if (!type || (strcmp(type, "subscribed") != 0 && strcmp(type, "hello") != 0)) {
			printf("%s\n", line);
		}
	} else if (is_det) {
		const char *stream = json_object_get_string(json_object_object_get(m, "stream"));
		long long seq = json_object_get_int64(json_object_object_get(m, "seq"));
		struct json_object *objs = json_object_object_get(m, "objects");
		for (size_t i = 0; i < json_object_array_length(objs); i++) {
			struct json_object *d = json_object_array_get_idx(objs, i);
			struct json_object *b = json_object_object_get(d, "box");
			double v[4];
			for (int k = 0; k < 4; k++)
				v[k] = json_object_get_double(json_object_array_get_idx(b, (size_t)k));
			printf("%s #%lld %s %.2f [%.0f,%.0f %.0f,%.0f]\n", stream, seq,
			       json_object_get_string(json_object_object_get(d, "label")),
			       json_object_get_double(json_object_object_get(d, "score")), v[0], v[1],
			       v[2], v[3]);
		}
	} else if (type && strcmp(type, "status") == 0) {
		struct json_object *e = json_object_object_get(m, "error");
		printf("%s state %s%s%s\n",
		       json_object_get_string(json_object_object_get(m, "stream")),
		       json_object_get_string(json_object_object_get(m, "state")), e ? ": " : "",
		       e ? json_object_get_string(e) : "");
	} else if (type && strcmp(type, "dropped") == 0) {
		printf("! %lld messages dropped (this client was too slow)\n",
		       (long long)json_object_get_int64(json_object_object_get(m, "count")));
	} else if (type && strcmp(type, "gap") == 0) {
		printf("! %s #%lld..#%lld are no longer available\n",
		       json_object_get_string(json_object_object_get(m, "stream")),
		       (long long)json_object_get_int64(json_object_object_get(m, "from")),
		       (long long)json_object_get_int64(json_object_object_get(m, "to")));
	} else if (type && strcmp(type, "error") == 0) {
		fprintf(stderr, "detctl: detd: %s: %s\n",
			json_object_get_string(json_object_object_get(m, "code")),
			json_object_get_string(json_object_object_get(m, "message")));
	}
	fflush(stdout);
	json_object_put(m);
	if (is_det && o->count > 0 && ++seen_detections >= o->count)
		return false;
	return true;
}

static void print_streams(struct json_object *arr)
{
	printf("%-16s %-12s %8s %10s %s\n", "STREAM", "STATE", "FPS", "LAST_SEQ", "ERROR");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *s = json_object_array_get_idx(arr, i);
		struct json_object *e = json_object_object_get(s, "error");
		printf("%-16s %-12s %8.2f %10lld %s\n",
		       json_object_get_string(json_object_object_get(s, "id")),
		       json_object_get_string(json_object_object_get(s, "state")),
		       json_object_get_double(json_object_object_get(s, "fps")),
		       (long long)json_object_get_int64(json_object_object_get(s, "last_seq")),
		       e ? json_object_get_string(e) : "");
	}
}

/* ---- Unix socket ---- */

static int sock_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "detctl: socket path too long: %s\n", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "detctl: cannot connect to %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Next message of one of the wanted types (errors are printed and fail). */
static struct json_object *sock_expect(struct rd *r, const char *type)
{
	char *line;
	while ((line = rd_line(r))) {
		struct json_object *m = json_tokener_parse(line);
		free(line);
		const char *t = m ? json_object_get_string(json_object_object_get(m, "type")) : NULL;
		if (t && strcmp(t, type) == 0)
			return m;
		if (t && strcmp(t, "error") == 0) {
			fprintf(stderr, "detctl: detd: %s\n",
				json_object_get_string(json_object_object_get(m, "message")));
			json_object_put(m);
			return NULL;
		}
		json_object_put(m);
	}
	fprintf(stderr, "detctl: connection closed by detd\n");
	return NULL;
}

static struct json_object *filter_request(const struct opts *o)
{
	struct json_object *req = json_object_new_object();
	json_object_object_add(req, "type", json_object_new_string("subscribe"));
	if (o->n_streams) {
		struct json_object *a = json_object_new_array();
		for (int i = 0; i < o->n_streams; i++)
			json_object_array_add(a, json_object_new_string(o->streams[i]));
		json_object_object_add(req, "streams", a);
	}
	if (o->n_labels) {
		struct json_object *a = json_object_new_array();
		for (int i = 0; i < o->n_labels; i++)
			json_object_array_add(a, json_object_new_string(o->labels[i]));
		json_object_object_add(req, "labels", a);
	}
	if (o->has_min_score)
		json_object_object_add(req, "min_score", json_object_new_double(o->min_score));
	if (o->n_since) {
		struct json_object *s = json_object_new_object();
		for (int i = 0; i < o->n_since; i++) {
			const char *eq = strrchr(o->since[i], '=');
			char id[128];
			snprintf(id, sizeof(id), "%.*s", (int)(eq - o->since[i]), o->since[i]);
			json_object_object_add(s, id, json_object_new_int64(atoll(eq + 1)));
		}
		json_object_object_add(req, "since", s);
	}
	return req;
}

static int sock_cmd(const struct opts *o, const char *cmd, char **args, int nargs)
{
	int fd = sock_connect(o->socket_path);
	if (fd < 0)
		return 1;
	struct rd r = {.fd = fd};
	int rc = 1;
	struct json_object *hello = sock_expect(&r, "hello"), *m = NULL;
	if (!hello)
		goto out;
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "streams") == 0) {
		const char *req = "{\"type\":\"streams\"}\n";
		if (write_all(fd, req, strlen(req)) < 0 || !(m = sock_expect(&r, "streams")))
			goto out;
		if (strcmp(cmd, "status") == 0)
			printf("detd %s, protocol %d, %zu stream(s)\n",
			       json_object_get_string(json_object_object_get(hello, "version")),
			       json_object_get_int(json_object_object_get(hello, "protocol")),
			       json_object_array_length(json_object_object_get(m, "streams")));
		print_streams(json_object_object_get(m, "streams"));
		rc = 0;
	} else if (strcmp(cmd, "subscribe") == 0) {
		struct json_object *req = filter_request(o);
		const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
		int w = write_all(fd, s, strlen(s)) < 0 || write_all(fd, "\n", 1) < 0;
		json_object_put(req);
		if (w)
			goto out;
		char *line;
		bool more = true;
		while (more && (line = rd_line(&r))) {
			more = print_msg(o, line);
			free(line);
		}
		rc = more ? 1 : 0; /* the daemon went away before --count */
		if (more)
			fprintf(stderr, "detctl: connection closed by detd\n");
	} else {
		fprintf(stderr, "detctl: %s needs the HTTP API (--http HOST:PORT)\n", cmd);
		rc = 2;
	}
	(void)args;
	(void)nargs;
out:
	json_object_put(hello);
	json_object_put(m);
	close(fd);
	return rc;
}

/* ---- HTTP ---- */

/* Binary output (a snapshot) to path, or to stdout when path is NULL or "-". */
static int write_file(const char *path, const char *data, size_t len)
{
	bool std = !path || strcmp(path, "-") == 0;
	FILE *f = std ? stdout : fopen(path, "wb");
	if (!f) {
		fprintf(stderr, "detctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	bool ok = fwrite(data, 1, len, f) == len;
	ok = (std ? fflush(f) : fclose(f)) == 0 && ok;
	if (!ok)
		fprintf(stderr, "detctl: writing %s failed\n", std ? "standard output" : path);
	return ok ? 0 : 1;
}

static int http_connect(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "detctl: --http wants HOST:PORT, got %s\n", hostport);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
	if (host[0] == '[') { /* [::1]:8080 */
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
	int e = getaddrinfo(host, colon + 1, &hints, &res);
	if (e) {
		fprintf(stderr, "detctl: %s: %s\n", hostport, gai_strerror(e));
		return -1;
	}
	int fd = -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		fprintf(stderr, "detctl: cannot connect to %s: %s\n", hostport, strerror(errno));
	return fd;
}

struct http_body {
	struct rd *r;
	bool chunked;
	long long left; /* content-length left, or of the current chunk; -1 = to EOF */
	bool done;
};

/* Read up to n body bytes (dechunked); 0 at the end. */
static size_t body_read(struct http_body *b, char *out, size_t n)
{
	while (!b->done) {
		if (b->chunked && b->left == 0) {
			char *l = rd_line(b->r);
			if (!l) {
				b->done = true;
				break;
			}
			if (!*l) { /* the CRLF after a chunk */
				free(l);
				continue;
			}
			b->left = strtoll(l, NULL, 16);
			free(l);
			if (b->left == 0) {
				b->done = true;
				break;
			}
		}
		if (!b->chunked && b->left == 0) {
			b->done = true;
			break;
		}
		if (rd_fill(b->r) <= 0) {
			b->done = true;
			break;
		}
		size_t avail = b->r->len - b->r->pos;
		if (b->left >= 0 && (long long)avail > b->left)
			avail = (size_t)b->left;
		if (avail > n)
			avail = n;
		memcpy(out, b->r->buf + b->r->pos, avail);
		b->r->pos += avail;
		if (b->left > 0)
			b->left -= (long long)avail;
		return avail;
	}
	return 0;
}

/* Send a request, parse the status and headers.  Returns the status or -1. */
static int http_request(const struct opts *o, int fd, struct rd *r, const char *method,
			const char *path, const char *body, size_t blen, struct http_body *hb)
{
	char head[1024];
	int n = snprintf(head, sizeof(head),
			 "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: detctl\r\n"
			 "Accept: */*\r\n%s%s%s",
			 method, path, o->http, o->token ? "Authorization: Bearer " : "",
			 o->token ? o->token : "", o->token ? "\r\n" : "");
	if (body)
		n += snprintf(head + n, sizeof(head) - (size_t)n,
			      "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	if (write_all(fd, head, (size_t)n) < 0 || (body && write_all(fd, body, blen) < 0)) {
		fprintf(stderr, "detctl: write: %s\n", strerror(errno));
		return -1;
	}
	char *line = rd_line(r);
	int status = -1;
	if (!line || sscanf(line, "HTTP/%*d.%*d %d", &status) != 1) {
		fprintf(stderr, "detctl: not an HTTP response from %s\n", o->http);
		free(line);
		return -1;
	}
	free(line);
	*hb = (struct http_body){.r = r, .left = -1};
	while ((line = rd_line(r)) && *line) {
		if (strncasecmp(line, "Content-Length:", 15) == 0)
			hb->left = atoll(line + 15);
		else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strcasestr(line, "chunked"))
			hb->chunked = true;
		free(line);
	}
	free(line);
	if (hb->chunked)
		hb->left = 0;
	return status;
}

static char *body_all(struct http_body *hb, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *s = malloc(cap);
	for (size_t got; s && (got = body_read(hb, s + n, cap - n - 1)) > 0;) {
		n += got;
		if (cap - n < 1024) {
			char *p = realloc(s, cap *= 2);
			if (!p) {
				free(s);
				return NULL;
			}
			s = p;
		}
	}
	if (s)
		s[n] = '\0';
	*len = n;
	return s;
}

/* Events arrive as "event: T\ndata: JSON\n\n"; comments and retry lines are skipped. */
static int http_events(const struct opts *o, struct http_body *hb)
{
	char buf[65536], line[1 << 16];
	size_t ln = 0;
	for (size_t got; (got = body_read(hb, buf, sizeof(buf))) > 0;) {
		for (size_t i = 0; i < got; i++) {
			if (buf[i] != '\n') {
				if (ln < sizeof(line) - 1)
					line[ln++] = buf[i];
				continue;
			}
			line[ln] = '\0';
			if (strncmp(line, "data: ", 6) == 0 && !print_msg(o, line + 6))
				return 0;
			ln = 0;
		}
	}
	fprintf(stderr, "detctl: event stream ended\n");
	return 1;
}

static void url_add(char *q, size_t cap, const char *key, const char *val)
{
	size_t n = strlen(q);
	n += (size_t)snprintf(q + n, cap - n, "%s%s=", n ? "&" : "?", key);
	for (const unsigned char *p = (const unsigned char *)val; *p && n + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-_.~", *p))
			q[n++] = (char)*p;
		else
			n += (size_t)snprintf(q + n, cap - n, "%%%02X", *p);
	}
	q[n] = '\0';
}

static int http_cmd(const struct opts *o, const char *cmd, char **args, int nargs)
{
	char path[2048] = "";
	const char *method = "GET";
	char *body = NULL;
	size_t blen = 0;
	bool events = false, snapshot = false;
	if (strcmp(cmd, "status") == 0) {
		snprintf(path, sizeof(path), "/status");
	} else if (strcmp(cmd, "streams") == 0) {
		snprintf(path, sizeof(path), "/streams");
	} else if (strcmp(cmd, "latest") == 0) {
		char q[512] = "";
		if (o->n_streams)
			url_add(q, sizeof(q), "stream", o->streams[0]);
		snprintf(path, sizeof(path), "/detections/latest%s", q);
	} else if (strcmp(cmd, "subscribe") == 0) {
		char q[1500] = "";
		for (int i = 0; i < o->n_streams; i++)
			url_add(q, sizeof(q), "stream", o->streams[i]);
		for (int i = 0; i < o->n_labels; i++)
			url_add(q, sizeof(q), "label", o->labels[i]);
		if (o->has_min_score) {
			char v[32];
			snprintf(v, sizeof(v), "%g", o->min_score);
			url_add(q, sizeof(q), "min_score", v);
		}
		snprintf(path, sizeof(path), "/events%s", q);
		events = true;
	} else if (strcmp(cmd, "add-stream") == 0 && nargs == 1) {
		FILE *f = strcmp(args[0], "-") ? fopen(args[0], "r") : stdin;
		if (!f) {
			fprintf(stderr, "detctl: %s: %s\n", args[0], strerror(errno));
			return 1;
		}
		size_t cap = 4096;
		body = malloc(cap);
		for (size_t got; body && (got = fread(body + blen, 1, cap - blen, f)) > 0;) {
			blen += got;
			if (blen == cap)
				body = realloc(body, cap *= 2);
		}
		if (f != stdin)
			fclose(f);
		method = "POST";
		snprintf(path, sizeof(path), "/streams");
	} else if (strcmp(cmd, "remove-stream") == 0 && nargs == 1) {
		char q[512] = "";
		url_add(q, sizeof(q), "x", args[0]);
		method = "DELETE";
		snprintf(path, sizeof(path), "/streams/%s", q + 3); /* the escaped id */
	} else if (strcmp(cmd, "reload") == 0) {
		method = "POST";
		snprintf(path, sizeof(path), "/reload");
	} else if (strcmp(cmd, "snapshot") == 0 && nargs == 1) {
		char q[512] = "";
		url_add(q, sizeof(q), "x", args[0]);
		snprintf(path, sizeof(path), "/streams/%s/snapshot.jpg", q + 3);
		snapshot = true;
	} else {
		fprintf(stderr, "detctl: unknown command or missing argument: %s\n", cmd);
		return 2;
	}
	int fd = http_connect(o->http);
	if (fd < 0) {
		free(body);
		return 1;
	}
	struct rd r = {.fd = fd};
	struct http_body hb;
	int status = http_request(o, fd, &r, method, path, body ? body : (strcmp(method, "POST") ? NULL : ""),
				  blen, &hb);
	free(body);
	int rc = 1;
	if (status < 0)
		goto out;
	if (events && status == 200) {
		rc = http_events(o, &hb);
		goto out;
	}
	size_t len;
	char *text = body_all(&hb, &len);
	if (snapshot && status == 200 && text) {
		rc = write_file(o->output, text, len);
		free(text);
		goto out;
	}
	struct json_object *doc = text ? json_tokener_parse(text) : NULL;
	if (status >= 300) {
		struct json_object *e = doc ? json_object_object_get(doc, "error") : NULL;
		fprintf(stderr, "detctl: HTTP %d: %s\n", status,
			e ? json_object_get_string(json_object_object_get(e, "message"))
			  : (text ? text : ""));
	} else if (!o->json && strcmp(cmd, "streams") == 0 && doc) {
		print_streams(json_object_object_get(doc, "streams"));
		rc = 0;
	} else {
		printf("%s\n", doc ? json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
									     JSON_C_TO_STRING_NOSLASHESCAPE)
				   : (text ? text : ""));
		rc = 0;
	}
	json_object_put(doc);
	free(text);
out:
	close(fd);
	return rc;
}

static void usage(FILE *to)
{
	fprintf(to,
		"Usage: detctl [--socket PATH | --http HOST:PORT] [--token TOKEN] COMMAND [ARGS]\n"
		"Commands:\n"
		"  status                 daemon status\n"
		"  streams                streams: state, results per second, last result number\n"
		"  latest [--stream S]    the latest detections (HTTP)\n"
		"  subscribe [--stream S]... [--label L]... [--min-score X] [--since S=SEQ]...\n"
		"            [--count N] [--json]\n"
		"                         follow detections (one line per object; raw NDJSON with --json)\n"
		"  add-stream FILE        add the stream described in FILE (JSON; - for stdin) (HTTP)\n"
		"  remove-stream ID       remove a stream (HTTP)\n"
		"  reload                 reload the configuration (HTTP)\n"
		"  snapshot ID [-o FILE]  the latest frame of stream ID with its boxes, as JPEG\n"
		"                         (HTTP; to FILE, or standard output)\n"
		"Default socket: $DETD_SOCKET or " DEFAULT_SOCKET ".\n"
		"--token (or $DETD_TOKEN) is sent as a bearer token for mutations.\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"socket", required_argument, NULL, 's'}, {"http", required_argument, NULL, 'H'},
		{"token", required_argument, NULL, 't'},  {"stream", required_argument, NULL, 'S'},
		{"label", required_argument, NULL, 'L'},  {"min-score", required_argument, NULL, 'm'},
		{"since", required_argument, NULL, 'i'},  {"count", required_argument, NULL, 'n'},
		{"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
		{"output", required_argument, NULL, 'o'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.socket_path = getenv("DETD_SOCKET"), .token = getenv("DETD_TOKEN")};
	if (!o.socket_path || !*o.socket_path)
		o.socket_path = DEFAULT_SOCKET;
	signal(SIGPIPE, SIG_IGN);
	int c;
	while ((c = getopt_long(argc, argv, "s:H:t:S:L:m:i:n:jho:", lo, NULL)) != -1) {
		char *end;
		switch (c) {
		case 's':
			o.socket_path = optarg;
			break;
		case 'H':
			o.http = optarg;
			break;
		case 't':
			o.token = optarg;
			break;
		case 'S':
		case 'L':
		case 'i':
			if ((c == 'S' ? o.n_streams : c == 'L' ? o.n_labels : o.n_since) >= MAX_FILTER) {
				fprintf(stderr, "detctl: at most %d of each filter\n", MAX_FILTER);
				return 2;
			}
			if (c == 'i' && (!strchr(optarg, '=') || strchr(optarg, '=') == optarg)) {
				fprintf(stderr, "detctl: --since wants STREAM=SEQ\n");
				return 2;
			}
			if (c == 'S')
				o.streams[o.n_streams++] = optarg;
			else if (c == 'L')
				o.labels[o.n_labels++] = optarg;
			else
				o.since[o.n_since++] = optarg;
			break;
		case 'm':
			o.min_score = strtod(optarg, &end);
			if (*end || !(o.min_score >= 0 && o.min_score <= 1)) {
				fprintf(stderr, "detctl: --min-score wants a number in [0, 1]\n");
				return 2;
			}
			o.has_min_score = true;
			break;
		case 'n':
			o.count = strtol(optarg, &end, 10);
			if (*end || o.count < 0) {
				fprintf(stderr, "detctl: --count wants a number\n");
				return 2;
			}
			break;
		case 'j':
			o.json = true;
			break;
		case 'o':
			o.output = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	char **args = argv + optind + 1;
	int nargs = argc - optind - 1;
	static const char *const cmds[] = {"status", "streams", "latest", "subscribe",
					   "add-stream", "remove-stream", "reload", "snapshot"};
	bool known = false;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		known |= strcmp(cmd, cmds[i]) == 0;
	if (!known) {
		fprintf(stderr, "detctl: unknown command: %s\n", cmd);
		usage(stderr);
		return 2;
	}
	bool needs_arg = strcmp(cmd, "add-stream") == 0 || strcmp(cmd, "remove-stream") == 0 ||
			 strcmp(cmd, "snapshot") == 0;
	if (nargs != (needs_arg ? 1 : 0)) {
		fprintf(stderr, "detctl: %s takes %s\n", cmd, needs_arg ? "one argument" : "no arguments");
		return 2;
	}
	return o.http ? http_cmd(&o, cmd, args, nargs) : sock_cmd(&o, cmd, args, nargs);
}
