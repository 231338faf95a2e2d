/*
 * CCITT fax encoders for gatewayd: T.6 (Group 4, MMR) and T.4 two-dimensional
 * (Group 3 MR, with EOLs byte-aligned by fill bits and a closing RTC).
 *
 * Input: a bilevel page as packed rows, most significant bit first, 1 = black,
 * ``stride`` bytes per row; or a grey page (one byte a pixel) and a threshold, grey
 * below it being black, packed here row by row, with the photographic blocks of the
 * page screened (a clustered-dot halftone) instead. Output: the coded bit stream,
 * FillOrder 1 (MSB first), as a TIFF strip holds it.
 *
 * Why here and not libtiff: libtiff's encoder (through Pillow or ctypes) takes about
 * 10 ms for a dense text page at 1728x2292 and Pillow's path about 22 ms, more than
 * PDFium needs to draw the page; finding colour changes 64 pixels at a time makes
 * this one several times faster. Tests decode every output with libtiff and compare
 * the pixels.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* -- code tables (ITU-T T.4, tables 2 and 3): {code, length in bits} ---------------- */

typedef struct { uint16_t code; uint8_t bits; } Code;

static const Code WHITE_TERM[64] = {
    {0x35, 8}, {0x07, 6}, {0x07, 4}, {0x08, 4}, {0x0B, 4}, {0x0C, 4}, {0x0E, 4}, {0x0F, 4},
    {0x13, 5}, {0x14, 5}, {0x07, 5}, {0x08, 5}, {0x08, 6}, {0x03, 6}, {0x34, 6}, {0x35, 6},
    {0x2A, 6}, {0x2B, 6}, {0x27, 7}, {0x0C, 7}, {0x08, 7}, {0x17, 7}, {0x03, 7}, {0x04, 7},
    {0x28, 7}, {0x2B, 7}, {0x13, 7}, {0x24, 7}, {0x18, 7}, {0x02, 8}, {0x03, 8}, {0x1A, 8},
    {0x1B, 8}, {0x12, 8}, {0x13, 8}, {0x14, 8}, {0x15, 8}, {0x16, 8}, {0x17, 8}, {0x28, 8},
    {0x29, 8}, {0x2A, 8}, {0x2B, 8}, {0x2C, 8}, {0x2D, 8}, {0x04, 8}, {0x05, 8}, {0x0A, 8},
    {0x0B, 8}, {0x52, 8}, {0x53, 8}, {0x54, 8}, {0x55, 8}, {0x24, 8}, {0x25, 8}, {0x58, 8},
    {0x59, 8}, {0x5A, 8}, {0x5B, 8}, {0x4A, 8}, {0x4B, 8}, {0x32, 8}, {0x33, 8}, {0x34, 8},
};
static const Code BLACK_TERM[64] = {
    {0x37, 10}, {0x02, 3}, {0x03, 2}, {0x02, 2}, {0x03, 3}, {0x03, 4}, {0x02, 4}, {0x03, 5},
    {0x05, 6}, {0x04, 6}, {0x04, 7}, {0x05, 7}, {0x07, 7}, {0x04, 8}, {0x07, 8}, {0x18, 9},
    {0x17, 10}, {0x18, 10}, {0x08, 10}, {0x67, 11}, {0x68, 11}, {0x6C, 11}, {0x37, 11},
    {0x28, 11}, {0x17, 11}, {0x18, 11}, {0xCA, 12}, {0xCB, 12}, {0xCC, 12}, {0xCD, 12},
    {0x68, 12}, {0x69, 12}, {0x6A, 12}, {0x6B, 12}, {0xD2, 12}, {0xD3, 12}, {0xD4, 12},
    {0xD5, 12}, {0xD6, 12}, {0xD7, 12}, {0x6C, 12}, {0x6D, 12}, {0xDA, 12}, {0xDB, 12},
    {0x54, 12}, {0x55, 12}, {0x56, 12}, {0x57, 12}, {0x64, 12}, {0x65, 12}, {0x52, 12},
    {0x53, 12}, {0x24, 12}, {0x37, 12}, {0x38, 12}, {0x27, 12}, {0x28, 12}, {0x58, 12},
    {0x59, 12}, {0x2B, 12}, {0x2C, 12}, {0x5A, 12}, {0x66, 12}, {0x67, 12},
};
/* make-up codes for 64, 128, ..., 1728 (index run/64 - 1) */
static const Code WHITE_MAKEUP[27] = {
    {0x1B, 5}, {0x12, 5}, {0x17, 6}, {0x37, 7}, {0x36, 8}, {0x37, 8}, {0x64, 8}, {0x65, 8},
    {0x68, 8}, {0x67, 8}, {0xCC, 9}, {0xCD, 9}, {0xD2, 9}, {0xD3, 9}, {0xD4, 9}, {0xD5, 9},
    {0xD6, 9}, {0xD7, 9}, {0xD8, 9}, {0xD9, 9}, {0xDA, 9}, {0xDB, 9}, {0x98, 9}, {0x99, 9},
    {0x9A, 9}, {0x18, 6}, {0x9B, 9},
};
static const Code BLACK_MAKEUP[27] = {
    {0x0F, 10}, {0xC8, 12}, {0xC9, 12}, {0x5B, 12}, {0x33, 12}, {0x34, 12}, {0x35, 12},
    {0x6C, 13}, {0x6D, 13}, {0x4A, 13}, {0x4B, 13}, {0x4C, 13}, {0x4D, 13}, {0x72, 13},
    {0x73, 13}, {0x74, 13}, {0x75, 13}, {0x76, 13}, {0x77, 13}, {0x52, 13}, {0x53, 13},
    {0x54, 13}, {0x55, 13}, {0x5A, 13}, {0x5B, 13}, {0x64, 13}, {0x65, 13},
};
/* extended make-up codes, both colours, for 1792, 1856, ..., 2560 */
static const Code EXT_MAKEUP[13] = {
    {0x08, 11}, {0x0C, 11}, {0x0D, 11}, {0x12, 12}, {0x13, 12}, {0x14, 12}, {0x15, 12},
    {0x16, 12}, {0x17, 12}, {0x1C, 12}, {0x1D, 12}, {0x1E, 12}, {0x1F, 12},
};
static const Code PASS = {0x1, 4};       /* 0001 */
static const Code HORIZONTAL = {0x1, 3}; /* 001 */
/* vertical modes by a1 - b1 = -3 .. +3: VL3 VL2 VL1 V0 VR1 VR2 VR3 */
static const Code VERTICAL[7] = {
    {0x02, 7}, {0x02, 6}, {0x02, 3}, {0x1, 1}, {0x03, 3}, {0x03, 6}, {0x03, 7},
};
static const Code EOL = {0x001, 12};

