#include "image_codec.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>

static void set_error(char *err, size_t err_length, const char *message) {
    if (err != NULL && err_length > 0) {
        snprintf(err, err_length, "%s", message);
    }
}

static int is_png(const uint8_t *bytes, size_t length) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    return length >= 8 && memcmp(bytes, signature, 8) == 0;
}

static int is_jpeg(const uint8_t *bytes, size_t length) {
    return length >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

static int decode_png(const uint8_t *bytes, size_t length,
                      uint8_t **pixels, uint32_t *width, uint32_t *height,
                      char *err, size_t err_length) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes, length)) {
        char message[160];
        snprintf(message, sizeof message, "not a readable PNG image (%s)", image.message);
        set_error(err, err_length, message);
        return -1;
    }
    if ((uint64_t)image.width * (uint64_t)image.height > ERRAND_IMAGE_MAX_PIXELS) {
        png_image_free(&image);
        set_error(err, err_length, "PNG image is too large (more than 64 megapixels)");
        return -1;
    }
    image.format = PNG_FORMAT_GRAY;
    size_t size = PNG_IMAGE_SIZE(image);
    uint8_t *buffer = malloc(size > 0 ? size : 1);
    if (buffer == NULL) {
        png_image_free(&image);
        set_error(err, err_length, "out of memory while decoding PNG image");
        return -1;
    }
    // White background for any transparency: QR codes are dark modules on light.
    png_color background = {255, 255, 255};
    if (!png_image_finish_read(&image, &background, buffer, 0, NULL)) {
        char message[160];
        snprintf(message, sizeof message, "PNG image is damaged (%s)", image.message);
        free(buffer);
        png_image_free(&image);
        set_error(err, err_length, message);
        return -1;
    }
    *pixels = buffer;
    *width = image.width;
    *height = image.height;
    return 0;
}

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void jpeg_fail(j_common_ptr info) {
    struct jpeg_failure *failure = (struct jpeg_failure *)info->err;
    (*info->err->format_message)(info, failure->message);
    longjmp(failure->jump, 1);
}

static void jpeg_quiet(j_common_ptr info, int level) {
    (void)info;
    (void)level;
}

static int decode_jpeg(const uint8_t *bytes, size_t length,
                       uint8_t **pixels, uint32_t *width, uint32_t *height,
                       char *err, size_t err_length) {
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    uint8_t *volatile buffer = NULL;
    memset(&failure, 0, sizeof failure);
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_quiet;
    if (setjmp(failure.jump)) {
        char message[JMSG_LENGTH_MAX + 64];
        snprintf(message, sizeof message, "JPEG image is damaged (%s)", failure.message);
        jpeg_destroy_decompress(&info);
        free(buffer);
        set_error(err, err_length, message);
        return -1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, (unsigned char *)bytes, (unsigned long)length);
    jpeg_read_header(&info, TRUE);
    if ((uint64_t)info.image_width * (uint64_t)info.image_height > ERRAND_IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&info);
        set_error(err, err_length, "JPEG image is too large (more than 64 megapixels)");
        return -1;
    }
    info.out_color_space = JCS_GRAYSCALE;
    jpeg_start_decompress(&info);
    size_t row = (size_t)info.output_width * (size_t)info.output_components;
    buffer = malloc(row * info.output_height + 1);
    if (buffer == NULL) {
        jpeg_destroy_decompress(&info);
        set_error(err, err_length, "out of memory while decoding JPEG image");
        return -1;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW line = buffer + (size_t)info.output_scanline * row;
        jpeg_read_scanlines(&info, &line, 1);
    }
    *width = info.output_width;
    *height = info.output_height;
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    *pixels = buffer;
    return 0;
}

int errand_image_decode_gray(const uint8_t *bytes, size_t length,
                             uint8_t **pixels, uint32_t *width, uint32_t *height,
                             char *err, size_t err_length) {
    *pixels = NULL;
    *width = 0;
    *height = 0;
    if (bytes == NULL || length == 0) {
        set_error(err, err_length, "the image file is empty");
        return -1;
    }
    if (is_png(bytes, length)) {
        return decode_png(bytes, length, pixels, width, height, err, err_length);
    }
    if (is_jpeg(bytes, length)) {
        return decode_jpeg(bytes, length, pixels, width, height, err, err_length);
    }
    set_error(err, err_length, "not a PNG or JPEG image");
    return -1;
}

int errand_png_encode_gray(const uint8_t *pixels, uint32_t width, uint32_t height,
                           uint8_t **out, size_t *out_length,
                           char *err, size_t err_length) {
    *out = NULL;
    *out_length = 0;
    if (width == 0 || height == 0 || (uint64_t)width * (uint64_t)height > ERRAND_IMAGE_MAX_PIXELS) {
        set_error(err, err_length, "image size out of range");
        return -1;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = PNG_FORMAT_GRAY;
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) {
        char message[160];
        snprintf(message, sizeof message, "cannot encode PNG (%s)", image.message);
        set_error(err, err_length, message);
        return -1;
    }
    uint8_t *buffer = malloc(size);
    if (buffer == NULL) {
        set_error(err, err_length, "out of memory while encoding PNG");
        return -1;
    }
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) {
        char message[160];
        snprintf(message, sizeof message, "cannot encode PNG (%s)", image.message);
        free(buffer);
        set_error(err, err_length, message);
        return -1;
    }
    *out = buffer;
    *out_length = size;
    return 0;
}

void errand_image_free(void *pointer) {
    free(pointer);
}
