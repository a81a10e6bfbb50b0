/*
 * frame.h — the two objects that cross threads: video frames (pipeline →
 * batcher → inference worker) and detection results (worker → main loop →
 * publishers).  Both are reference counted because they have several owners
 * over their life; nothing else in detd is.
 *
 * Thread safety: det_*_ref/unref may be called from any thread.  The payload
 * of a frame or a result is immutable once it has been handed on (the
 * producer fills it, then gives it away).
 */
#ifndef DETD_FRAME_H
#define DETD_FRAME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DET_STREAM_ID_MAX 64 /* incl. NUL; config validates ids against it */
#define DET_LABEL_MAX 48

/* Monotonic and wall clocks in nanoseconds. */
int64_t det_mono_ns(void);
int64_t det_wall_ns(void);

/*
 * How a frame of the model's input size maps back to the original picture:
 * orig_x = (model_x - pad_x) / scale_x.  Stretch: pad 0, scale_x = W/orig_w,
 * scale_y = H/orig_h.  Letterbox: one scale, padding on two sides.
 */
struct det_mapping {
	double scale_x, scale_y;
	double pad_x, pad_y;
};

/*
 * The decoded picture a frame was made from, at its original size, kept
 * without conversion (the producer holds its decoder's buffer) so that a
 * snapshot can be drawn from exactly the picture the engine saw.  Made by
 * pipeline/, shared by the frame and its result; to_rgb may run on any
 * thread and converts on demand (nobody looking = no conversion).
 */
struct det_picture {
	atomic_int refs;
	int width, height;
	/* Fill dst (w×h RGB, rows of stride bytes), scaled from width×height
	 * when they differ.  0 or -errno. */
	int (*to_rgb)(const struct det_picture *p, uint8_t *dst, int w, int h, size_t stride);
	void (*release)(struct det_picture *p); /* frees p */
};
struct det_picture *det_picture_ref(struct det_picture *p);
/*
 * Whether frames should carry their pictures at all: a picture holds a
 * decoder buffer, and holding them makes decoders allocate more, so they
 * are kept only while someone looks.  The live view asks (any thread) for
 * pictures until a monotonic time; producers check before attaching one.
 */
void det_picture_demand(int64_t until_mono_ns);
bool det_picture_demanded(void);
void det_picture_unref(struct det_picture *p); /* NULL-safe */

struct det_frame {
	atomic_int refs;
	char stream_id[DET_STREAM_ID_MAX];
	uint32_t stream_gen; /* bumped when the stream restarts: resets recurrent state */
	uint64_t seq;        /* per-stream, from 1 */
	int64_t pts_ns;      /* -1 when the source has none */
	int64_t capture_wall_ns;
	int64_t capture_mono_ns;
	int64_t enqueue_mono_ns;
	int orig_width, orig_height;
	struct det_mapping map;
	int width, height, channels; /* of data: the model's input */
	size_t stride;               /* bytes per row of data */
	size_t size;                 /* bytes of data */
	uint8_t *data;               /* tightly owned by the frame */
	struct det_picture *orig;    /* may be NULL; a reference owned by the frame */
};

/* A frame with room for width×height×channels bytes (not initialized: the
 * producer writes them all); refs = 1. NULL on ENOMEM. */
struct det_frame *det_frame_new(int width, int height, int channels);
struct det_frame *det_frame_ref(struct det_frame *f);
void det_frame_unref(struct det_frame *f); /* NULL-safe */

struct det_object {
	int class_id; /* 0-based, as the post-process reports it */
	char label[DET_LABEL_MAX];
	float score;
	float box_norm[4]; /* ymin, xmin, ymax, xmax in [0,1] of the model input (unclipped) */
	float box_px[4];   /* x0, y0, x1, y1 in original-frame pixels (clipped) */
};

struct det_timings {
	int64_t capture_mono_ns;
	int64_t enqueue_mono_ns;
	int64_t infer_start_mono_ns;
	int64_t infer_end_mono_ns;
};

struct det_result {
	atomic_int refs;
	char stream_id[DET_STREAM_ID_MAX];
	uint64_t seq;
	int64_t pts_ns;
	int64_t capture_wall_ns;
	int orig_width, orig_height;
	struct det_timings t;
	char backend[16];
	struct det_picture *orig; /* the frame's picture (a reference) or NULL */
	int n_objects;
	struct det_object objects[]; /* n_objects */
};

/* A result with room for n objects, metadata copied from frame (may be NULL). */
struct det_result *det_result_new(const struct det_frame *frame, int n_objects);
struct det_result *det_result_ref(struct det_result *r);
void det_result_unref(struct det_result *r); /* NULL-safe */

/* Fill box_px from box_norm through the frame's mapping, clipped to the frame. */
void det_object_map_box(struct det_object *o, const struct det_mapping *map, int model_w,
			int model_h, int orig_w, int orig_h);

#endif