/* -- bit writer --------------------------------------------------------------------- */

typedef struct {
    uint8_t *data;
    size_t size, capacity;
    uint64_t acc; /* pending bits, right-aligned */
    int count;    /* how many */
    int failed;
} Bits;

static int grow(Bits *b, size_t need) {
    if (b->size + need <= b->capacity) return 1;
    size_t capacity = b->capacity ? b->capacity : 65536;
    while (b->size + need > capacity) capacity *= 2;
    uint8_t *data = realloc(b->data, capacity);
    if (!data) { b->failed = 1; return 0; }
    b->data = data;
    b->capacity = capacity;
    return 1;
}

/* Append a code. Room for it must have been made with grow() (encode_page makes room
 * for a whole row at a time); whole 32-bit words leave the accumulator at once. */
static inline void put(Bits *b, uint32_t code, int bits) {
    b->acc = (b->acc << bits) | code;
    b->count += bits;
    if (b->count >= 32) {
        b->count -= 32;
        uint32_t word = (uint32_t)(b->acc >> b->count);
        uint8_t *out = b->data + b->size;
        out[0] = (uint8_t)(word >> 24);
        out[1] = (uint8_t)(word >> 16);
        out[2] = (uint8_t)(word >> 8);
        out[3] = (uint8_t)word;
        b->size += 4;
    }
}

static inline void put_code(Bits *b, Code c) { put(b, c.code, c.bits); }

static void flush(Bits *b) { /* pad the last byte with zero bits */
    if (!grow(b, 16)) return;
    while (b->count >= 8) { b->count -= 8; b->data[b->size++] = (uint8_t)(b->acc >> b->count); }
    if (b->count > 0) { b->data[b->size++] = (uint8_t)(b->acc << (8 - b->count)); b->count = 0; }
}

static void put_run(Bits *b, int run, int black) {
    const Code *term = black ? BLACK_TERM : WHITE_TERM;
    const Code *makeup = black ? BLACK_MAKEUP : WHITE_MAKEUP;
    while (run >= 2624) { put_code(b, EXT_MAKEUP[12]); run -= 2560; }
    if (run >= 64) {
        int m = run / 64; /* 1 .. 40 */
        put_code(b, m <= 27 ? makeup[m - 1] : EXT_MAKEUP[m - 28]);
        run -= m * 64;
    }
    put_code(b, term[run]);
}

/* -- colour changes ------------------------------------------------------------- */

/* Rows are held least significant bit first (bit k of byte j is pixel 8j + k): a
 * 64-bit little-endian load then has pixel ``base`` in bit 0, changes are found with
 * count-trailing-zeros, and grey rows pack with SSE2's movemask directly. */

static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The changing elements of a row, left to right: positions whose pixel differs from
 * the one before (the pixel before the row is white). Even entries start black runs,
 * odd entries white ones. Three copies of ``width`` follow as sentinels. The row is
 * padded with zero bytes to a multiple of 8 past its end. */
static int changes(const uint8_t *row, int width, int *out) {
    int n = 0;
    uint64_t previous = 0; /* the last pixel of the previous word, in bit 0 */
    for (int base = 0; base < width; base += 64) {
        uint64_t w = load_le64(row + (base >> 3));
        uint64_t diff = w ^ ((w << 1) | previous);
        if (width - base < 64) diff &= (1ULL << (width - base)) - 1;
        previous = w >> 63;
        while (diff) {
            out[n++] = base + __builtin_ctzll(diff);
            diff &= diff - 1;
        }
    }
    out[n] = out[n + 1] = out[n + 2] = width;
    return n;
}

