/*
 * SHA-256 (FIPS 180-4) of two buffers at once, on the x86 SHA extensions.
 *
 * Why: every object a reader decodes is hashed against its id before it is handed out, and on a small machine that
 * hash is the largest single cost of loading a model (about a third of the CPU). One SHA-256 stream is bound by
 * the latency of the sha256rnds2 instruction, not by its throughput, so OpenSSL's one-buffer code leaves the unit
 * partly idle; two independent messages whose rounds are interleaved keep it busy: on 8 MiB buffers, 2.12-2.15 GB/s
 * on one core against hashlib's 1.57 GB/s (AMD EPYC, 2026-11-29). The digests are ordinary SHA-256: callers
 * compare them with object ids exactly as they would compare hashlib's.
 *
 * Also a streaming SHA-256 (`Sha256Stream`, hashlib's update/digest/hexdigest/copy) and `update_and_digest`, which
 * feeds a buffer to such a stream AND returns the buffer's own digest in one interleaved pass: a push needs both the
 * whole file's digest and every chunk's object id, the same bytes hashed twice, and two streams at once cost little
 * more than one. The stream carries a partial block (< 64 bytes) between updates, so the file's lane starts at a
 * different offset of the buffer than the chunk's lane whenever an earlier update's length was not a multiple of 64.
 *
 * Only x86-64 CPUs with the SHA extensions (and SSSE3, SSE4.1) run this code; `lanes` is 0 elsewhere and callers
 * use hashlib instead. The GIL is released while hashing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_SHA_NI_CODE 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HAVE_SHA_NI_CODE 0
#endif

#if HAVE_SHA_NI_CODE

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* The state as sha256rnds2 wants it: words A,B,E,F in one register and C,D,G,H in the other. */
typedef struct {
    __m128i abef, cdgh;
} Lane;

SHA_TARGET static inline Lane lane_load(const uint32_t s[8])
{
    __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[0]), 0xB1);
    __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&s[4]), 0x1B);
    Lane lane = {_mm_alignr_epi8(dcba, efgh, 8), _mm_blend_epi16(efgh, dcba, 0xF0)};
    return lane;
}

SHA_TARGET static inline void lane_store(Lane lane, uint32_t s[8])
{
    __m128i feba = _mm_shuffle_epi32(lane.abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(lane.cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&s[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&s[4], _mm_alignr_epi8(dchg, feba, 8));
}

/* Four rounds with message words m (W[4g..4g+3]). */
#define ROUNDS4(lane, m, g)                                                                                       \
    do {                                                                                                          \
        __m128i wk_ = _mm_add_epi32((m), _mm_loadu_si128((const __m128i *)&K[4 * (g)]));                          \
        (lane).cdgh = _mm_sha256rnds2_epu32((lane).cdgh, (lane).abef, wk_);                                       \
        (lane).abef = _mm_sha256rnds2_epu32((lane).abef, (lane).cdgh, _mm_shuffle_epi32(wk_, 0x0E));              \
    } while (0)

/* W[4g..4g+3] from the previous sixteen words, held in the ring w[4] (w[g & 3] holds W[4g-16..4g-13]). */
#define SCHEDULE(w, g)                                                                                            \
    ((w)[(g) & 3] = _mm_sha256msg2_epu32(                                                                         \
         _mm_add_epi32(_mm_sha256msg1_epu32((w)[(g) & 3], (w)[((g) + 1) & 3]),                                    \
                       _mm_alignr_epi8((w)[((g) + 3) & 3], (w)[((g) + 2) & 3], 4)),                               \
         (w)[((g) + 3) & 3]))

#define BSWAP_MASK _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL)

SHA_TARGET static void blocks_one(uint32_t s[8], const uint8_t *p, size_t nblocks)
{
    Lane lane = lane_load(s);
    for (; nblocks; nblocks--, p += 64) {
        Lane saved = lane;
        __m128i w[4];
        for (int g = 0; g < 4; g++) {
            w[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * g)), BSWAP_MASK);
            ROUNDS4(lane, w[g], g);
        }
        for (int g = 4; g < 16; g++) {
            SCHEDULE(w, g);
            ROUNDS4(lane, w[g & 3], g);
        }
        lane.abef = _mm_add_epi32(lane.abef, saved.abef);
        lane.cdgh = _mm_add_epi32(lane.cdgh, saved.cdgh);
    }
    lane_store(lane, s);
}

