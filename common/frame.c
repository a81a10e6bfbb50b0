/*
 * frame.c — allocation and reference counting of frames and results.
 * Called from GStreamer streaming threads, workers and the main loop alike.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t det_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t det_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

struct det_frame *det_frame_new(int width, int height, int channels)
{
	if (width <= 0 || height <= 0 || channels <= 0 || width > 16384 || height > 16384 ||
	    channels > 4)
		return NULL;
	size_t stride = (size_t)width * (size_t)channels;
	size_t size = stride * (size_t)height;
	/* The pixels are written by the producer (every byte: tight stride);
	 * zeroing them first would only cost a pass over each frame. */
	struct det_frame *f = malloc(sizeof(*f) + size);
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	atomic_init(&f->refs, 1);
	f->width = width;
	f->height = height;
	f->channels = channels;
	f->stride = stride;
	f->size = size;
	f->data = (uint8_t *)(f + 1);
	f->pts_ns = -1;
	f->map.scale_x = f->map.scale_y = 1.0;
	return f;
}

struct det_frame *det_frame_ref(struct det_frame *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

static _Atomic int64_t picture_demand_until;

void det_picture_demand(int64_t until_mono_ns)
{
	int64_t cur = atomic_load_explicit(&picture_demand_until, memory_order_relaxed);
	while (cur < until_mono_ns &&
	       !atomic_compare_exchange_weak_explicit(&picture_demand_until, &cur, until_mono_ns,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

bool det_picture_demanded(void)
{
	return atomic_load_explicit(&picture_demand_until, memory_order_relaxed) > det_mono_ns();
}

struct det_picture *det_picture_ref(struct det_picture *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void det_picture_unref(struct det_picture *p)
{
	if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		p->release(p);
}

void det_frame_unref(struct det_frame *f)
{
	if (f && atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
		det_picture_unref(f->orig);
		free(f);
	}
}

struct det_result *det_result_new(const struct det_frame *frame, int n_objects)
{
	if (n_objects < 0)
		return NULL;
	struct det_result *r =
		calloc(1, sizeof(*r) + (size_t)n_objects * sizeof(struct det_object));
	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	r->n_objects = n_objects;
	r->pts_ns = -1;
	if (frame) {
		memcpy(r->stream_id, frame->stream_id, sizeof(r->stream_id));
		r->seq = frame->seq;
		r->pts_ns = frame->pts_ns;
		r->capture_wall_ns = frame->capture_wall_ns;
		r->orig_width = frame->orig_width;
		r->orig_height = frame->orig_height;
		r->t.capture_mono_ns = frame->capture_mono_ns;
		r->t.enqueue_mono_ns = frame->enqueue_mono_ns;
		if (frame->orig)
			r->orig = det_picture_ref(frame->orig);
	}
	return r;
}

struct det_result *det_result_ref(struct det_result *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void det_result_unref(struct det_result *r)
{
	if (r && atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		det_picture_unref(r->orig);
		free(r);
	}
}

static float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void det_object_map_box(struct det_object *o, const struct det_mapping *map, int model_w,
			int model_h, int orig_w, int orig_h)
{
	double mx0 = o->box_norm[1] * model_w, my0 = o->box_norm[0] * model_h;
	double mx1 = o->box_norm[3] * model_w, my1 = o->box_norm[2] * model_h;
	o->box_px[0] = clampf((float)((mx0 - map->pad_x) / map->scale_x), 0, (float)orig_w);
	o->box_px[1] = clampf((float)((my0 - map->pad_y) / map->scale_y), 0, (float)orig_h);
	o->box_px[2] = clampf((float)((mx1 - map->pad_x) / map->scale_x), 0, (float)orig_w);
	o->box_px[3] = clampf((float)((my1 - map->pad_y) / map->scale_y), 0, (float)orig_h);
}