/* Pack a grey row, least significant bit first: a pixel below ``threshold`` is black. */
static void pack_grey(const uint8_t *grey, int width, int threshold, uint8_t *out) {
    int x = 0;
#ifdef __SSE2__
    const __m128i limit = _mm_set1_epi8((char)(uint8_t)(threshold - 1));
    for (; x + 16 <= width; x += 16) {
        __m128i g = _mm_loadu_si128((const __m128i *)(grey + x));
        /* g <= threshold - 1  <=>  min(g, threshold - 1) == g */
        int mask = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(g, limit), g));
        out[x >> 3] = (uint8_t)mask;
        out[(x >> 3) + 1] = (uint8_t)(mask >> 8);
    }
#endif
    for (; x < width; x += 8) {
        uint8_t byte = 0;
        for (int bit = 0; bit < 8 && x + bit < width; bit++)
            byte |= (uint8_t)((grey[x + bit] < threshold) << bit);
        out[x >> 3] = byte;
    }
}

/* Copy a packed row given most significant bit first into least significant first. */
static uint8_t REVERSED[256];

static void init_reversed(void) {
    for (int i = 0; i < 256; i++) {
        uint8_t r = 0;
        for (int bit = 0; bit < 8; bit++)
            if (i & (1 << bit)) r |= (uint8_t)(0x80 >> bit);
        REVERSED[i] = r;
    }
}

static void copy_packed(const uint8_t *src, int width, uint8_t *out) {
    int bytes = (width + 7) / 8;
    for (int i = 0; i < bytes; i++) out[i] = REVERSED[src[i]];
    if (width & 7) out[bytes - 1] &= (uint8_t)((1u << (width & 7)) - 1);
}

/* -- coding one row ---------------------------------------------------------------- */

/* T.6 two-dimensional coding of a row given its changes (cur) and the reference
 * row's (ref). a0 starts on an imaginary white pixel before the row. */
static void code_row_2d(Bits *b, const int *cur, const int *ref, int width) {
    int a0 = -1, colour = 0, ia = 0, ib = 0;
    for (;;) {
        /* b1: the first change of the reference row right of a0 that starts a run of
           the colour opposite to a0's (even entries start black runs) */
        while (ref[ib] <= a0) ib++;
        int j = ib + ((ib & 1) != colour);
        int b1 = ref[j], b2 = ref[j + 1];
        int a1 = cur[ia];
        if (b2 < a1) { /* pass mode */
            put_code(b, PASS);
            a0 = b2;
        } else if (a1 - b1 >= -3 && a1 - b1 <= 3) { /* vertical mode */
            put_code(b, VERTICAL[a1 - b1 + 3]);
            a0 = a1;
            colour = !colour;
            ia += 1;
        } else { /* horizontal mode */
            int a2 = cur[ia + 1];
            put_code(b, HORIZONTAL);
            put_run(b, a1 - (a0 < 0 ? 0 : a0), colour);
            put_run(b, a2 - a1, !colour);
            a0 = a2;
            ia += 2;
        }
        if (a0 >= width) break;
    }
}

/* T.4 one-dimensional (Modified Huffman) coding: alternate runs, white first. */
static void code_row_1d(Bits *b, const int *cur, int count, int width) {
    int x = 0;
    for (int i = 0; i <= count; i++) {
        int next = i < count ? cur[i] : width;
        put_run(b, next - x, i & 1);
        x = next;
    }
}

/* -- the page ---------------------------------------------------------------------- */

typedef enum { G4, G3_2D } Scheme;

/* 16 grey pixels to 16 bits (pixel i in bit i): black where screened[i] < limit[i]. */
static inline unsigned below16(const uint8_t *screened, const uint8_t *limit) {
    unsigned mask = 0;
#ifdef __SSE2__
    const __m128i flip = _mm_set1_epi8((char)0x80); /* unsigned order via signed compare */
    __m128i a = _mm_xor_si128(_mm_loadu_si128((const __m128i *)screened), flip);
    __m128i b = _mm_xor_si128(_mm_loadu_si128((const __m128i *)limit), flip);
    mask = (unsigned)_mm_movemask_epi8(_mm_cmplt_epi8(a, b));
#else
    for (int i = 0; i < 16; i++) mask |= (unsigned)(screened[i] < limit[i]) << i;
#endif
    return mask;
}

/* A clustered-dot screen for the photographic parts of a grey page: blocks, and
 * rectangles (the images of a PDF page) screened whole. */
typedef struct {
    const uint8_t *mask;   /* per block, nonzero where photographic: rows x cols bytes */
    int block, cols;       /* block size in pixels (a multiple of 16), blocks per row */
    const int32_t *rects;  /* x0, y0, x1, y1 (exclusive) each, clipped to the page */
    int nrects;
    const uint8_t *tone;   /* 256 entries: grey before screening */
    const uint8_t *cell;   /* 8x8 thresholds */
} Screen;

