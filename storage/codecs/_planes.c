/*
 * Native core of the float-planes codec (codec 2): the byte-plane split and join, and a Huffman coder for the
 * exponent plane whose output is an ordinary zstd frame (RFC 8878). Also the delta codec's (codec 3) transform:
 * XOR with the base object and the split into byte planes, and back.
 *
 * Why a zstd frame: the exponent plane is coded best by an order-0 entropy coder with no string matching
 * (BASELINES.md), which libzstd cannot be asked to produce, but a zstd frame may consist of blocks whose literals
 * are Huffman-coded and which carry no sequences at all. So this file writes exactly that, and any zstd decoder
 * (libzstd's fast Huff0 decoder through the `zstandard` package here; any RFC 8878 reader in a hundred years)
 * reads it back. The stored format is the one docs/FORMAT.md already specifies for a zstd plane: nothing new to
 * specify, and objects written before this file existed keep reading.
 *
 * Every function works on caller-provided buffers and releases the GIL, so chunks code on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

/* ------------------------------------------------------------------------------------------------------------
 * Plane split and join (the element layout is specified in floatplanes.py and docs/FORMAT.md)
 * ------------------------------------------------------------------------------------------------------------ */

enum { KIND_BF16 = 1, KIND_F16 = 2, KIND_F32 = 3 };

static int kind_width(int kind) { return kind == KIND_F32 ? 4 : 2; }
static int kind_planes(int kind) { return kind == KIND_BF16 ? 2 : kind == KIND_F16 ? 3 : 4; }

#if defined(__SSE2__)
/* 16 elements at a time with SSE2 (every x86-64 has it): the element bytes are gathered into one vector per byte
 * position with shifts, masks and saturating packs (every lane holds at most 255, so nothing saturates), then the
 * planes are formed bytewise. Measured about 2-3x the scalar loop below; the planes are the same bytes. */
static __m128i bytes_of_u32(__m128i v0, __m128i v1, __m128i v2, __m128i v3, int shift)
{
    const __m128i low = _mm_set1_epi32(0xFF);
    __m128i a = _mm_and_si128(_mm_srli_epi32(v0, shift), low), b = _mm_and_si128(_mm_srli_epi32(v1, shift), low);
    __m128i c = _mm_and_si128(_mm_srli_epi32(v2, shift), low), d = _mm_and_si128(_mm_srli_epi32(v3, shift), low);
    return _mm_packus_epi16(_mm_packs_epi32(a, b), _mm_packs_epi32(c, d));
}

static Py_ssize_t split_planes_sse2(const uint8_t *src, Py_ssize_t n, int kind, uint8_t **p)
{
    const __m128i low16 = _mm_set1_epi16(0xFF), sign = _mm_set1_epi8((char)0x80), seven = _mm_set1_epi8(0x7F);
    const __m128i one = _mm_set1_epi8(1);
    Py_ssize_t i = 0;
    if (kind == KIND_F32) {
        for (; i + 16 <= n; i += 16) {
            const uint8_t *b = src + 4 * i;
            __m128i v0 = _mm_loadu_si128((const __m128i *)b), v1 = _mm_loadu_si128((const __m128i *)(b + 16));
            __m128i v2 = _mm_loadu_si128((const __m128i *)(b + 32)), v3 = _mm_loadu_si128((const __m128i *)(b + 48));
            __m128i b0 = bytes_of_u32(v0, v1, v2, v3, 0), b1 = bytes_of_u32(v0, v1, v2, v3, 8);
            __m128i b2 = bytes_of_u32(v0, v1, v2, v3, 16), b3 = bytes_of_u32(v0, v1, v2, v3, 24);
            /* p0 = (b3 << 1) | (b2 >> 7); p1 = (b3 & 0x80) | (b2 & 0x7F) */
            __m128i p0 = _mm_or_si128(_mm_add_epi8(b3, b3), _mm_and_si128(_mm_srli_epi16(b2, 7), one));
            __m128i p1 = _mm_or_si128(_mm_and_si128(b3, sign), _mm_and_si128(b2, seven));
            _mm_storeu_si128((__m128i *)(p[0] + i), p0);
            _mm_storeu_si128((__m128i *)(p[1] + i), p1);
            _mm_storeu_si128((__m128i *)(p[2] + i), b1);
            _mm_storeu_si128((__m128i *)(p[3] + i), b0);
        }
    } else {
        for (; i + 16 <= n; i += 16) {
            const uint8_t *b = src + 2 * i;
            __m128i v0 = _mm_loadu_si128((const __m128i *)b), v1 = _mm_loadu_si128((const __m128i *)(b + 16));
            __m128i lo = _mm_packus_epi16(_mm_and_si128(v0, low16), _mm_and_si128(v1, low16));
            __m128i hi = _mm_packus_epi16(_mm_srli_epi16(v0, 8), _mm_srli_epi16(v1, 8));
            if (kind == KIND_BF16) {
                /* p0 = (hi << 1) | (lo >> 7); p1 = (hi & 0x80) | (lo & 0x7F) */
                __m128i p0 = _mm_or_si128(_mm_add_epi8(hi, hi), _mm_and_si128(_mm_srli_epi16(lo, 7), one));
                __m128i p1 = _mm_or_si128(_mm_and_si128(hi, sign), _mm_and_si128(lo, seven));
                _mm_storeu_si128((__m128i *)(p[0] + i), p0);
                _mm_storeu_si128((__m128i *)(p[1] + i), p1);
            } else {
                /* p0 = (hi >> 2) & 0x1F (the 16-bit shift's spill from the next byte lands in bits 6-7, masked off);
                 * p1 = hi & 0x83; p2 = lo */
                __m128i p0 = _mm_and_si128(_mm_srli_epi16(hi, 2), _mm_set1_epi8(0x1F));
                __m128i p1 = _mm_and_si128(hi, _mm_set1_epi8((char)0x83));
                _mm_storeu_si128((__m128i *)(p[0] + i), p0);
                _mm_storeu_si128((__m128i *)(p[1] + i), p1);
                _mm_storeu_si128((__m128i *)(p[2] + i), lo);
            }
        }
    }
    return i;
}
#endif

static void split_planes(const uint8_t *src, Py_ssize_t n, int kind, uint8_t **p)
{
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    i = split_planes_sse2(src, n, kind, p);
#endif
    if (kind == KIND_BF16) {
        uint8_t *p0 = p[0], *p1 = p[1];
        for (; i < n; i++) {
            uint32_t u = (uint32_t)src[2 * i] | ((uint32_t)src[2 * i + 1] << 8);
            p0[i] = (uint8_t)(u >> 7);
            p1[i] = (uint8_t)(((u >> 8) & 0x80) | (u & 0x7F));
        }
    } else if (kind == KIND_F16) {
        uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2];
        for (; i < n; i++) {
            uint32_t u = (uint32_t)src[2 * i] | ((uint32_t)src[2 * i + 1] << 8);
            p0[i] = (uint8_t)((u >> 10) & 0x1F);
            p1[i] = (uint8_t)((u >> 8) & 0x83);
            p2[i] = (uint8_t)u;
        }
    } else {
        uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
        for (; i < n; i++) {
            const uint8_t *b = src + 4 * i;
            uint32_t u = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
            p0[i] = (uint8_t)(u >> 23);
            p1[i] = (uint8_t)(((u >> 24) & 0x80) | ((u >> 16) & 0x7F));
            p2[i] = b[1];
            p3[i] = b[0];
        }
    }
}

