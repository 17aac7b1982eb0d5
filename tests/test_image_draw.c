// test_image_draw.c - drawing boxes and labels, and the PNG writer (round trip through the
// decoder, allocation failures, unwritable paths).
#include "core/alloc.h"
#include "core/draw.h"
#include "core/image.h"
#include "harness.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

static fr_image grey(int w, int h, unsigned char v) {
    fr_image img = {w, h, fr_malloc((size_t)w * h * 3)};
    memset(img.rgb, v, (size_t)w * h * 3);
    return img;
}

static const unsigned char *px(const fr_image *img, int x, int y) {
    return img->rgb + ((size_t)y * img->w + x) * 3;
}

static int is_grey(const fr_image *img, int x, int y, unsigned char v) {
    const unsigned char *p = px(img, x, y);
    return p[0] == v && p[1] == v && p[2] == v;
}

TEST(test_draw_box) {
    fr_image img = grey(200, 120, 128);
    float box[4] = {20, 40, 120, 100};
    const char *labels[1] = {"dog"};
    float scores[1] = {0.98f};
    fr_draw_boxes(&img, box, labels, scores, 1);
    // edges drawn, interior untouched, outside untouched
    CHECK(!is_grey(&img, 20, 70, 128));
    CHECK(!is_grey(&img, 119, 70, 128));
    CHECK(!is_grey(&img, 70, 40, 128));
    CHECK(!is_grey(&img, 70, 99, 128));
    CHECK(is_grey(&img, 70, 70, 128));
    CHECK(is_grey(&img, 150, 70, 128));
    CHECK(is_grey(&img, 70, 110, 128));
    // the tag sits above the box: some pixels in [y-12, y) changed, in two colours (fill + text)
    int changed = 0, colours = 0;
    unsigned char first[3] = {0}, second[3] = {0};
    for (int y = 28; y < 40; y++)
        for (int x = 20; x < 80; x++)
            if (!is_grey(&img, x, y, 128)) {
                changed++;
                const unsigned char *p = px(&img, x, y);
                if (!colours) memcpy(first, p, 3), colours = 1;
                else if (colours == 1 && memcmp(first, p, 3)) memcpy(second, p, 3), colours = 2;
            }
    CHECK(changed > 100);
    CHECK(colours == 2);
    // same label, same colour; the edge colour is the tag colour
    fr_image img2 = grey(200, 120, 128);
    float box2[4] = {50, 50, 90, 90};
    fr_draw_boxes(&img2, box2, labels, NULL, 1);
    CHECK(memcmp(px(&img2, 50, 70), px(&img, 20, 70), 3) == 0);
    fr_image_free(&img2);
    fr_image_free(&img);
}

static void str_to_any(fr_image *img, int ox, int oy, int w, int h, int *count) {
    *count = 0;
    for (int y = oy; y < oy + h && y < img->h; y++)
        for (int x = ox; x < ox + w && x < img->w; x++) *count += !is_grey(img, x, y, 128);
}

TEST(test_draw_edge_cases) {
    fr_image img = grey(64, 48, 128);
    float nan = NAN, inf = INFINITY;
    float boxes[][4] = {
        {-50, -50, 1000, 1000}, // covers everything: drawn on the borders
        {nan, 0, 10, 10},       // skipped
        {0, 0, inf, 10},        // skipped
        {100, 100, 200, 200},   // outside: skipped
        {-20, -20, -5, -5},     // outside: skipped
        {30, 30, 10, 10},       // inverted: normalised
        {5, 5, 5, 5},           // empty: 1 pixel
        {63.9f, 47.9f, 64, 48}, // last pixel
    };
    const char *labels[8] = {"a\x01\xff" "b\ttab", NULL, "x", "y", "z", "inv", "", "corner"};
    float scores[8] = {0.5f, 1, 1, 1, 1, nan, 0.1f, 0.99f};
    fr_draw_boxes(&img, &boxes[0][0], labels, scores, 8);
    CHECK(!is_grey(&img, 0, 24, 128) && !is_grey(&img, 63, 24, 128)); // borders of box 0
    int n;
    str_to_any(&img, 11, 11, 18, 18, &n);
    CHECK(n >= 0);
    fr_draw_boxes(&img, &boxes[0][0], NULL, NULL, 8);
    fr_draw_boxes(&img, NULL, labels, scores, 8);
    fr_draw_boxes(NULL, &boxes[0][0], labels, scores, 8);
    fr_draw_boxes(&img, &boxes[0][0], labels, scores, 0);
    fr_image_free(&img);
    // 1x1 and 2x3 images with a long label: everything clipped, nothing written outside
    for (int s = 1; s <= 3; s++) {
        fr_image t = grey(s, s + 1, 0);
        float b[4] = {0, 0, (float)s, (float)s + 1};
        const char *l[1] = {"a very long label that does not fit anywhere at all, truncated at 48"};
        float sc[1] = {0.123f};
        fr_draw_boxes(&t, b, l, sc, 1);
        fr_image_free(&t);
    }
    // big image: thicker lines, scaled text
    fr_image big = grey(1700, 1650, 128);
    float bb[4] = {100, 100, 900, 900};
    const char *bl[1] = {"person"};
    fr_draw_boxes(&big, bb, bl, NULL, 1);
    CHECK(!is_grey(&big, 100, 500, 128) && !is_grey(&big, 104, 500, 128)); // 6 px at 1650
    CHECK(is_grey(&big, 106, 500, 128));
    fr_image_free(&big);
}