/* Re-pack the photographic blocks of packed row y (LSB first) through the screen. */
static void screen_row(const Screen *s, const uint8_t *grey, int y, int width, uint8_t *row) {
    const uint8_t *flags = s->mask + (size_t)(y / s->block) * s->cols;
    uint8_t limit[16], toned[16];
    memcpy(limit, s->cell + (y & 7) * 8, 8);
    memcpy(limit + 8, s->cell + (y & 7) * 8, 8);
    for (int bx = 0; bx < s->cols; bx++) {
        if (!flags[bx]) continue;
        int x1 = (bx + 1) * s->block < width ? (bx + 1) * s->block : width;
        for (int x = bx * s->block; x < x1; x += 16) {
            int n = x1 - x < 16 ? x1 - x : 16;
            memset(toned, 255, sizeof toned); /* white past the last pixel */
            for (int i = 0; i < n; i++) toned[i] = s->tone[grey[x + i]];
            unsigned black = below16(toned, limit);
            row[x >> 3] = (uint8_t)black;
            row[(x >> 3) + 1] = (uint8_t)(black >> 8);
        }
    }
    /* rectangles: any column range, so 16 pixels from a multiple of 16 at a time,
     * merged into the row under a mask of the columns inside */
    for (int r = 0; r < s->nrects; r++) {
        const int32_t *rect = s->rects + 4 * r;
        if (y < rect[1] || y >= rect[3]) continue;
        for (int x = rect[0] & ~15; x < rect[2]; x += 16) {
            if (x >= rect[0] && x + 16 <= rect[2]) { /* wholly inside: as a block */
                for (int i = 0; i < 16; i++) toned[i] = s->tone[grey[x + i]];
                unsigned black = below16(toned, limit);
                row[x >> 3] = (uint8_t)black;
                row[(x >> 3) + 1] = (uint8_t)(black >> 8);
                continue;
            }
            unsigned inside = 0;
            for (int i = 0; i < 16; i++) {
                int in = x + i >= rect[0] && x + i < rect[2];
                toned[i] = in ? s->tone[grey[x + i]] : 255;
                inside |= (unsigned)in << i;
            }
            unsigned black = below16(toned, limit) & inside;
            unsigned old = row[x >> 3] | (unsigned)row[(x >> 3) + 1] << 8;
            unsigned merged = (old & ~inside) | black;
            row[x >> 3] = (uint8_t)merged;
            row[(x >> 3) + 1] = (uint8_t)(merged >> 8);
        }
    }
}

static int encode_page(Bits *b, const uint8_t *data, int width, int height, Py_ssize_t stride,
                       Scheme scheme, int k, int threshold, const Screen *screen) {
    size_t bytes = (size_t)((width + 7) / 8);
    size_t padded = (bytes + 15) & ~(size_t)7;
    uint8_t *row = calloc(1, padded);
    int *lists = malloc(2 * ((size_t)width + 4) * sizeof(int));
    if (!row || !lists) { free(row); free(lists); return 0; }
    int *ref = lists, *cur = lists + width + 4;
    ref[0] = ref[1] = ref[2] = width; /* the first reference row is white */
    /* the most a row can take: every pixel a change, each coded in horizontal mode
     * (3 + 2 x (12 + 13) bits for two changes), plus EOL, tag and fill */
    size_t row_room = ((size_t)width + 2) * 4 + 16;
    for (int y = 0; y < height; y++) {
        if (!grow(b, row_room)) break;
        if (threshold) {
            pack_grey(data + (size_t)y * stride, width, threshold, row);
            if (screen) screen_row(screen, data + (size_t)y * stride, y, width, row);
            if (width & 7) row[bytes - 1] &= (uint8_t)((1u << (width & 7)) - 1);
        } else {
            copy_packed(data + (size_t)y * stride, width, row);
        }
        int count = changes(row, width, cur);
        if (scheme == G4) {
            code_row_2d(b, cur, ref, width);
        } else {
            int one_d = (y % k) == 0;
            /* fill bits so that the EOL ends on a byte boundary; the tag bit follows */
            int fill = (8 - ((b->count + 12) & 7)) & 7;
            if (fill) put(b, 0, fill);
            put_code(b, EOL);
            put(b, one_d ? 1 : 0, 1);
            if (one_d) code_row_1d(b, cur, count, width);
            else code_row_2d(b, cur, ref, width);
        }
        int *swap = ref; ref = cur; cur = swap;
    }
    if (!b->failed && grow(b, 64) && scheme == G4) {
        put_code(b, EOL); /* EOFB */
        put_code(b, EOL);
    } else if (!b->failed) {
        for (int i = 0; i < 6; i++) { put_code(b, EOL); put(b, 1, 1); } /* RTC */
    }
    flush(b);
    free(row);
    free(lists);
    return !b->failed;
}