/* blocks_one on two messages, their instructions interleaved so that each hides the other's round latency. */
SHA_TARGET static void blocks_two(uint32_t sa[8], const uint8_t *pa, uint32_t sb[8], const uint8_t *pb, size_t nblocks)
{
    Lane a = lane_load(sa), b = lane_load(sb);
    for (; nblocks; nblocks--, pa += 64, pb += 64) {
        Lane saved_a = a, saved_b = b;
        __m128i wa[4], wb[4];
        for (int g = 0; g < 4; g++) {
            wa[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16 * g)), BSWAP_MASK);
            wb[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16 * g)), BSWAP_MASK);
            ROUNDS4(a, wa[g], g);
            ROUNDS4(b, wb[g], g);
        }
        for (int g = 4; g < 16; g++) {
            SCHEDULE(wa, g);
            SCHEDULE(wb, g);
            ROUNDS4(a, wa[g & 3], g);
            ROUNDS4(b, wb[g & 3], g);
        }
        a.abef = _mm_add_epi32(a.abef, saved_a.abef);
        a.cdgh = _mm_add_epi32(a.cdgh, saved_a.cdgh);
        b.abef = _mm_add_epi32(b.abef, saved_b.abef);
        b.cdgh = _mm_add_epi32(b.cdgh, saved_b.cdgh);
    }
    lane_store(a, sa);
    lane_store(b, sb);
}

/* The last partial block, the padding (0x80, zeros, the bit length big-endian) and the digest, big-endian. */
static void finish(uint32_t s[8], const uint8_t *rest, size_t r, uint64_t total, uint8_t digest[32])
{
    uint8_t block[128] = {0};
    size_t n = r + 9 <= 64 ? 64 : 128;
    uint64_t bits = total * 8;
    memcpy(block, rest, r);
    block[r] = 0x80;
    for (int i = 0; i < 8; i++) block[n - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks_one(s, block, n / 64);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s[i];
    }
}

/* Both digests; the blocks the two messages have in common are hashed interleaved, the longer one's rest alone. */
static void sha256_two(const uint8_t *pa, size_t na, uint8_t da[32], const uint8_t *pb, size_t nb, uint8_t db[32])
{
    uint32_t sa[8], sb[8];
    size_t ba = na / 64, bb = nb / 64, common = ba < bb ? ba : bb;
    memcpy(sa, H0, sizeof sa);
    memcpy(sb, H0, sizeof sb);
    blocks_two(sa, pa, sb, pb, common);
    blocks_one(sa, pa + 64 * common, ba - common);
    blocks_one(sb, pb + 64 * common, bb - common);
    finish(sa, pa + 64 * ba, na % 64, na, da);
    finish(sb, pb + 64 * bb, nb % 64, nb, db);
}

/* A running SHA-256: the state after every whole block so far, the bytes of the block begun, the length so far. */
typedef struct {
    uint32_t s[8];
    uint8_t partial[64];
    size_t used; /* bytes in `partial`, always < 64 between calls */
    uint64_t total;
} Stream;

/* Tops up the stream's begun block from the head of (p, n); returns how many bytes of p that took. */
static size_t stream_top_up(Stream *st, const uint8_t *p, size_t n)
{
    size_t take;
    if (!st->used) return 0;
    take = 64 - st->used < n ? 64 - st->used : n;
    memcpy(st->partial + st->used, p, take);
    st->used += take;
    if (st->used == 64) {
        blocks_one(st->s, st->partial, 1);
        st->used = 0;
    }
    return take;
}

static void stream_update(Stream *st, const uint8_t *p, size_t n)
{
    size_t head = stream_top_up(st, p, n), nblocks = (n - head) / 64;
    blocks_one(st->s, p + head, nblocks);
    memcpy(st->partial, p + head + 64 * nblocks, n - head - 64 * nblocks);
    st->used += n - head - 64 * nblocks; /* 0 when head left a block begun: then nothing is past it */
    st->total += n;
}