/* Map the whole pages of [dst, dst + len) for writing in one call, before the join writes them: the kernel then
 * fills them in a batch instead of taking one page fault per 4 KiB. On a fresh 336 MB tensor allocation that cost
 * 0.14 CPU seconds instead of 0.19 here (Linux 6.18 guest). Best effort: pages already present are left alone;
 * where the kernel (before 5.14) or the system lacks it, the join takes the faults as before. */
static void populate_for_write(uint8_t *dst, size_t len)
{
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)dst + page - 1) & ~(page - 1), end = ((uintptr_t)dst + len) & ~(page - 1);
    if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
#else
    (void)dst;
    (void)len;
#endif
}

/* The join, in blocks of JOIN_BLOCK elements: a plane given as NULL is all zero (the low mantissa planes of FP32
 * weights upcast from BF16) and is read from a small zeroed block instead, so it is neither decoded into memory
 * nor streamed from it. Each block is rebuilt 16 elements at a time with SSE2 (byte-wise field moves, then
 * unpacks into element order), the rest by the scalar formulas; the bytes are the same either way. */
#define JOIN_BLOCK 4096

static void join_block_scalar(const uint8_t *const *p, Py_ssize_t from, Py_ssize_t n, int kind, uint8_t *dst)
{
    Py_ssize_t i;
    if (kind == KIND_BF16) {
        const uint8_t *p0 = p[0], *p1 = p[1];
        for (i = from; i < n; i++) {
            uint32_t u = ((uint32_t)(p1[i] & 0x80) << 8) | ((uint32_t)p0[i] << 7) | (p1[i] & 0x7Fu);
            dst[2 * i] = (uint8_t)u;
            dst[2 * i + 1] = (uint8_t)(u >> 8);
        }
    } else if (kind == KIND_F16) {
        const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2];
        for (i = from; i < n; i++) {
            dst[2 * i] = p2[i];
            dst[2 * i + 1] = (uint8_t)((p1[i] & 0x83) | ((p0[i] & 0x1F) << 2));
        }
    } else {
        const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
        for (i = from; i < n; i++) {
            uint32_t u = ((uint32_t)(p1[i] & 0x80) << 24) | ((uint32_t)p0[i] << 23) | ((uint32_t)(p1[i] & 0x7F) << 16) |
                         ((uint32_t)p2[i] << 8) | p3[i];
            uint8_t *b = dst + 4 * i;
            b[0] = (uint8_t)u;
            b[1] = (uint8_t)(u >> 8);
            b[2] = (uint8_t)(u >> 16);
            b[3] = (uint8_t)(u >> 24);
        }
    }
}

/* n elements from planes p (none NULL here) into dst */
static void join_block(const uint8_t *const *p, Py_ssize_t n, int kind, uint8_t *dst)
{
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    const __m128i sign = _mm_set1_epi8((char)0x80), seven = _mm_set1_epi8(0x7F);
    if (kind == KIND_F16) {
        const __m128i exp5 = _mm_set1_epi8(0x1F), keep = _mm_set1_epi8((char)0x83);
        for (; i + 16 <= n; i += 16) {
            __m128i e = _mm_loadu_si128((const __m128i *)(p[0] + i)), s = _mm_loadu_si128((const __m128i *)(p[1] + i));
            __m128i lo = _mm_loadu_si128((const __m128i *)(p[2] + i));
            __m128i e5 = _mm_and_si128(e, exp5);
            __m128i hi = _mm_or_si128(_mm_and_si128(s, keep), _mm_add_epi8(_mm_add_epi8(e5, e5), _mm_add_epi8(e5, e5)));
            _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm_unpacklo_epi8(lo, hi));
            _mm_storeu_si128((__m128i *)(dst + 2 * i + 16), _mm_unpackhi_epi8(lo, hi));
        }
    } else {
        /* the two bytes holding sign, exponent and top mantissa: hi = sign | e >> 1, lo = (e & 1) << 7 | s & 0x7F */
        for (; i + 16 <= n; i += 16) {
            __m128i e = _mm_loadu_si128((const __m128i *)(p[0] + i)), s = _mm_loadu_si128((const __m128i *)(p[1] + i));
            __m128i hi = _mm_or_si128(_mm_and_si128(s, sign), _mm_and_si128(_mm_srli_epi16(e, 1), seven));
            __m128i lo = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(e, 7), sign), _mm_and_si128(s, seven));
            if (kind == KIND_BF16) {
                _mm_storeu_si128((__m128i *)(dst + 2 * i), _mm_unpacklo_epi8(lo, hi));
                _mm_storeu_si128((__m128i *)(dst + 2 * i + 16), _mm_unpackhi_epi8(lo, hi));
            } else {
                __m128i b1 = _mm_loadu_si128((const __m128i *)(p[2] + i)), b0 = _mm_loadu_si128((const __m128i *)(p[3] + i));
                __m128i low_a = _mm_unpacklo_epi8(b0, b1), low_b = _mm_unpackhi_epi8(b0, b1);
                __m128i high_a = _mm_unpacklo_epi8(lo, hi), high_b = _mm_unpackhi_epi8(lo, hi);
                uint8_t *d = dst + 4 * i;
                _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi16(low_a, high_a));
                _mm_storeu_si128((__m128i *)(d + 16), _mm_unpackhi_epi16(low_a, high_a));
                _mm_storeu_si128((__m128i *)(d + 32), _mm_unpacklo_epi16(low_b, high_b));
                _mm_storeu_si128((__m128i *)(d + 48), _mm_unpackhi_epi16(low_b, high_b));
            }
        }
    }
#endif
    join_block_scalar(p, i, n, kind, dst);
}

static void join_planes(const uint8_t *const *p, Py_ssize_t n, int kind, uint8_t *dst)
{
    static const uint8_t zeros[JOIN_BLOCK];
    const int count = kind_planes(kind), width = kind_width(kind);
    const uint8_t *at[4];
    for (Py_ssize_t start = 0; start < n; start += JOIN_BLOCK) {
        Py_ssize_t m = n - start < JOIN_BLOCK ? n - start : JOIN_BLOCK;
        for (int k = 0; k < count; k++) at[k] = p[k] ? p[k] + start : zeros;
        join_block(at, m, kind, dst + (size_t)start * (size_t)width);
    }
}

/* ------------------------------------------------------------------------------------------------------------
 * Huffman-only zstd frames (RFC 8878 sections 3.1.1, 3.1.1.2, 3.1.1.3.1 and 4.2)
 * ------------------------------------------------------------------------------------------------------------ */

#define BLOCK_MAX (128 * 1024)  /* Block_Maximum_Size */
#define MAX_BITS 11             /* Max_Number_of_Bits of a Huffman code */
#define MAX_DIRECT_SYMBOL 128   /* the direct (4-bit) weight representation covers symbols 0..128 */
#define FRAME_HEADER 13         /* magic, descriptor (single segment, 8-byte content size), content size */

typedef struct {
    uint16_t code[256];
    uint8_t bits[256]; /* 0 = symbol absent */
    int max_symbol;
    int table_log;
} HuffTable;