static PyObject *encode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"rows", "width", "height", "stride", "scheme", "k", "threshold",
                               "mask", "block", "tone", "cell", "rects", NULL};
    Py_buffer view, mask = {0}, tone = {0}, cell = {0}, rects = {0};
    int width, height, scheme, k = 1, threshold = 0, block = 16;
    Py_ssize_t stride;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*iinp|iiz*iz*z*z*", keywords, &view,
                                     &width, &height, &stride, &scheme, &k, &threshold, &mask,
                                     &block, &tone, &cell, &rects))
        return NULL;
    Py_ssize_t row_bytes = threshold ? width : (width + 7) / 8;
    int screened = mask.buf != NULL;
    int cols = block > 0 ? (width + block - 1) / block : 0;
    int rows = block > 0 ? (height + block - 1) / block : 0;
    int nrects = rects.buf ? (int)(rects.len / 16) : 0;
    const int32_t *rect = rects.buf;
    const char *problem = NULL;
    if (width < 1 || height < 0 || stride < row_bytes || k < 1 || threshold < 0 ||
        threshold > 255 || view.len < stride * (Py_ssize_t)height)
        problem = "the buffer does not hold height rows of stride bytes";
    else if (screened && (!threshold || block < 16 || block % 16 || tone.len != 256 ||
                          cell.len != 64 || mask.len < (Py_ssize_t)rows * cols))
        problem = "a screen needs grey rows, a mask of blocks (a multiple of 16 pixels), "
                  "256 tones and an 8x8 cell";
    else if (rects.buf && (!screened || rects.len % 16))
        problem = "rectangles are screened with a mask: x0, y0, x1, y1 as 32-bit integers";
    for (int r = 0; !problem && r < nrects; r++)
        if (rect[4 * r] < 0 || rect[4 * r + 1] < 0 || rect[4 * r + 2] > width ||
            rect[4 * r + 3] > height || rect[4 * r] > rect[4 * r + 2] ||
            rect[4 * r + 1] > rect[4 * r + 3])
            problem = "a rectangle lies outside the page";
    Bits b = {0};
    int ok = 0;
    if (!problem) {
        Screen screen = {mask.buf, block, cols, rect, nrects, tone.buf, cell.buf};
        Py_BEGIN_ALLOW_THREADS
        ok = encode_page(&b, view.buf, width, height, stride, scheme ? G3_2D : G4, k, threshold,
                         screened ? &screen : NULL);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (mask.buf) PyBuffer_Release(&mask);
    if (tone.buf) PyBuffer_Release(&tone);
    if (cell.buf) PyBuffer_Release(&cell);
    if (rects.buf) PyBuffer_Release(&rects);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    if (!ok) {
        free(b.data);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.data, (Py_ssize_t)b.size);
    free(b.data);
    return out;
}

/* Whether any of ``width`` grey pixels lies strictly between ``low`` and ``high``. */
static int has_midtone(const uint8_t *row, int width, int low, int high) {
    int x = 0;
#ifdef __SSE2__
    /* (g - (low + 1)) as unsigned <= high - low - 2  <=>  low < g < high */
    const __m128i shift = _mm_set1_epi8((char)(uint8_t)(low + 1));
    const __m128i span = _mm_set1_epi8((char)(uint8_t)(high - low - 2));
    for (; x + 16 <= width; x += 16) {
        __m128i g = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(row + x)), shift);
        if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(g, span), g))) return 1;
    }
#endif
    for (; x < width; x++)
        if (row[x] > low && row[x] < high) return 1;
    return 0;
}

/* Whether any pixel of every ``step``-th row lies strictly between ``low`` and
 * ``high``: text and paths drawn without anti-aliasing are pure black and white, so
 * grey there means an image or a shaded fill. */
static PyObject *has_midtones(PyObject *self, PyObject *args) {
    Py_buffer view;
    int width, height, step, low, high;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*iiniii", &view, &width, &height, &stride, &step, &low,
                          &high))
        return NULL;
    if (width < 1 || height < 0 || step < 1 || stride < width || low < 0 || high > 255 ||
        low >= high || view.len < stride * (Py_ssize_t)height) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    int found = 0;
    const uint8_t *data = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int y = 0; y < height && !found; y += step)
        found = has_midtone(data + (size_t)y * stride, width, low, high);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

/* Per block of ``block`` x ``block`` pixels, 1 if at least ``share``/256 of its pixels
 * lie strictly between ``low`` and ``high`` (a photograph or a shaded fill), else 0.
 * Blocks at the right and bottom edges may be partial. Returns rows x cols bytes. */
static PyObject *photo_blocks(PyObject *self, PyObject *args) {
    Py_buffer view;
    int width, height, block, low, high, share;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*iiniiii", &view, &width, &height, &stride, &block, &low,
                          &high, &share))
        return NULL;
    if (width < 1 || height < 1 || block < 1 || stride < width || low < 0 || high > 255 ||
        low >= high || share < 0 || view.len < stride * (Py_ssize_t)height) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    int rows = (height + block - 1) / block, cols = (width + block - 1) / block;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)rows * cols);
    uint32_t *counts = calloc((size_t)cols, sizeof *counts);
    if (out == NULL || counts == NULL) {
        Py_XDECREF(out);
        free(counts);
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    uint8_t *flags = (uint8_t *)PyBytes_AS_STRING(out);
    const uint8_t *data = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int by = 0; by < rows; by++) {
        int y0 = by * block, y1 = y0 + block < height ? y0 + block : height;
        memset(counts, 0, (size_t)cols * sizeof *counts);
        int any = 0; /* most bands of a page hold no mid-grey at all: look first */
        for (int y = y0; y < y1 && !any; y++) any = has_midtone(data + (size_t)y * stride, width, low, high);
        for (int y = any ? y0 : y1; y < y1; y++) {
            const uint8_t *row = data + (size_t)y * stride;
            for (int bx = 0; bx < cols; bx++) {
                int x = bx * block, x1 = x + block < width ? x + block : width;
                uint32_t n = 0;
#ifdef __SSE2__
                const __m128i shift = _mm_set1_epi8((char)(uint8_t)(low + 1));
                const __m128i span = _mm_set1_epi8((char)(uint8_t)(high - low - 2));
                for (; x + 16 <= x1; x += 16) {
                    __m128i g = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(row + x)), shift);
                    n += (uint32_t)__builtin_popcount(
                        (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(g, span), g)));
                }
