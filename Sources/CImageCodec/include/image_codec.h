#ifndef ERRAND_IMAGE_CODEC_H
#define ERRAND_IMAGE_CODEC_H

#include <stddef.h>
#include <stdint.h>

/// Largest image either function accepts, in pixels (guards against decompression bombs).
#define ERRAND_IMAGE_MAX_PIXELS (64u * 1024u * 1024u)

/// Decodes a PNG or JPEG image held in memory into 8-bit grayscale pixels (row-major, no padding).
/// Returns 0 on success and sets *pixels (free with errand_image_free), *width and *height.
/// On failure returns -1, leaves *pixels NULL and writes a human-readable reason into err.
int errand_image_decode_gray(const uint8_t *bytes, size_t length,
                             uint8_t **pixels, uint32_t *width, uint32_t *height,
                             char *err, size_t err_length);

/// Encodes 8-bit grayscale pixels (row-major, no padding) as a PNG file image in memory.
/// Returns 0 on success and sets *out (free with errand_image_free) and *out_length.
/// On failure returns -1 and writes a human-readable reason into err.
int errand_png_encode_gray(const uint8_t *pixels, uint32_t width, uint32_t height,
                           uint8_t **out, size_t *out_length,
                           char *err, size_t err_length);

/// Frees memory returned by the functions above.
void errand_image_free(void *pointer);

#endif
