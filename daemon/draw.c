/*
 * draw.c — see draw.h.  Boxes and text with cairo (its "toy" text API and a
 * system font: no layout engine needed for one line of ASCII), JPEG with
 * libjpeg.  Cairo draws on 32-bit xRGB, so the picture goes through one
 * such surface and back; for a 960×540 frame that is ~2 MB and well under a
 * millisecond, and it only happens when somebody looks.
 */
#include "draw.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* Distinct, readable colours, picked by class id. */
static const double palette[][3] = {
	{0.90, 0.10, 0.10}, {0.10, 0.75, 0.20}, {0.15, 0.45, 0.95}, {0.95, 0.75, 0.05},
	{0.85, 0.20, 0.85}, {0.05, 0.80, 0.85}, {0.95, 0.50, 0.10}, {0.55, 0.35, 0.95},
};
#define N_PALETTE (sizeof(palette) / sizeof(palette[0]))

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static void draw_one(cairo_t *cr, int w, int h, const struct draw_box *b, double lw, double fs)
{
	const double *c = palette[(unsigned)(b->class_id < 0 ? 0 : b->class_id) % N_PALETTE];
	/* The stroke sits inside the clipped box, so a box on the border is
	 * seen whole and nothing is drawn outside the picture. */
	double x0 = clampd(fmin(b->x0, b->x1), 0, w), x1 = clampd(fmax(b->x0, b->x1), 0, w);
	double y0 = clampd(fmin(b->y0, b->y1), 0, h), y1 = clampd(fmax(b->y0, b->y1), 0, h);
	if (x1 - x0 < 1 || y1 - y0 < 1)
		return; /* entirely outside, or empty */
	double in = lw / 2;
	double rw = fmax(x1 - x0 - lw, 0), rh = fmax(y1 - y0 - lw, 0);
	cairo_set_source_rgb(cr, c[0], c[1], c[2]);
	cairo_set_line_width(cr, lw);
	cairo_rectangle(cr, x0 + in, y0 + in, rw, rh);
	cairo_stroke(cr);

	char text[96];
	if (b->label && b->score >= 0)
		snprintf(text, sizeof(text), "%s %.2f", b->label, (double)b->score);
	else if (b->label)
		snprintf(text, sizeof(text), "%s", b->label);
	else if (b->score >= 0)
		snprintf(text, sizeof(text), "%.2f", (double)b->score);
	else
		return;
	cairo_text_extents_t te;
	cairo_text_extents(cr, text, &te);
	double pad = fs * 0.25, tw = te.x_advance + 2 * pad, th = fs + 2 * pad;
	/* above the box; inside it when there is no room above; never outside */
	double lx = clampd(x0, 0, fmax(w - tw, 0));
	double ly = y0 - th >= 0 ? y0 - th : y0;
	ly = clampd(ly, 0, fmax(h - th, 0));
	cairo_rectangle(cr, lx, ly, fmin(tw, w - lx), fmin(th, h - ly));
	cairo_fill(cr);
	/* black or white text, whichever reads better on the colour */
	double lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
	cairo_set_source_rgb(cr, lum > 0.55 ? 0 : 1, lum > 0.55 ? 0 : 1, lum > 0.55 ? 0 : 1);
	cairo_move_to(cr, lx + pad, ly + pad + fs * 0.8);
	cairo_show_text(cr, text);
}

int draw_boxes_rgb(uint8_t *rgb, int w, int h, size_t stride, const struct draw_box *boxes,
		   size_t n)
{
	if (!rgb || w <= 0 || h <= 0 || stride < (size_t)w * 3)
		return -EINVAL;
	if (!n)
		return 0;
	cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
	if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
		cairo_surface_destroy(sf);
		return -ENOMEM;
	}
	uint8_t *px = cairo_image_surface_get_data(sf);
	int ps = cairo_image_surface_get_stride(sf);
	cairo_surface_flush(sf);
	for (int y = 0; y < h; y++) {
		const uint8_t *s = rgb + (size_t)y * stride;
		uint32_t *d = (uint32_t *)(void *)(px + (size_t)y * (size_t)ps);
		for (int x = 0; x < w; x++, s += 3)
			d[x] = (uint32_t)s[0] << 16 | (uint32_t)s[1] << 8 | s[2];
	}
	cairo_surface_mark_dirty(sf);

	cairo_t *cr = cairo_create(sf);
	double scale = fmax(w, h) / 640.0;
	double lw = fmax(2.0, round(2.0 * scale)), fs = fmax(11.0, round(13.0 * scale));
	cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
	cairo_set_font_size(cr, fs);
	cairo_rectangle(cr, 0, 0, w, h);
	cairo_clip(cr);
	for (size_t i = 0; i < n; i++)
		draw_one(cr, w, h, &boxes[i], lw, fs);
	int rc = cairo_status(cr) == CAIRO_STATUS_SUCCESS ? 0 : -EIO;
	cairo_destroy(cr);

	cairo_surface_flush(sf);
	for (int y = 0; y < h; y++) {
		uint8_t *d = rgb + (size_t)y * stride;
		const uint32_t *s = (const uint32_t *)(const void *)(px + (size_t)y * (size_t)ps);
		for (int x = 0; x < w; x++, d += 3) {
			d[0] = (uint8_t)(s[x] >> 16);
			d[1] = (uint8_t)(s[x] >> 8);
			d[2] = (uint8_t)s[x];
		}
	}
	cairo_surface_destroy(sf);
	return rc;
}

int draw_jpeg_encode(const uint8_t *rgb, int w, int h, size_t stride, int quality,
		     uint8_t **out, size_t *out_len)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char *buf = NULL;
	unsigned long len = 0;

	if (!rgb || w <= 0 || h <= 0 || stride < (size_t)w * 3 || quality < 1 || quality > 100)
		return -EINVAL;
	/* libjpeg's default error handler exits the process; with in-memory
	 * output and valid parameters the only failure left is allocation,
	 * which it also reports through exit — accepted, as for malloc. */
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_mem_dest(&ci, &buf, &len);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, quality, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * stride);
		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	*out = buf;
	*out_len = len;
	return 0;
}