#endif
                for (; x < x1; x++) n += row[x] > low && row[x] < high;
                counts[bx] += n;
            }
        }
        for (int bx = 0; bx < cols; bx++) {
            int w = (bx + 1) * block < width ? block : width - bx * block;
            flags[(size_t)by * cols + bx] =
                (uint64_t)counts[bx] * 256 >= (uint64_t)share * (uint64_t)(w * (y1 - y0));
        }
    }
    Py_END_ALLOW_THREADS
    free(counts);
    PyBuffer_Release(&view);
    return out;
}

/* Strokes lost at normal resolution, put back. PDFium drawing at 98 lines per inch
 * fills the pixels whose centre a shape covers (with its glyphs fitted to that grid),
 * so a stroke about half a row tall vanishes where it falls between two centres: a
 * hairline rule, the top arch of a 6 pt n, a serif. The same page drawn at 196 lines
 * per inch (``fine``, 2 x height rows) has them: for every black run of each of its
 * columns (fine rows s to e), when ``page`` has no black in that column on the normal
 * rows the run covers, give or take ``slack`` rows, the normal pixel under the middle
 * of the run is made black. Strokes that are there already are left alone (and so the
 * counters beside them); so are runs with a pixel above ``low`` (a photograph's dark
 * parts, a scan's soft edges: grey, not a stroke). ``page`` is changed in place. */
/* Bit i set where pixel i of up to 16 lies strictly between ``low`` and ``high``
 * (low + 2 <= high); ``n`` pixels are read. */
static inline unsigned between16(const uint8_t *p, int n, int low, int high) {
    unsigned mask = 0;
#ifdef __SSE2__
    if (n == 16) {
        const __m128i shift = _mm_set1_epi8((char)(uint8_t)(low + 1));
        const __m128i span = _mm_set1_epi8((char)(uint8_t)(high - low - 2));
        __m128i g = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)p), shift);
        return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(g, span), g));
    }
#endif
    for (int i = 0; i < n; i++) mask |= (unsigned)(p[i] > low && p[i] < high) << i;
    return mask;
}

/* Put back the run that ended in column x at fine row ``end`` (exclusive), unless the
 * normal page shows black on the rows it covers, give or take ``slack``. */
static void put_back(uint8_t *out, Py_ssize_t stride, int width, int height, int threshold,
                     int slack, int x, int begin, int end) {
    int first = begin / 2, last = (end - 1) / 2; /* normal rows covered */
    int lo = first - slack < 0 ? 0 : first - slack;
    int hi = last + slack >= height ? height - 1 : last + slack;
    for (int n = lo; n <= hi; n++)
        if (out[(size_t)n * stride + x] < threshold) return;
    int at = (begin + end - 1) / 4; /* under the middle of the run, unless */
    for (int n = first; n <= last && n < height; n++) { /* beside the next columns' black */
        const uint8_t *o = out + (size_t)n * stride;
        if ((x > 0 && o[x - 1] < threshold) || (x + 1 < width && o[x + 1] < threshold)) {
            at = n;
            break;
        }
    }
    out[(size_t)at * stride + x] = 0;
}