TEST(test_png_roundtrip) {
    // a noisy image, a flat one and a thin one
    int sizes[][2] = {{97, 61}, {1, 1}, {300, 2}, {2, 300}, {640, 480}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        fr_image img = grey(w, h, 0);
        uint32_t r = 12345;
        for (size_t i = 0; i < (size_t)w * h * 3; i++) {
            r = r * 1103515245u + 12345u;
            img.rgb[i] = k == 4 ? (unsigned char)((i / 3 % w) / 3 + (i / 3 / w) / 2 + (i % 3) * 40)
                                : (unsigned char)(r >> 24);
        }
        unsigned char *png;
        size_t n;
        fr_err e = {0};
        CHECK(fr_image_encode_png(&img, &png, &n, &e) == FR_OK);
        fr_image back;
        fr_image_limits lim;
        fr_image_limits_default(&lim);
        lim.max_aspect = 0;
        CHECKF(fr_image_decode(&back, png, n, &lim, 1, &e) == FR_OK, "%dx%d: %s", w, h, e.msg);
        CHECK(back.w == w && back.h == h && memcmp(back.rgb, img.rgb, (size_t)w * h * 3) == 0);
        if (k == 4) CHECKF(n < (size_t)w * h * 3 / 10, "%zu bytes", n); // a smooth image
        fr_image_free(&back);
        fr_free(png);
        fr_image_free(&img);
    }
    // a flat image compresses to almost nothing (long matches)
    fr_image flat = grey(500, 400, 77);
    unsigned char *png;
    size_t n;
    fr_err e = {0};
    CHECK(fr_image_encode_png(&flat, &png, &n, &e) == FR_OK);
    CHECK(n < 5000);
    fr_image back;
    CHECK(fr_image_decode(&back, png, n, NULL, 1, &e) == FR_OK);
    CHECK(back.w == 500 && memcmp(back.rgb, flat.rgb, 500 * 400 * 3) == 0);
    fr_image_free(&back);
    fr_free(png);
    fr_image_free(&flat);
    fr_image none = {0, 0, NULL};
    CHECK(fr_image_encode_png(&none, &png, &n, &e) == FR_ERR_INVALID && png == NULL);
}

TEST(test_write_png) {
    fr_image img;
    fr_err e = {0};
    CHECK(fr_image_load(&img, "tests/data/images/tiny.jpg", NULL, 1, &e) == FR_OK);
    float box[4] = {2, 3, 30, 20};
    const char *l[1] = {"kite"};
    fr_draw_boxes(&img, box, l, NULL, 1);
    mkdir("tests/tmp", 0755);
    const char *path = "tests/tmp/test_image_draw.png";
    CHECK(fr_image_write_png(path, &img, &e) == FR_OK);
    fr_image back;
    CHECK(fr_image_load(&back, path, NULL, 1, &e) == FR_OK);
    CHECK(back.w == img.w && back.h == img.h &&
          memcmp(back.rgb, img.rgb, (size_t)img.w * img.h * 3) == 0);
    fr_image_free(&back);
    remove(path);
    CHECK(fr_image_write_png("tests/tmp/no/such/dir/x.png", &img, &e) == FR_ERR_IO);
    CHECK(strstr(e.msg, "no/such/dir") != NULL);
    CHECK(fr_image_write_png("tests/tmp", &img, &e) == FR_ERR_IO); // a directory
    struct stat st; // a full disk, where the device exists (never create it as a file)
    if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode))
        CHECK(fr_image_write_png("/dev/full", &img, &e) == FR_ERR_IO);
    // allocation failures: each one a clean FR_ERR_NOMEM
    int k;
    for (k = 1; k < 100; k++) {
        unsigned char *png;
        size_t n;
        fr_alloc_fail_at(k);
        fr_status rc = fr_image_encode_png(&img, &png, &n, &e);
        int failed = fr_alloc_failed();
        fr_alloc_fail_at(0);
        if (!failed) {
            CHECK(rc == FR_OK);
            fr_free(png);
            break;
        }
        CHECKF(rc == FR_ERR_NOMEM && png == NULL, "allocation %d: %s", k, fr_status_name(rc));
    }
    CHECK(k > 2 && k < 100);
    fr_image_free(&img);
}

int main(void) {
    RUN(test_draw_box);
    RUN(test_draw_edge_cases);
    RUN(test_png_roundtrip);
    RUN(test_write_png);
    return harness_done(__FILE__);
}