/* stream_update(st, p, n) and the SHA-256 of (p, n) alone, their whole blocks interleaved (blocks_two). The
 * stream's lane runs `head` bytes behind the buffer's own, so the buffer's lane has at most one block more. */
static void stream_update_and_digest(Stream *st, const uint8_t *p, size_t n, uint8_t digest[32])
{
    uint32_t own[8];
    size_t head = stream_top_up(st, p, n), stream_blocks = (n - head) / 64, own_blocks = n / 64;
    memcpy(own, H0, sizeof own);
    blocks_two(st->s, p + head, own, p, stream_blocks);
    blocks_one(own, p + 64 * stream_blocks, own_blocks - stream_blocks);
    memcpy(st->partial, p + head + 64 * stream_blocks, n - head - 64 * stream_blocks);
    st->used += n - head - 64 * stream_blocks;
    st->total += n;
    finish(own, p + 64 * own_blocks, n % 64, n, digest);
}

/* stream_update(a, p, n) and stream_update(b, p, n) in one pass, their whole blocks interleaved (blocks_two). Each
 * stream tops up its own begun block first, so their lanes start at different offsets of the buffer; whichever has
 * more whole blocks left after the common ones (at most one) hashes it alone. */
static void stream_update_two(Stream *a, Stream *b, const uint8_t *p, size_t n)
{
    size_t ha = stream_top_up(a, p, n), hb = stream_top_up(b, p, n);
    size_t na = (n - ha) / 64, nb = (n - hb) / 64, common = na < nb ? na : nb;
    blocks_two(a->s, p + ha, b->s, p + hb, common);
    blocks_one(a->s, p + ha + 64 * common, na - common);
    blocks_one(b->s, p + hb + 64 * common, nb - common);
    memcpy(a->partial, p + ha + 64 * na, n - ha - 64 * na);
    a->used += n - ha - 64 * na;
    memcpy(b->partial, p + hb + 64 * nb, n - hb - 64 * nb);
    b->used += n - hb - 64 * nb;
    a->total += n;
    b->total += n;
}

static void stream_digest(const Stream *st, uint8_t digest[32])
{
    uint32_t s[8];
    memcpy(s, st->s, sizeof s);
    finish(s, st->partial, st->used, st->total, digest);
}

static int cpu_has_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1)) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & bit_SHA) != 0;
}

#endif /* HAVE_SHA_NI_CODE */

static int lanes = 0;

PyDoc_STRVAR(digests_doc,
             "digests(buffers) -> list of bytes: the SHA-256 digest of each buffer, hashed two at a time.\n"
             "Only when `lanes` is 2; raises RuntimeError otherwise.");

static PyObject *py_digests(PyObject *self, PyObject *arg)
{
    PyObject *seq, *result = NULL;
    Py_buffer *views = NULL;
    uint8_t (*out)[32] = NULL;
    Py_ssize_t count, got = 0, i;
    (void)self;
    if (!lanes) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA extensions: use hashlib");
        return NULL;
    }
    seq = PySequence_Fast(arg, "digests() takes a sequence of buffers");
    if (!seq) return NULL;
    count = PySequence_Fast_GET_SIZE(seq);
    views = PyMem_Calloc((size_t)count + 1, sizeof *views);
    out = PyMem_Calloc((size_t)count + 1, sizeof *out);
    if (!views || !out) {
        PyErr_NoMemory();
        goto done;
    }
    for (got = 0; got < count; got++)
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) != 0) goto done;
#if HAVE_SHA_NI_CODE
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i + 1 < count; i += 2)
        sha256_two(views[i].buf, (size_t)views[i].len, out[i], views[i + 1].buf, (size_t)views[i + 1].len, out[i + 1]);
    if (i < count)  /* an odd one out: paired with an empty message, whose digest is dropped */
        sha256_two(views[i].buf, (size_t)views[i].len, out[i], (const uint8_t *)"", 0, out[count]);
    Py_END_ALLOW_THREADS
#endif
    result = PyList_New(count);
    if (!result) goto done;
    for (i = 0; i < count; i++) {
        PyObject *digest = PyBytes_FromStringAndSize((const char *)out[i], 32);
        if (!digest) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, digest);
    }