static PyObject *add_strokes(PyObject *self, PyObject *args) {
    Py_buffer page, fine;
    int width, height, threshold, low, slack;
    Py_ssize_t stride, fine_stride;
    if (!PyArg_ParseTuple(args, "w*y*iinniii", &page, &fine, &width, &height, &stride,
                          &fine_stride, &threshold, &low, &slack))
        return NULL;
    if (width < 1 || height < 0 || threshold < 2 || threshold > 255 || slack < 0 || low < 0 ||
        low + 2 > threshold || stride < width || fine_stride < width ||
        page.len < stride * (Py_ssize_t)height ||
        fine.len < fine_stride * (Py_ssize_t)height * 2) {
        PyBuffer_Release(&page);
        PyBuffer_Release(&fine);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    int chunks = (width + 15) / 16;
    int *start = malloc((size_t)width * sizeof *start);    /* fine row a run began */
    uint8_t *soft = calloc((size_t)width, 1);              /* a grey pixel in the run */
    uint16_t *before = calloc((size_t)chunks, sizeof *before); /* last row's black */
    if (!start || !soft || !before) {
        free(start);
        free(soft);
        free(before);
        PyBuffer_Release(&page);
        PyBuffer_Release(&fine);
        return PyErr_NoMemory();
    }
    uint8_t *out = page.buf;
    const uint8_t *hi = fine.buf;
    Py_BEGIN_ALLOW_THREADS
    /* row by row, 16 columns at a time: only where black begins or ends in a column
     * is there work (most of a page is white, or the middle of a stem) */
    for (int y = 0; y <= 2 * height; y++) {
        const uint8_t *row = y < 2 * height ? hi + (size_t)y * fine_stride : NULL;
        for (int c = 0; c < chunks; c++) {
            int x = 16 * c, n = width - x < 16 ? width - x : 16;
            unsigned black = 0, grey = 0;
            if (row) { /* black: below threshold; soft black: between low and threshold */
                black = between16(row + x, n, -1, threshold) & 0xFFFFu;
                grey = black ? between16(row + x, n, low, threshold) : 0;
            }
            for (unsigned g = grey; g; g &= g - 1) soft[x + __builtin_ctz(g)] = 1;
            for (unsigned d = black ^ before[c]; d; d &= d - 1) {
                int i = __builtin_ctz(d), col = x + i;
                if (black >> i & 1) { /* a run begins */
                    start[col] = y;
                    soft[col] = (uint8_t)(grey >> i & 1);
                } else if (!soft[col]) { /* a run of true black ends */
                    put_back(out, stride, width, height, threshold, slack, col, start[col], y);
                }
            }
            before[c] = (uint16_t)black;
        }
    }
    Py_END_ALLOW_THREADS
    free(start);
    free(soft);
    free(before);
    PyBuffer_Release(&page);
    PyBuffer_Release(&fine);
    Py_RETURN_NONE;
}

/* The characters of a PDFium text page, read through PDFium's own functions (their
 * addresses, from pypdfium2): per character its code point (uint32), the address of
 * its text object and its origin in page space (doubles). One call instead of four
 * ctypes calls a character. */
typedef unsigned int (*get_unicode_fn)(void *, int);
typedef void *(*get_object_fn)(void *, int);
typedef int (*get_origin_fn)(void *, int, double *, double *);

static PyObject *text_chars(PyObject *self, PyObject *args) {
    unsigned long long page, unicode_fn, object_fn, origin_fn;
    int count;
    if (!PyArg_ParseTuple(args, "KiKKK", &page, &count, &unicode_fn, &object_fn, &origin_fn))
        return NULL;
    if (!page || count < 0 || !unicode_fn || !object_fn || !origin_fn) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    PyObject *codes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * 4);
    PyObject *objects = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * 8);
    PyObject *origins = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)count * 16);
    if (!codes || !objects || !origins) {
        Py_XDECREF(codes);
        Py_XDECREF(objects);
        Py_XDECREF(origins);
        return NULL;
    }
    uint32_t *code = (uint32_t *)PyBytes_AS_STRING(codes);
    uint64_t *object = (uint64_t *)PyBytes_AS_STRING(objects);
    double *origin = (double *)PyBytes_AS_STRING(origins);
    void *text_page = (void *)(uintptr_t)page;
    get_unicode_fn get_unicode = (get_unicode_fn)(uintptr_t)unicode_fn;
    get_object_fn get_object = (get_object_fn)(uintptr_t)object_fn;
    get_origin_fn get_origin = (get_origin_fn)(uintptr_t)origin_fn;
    for (int i = 0; i < count; i++) {
        code[i] = get_unicode(text_page, i);
        object[i] = (uint64_t)(uintptr_t)get_object(text_page, i);
        if (!get_origin(text_page, i, &origin[2 * i], &origin[2 * i + 1]))
            origin[2 * i] = origin[2 * i + 1] = 0.0;
    }
    return Py_BuildValue("NNN", codes, objects, origins);
}

/* Stamp glyphs black (0) onto a grey page: glyph g's black pixels are the offsets
 * rows[starts[g]..starts[g+1]), cols[...] from its origin; character i is glyph
 * glyph[i] with its origin at (x[i], y[i]). Pixels outside the box x0..x1, y0..y1
 * (exclusive) are left alone. All arrays are int32. */
static PyObject *stamp(PyObject *self, PyObject *args) {
    Py_buffer page, rows, cols, starts, glyph, xs, ys;
    int width, height, x0, y0, x1, y1;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "w*iiniiiiy*y*y*y*y*y*", &page, &width, &height, &stride, &x0,
                          &y0, &x1, &y1, &rows, &cols, &starts, &glyph, &xs, &ys))
        return NULL;
    Py_ssize_t offsets = rows.len / 4, glyphs = starts.len / 4 - 1, chars = glyph.len / 4;
    int ok = width >= 1 && height >= 0 && stride >= width &&
             page.len >= stride * (Py_ssize_t)height && x0 >= 0 && y0 >= 0 && x1 <= width &&
             y1 <= height && rows.len % 4 == 0 && cols.len == rows.len && starts.len % 4 == 0 &&
             glyphs >= 0 && glyph.len % 4 == 0 && xs.len == glyph.len && ys.len == glyph.len;
    const int32_t *start = starts.buf, *which = glyph.buf;
    for (Py_ssize_t g = 0; ok && g <= glyphs; g++)
        ok = start[g] >= 0 && start[g] <= offsets && (g == 0 || start[g] >= start[g - 1]);
    for (Py_ssize_t i = 0; ok && i < chars; i++) ok = which[i] >= 0 && which[i] < glyphs;
    if (!ok) {
        PyBuffer_Release(&page);
        PyBuffer_Release(&rows);
        PyBuffer_Release(&cols);
        PyBuffer_Release(&starts);
        PyBuffer_Release(&glyph);
        PyBuffer_Release(&xs);
        PyBuffer_Release(&ys);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    uint8_t *out = page.buf;
    const int32_t *dy = rows.buf, *dx = cols.buf, *x = xs.buf, *y = ys.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < chars; i++) {
        int32_t g = which[i];
        for (int32_t k = start[g]; k < start[g + 1]; k++) {
            int64_t r = (int64_t)y[i] + dy[k], c = (int64_t)x[i] + dx[k];
            if (r >= y0 && r < y1 && c >= x0 && c < x1) out[r * stride + c] = 0;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&page);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&cols);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&glyph);
    PyBuffer_Release(&xs);
    PyBuffer_Release(&ys);
    Py_RETURN_NONE;
}