static void put_le(uint8_t *dst, uint64_t v, int nbytes)
{
    for (int i = 0; i < nbytes; i++) dst[i] = (uint8_t)(v >> (8 * i));
}

/* Optimal code lengths of at most `maxbits` bits (Larmore and Hirschberg's package-merge): `w` holds n >= 2
 * weights sorted ascending, `len` receives their code lengths. Exact, not a heuristic repair of unlimited codes:
 * exponent planes have long tails whose codes want 15-20 bits, and the limit is where Huffman loses most. */
typedef struct {
    uint64_t weight;
    int16_t leaf;  /* >= 0: the leaf of that rank; -1: a package of items a and b of the level below */
    int16_t a, b;
} PackItem;

static void count_leaves(PackItem (*levels)[2 * 256], int level, int k, int *len)
{
    const PackItem *item = &levels[level][k];
    if (item->leaf >= 0) {
        len[item->leaf]++;
    } else {
        count_leaves(levels, level - 1, item->a, len);
        count_leaves(levels, level - 1, item->b, len);
    }
}

static void package_merge(const uint32_t *w, int n, int maxbits, int *len)
{
    static _Thread_local PackItem levels[MAX_BITS][2 * 256];
    int size[MAX_BITS];
    for (int i = 0; i < n; i++) levels[0][i] = (PackItem){w[i], (int16_t)i, -1, -1};
    size[0] = n;
    for (int level = 1; level < maxbits; level++) {
        int packages = size[level - 1] / 2, li = 0, pi = 0, out = 0;
        while (li < n || pi < packages) {
            uint64_t pw = pi < packages ? levels[level - 1][2 * pi].weight + levels[level - 1][2 * pi + 1].weight : 0;
            if (li < n && (pi >= packages || w[li] <= pw)) {
                levels[level][out++] = (PackItem){w[li], (int16_t)li, -1, -1};
                li++;
            } else {
                levels[level][out++] = (PackItem){pw, -1, (int16_t)(2 * pi), (int16_t)(2 * pi + 1)};
                pi++;
            }
        }
        size[level] = out;
    }
    memset(len, 0, sizeof(int) * (size_t)n);
    for (int k = 0; k < 2 * n - 2; k++) count_leaves(levels, maxbits - 1, k, len);
}

/* Builds a complete (Kraft sum exactly 1) canonical code of at most MAX_BITS bits for the symbols present in
 * `count`, numbered as RFC 8878 4.2.1 prescribes so that a decoder rebuilds it from the weights alone. Needs at
 * least two distinct symbols, all <= MAX_DIRECT_SYMBOL. */
static void build_table(const uint32_t *count, HuffTable *t)
{
    int syms[256], lens[256] = {0}, n = 0, i, l;
    int bl_count[64] = {0};

    for (i = 0; i <= MAX_DIRECT_SYMBOL; i++)
        if (count[i]) syms[n++] = i;
    /* insertion sort by count ascending (stable: ties keep symbol order); n <= 129 */
    for (i = 1; i < n; i++) {
        int s = syms[i], j = i - 1;
        while (j >= 0 && count[syms[j]] > count[s]) {
            syms[j + 1] = syms[j];
            j--;
        }
        syms[j + 1] = s;
    }
    {
        uint32_t weights[256];
        for (i = 0; i < n; i++) weights[i] = count[syms[i]];
        package_merge(weights, n, MAX_BITS, lens);
    }
    for (i = 0; i < n; i++) bl_count[lens[i]]++;
    /* least frequent symbols take the longest codes */
    memset(t->bits, 0, sizeof t->bits);
    i = 0;
    for (l = MAX_BITS; l >= 1; l--)
        for (int k = 0; k < bl_count[l]; k++) t->bits[syms[i++]] = (uint8_t)l;
    t->table_log = 0;
    t->max_symbol = 0;
    for (i = 0; i <= MAX_DIRECT_SYMBOL; i++) {
        if (t->bits[i]) {
            t->max_symbol = i;
            if (t->bits[i] > t->table_log) t->table_log = t->bits[i];
        }
    }
    /* canonical values: longest codes first, counting up from zero, symbols in natural order within a length */
    {
        uint32_t value = 0;
        for (l = t->table_log; l >= 1; l--) {
            for (i = 0; i <= t->max_symbol; i++)
                if (t->bits[i] == l) t->code[i] = (uint16_t)value++;
            value >>= 1;
        }
    }
}

/* Bytes of the Huffman_Tree_Description (direct representation): a header byte and one 4-bit weight per symbol
 * below the largest, the largest symbol's weight being implied. */
static size_t tree_description_size(const HuffTable *t) { return 1 + (size_t)(t->max_symbol + 1) / 2; }

static size_t write_tree_description(const HuffTable *t, uint8_t *dst)
{
    size_t size = tree_description_size(t);
    memset(dst, 0, size);
    dst[0] = (uint8_t)(127 + t->max_symbol);
    for (int s = 0; s < t->max_symbol; s++) {
        int w = t->bits[s] ? t->table_log + 1 - t->bits[s] : 0;
        dst[1 + s / 2] |= (uint8_t)(s % 2 == 0 ? w << 4 : w);
    }
    return size;
}

/* One Huffman bitstream: symbols coded last to first into a little-endian bit container, closed by a 1 bit, so
 * that a decoder reading backwards from the final byte meets the first symbol first. `dst` needs
 * n * MAX_BITS / 8 + 16 bytes. */
static size_t encode_stream(const uint8_t *src, size_t n, const HuffTable *t, uint8_t *dst)
{
    uint64_t acc = 0;
    unsigned nbits = 0;
    size_t out = 0, i = n;

#define ADD(sym)                                          \
    do {                                                  \
        uint8_t s_ = (sym);                               \
        acc |= (uint64_t)t->code[s_] << nbits;            \
        nbits += t->bits[s_];                             \
    } while (0)
#define FLUSH()                                           \
    do {                                                  \
        put_le(dst + out, acc, 8);                        \
        out += nbits >> 3;                                \
        acc = (nbits >> 3) >= 8 ? 0 : acc >> (nbits & ~7u); \
        nbits &= 7;                                       \
    } while (0)

    while (i % 4) {
        ADD(src[--i]);
        FLUSH();
    }
    while (i) { /* 4 codes of at most 11 bits on top of at most 7 pending bits fit in 64 */
        ADD(src[i - 1]);
        ADD(src[i - 2]);
        ADD(src[i - 3]);
        ADD(src[i - 4]);
        i -= 4;
        FLUSH();
    }
    acc |= (uint64_t)1 << nbits;
    nbits += 1;
    put_le(dst + out, acc, 8);
    out += (nbits + 7) >> 3;
#undef ADD
#undef FLUSH
    return out;
}

static uint64_t cost_bits(const uint32_t *count, const HuffTable *t)
{
    uint64_t bits = 0;
    for (int s = 0; s < 256; s++) bits += (uint64_t)count[s] * t->bits[s];
    return bits;
}

static int table_covers(const uint32_t *count, const HuffTable *t)
{
    for (int s = 0; s < 256; s++)
        if (count[s] && !t->bits[s]) return 0;
    return 1;
}

