/* test_draw.c — drawing boxes and labels on RGB pictures, and JPEG encoding. */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "draw.h"
#include "testutil.h"

#define W 200
#define H 100
#define GUARD 12 /* bytes after each row, and one whole guard row after the image */
#define STRIDE (W * 3 + GUARD)
#define CANARY 0xA5
#define GREY 100

static uint8_t *img_new(void)
{
	uint8_t *p = malloc((size_t)STRIDE * (H + 1));
	memset(p, CANARY, (size_t)STRIDE * (H + 1));
	for (int y = 0; y < H; y++)
		memset(p + (size_t)y * STRIDE, GREY, W * 3);
	return p;
}

static bool changed(const uint8_t *p, int x, int y)
{
	const uint8_t *q = p + (size_t)y * STRIDE + (size_t)x * 3;
	return q[0] != GREY || q[1] != GREY || q[2] != GREY;
}

static int changed_in(const uint8_t *p, int x0, int y0, int x1, int y1)
{
	int n = 0;
	for (int y = y0; y < y1; y++)
		for (int x = x0; x < x1; x++)
			n += changed(p, x, y);
	return n;
}

/* Nothing outside the picture was written. */
static void assert_guards(const uint8_t *p)
{
	for (int y = 0; y < H; y++)
		for (int i = 0; i < GUARD; i++)
			ck_assert_uint_eq(p[(size_t)y * STRIDE + W * 3 + i], CANARY);
	for (int i = 0; i < STRIDE; i++)
		ck_assert_uint_eq(p[(size_t)H * STRIDE + i], CANARY);
}

START_TEST(box_inside)
{
	uint8_t *p = img_new();
	struct draw_box b = {.x0 = 50, .y0 = 40, .x1 = 150, .y1 = 90, .score = -1};
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, STRIDE, &b, 1), 0);
	ck_assert(changed(p, 50, 60));  /* left edge */
	ck_assert(changed(p, 149, 60)); /* right edge, inside the box */
	ck_assert(changed(p, 100, 40)); /* top */
	ck_assert(changed(p, 100, 89)); /* bottom */
	ck_assert(!changed(p, 100, 65)); /* inside: untouched */
	ck_assert(!changed(p, 20, 20));  /* outside: untouched */
	ck_assert(!changed(p, 160, 60));
	ck_assert_int_eq(changed_in(p, 0, 0, W, 38), 0); /* no label asked for */
	assert_guards(p);
	free(p);
}
END_TEST

START_TEST(label_above_the_box)
{
	uint8_t *p = img_new();
	struct draw_box b = {.x0 = 50, .y0 = 60, .x1 = 150, .y1 = 95, .label = "car", .score = 0.9f};
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, STRIDE, &b, 1), 0);
	/* the label's background sits on top of the box, from its left edge */
	ck_assert_int_gt(changed_in(p, 50, 40, 80, 60), 200);
	ck_assert_int_eq(changed_in(p, 0, 0, 48, 60), 0);
	assert_guards(p);
	free(p);
}
END_TEST

START_TEST(clipped_at_the_edges)
{
	uint8_t *p = img_new();
	struct draw_box b[] = {
		{.x0 = -50, .y0 = -30, .x1 = 80, .y1 = 60, .label = "pickup_suv_van", .score = 0.5f},
		{.x0 = 150, .y0 = 50, .x1 = 400, .y1 = 300, .label = "bus", .score = 1.0f},
		{.x0 = 190, .y0 = 10, .x1 = 260, .y1 = 30, .label = "a long label at the edge",
		 .score = 0.7f},
	};
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, STRIDE, b, 3), 0);
	ck_assert(changed(p, 0, 40));   /* first box: its left edge is the image's */
	ck_assert(changed(p, 79, 40));  /* its right edge */
	ck_assert(changed(p, 199, 75)); /* second box: right edge clipped to the image */
	ck_assert(changed(p, 170, 99)); /* bottom edge clipped to the image */
	assert_guards(p);
	free(p);
}
END_TEST

