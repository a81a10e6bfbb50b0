/*
 * view.h — "see what detd sees" as one daemon module ("view"): the latest
 * annotated frame of each stream as a JPEG snapshot, an MJPEG live view, and
 * a small web page at "/" (HTTP routes; see README "Live view").
 *
 * Owns, per stream, the latest result that carries its decoded picture (one
 * per stream: the picture is released when the next result arrives), one
 * JPEG of it with the default drawing (made at most once per result, shared
 * by every snapshot request and MJPEG viewer), the MJPEG viewers, and one
 * encoder thread: converting, drawing and encoding never run on the loop and
 * only happen when somebody looks.
 *
 * Register it after the publishers; feed it every published result with
 * view_result() (loop thread).  Threads: the loop, except the encoder thread
 * inside view.c.
 */
#ifndef DETD_VIEW_H
#define DETD_VIEW_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
struct det_result;
struct view;

int view_module_add(struct daemon *d, struct view **out);
void view_free(struct view *v); /* NULL-safe; after daemon_run() */

/* Loop thread: a result was published (borrowed; the view takes its own ref). */
void view_result(struct view *v, struct det_result *r);

/*
 * For other outputs (the MQTT snapshot topic): the latest frame of stream
 * with all its boxes, as JPEG — the same shared encoding the snapshot
 * endpoint serves.  fn runs later on the loop (or at once when the JPEG is
 * ready), exactly once: with the JPEG (borrowed for the call), or with jpeg
 * NULL when none came within a few seconds.  0, -ENOENT (no result of that
 * stream yet), -ENOTCONN (no view: HTTP off), -EBUSY, -ENOMEM.
 * view_snapshot_cancel() forgets every pending request with that ud.
 */
typedef void (*view_jpeg_fn)(const char *stream, uint64_t seq, const uint8_t *jpeg, size_t len,
			     void *ud);
int view_snapshot_request(struct view *v, const char *stream, view_jpeg_fn fn, void *ud);
void view_snapshot_cancel(struct view *v, void *ud);

#endif