static size_t write_block_header(uint8_t *dst, int last, int type, size_t size)
{
    put_le(dst, (uint64_t)last | ((uint64_t)type << 1) | ((uint64_t)size << 3), 3);
    return 3;
}

/* Compressed literals of one block, sequences section included, into `dst` (returns its size). `fresh` says
 * whether the block carries its own tree (type 2) or reuses the previous block's (type 3, Treeless). `scratch`
 * holds the coded streams while their sizes are not yet known. */
static size_t encode_literals_block(const uint8_t *src, size_t m, const HuffTable *t, int fresh, uint8_t *dst,
                                    uint8_t *scratch)
{
    size_t tree = fresh ? tree_description_size(t) : 0;
    size_t streams = 0, header, comp, regen = m;
    int four = m > 1023; /* small blocks take the single-stream form, which has a 3-byte header */
    size_t sizes[4];

    if (four) {
        size_t seg = (m + 3) / 4;
        size_t off = 6;
        for (int k = 0; k < 4; k++) {
            size_t start = seg * (size_t)k, len = k < 3 ? seg : m - 3 * seg;
            sizes[k] = encode_stream(src + start, len, t, scratch + off);
            off += sizes[k];
        }
        put_le(scratch, sizes[0], 2);
        put_le(scratch + 2, sizes[1], 2);
        put_le(scratch + 4, sizes[2], 2);
        streams = off;
    } else {
        streams = encode_stream(src, m, t, scratch);
    }
    comp = tree + streams;
    if (comp + 6 >= m) return (size_t)-1; /* no smaller than raw: the caller stores the block raw */
    {
        int type = fresh ? 2 : 3;
        uint64_t v;
        if (!four) {
            if (comp > 1023) return (size_t)-1; /* cannot be said in this form; the caller stores the block raw */
            v = (uint64_t)type | ((uint64_t)regen << 4) | ((uint64_t)comp << 14);
            header = 3;
        } else if (regen <= 1023 && comp <= 1023) {
            v = (uint64_t)type | (1u << 2) | ((uint64_t)regen << 4) | ((uint64_t)comp << 14);
            header = 3;
        } else if (regen <= 16383 && comp <= 16383) {
            v = (uint64_t)type | (2u << 2) | ((uint64_t)regen << 4) | ((uint64_t)comp << 18);
            header = 4;
        } else {
            v = (uint64_t)type | (3u << 2) | ((uint64_t)regen << 4) | ((uint64_t)comp << 22);
            header = 5;
        }
        put_le(dst, v, (int)header);
    }
    if (fresh) write_tree_description(t, dst + header);
    memcpy(dst + header + tree, scratch, streams);
    dst[header + comp] = 0; /* Number_of_Sequences = 0: the block is literals only */
    return header + comp + 1;
}

/* A window of BLOCK_MAX bytes with more bytes above 128 than this is stored raw rather than cut into pieces. */
#define MAX_CUTS 8
/* Blocks are built from pieces of this size, merged while one tree codes them no worse than two would. */
#define PIECE (16 * 1024)
/* What a block costs beyond its coded literals, tree excluded: block and literals headers, jump table,
 * stream padding and the sequences byte (in bytes, roughly; it only steers where blocks end). */
#define BLOCK_OVERHEAD 16

static size_t huffman_frame_bound(size_t n)
{
    /* per window: its bytes, plus a block header for each of at most 2 * MAX_CUTS + 1 pieces, each of which
     * may end in BLOCK_MAX / PIECE blocks */
    return FRAME_HEADER + 3 + n + (n / BLOCK_MAX + 1) * 3 * (2 * MAX_CUTS + 1 + BLOCK_MAX / PIECE);
}

typedef struct {
    uint8_t *dst;
    size_t out;
    HuffTable prev, cur;
    int have_prev;
    uint8_t *block, *scratch;
} FrameWriter;

static void emit_raw(FrameWriter *w, const uint8_t *src, size_t m, int last)
{
    w->out += write_block_header(w->dst + w->out, last, 0, m);
    memcpy(w->dst + w->out, src, m);
    w->out += m;
}

/* Byte counts, in four tables so that runs of one value do not serialise on a single counter. */
static void histogram(const uint8_t *src, size_t m, uint32_t *count)
{
    uint32_t c[4][256];
    size_t i = 0;
    memset(c, 0, sizeof c);
    for (; i + 4 <= m; i += 4) {
        c[0][src[i]]++;
        c[1][src[i + 1]]++;
        c[2][src[i + 2]]++;
        c[3][src[i + 3]]++;
    }
    for (; i < m; i++) c[0][src[i]]++;
    for (i = 0; i < 256; i++) count[i] = c[0][i] + c[1][i] + c[2][i] + c[3][i];
}

/* One block of bytes that are all <= MAX_DIRECT_SYMBOL: the smallest of RLE, Huffman literals with a fresh
 * tree, Huffman literals reusing the previous block's tree, and raw. `known` is the block's histogram when the
 * caller has it, else NULL. */
static void emit_block(FrameWriter *w, const uint8_t *src, size_t m, int last, const uint32_t *known)
{
    uint32_t count[256];
    size_t i, distinct = 0, size;
    uint64_t fresh_cost, prev_cost = UINT64_MAX;
    int fresh;

    if (known)
        memcpy(count, known, sizeof count);
    else
        histogram(src, m, count);
    for (i = 0; i <= MAX_DIRECT_SYMBOL; i++) distinct += count[i] != 0;
    if (distinct == 1) {
        w->out += write_block_header(w->dst + w->out, last, 1, m);
        w->dst[w->out++] = src[0];
        return;
    }
    build_table(count, &w->cur);
    fresh_cost = cost_bits(count, &w->cur) + 8 * tree_description_size(&w->cur);
    if (w->have_prev && table_covers(count, &w->prev)) prev_cost = cost_bits(count, &w->prev);
    fresh = prev_cost > fresh_cost;
    size = encode_literals_block(src, m, fresh ? &w->cur : &w->prev, fresh, w->block, w->scratch);
    if (size == (size_t)-1 || size >= m) {
        emit_raw(w, src, m, last);
        return;
    }
    w->out += write_block_header(w->dst + w->out, last, 2, size);
    memcpy(w->dst + w->out, w->block, size);
    w->out += size;
    if (fresh) {
        w->prev = w->cur;
        w->have_prev = 1;
    }
}

/* Estimated bits to code a block with this histogram under its own tree (its order-0 entropy), tree and
 * overhead included: cheap enough to ask for every piece, and only used to decide where blocks end. */
static double block_cost(const uint32_t *count)
{
    double total = 0, bits = 0;
    int distinct = 0;
    for (int s = 0; s <= MAX_DIRECT_SYMBOL; s++) {
        if (count[s]) {
            total += count[s];
            distinct = s + 1;
        }
    }
    for (int s = 0; s < distinct; s++)
        if (count[s]) bits -= count[s] * log2(count[s] / total);
    return bits + 8.0 * (1 + (distinct + 1) / 2 + BLOCK_OVERHEAD);
}

/* Bytes that are all <= MAX_DIRECT_SYMBOL, as blocks whose ends follow the data: a block grows by PIECE bytes
 * at a time while one tree for both costs no more than a tree each (tensors packed into one object shift the
 * exponent distribution where they meet). */