START_TEST(box_exactly_on_the_border)
{
	uint8_t *p = img_new();
	struct draw_box b = {.x0 = 0, .y0 = 0, .x1 = W, .y1 = H, .label = "frame", .score = 1.0f};
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, STRIDE, &b, 1), 0);
	ck_assert(changed(p, 0, 50));
	ck_assert(changed(p, W - 1, 50));
	ck_assert(changed(p, 100, H - 1));
	ck_assert(changed(p, 150, 0));
	/* no room above: the label goes inside, at the top left */
	ck_assert_int_gt(changed_in(p, 2, 2, 30, 14), 50);
	ck_assert(!changed(p, 100, 60));
	assert_guards(p);
	free(p);
}
END_TEST

START_TEST(outside_or_empty_draws_nothing)
{
	uint8_t *p = img_new();
	struct draw_box b[] = {
		{.x0 = 300, .y0 = 300, .x1 = 400, .y1 = 400, .label = "far", .score = 1},
		{.x0 = -90, .y0 = 10, .x1 = -10, .y1 = 50, .label = "left", .score = 1},
		{.x0 = 50, .y0 = 50, .x1 = 50, .y1 = 50, .label = "empty", .score = 1},
	};
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, STRIDE, b, 3), 0);
	ck_assert_int_eq(changed_in(p, 0, 0, W, H), 0);
	assert_guards(p);
	ck_assert_int_eq(draw_boxes_rgb(p, W, H, W * 3 - 1, b, 1), -EINVAL);
	free(p);
}
END_TEST

START_TEST(jpeg_round_trip)
{
	enum { JW = 64, JH = 48 };
	uint8_t rgb[JW * JH * 3];
	for (int y = 0; y < JH; y++)
		for (int x = 0; x < JW; x++) {
			uint8_t *q = rgb + (y * JW + x) * 3;
			q[0] = (uint8_t)(x * 4), q[1] = (uint8_t)(y * 5), q[2] = 128;
		}
	uint8_t *jpg = NULL;
	size_t len = 0;
	ck_assert_int_eq(draw_jpeg_encode(rgb, JW, JH, JW * 3, 90, &jpg, &len), 0);
	ck_assert_uint_gt(len, 100);
	ck_assert(jpg[0] == 0xFF && jpg[1] == 0xD8 && jpg[len - 2] == 0xFF && jpg[len - 1] == 0xD9);

	struct jpeg_decompress_struct di;
	struct jpeg_error_mgr jerr;
	di.err = jpeg_std_error(&jerr);
	jpeg_create_decompress(&di);
	jpeg_mem_src(&di, jpg, len);
	ck_assert_int_eq(jpeg_read_header(&di, TRUE), JPEG_HEADER_OK);
	di.out_color_space = JCS_RGB;
	jpeg_start_decompress(&di);
	ck_assert_uint_eq(di.output_width, JW);
	ck_assert_uint_eq(di.output_height, JH);
	uint8_t out[JW * JH * 3];
	while (di.output_scanline < di.output_height) {
		JSAMPROW row = out + di.output_scanline * JW * 3;
		jpeg_read_scanlines(&di, &row, 1);
	}
	jpeg_finish_decompress(&di);
	jpeg_destroy_decompress(&di);
	long err = 0;
	for (size_t i = 0; i < sizeof(out); i++)
		err += labs((long)out[i] - rgb[i]);
	ck_assert_int_lt(err / (long)sizeof(out), 6); /* mean error of a smooth picture at q90 */
	free(jpg);
	ck_assert_int_eq(draw_jpeg_encode(rgb, JW, JH, JW * 3, 0, &jpg, &len), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("draw");
	TCase *t = tcase_create("draw");
	tcase_add_test(t, box_inside);
	tcase_add_test(t, label_above_the_box);
	tcase_add_test(t, clipped_at_the_edges);
	tcase_add_test(t, box_exactly_on_the_border);
	tcase_add_test(t, outside_or_empty_draws_nothing);
	tcase_add_test(t, jpeg_round_trip);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return run_suite(suite());
}
