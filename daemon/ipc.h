/*
 * ipc.h — the Unix-socket pub/sub server (protocol v1, newline-delimited
 * JSON; documented in docs/PROTOCOL.md).
 *
 * Owns: the listening socket (and its file, which it creates with the
 * configured mode/group and removes at the end; a stale file left by a dead
 * daemon is detected by a connect test and replaced), every client
 * connection and its bus subscription.
 *
 * Thread: the libevent loop thread only.
 */
#ifndef DETD_IPC_H
#define DETD_IPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct cfg_ipc;
struct bus;
struct metrics;
struct ipc_server;

#define IPC_PROTOCOL 1
/* A request line longer than this is answered with a line_too_long error and
 * discarded up to its newline; the connection stays open. */
#define IPC_MAX_LINE 65536
/* Values nested deeper than this inside the request object (arrays and
 * objects; "id":[[1]] is 2 deep) make the request invalid_json. */
#define IPC_MAX_DEPTH 16

/*
 * Start serving.  inherited_fd >= 0: a listening socket passed by systemd
 * (socket activation) is used instead of creating cfg->path; the file is then
 * not ours and not removed.  metrics may be NULL.  The server ignores SIGPIPE
 * for the process (writes to vanished clients must fail with EPIPE, not kill
 * the daemon).  0 or -errno (-EADDRINUSE: another daemon listens on the path;
 * -EEXIST: the path is something else than a socket).
 */
int ipc_create(struct event_base *base, const struct cfg_ipc *cfg, struct bus *bus,
	       struct metrics *metrics, int inherited_fd, struct ipc_server **out);
void ipc_destroy(struct ipc_server *s); /* NULL-safe; closes every client */
/* Reloadable limits (max_clients, buffer sizes, timeout); path/mode need a restart. */
void ipc_reload(struct ipc_server *s, const struct cfg_ipc *cfg);

struct ipc_stats {
	size_t clients;
	uint64_t accepted;
	uint64_t rejected;      /* over max_clients */
	uint64_t dropped;       /* messages dropped for slow clients */
	uint64_t slow_disconnects;
	uint64_t errors_sent;   /* error replies to bad requests */
	size_t max_queued;      /* the largest output buffer any client reached (bytes) */
};
void ipc_get_stats(const struct ipc_server *s, struct ipc_stats *st);

#endif