static void emit_segment(FrameWriter *w, const uint8_t *src, size_t m, int last)
{
    size_t start = 0;
    uint32_t have[256], next[256], merged[256];
    while (start < m) {
        size_t end = start + PIECE < m ? start + PIECE : m;
        double cost;
        histogram(src + start, end - start, have);
        cost = block_cost(have);
        while (end < m) {
            size_t stop = end + PIECE < m ? end + PIECE : m;
            double merged_cost;
            if (stop - start > BLOCK_MAX) break;
            histogram(src + end, stop - end, next);
            for (int k = 0; k < 256; k++) merged[k] = have[k] + next[k];
            merged_cost = block_cost(merged);
            if (merged_cost > cost + block_cost(next)) break;
            memcpy(have, merged, sizeof have);
            cost = merged_cost;
            end = stop;
        }
        emit_block(w, src + start, end - start, last && end == m, have);
        start = end;
    }
}

/* Writes a complete zstd frame holding `src` into `dst` (huffman_frame_bound(n) bytes) and returns its size, or 0
 * when out of memory. A byte above 128, which the direct tree form cannot name (an exponent that large means
 * |x| >= 2: rare in weights), is cut out of its block and stored in a raw block of its own; a window with many
 * of them is stored raw whole. */
static size_t huffman_frame(const uint8_t *src, size_t n, uint8_t *dst)
{
    FrameWriter w;
    size_t pos = 0;
    memset(&w, 0, sizeof w);
    w.dst = dst;
    w.block = malloc(BLOCK_MAX + 64);
    w.scratch = malloc(BLOCK_MAX * 2 + 64);
    if (!w.block || !w.scratch) {
        free(w.block);
        free(w.scratch);
        return 0;
    }
    memcpy(dst, "\x28\xb5\x2f\xfd", 4);
    dst[4] = 0xE0; /* Frame_Content_Size_flag 3 (8 bytes), Single_Segment_flag, no checksum, no dictionary */
    put_le(dst + 5, (uint64_t)n, 8);
    w.out = FRAME_HEADER;
    if (n == 0) emit_raw(&w, src, 0, 1);
    while (pos < n) {
        size_t m = n - pos < BLOCK_MAX ? n - pos : BLOCK_MAX, i, big = 0, start = 0;
        const uint8_t *b = src + pos;
        int last_window = pos + m == n;
        for (i = 0; i < m; i++) big += b[i] > MAX_DIRECT_SYMBOL; /* vectorises: far cheaper than a histogram */
        if (big == 0) {
            emit_segment(&w, b, m, last_window);
        } else if (big > MAX_CUTS) {
            emit_raw(&w, b, m, last_window);
        } else {
            while (start < m) {
                size_t end = start;
                if (b[start] > MAX_DIRECT_SYMBOL) {
                    while (end < m && b[end] > MAX_DIRECT_SYMBOL) end++;
                    emit_raw(&w, b + start, end - start, last_window && end == m);
                } else {
                    while (end < m && b[end] <= MAX_DIRECT_SYMBOL) end++;
                    emit_segment(&w, b + start, end - start, last_window && end == m);
                }
                start = end;
            }
        }
        pos += m;
    }
    free(w.block);
    free(w.scratch);
    return w.out;
}

/* Order-0 entropy in bits per byte of every `step`-th 4 KiB block of the bytes (step 1: all of them): a bound
 * on what a Huffman coder of the bytes can save, estimated from a dense sample at a fraction of the cost. */
#define ENTROPY_BLOCK 4096

static double order0_bits(const uint8_t *src, size_t n, size_t step)
{
    uint64_t count[256] = {0};
    uint32_t part[256];
    double bits = 0, total = 0;
    for (size_t at = 0; at < n; at += step * ENTROPY_BLOCK) {
        size_t take = n - at < ENTROPY_BLOCK ? n - at : ENTROPY_BLOCK;
        histogram(src + at, take, part);
        for (int s = 0; s < 256; s++) count[s] += part[s];
        total += (double)take;
    }
    if (total == 0) return 0;
    for (int s = 0; s < 256; s++)
        if (count[s]) bits -= (double)count[s] * log2((double)count[s] / total);
    return bits / total;
}

/* ------------------------------------------------------------------------------------------------------------
 * Python bindings
 * ------------------------------------------------------------------------------------------------------------ */

