/*
 * draw.h — annotating pictures: detection boxes with their labels and
 * scores drawn on an RGB image, and JPEG encoding.  Shared by the live view
 * (snapshots, MJPEG) and any other output that shows frames.
 *
 * Pure functions on caller-owned memory: any thread (the view runs them on
 * its encoder thread, never on the loop).
 */
#ifndef DETD_DRAW_H
#define DETD_DRAW_H

#include <stddef.h>
#include <stdint.h>

struct draw_box {
	float x0, y0, x1, y1; /* pixels of the image; may reach outside it */
	const char *label;    /* may be NULL */
	float score;          /* < 0: not shown */
	int class_id;         /* picks the colour */
};

/*
 * Draw the boxes on a w×h RGB image (rows of stride bytes) in place.  Every
 * pixel written lies inside the image: boxes are clipped, a box on the
 * image's border is drawn inside it, a label that would leave the image is
 * moved into it.  0 or -errno.
 */
int draw_boxes_rgb(uint8_t *rgb, int w, int h, size_t stride, const struct draw_box *boxes,
		   size_t n);

/* Encode a w×h RGB image as a baseline JPEG (quality 1–100) into a new
 * malloc'd buffer.  0 or -errno. */
int draw_jpeg_encode(const uint8_t *rgb, int w, int h, size_t stride, int quality,
		     uint8_t **out, size_t *out_len);

#endif