/* How many pixels of a rectangle lie strictly between ``low`` and ``high``. */
static PyObject *count_midtones(PyObject *self, PyObject *args) {
    Py_buffer view;
    int width, height, x0, y0, x1, y1, low, high;
    Py_ssize_t stride;
    if (!PyArg_ParseTuple(args, "y*iiniiiiii", &view, &width, &height, &stride, &x0, &y0,
                          &x1, &y1, &low, &high))
        return NULL;
    if (width < 1 || height < 0 || stride < width || x0 < 0 || y0 < 0 || x1 > width ||
        y1 > height || x0 > x1 || y0 > y1 || low < 0 || high > 255 || low + 1 >= high ||
        view.len < stride * (Py_ssize_t)height) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    long long n = 0;
    const uint8_t *data = view.buf;
    Py_BEGIN_ALLOW_THREADS
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = data + (size_t)y * stride;
        int x = x0;
#ifdef __SSE2__
        const __m128i shift = _mm_set1_epi8((char)(uint8_t)(low + 1));
        const __m128i span = _mm_set1_epi8((char)(uint8_t)(high - low - 2));
        for (; x + 16 <= x1; x += 16) {
            __m128i g = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(row + x)), shift);
            n += __builtin_popcount(
                (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(g, span), g)));
        }
#endif
        for (; x < x1; x++) n += row[x] > low && row[x] < high;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromLongLong(n);
}

static PyMethodDef methods[] = {
    {"add_strokes", add_strokes, METH_VARARGS,
     "add_strokes(page, fine, width, height, stride, fine_stride, threshold, low, slack): "
     "make black, in place, the middle of every black run (no pixel above low) of the "
     "columns of fine (the page drawn at twice the vertical resolution) that page shows "
     "nowhere within slack rows."},
    {"text_chars", text_chars, METH_VARARGS,
     "text_chars(text_page, count, get_unicode, get_text_object, get_char_origin) -> "
     "(codes, objects, origins): a PDFium text page's characters through the addresses "
     "of its FPDFText_GetUnicode, FPDFText_GetTextObject and FPDFText_GetCharOrigin: "
     "uint32 code points, uint64 object addresses, float64 x, y pairs."},
    {"stamp", stamp, METH_VARARGS,
     "stamp(page, width, height, stride, x0, y0, x1, y1, rows, cols, starts, glyph, x, y): "
     "make black, in place, the pixels of each character's glyph (offsets rows/cols "
     "from starts[g] to starts[g+1], int32) at its origin (x, y), inside the box."},
    {"count_midtones", count_midtones, METH_VARARGS,
     "count_midtones(grey, width, height, stride, x0, y0, x1, y1, low, high) -> int: the "
     "pixels of the rectangle strictly between low and high."},
    {"photo_blocks", photo_blocks, METH_VARARGS,
     "photo_blocks(grey, width, height, stride, block, low, high, share) -> bytes: per "
     "block, 1 where at least share/256 of the pixels lie strictly between low and high."},

    {"has_midtones", has_midtones, METH_VARARGS,
     "has_midtones(grey, width, height, stride, step, low, high) -> bool: any pixel of "
     "every step-th row strictly between low and high."},
    {"encode", (PyCFunction)(void (*)(void))encode, METH_VARARGS | METH_KEYWORDS,
     "encode(rows, width, height, stride, scheme, k=1, threshold=0, mask=None, block=16, "
     "tone=None, cell=None, rects=None) -> bytes\n\n"
     "Code a page: scheme false for CCITT T.6 (G4), true for T.4 2-D (G3, a 1-D line "
     "every k lines, EOLs byte-aligned, RTC at the end). threshold 0: rows are packed "
     "1-bit (MSB first, 1 = black); otherwise one grey byte a pixel, below threshold "
     "black, except in the blocks mask marks (block x block pixels, rows x cols bytes), "
     "which are screened: black where tone[grey] is below the 8x8 cell's entry; rects "
     "(x0, y0, x1, y1 as 32-bit integers, with a mask) are screened too. The GIL is "
     "released while coding."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fax", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fax(void) {
    init_reversed();
    return PyModule_Create(&module);
}