static int check_kind(int kind)
{
    if (kind != KIND_BF16 && kind != KIND_F16 && kind != KIND_F32) {
        PyErr_Format(PyExc_ValueError, "unknown element type %d", kind);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(split_doc,
             "split(data, kind, n, out=None) -> list of bytes: the element planes of the first n elements.\n"
             "With out (a writable buffer of at least planes * n bytes) plane k is written at out[k * n:] and None\n"
             "is returned: an encoder that reuses its buffers touches no fresh pages per chunk.");

static PyObject *py_split(PyObject *self, PyObject *args)
{
    Py_buffer view, target;
    int kind;
    Py_ssize_t n;
    PyObject *out = Py_None;
    PyObject *planes[4] = {NULL, NULL, NULL, NULL};
    uint8_t *ptrs[4];
    PyObject *result = NULL;
    int count, k, have_target = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*in|O", &view, &kind, &n, &out)) return NULL;
    if (!check_kind(kind)) goto done;
    if (n < 0 || n > view.len / kind_width(kind)) {
        PyErr_SetString(PyExc_ValueError, "element count exceeds the buffer");
        goto done;
    }
    count = kind_planes(kind);
    if (out != Py_None) {
        if (PyObject_GetBuffer(out, &target, PyBUF_WRITABLE) != 0) goto done;
        have_target = 1;
        if (target.len / count < n) {
            PyErr_SetString(PyExc_ValueError, "out is shorter than the planes");
            goto done;
        }
        for (k = 0; k < count; k++) ptrs[k] = (uint8_t *)target.buf + (size_t)k * (size_t)n;
    } else {
        for (k = 0; k < count; k++) {
            planes[k] = PyBytes_FromStringAndSize(NULL, n);
            if (!planes[k]) goto done;
            ptrs[k] = (uint8_t *)PyBytes_AS_STRING(planes[k]);
        }
    }
    Py_BEGIN_ALLOW_THREADS
    split_planes((const uint8_t *)view.buf, n, kind, ptrs);
    Py_END_ALLOW_THREADS
    if (have_target) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    result = PyList_New(count);
    if (!result) goto done;
    for (k = 0; k < count; k++) {
        PyList_SET_ITEM(result, k, planes[k]);
        planes[k] = NULL;
    }
done:
    for (k = 0; k < 4; k++) Py_XDECREF(planes[k]);
    if (have_target) PyBuffer_Release(&target);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(joined_doc,
             "joined(planes, kind, n, tail, out=None) -> bytearray: the n elements rebuilt from the planes, then tail;\n"
             "a plane given as None is all zero.\n"
             "With out (a writable buffer of exactly that length) they are written there and out is returned: a\n"
             "caller that reuses its buffers touches no fresh pages (and one passing fresh memory maps it first).");

static PyObject *py_joined(PyObject *self, PyObject *args)
{
    PyObject *seq, *out = Py_None, *result = NULL;
    Py_buffer views[4], tail, target;
    const uint8_t *ptrs[4];
    int kind, count, k, got = 0, have_target = 0;
    Py_ssize_t n, body;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oiny*|O", &seq, &kind, &n, &tail, &out)) return NULL;
    if (!check_kind(kind)) goto done;
    count = kind_planes(kind);
    if (!PySequence_Check(seq) || PySequence_Size(seq) != count) {
        PyErr_SetString(PyExc_ValueError, "wrong number of planes");
        goto done;
    }
    if (n < 0 || n > (PY_SSIZE_T_MAX - tail.len) / kind_width(kind)) {
        PyErr_SetString(PyExc_ValueError, "impossible element count");
        goto done;
    }
    for (k = 0; k < count; k++) {
        PyObject *item = PySequence_GetItem(seq, k);
        int ok;
        if (!item) goto done;
        views[k].obj = NULL;
        ok = item == Py_None || PyObject_GetBuffer(item, &views[k], PyBUF_SIMPLE) == 0;
        Py_DECREF(item);
        if (!ok) goto done;
        got++;
        if (views[k].obj == NULL) { /* None: an all-zero plane */
            ptrs[k] = NULL;
            continue;
        }
        if (views[k].len < n) {
            PyErr_SetString(PyExc_ValueError, "a plane is shorter than the element count");
            goto done;
        }
        ptrs[k] = (const uint8_t *)views[k].buf;
    }
    body = n * kind_width(kind);
    if (out != Py_None) {
        if (PyObject_GetBuffer(out, &target, PyBUF_WRITABLE) != 0) goto done;
        have_target = 1;
        if (target.len != body + tail.len) {
            PyErr_SetString(PyExc_ValueError, "out is not exactly the length of the joined bytes");
            goto done;
        }
        Py_INCREF(out);
        result = out;
    } else {
        /* uninitialised: every byte is written below, so no pass is spent zeroing it first */
        result = PyByteArray_FromStringAndSize(NULL, body + tail.len);
        if (!result) goto done;
    }
    {
        uint8_t *dst = have_target ? (uint8_t *)target.buf : (uint8_t *)PyByteArray_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        /* only a fresh result: a caller's buffer is mostly one it reuses (restore, a loader's cast scratch), whose
         * pages are mapped already, and walking them costs the kernel a page-table lookup per 4 KiB for nothing.
         * A caller passing fresh memory maps it first (pages.populate_for_write). */
        if (!have_target) populate_for_write(dst, (size_t)(body + tail.len));
        join_planes(ptrs, n, kind, dst);
        memcpy(dst + body, tail.buf, (size_t)tail.len);
        Py_END_ALLOW_THREADS
    }
done:
    for (k = 0; k < got; k++)
        if (views[k].obj != NULL) PyBuffer_Release(&views[k]);
    if (have_target) PyBuffer_Release(&target);
    PyBuffer_Release(&tail);
    return result;
}

PyDoc_STRVAR(max_byte_doc, "max_byte(data) -> int: the largest byte in data (0 when empty).");

static PyObject *py_max_byte(PyObject *self, PyObject *args)
{
    Py_buffer view;
    uint8_t top = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    {
        const uint8_t *b = (const uint8_t *)view.buf;
        for (Py_ssize_t i = 0; i < view.len; i++) top = b[i] > top ? b[i] : top; /* vectorises */
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromLong(top);
}

PyDoc_STRVAR(order0_bits_doc,
             "order0_bits(data, step=1) -> float: order-0 entropy in bits per byte of every step-th 4 KiB block.");

static PyObject *py_order0_bits(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t step = 1;
    double bits;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|n", &view, &step)) return NULL;
    if (step < 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "step must be at least 1");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    bits = order0_bits((const uint8_t *)view.buf, (size_t)view.len, (size_t)step);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyFloat_FromDouble(bits);
}

PyDoc_STRVAR(huffman_frame_doc,
             "huffman_frame(data) -> bytes: a zstd frame (RFC 8878) holding data as Huffman-coded literals.");

static PyObject *py_huffman_frame(PyObject *self, PyObject *args)
{
    Py_buffer view;
    PyObject *result = NULL;
    size_t size;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)huffman_frame_bound((size_t)view.len));
    if (!result) goto done;
    Py_BEGIN_ALLOW_THREADS
    size = huffman_frame((const uint8_t *)view.buf, (size_t)view.len, (uint8_t *)PyBytes_AS_STRING(result));
    Py_END_ALLOW_THREADS
    if (size == 0) {
        Py_CLEAR(result);
        PyErr_NoMemory();
        goto done;
    }
    if (_PyBytes_Resize(&result, (Py_ssize_t)size) < 0) result = NULL;
done:
    PyBuffer_Release(&view);
    return result;
}


/* ------------------------------------------------------------------------------------------------------------
 * Delta transform (codec 3, specified in delta.py and docs/FORMAT.md): x = data XOR base (or minus, below); plane k holds byte
 * (w - 1 - k) of each w-byte element of x, most significant byte first; the tail is the L % w bytes of x after
 * the last whole element. Done in blocks that stay in cache, so each input byte is read once.
 * ------------------------------------------------------------------------------------------------------------ */

#define DELTA_BLOCK 4096 /* elements per block */

static void xor_split(const uint8_t *a, const uint8_t *b, Py_ssize_t n, int w, uint8_t **p)
{
    if (w == 1) {
        for (Py_ssize_t i = 0; i < n; i++) p[0][i] = a[i] ^ b[i];
        return;
    }
    if (w == 2) {
        uint8_t *hi = p[0], *lo = p[1];
        for (Py_ssize_t i = 0; i < n; i++) {
            lo[i] = a[2 * i] ^ b[2 * i];
            hi[i] = a[2 * i + 1] ^ b[2 * i + 1];
        }
        return;
    }
    for (Py_ssize_t start = 0; start < n; start += DELTA_BLOCK) {
        Py_ssize_t m = n - start < DELTA_BLOCK ? n - start : DELTA_BLOCK;
        for (int k = 0; k < w; k++) {
            const uint8_t *sa = a + start * w + (w - 1 - k), *sb = b + start * w + (w - 1 - k);
            uint8_t *dst = p[k] + start;
            for (Py_ssize_t i = 0; i < m; i++) dst[i] = sa[(size_t)i * w] ^ sb[(size_t)i * w];
        }
    }
}

static void xor_join(const uint8_t *const *p, const uint8_t *b, Py_ssize_t n, int w, uint8_t *dst)
{
    if (w == 1) {
        for (Py_ssize_t i = 0; i < n; i++) dst[i] = p[0][i] ^ b[i];
        return;
    }
    if (w == 2) {
        const uint8_t *hi = p[0], *lo = p[1];
        for (Py_ssize_t i = 0; i < n; i++) {
            dst[2 * i] = lo[i] ^ b[2 * i];
            dst[2 * i + 1] = hi[i] ^ b[2 * i + 1];
        }
        return;
    }
    for (Py_ssize_t start = 0; start < n; start += DELTA_BLOCK) {
        Py_ssize_t m = n - start < DELTA_BLOCK ? n - start : DELTA_BLOCK;
        for (int k = 0; k < w; k++) {
            const uint8_t *src = p[k] + start, *sb = b + start * w + (w - 1 - k);
            uint8_t *d = dst + start * w + (w - 1 - k);
            for (Py_ssize_t i = 0; i < m; i++) d[(size_t)i * w] = src[i] ^ sb[(size_t)i * w];
        }
    }
}

static uint32_t load_le(const uint8_t *p, int w)
{
    return w == 1 ? p[0] : w == 2 ? (uint32_t)p[0] | ((uint32_t)p[1] << 8)
                                  : (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Subtraction (transform 1): element i of x is d = (u_data - u_base) mod 2^(8w), the elements read as little-endian
 * unsigned integers; tail bytes are subtracted one by one mod 256. Zigzag subtraction (transform 2): the same d,
 * read as a w-byte two's-complement integer, mapped to (d << 1) XOR (d >> (8w - 1)) (arithmetic shift) mod 2^(8w),
 * so that small differences of either sign have small codes (0, -1, 1, -2 -> 0, 1, 2, 3) and a negative one no
 * longer fills its high byte planes with 0xFF; tail bytes are zigzagged as 1-byte elements. Then the same byte
 * planes as XOR. Each width has its own loop so that the compiler sees the element as one integer. */
enum { TRANSFORM_XOR = 0, TRANSFORM_SUB = 1, TRANSFORM_ZIGZAG = 2 };

static inline uint32_t zigzag32(uint32_t d) { return (d << 1) ^ (0u - (d >> 31)); }
static inline uint32_t unzigzag32(uint32_t z) { return (z >> 1) ^ (0u - (z & 1u)); }
static inline uint16_t zigzag16(uint16_t d) { return (uint16_t)((d << 1) ^ (0u - (d >> 15))); }
static inline uint16_t unzigzag16(uint16_t z) { return (uint16_t)((z >> 1) ^ (0u - (z & 1u))); }
static inline uint8_t zigzag8(uint8_t d) { return (uint8_t)((d << 1) ^ (0u - (d >> 7))); }
static inline uint8_t unzigzag8(uint8_t z) { return (uint8_t)((z >> 1) ^ (0u - (z & 1u))); }

/* x byte of a (data) against b (base) for the bytes after the last whole element, and back */
static uint8_t tail_code(uint8_t a, uint8_t b, int transform)
{
    return transform == TRANSFORM_XOR ? (uint8_t)(a ^ b)
           : transform == TRANSFORM_SUB ? (uint8_t)(a - b)
                                        : zigzag8((uint8_t)(a - b));
}

static uint8_t tail_decode(uint8_t x, uint8_t b, int transform)
{
    return transform == TRANSFORM_XOR ? (uint8_t)(x ^ b)
           : transform == TRANSFORM_SUB ? (uint8_t)(x + b)
                                        : (uint8_t)(unzigzag8(x) + b);
}

/* always inlined with a constant zz, so each loop is compiled twice and tests nothing per element */
static inline __attribute__((always_inline)) void sub_split_as(const uint8_t *restrict a, const uint8_t *restrict b,
                                                                Py_ssize_t n, int w, const int zz, uint8_t **p)
{
    Py_ssize_t i;
    if (w == 4) {
        /* in blocks through a small buffer of differences: each pass is then a plain loop the compiler vectorises
         * (subtract, zigzag; then one narrowing per plane), where one loop writing four planes was not */
        uint32_t d[DELTA_BLOCK];
        for (Py_ssize_t start = 0; start < n; start += DELTA_BLOCK) {
            Py_ssize_t m = n - start < DELTA_BLOCK ? n - start : DELTA_BLOCK;
            const uint8_t *sa = a + 4 * (size_t)start, *sb = b + 4 * (size_t)start;
            for (i = 0; i < m; i++) {
                uint32_t x = load_le(sa + 4 * (size_t)i, 4) - load_le(sb + 4 * (size_t)i, 4);
                d[i] = zz ? zigzag32(x) : x;
            }
            for (int k = 0; k < 4; k++) {
                uint8_t *restrict dst = p[k] + start;
                const int shift = 8 * (3 - k);
                for (i = 0; i < m; i++) dst[i] = (uint8_t)(d[i] >> shift);
            }
        }
    } else if (w == 2) {
        uint8_t *restrict p0 = p[0], *restrict p1 = p[1];
        for (i = 0; i < n; i++) {
            uint16_t d = (uint16_t)(load_le(a + 2 * (size_t)i, 2) - load_le(b + 2 * (size_t)i, 2));
            if (zz) d = zigzag16(d);
            p0[i] = (uint8_t)(d >> 8);
            p1[i] = (uint8_t)d;
        }
    } else {
        uint8_t *p0 = p[0];
        for (i = 0; i < n; i++) p0[i] = zz ? zigzag8((uint8_t)(a[i] - b[i])) : (uint8_t)(a[i] - b[i]);
    }
}

static inline __attribute__((always_inline)) void sub_join_as(const uint8_t *const *p, const uint8_t *restrict b,
                                                               Py_ssize_t n, int w, const int zz, uint8_t *restrict dst)
{
    Py_ssize_t i;
    if (w == 4) {
        const uint8_t *restrict p0 = p[0], *restrict p1 = p[1], *restrict p2 = p[2], *restrict p3 = p[3];
        for (i = 0; i < n; i++) {
            uint32_t d = ((uint32_t)p0[i] << 24) | ((uint32_t)p1[i] << 16) | ((uint32_t)p2[i] << 8) | p3[i];
            if (zz) d = unzigzag32(d);
            d += load_le(b + 4 * (size_t)i, 4);
            uint8_t *o = dst + 4 * (size_t)i;
            o[0] = (uint8_t)d;
            o[1] = (uint8_t)(d >> 8);
            o[2] = (uint8_t)(d >> 16);
            o[3] = (uint8_t)(d >> 24);
        }
    } else if (w == 2) {
        const uint8_t *restrict p0 = p[0], *restrict p1 = p[1];
        for (i = 0; i < n; i++) {
            uint16_t d = (uint16_t)(((uint32_t)p0[i] << 8) | p1[i]);
            if (zz) d = unzigzag16(d);
            d = (uint16_t)(d + load_le(b + 2 * (size_t)i, 2));
            dst[2 * (size_t)i] = (uint8_t)d;
            dst[2 * (size_t)i + 1] = (uint8_t)(d >> 8);
        }
    } else {
        const uint8_t *p0 = p[0];
        for (i = 0; i < n; i++) dst[i] = (uint8_t)((zz ? unzigzag8(p0[i]) : p0[i]) + b[i]);
    }
}

static void sub_split(const uint8_t *a, const uint8_t *b, Py_ssize_t n, int w, int zz, uint8_t **p)
{
    if (zz)
        sub_split_as(a, b, n, w, 1, p);
    else
        sub_split_as(a, b, n, w, 0, p);
}

static void sub_join(const uint8_t *const *p, const uint8_t *b, Py_ssize_t n, int w, int zz, uint8_t *dst)
{
    if (zz)
        sub_join_as(p, b, n, w, 1, dst);
    else
        sub_join_as(p, b, n, w, 0, dst);
}

static int check_width(int w)
{
    if (w != 1 && w != 2 && w != 4) {
        PyErr_Format(PyExc_ValueError, "element width %d is not 1, 2 or 4", w);
        return 0;
    }
    return 1;
}

static int check_transform(int t)
{
    if (t != TRANSFORM_XOR && t != TRANSFORM_SUB && t != TRANSFORM_ZIGZAG) {
        PyErr_Format(PyExc_ValueError, "unknown transform %d", t);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(xor_split_doc,
             "xor_split(data, base, width, transform=0) -> list of bytes: the width byte planes of data XOR base\n"
             "(transform 1: data minus base, element-wise; 2: that difference zigzagged), most significant byte\n"
             "first, then the tail (the len % width bytes after the last element, transformed byte by byte).");

static PyObject *py_xor_split(PyObject *self, PyObject *args)
{
    Py_buffer data, base;
    int w, k, transform = TRANSFORM_XOR;
    Py_ssize_t n, body;
    PyObject *planes[5] = {NULL, NULL, NULL, NULL, NULL};
    uint8_t *ptrs[5];
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*i|i", &data, &base, &w, &transform)) return NULL;
    if (!check_width(w) || !check_transform(transform)) goto done;
    if (data.len != base.len) {
        PyErr_SetString(PyExc_ValueError, "data and base differ in length");
        goto done;
    }
    n = data.len / w;
    body = n * w;
    for (k = 0; k <= w; k++) {
        planes[k] = PyBytes_FromStringAndSize(NULL, k < w ? n : data.len - body);
        if (!planes[k]) goto done;
        ptrs[k] = (uint8_t *)PyBytes_AS_STRING(planes[k]);
    }
    Py_BEGIN_ALLOW_THREADS
    {
        const uint8_t *a = (const uint8_t *)data.buf, *b = (const uint8_t *)base.buf;
        if (transform == TRANSFORM_XOR)
            xor_split(a, b, n, w, ptrs);
        else
            sub_split(a, b, n, w, transform == TRANSFORM_ZIGZAG, ptrs);
        for (Py_ssize_t i = body; i < data.len; i++) ptrs[w][i - body] = tail_code(a[i], b[i], transform);
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(w + 1);
    if (!result) goto done;
    for (k = 0; k <= w; k++) {
        PyList_SET_ITEM(result, k, planes[k]);
        planes[k] = NULL;
    }
done:
    for (k = 0; k < 5; k++) Py_XDECREF(planes[k]);
    PyBuffer_Release(&data);
    PyBuffer_Release(&base);
    return result;
}

PyDoc_STRVAR(xor_joined_doc,
             "xor_joined(planes, base, width, transform=0) -> bytearray: the bytes whose xor_split against base\n"
             "with that transform is planes (width element planes, then the tail).");

static PyObject *py_xor_joined(PyObject *self, PyObject *args)
{
    PyObject *seq, *result = NULL;
    Py_buffer views[5], base;
    const uint8_t *ptrs[5];
    int w, k, got = 0, transform = TRANSFORM_XOR;
    Py_ssize_t n, body;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oy*i|i", &seq, &base, &w, &transform)) return NULL;
    if (!check_width(w) || !check_transform(transform)) goto done;
    if (!PySequence_Check(seq) || PySequence_Size(seq) != w + 1) {
        PyErr_SetString(PyExc_ValueError, "wrong number of planes");
        goto done;
    }
    n = base.len / w;
    body = n * w;
    for (k = 0; k <= w; k++) {
        PyObject *item = PySequence_GetItem(seq, k);
        int ok;
        if (!item) goto done;
        ok = PyObject_GetBuffer(item, &views[k], PyBUF_SIMPLE) == 0;
        Py_DECREF(item);
        if (!ok) goto done;
        got++;
        if (views[k].len != (k < w ? n : base.len - body)) {
            PyErr_SetString(PyExc_ValueError, "a plane's length does not match the base");
            goto done;
        }
        ptrs[k] = (const uint8_t *)views[k].buf;
    }
    /* uninitialised: every byte is written below */
    result = PyByteArray_FromStringAndSize(NULL, base.len);
    if (!result) goto done;
    {
        uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(result);
        const uint8_t *b = (const uint8_t *)base.buf;
        Py_BEGIN_ALLOW_THREADS
        if (transform == TRANSFORM_XOR)
            xor_join(ptrs, b, n, w, dst);
        else
            sub_join(ptrs, b, n, w, transform == TRANSFORM_ZIGZAG, dst);
        for (Py_ssize_t i = body; i < base.len; i++) dst[i] = tail_decode(ptrs[w][i - body], b[i], transform);
        Py_END_ALLOW_THREADS
    }
done:
    for (k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&base);
    return result;
}

PyDoc_STRVAR(populate_doc,
             "populate(buffer) -> None: map the whole pages of a writable buffer for writing, in one call.");

static PyObject *py_populate(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_WRITABLE) != 0) return NULL;
    Py_BEGIN_ALLOW_THREADS
    populate_for_write((uint8_t *)view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------------------
 * Where a zstd frame ends (used by codecs/zstd.py for any zstd payload, not only ours)
 * ------------------------------------------------------------------------------------------------------------ */

PyDoc_STRVAR(zstd_blocks_end_doc,
             "zstd_blocks_end(buffer, start, checksum) -> int: the offset just past the last block of the zstd frame "
             "whose first block header is at start (and its 4-byte checksum when checksum is true), from the block "
             "headers alone (RFC 8878 3.1.1.2), or a negative code: -1 a block header, -3 a block, -4 the checksum "
             "runs past the buffer; -2 a block of the reserved type. As libzstd's ZSTD_findFrameCompressedSize, "
             "which python-zstandard does not expose: in C, since a hostile frame of empty blocks has one header "
             "every 3 bytes.");

static PyObject *py_zstd_blocks_end(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, result = 0;
    int checksum;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*np", &view, &pos, &checksum)) return NULL;
    const uint8_t *b = (const uint8_t *)view.buf;
    const Py_ssize_t n = view.len;
    Py_BEGIN_ALLOW_THREADS
    for (;;) {
        if (pos < 0 || pos + 3 > n) { result = -1; break; }
        const uint32_t header = (uint32_t)b[pos] | ((uint32_t)b[pos + 1] << 8) | ((uint32_t)b[pos + 2] << 16);
        const uint32_t last = header & 1, type = (header >> 1) & 3;
        Py_ssize_t size = (Py_ssize_t)(header >> 3);
        if (type == 3) { result = -2; break; }
        if (type == 1) size = 1; /* RLE: one byte, repeated */
        pos += 3 + size;
        if (pos > n) { result = -3; break; }
        if (last) {
            if (checksum) pos += 4;
            result = pos > n ? -4 : pos;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(result);
}

static PyMethodDef methods[] = {
    {"zstd_blocks_end", py_zstd_blocks_end, METH_VARARGS, zstd_blocks_end_doc},
    {"populate", py_populate, METH_O, populate_doc},
    {"split", py_split, METH_VARARGS, split_doc},
    {"joined", py_joined, METH_VARARGS, joined_doc},
    {"order0_bits", py_order0_bits, METH_VARARGS, order0_bits_doc},
    {"max_byte", py_max_byte, METH_VARARGS, max_byte_doc},
    {"huffman_frame", py_huffman_frame, METH_VARARGS, huffman_frame_doc},
    {"xor_split", py_xor_split, METH_VARARGS, xor_split_doc},
    {"xor_joined", py_xor_joined, METH_VARARGS, xor_joined_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_planes", "Native byte-plane split/join, Huffman-only zstd frames and the delta transform.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