done:
    for (i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(out);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------ Sha256Stream, update_and_digest */

/* Buffers shorter than this are hashed holding the GIL (as hashlib does): releasing it costs more than they take. */
#define GIL_MINSIZE 2048

typedef struct {
    PyObject_HEAD
#if HAVE_SHA_NI_CODE
    Stream st;
#endif
    PyThread_type_lock lock; /* one update at a time, the GIL released or not (as hashlib's objects) */
} StreamObject;

static PyTypeObject StreamType;

/* Takes the object's lock, letting other threads run while it waits. */
static void stream_lock(StreamObject *self)
{
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static StreamObject *stream_alloc(void)
{
    StreamObject *self = PyObject_New(StreamObject, &StreamType);
    if (!self) return NULL;
    self->lock = PyThread_allocate_lock();
    if (!self->lock) {
        PyObject_Free(self);
        PyErr_NoMemory();
        return NULL;
    }
    return self;
}

static void stream_dealloc(StreamObject *self)
{
    PyThread_free_lock(self->lock);
    PyObject_Free(self);
}

/* Feeds `view` to the stream and, when `digest` is not NULL, writes the view's own SHA-256 there. */
static void stream_feed(StreamObject *self, Py_buffer *view, uint8_t *digest)
{
#if HAVE_SHA_NI_CODE
    const uint8_t *p = view->buf;
    size_t n = (size_t)view->len;
    stream_lock(self);
    if (n >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        if (digest)
            stream_update_and_digest(&self->st, p, n, digest);
        else
            stream_update(&self->st, p, n);
        Py_END_ALLOW_THREADS
    } else if (digest) {
        stream_update_and_digest(&self->st, p, n, digest);
    } else {
        stream_update(&self->st, p, n);
    }
    PyThread_release_lock(self->lock);
#else
    (void)self, (void)view, (void)digest;
#endif
}

/* Feeds `view` to two distinct streams at once (stream_update_two), both locked, in address order so that two
 * callers passing the same pair the other way round cannot deadlock. */
static void stream_feed_two(StreamObject *a, StreamObject *b, Py_buffer *view)
{
#if HAVE_SHA_NI_CODE
    const uint8_t *p = view->buf;
    size_t n = (size_t)view->len;
    StreamObject *first = a < b ? a : b, *second = a < b ? b : a;
    stream_lock(first);
    stream_lock(second);
    if (n >= GIL_MINSIZE) {
        Py_BEGIN_ALLOW_THREADS
        stream_update_two(&a->st, &b->st, p, n);
        Py_END_ALLOW_THREADS
    } else {
        stream_update_two(&a->st, &b->st, p, n);
    }
    PyThread_release_lock(second->lock);
    PyThread_release_lock(first->lock);
#else
    (void)a, (void)b, (void)view;
#endif
}

static PyObject *stream_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"data", NULL};
    Py_buffer view = {0};
    StreamObject *self;
    (void)type;
    if (!lanes) {
        PyErr_SetString(PyExc_RuntimeError, "this CPU has no SHA extensions: use hashlib");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|y*:Sha256Stream", keywords, &view)) return NULL;
    self = stream_alloc();
    if (self) {
#if HAVE_SHA_NI_CODE
        memcpy(self->st.s, H0, sizeof self->st.s);
        self->st.used = 0;
        self->st.total = 0;
#endif
        if (view.buf) stream_feed(self, &view, NULL);
    }
    if (view.obj) PyBuffer_Release(&view);
    return (PyObject *)self;
}

static PyObject *stream_py_update(StreamObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) return NULL;
    stream_feed(self, &view, NULL);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static void stream_read_digest(StreamObject *self, uint8_t digest[32])
{
#if HAVE_SHA_NI_CODE
    stream_lock(self);
    stream_digest(&self->st, digest);
    PyThread_release_lock(self->lock);
#else
    (void)self;
    memset(digest, 0, 32);
#endif
}

static PyObject *stream_py_digest(StreamObject *self, PyObject *Py_UNUSED(ignored))
{
    uint8_t digest[32];
    stream_read_digest(self, digest);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

static PyObject *stream_py_hexdigest(StreamObject *self, PyObject *Py_UNUSED(ignored))
{
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[32];
    char text[64];
    stream_read_digest(self, digest);
    for (int i = 0; i < 32; i++) {
        text[2 * i] = hex[digest[i] >> 4];
        text[2 * i + 1] = hex[digest[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, 64);
}

static PyObject *stream_py_copy(StreamObject *self, PyObject *Py_UNUSED(ignored))
{
    StreamObject *twin = stream_alloc();
    if (!twin) return NULL;
#if HAVE_SHA_NI_CODE
    stream_lock(self);
    twin->st = self->st;
    PyThread_release_lock(self->lock);
#endif
    return (PyObject *)twin;
}

static PyObject *stream_get_name(PyObject *self, void *closure)
{
    (void)self, (void)closure;
    return PyUnicode_FromString("sha256");
}

static PyObject *stream_get_digest_size(PyObject *self, void *closure)
{
    (void)self, (void)closure;
    return PyLong_FromLong(32);
}

static PyObject *stream_get_block_size(PyObject *self, void *closure)
{
    (void)self, (void)closure;
    return PyLong_FromLong(64);
}

static PyMethodDef stream_methods[] = {
    {"update", (PyCFunction)stream_py_update, METH_O, "Feed a buffer to the running digest."},
    {"digest", (PyCFunction)stream_py_digest, METH_NOARGS, "The SHA-256 of everything fed so far (32 bytes)."},
    {"hexdigest", (PyCFunction)stream_py_hexdigest, METH_NOARGS, "digest() as 64 lowercase hex digits."},
    {"copy", (PyCFunction)stream_py_copy, METH_NOARGS, "An independent stream in the same state."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_getset[] = {
    {"name", stream_get_name, NULL, NULL, NULL},
    {"digest_size", stream_get_digest_size, NULL, NULL, NULL},
    {"block_size", stream_get_block_size, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "modelarc.storage._sha256.Sha256Stream",
    .tp_doc = "Sha256Stream(data=b'') -> a running SHA-256 with hashlib's update/digest/hexdigest/copy.\n"
              "Only when `lanes` is 2; raises RuntimeError otherwise.",
    .tp_basicsize = sizeof(StreamObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = stream_new,
    .tp_dealloc = (destructor)stream_dealloc,
    .tp_methods = stream_methods,
    .tp_getset = stream_getset,
};

PyDoc_STRVAR(update_and_digest_doc,
             "update_and_digest(stream, buffer) -> bytes: stream.update(buffer), and the SHA-256 digest of buffer\n"
             "alone, in one pass that hashes the two interleaved.");

static PyObject *py_update_and_digest(PyObject *self, PyObject *args)
{
    PyObject *stream, *data;
    Py_buffer view;
    uint8_t digest[32];
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O:update_and_digest", &StreamType, &stream, &data)) return NULL;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return NULL;
    stream_feed((StreamObject *)stream, &view, digest);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

PyDoc_STRVAR(update_two_doc,
             "update_two(a, b, buffer) -> None: a.update(buffer) and b.update(buffer) (two different streams) in one\n"
             "pass that hashes the two interleaved.");

static PyObject *py_update_two(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *data;
    Py_buffer view;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O:update_two", &StreamType, &a, &StreamType, &b, &data)) return NULL;
    if (a == b) {
        PyErr_SetString(PyExc_ValueError, "update_two needs two different streams");
        return NULL;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) != 0) return NULL;
    stream_feed_two((StreamObject *)a, (StreamObject *)b, &view);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"digests", py_digests, METH_O, digests_doc},
    {"update_and_digest", py_update_and_digest, METH_VARARGS, update_and_digest_doc},
    {"update_two", py_update_two, METH_VARARGS, update_two_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sha256",
    "SHA-256 of two buffers at once, or of a buffer and a running stream, on the x86 SHA extensions.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sha256(void)
{
    PyObject *m = PyModule_Create(&module);
#if HAVE_SHA_NI_CODE
    lanes = cpu_has_sha_ni() ? 2 : 0;
#endif
    if (m && PyModule_AddIntConstant(m, "lanes", lanes) != 0) Py_CLEAR(m);
    if (m && (PyType_Ready(&StreamType) != 0 || PyModule_AddObjectRef(m, "Sha256Stream", (PyObject *)&StreamType) != 0))
        Py_CLEAR(m);
    return m;
}
