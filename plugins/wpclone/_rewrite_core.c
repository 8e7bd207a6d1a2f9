/* The compiled engine of wpclone.rewrite: the same rule, the same output byte for byte, the same counts.
 *
 * wpclone/rewrite.py is the reference and holds the rule (its module docstring; docs/rewrite.md). Python builds
 * the table of keys (``replacement_table``) and hands it here as plain tuples; this file only applies it:
 *
 * - Tokenizing: a quote is a literal's delimiter unless an odd run of backslashes precedes it (counted within
 *   the buffer, the rule the Python engine's quote mask implements). A literal is looked at only if it holds
 *   an anchor of the escaped table (memmem over the whole buffer, remembered from literal to literal).
 * - strtr with host boundaries (``strtr``): every occurrence of an anchor gives candidate matches (each key
 *   holds its anchor at a known offset); a candidate is taken once no later occurrence can give one that
 *   starts earlier, leftmost first, longest at a position, never overlapping one already taken. Each key's
 *   boundary test (what goes on as a host) reads the bytes after it.
 * - Serialized values (``rebuild``): one flat pass with a stack of open containers, every token checked as
 *   the Python engine checks it; strings holding an anchor are rewritten (recursively when serialized
 *   themselves) and their lengths recomputed. A value that does not parse is malformed: its counts are
 *   undone and it gets plain replacement.
 * - Streaming: input arrives in chunks (``rewrite_stream`` reads ``max(chunk_size, carry)`` bytes like the
 *   Python engine, so both make the same decision to stream a literal). A literal longer than
 *   ``stream_literal_over`` that is not serialized streams through ``strtr`` with only the bytes a match
 *   could still need kept back; a serialized one is held whole.
 *
 * Processing runs without the GIL. Every buffer is malloc'd; the big ones are released after each run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__ /* every x86-64: 16 bytes at a time where it pays; the plain loops are the same otherwise */
#include <emmintrin.h>
#endif

#define NFORMS 6
#define LOOKAHEAD 8   /* the most bytes a boundary test reads past a key (rewrite.LOOKAHEAD) */
#define MAX_DEPTH 1000 /* serialized strings nested deeper than this raise RecursionError */
#define HUGE_NUMBER 100000000000000000ULL /* a length or count at least this big never fits a value */
#define CACHED_ANCHORS 16

typedef unsigned char uchar;
typedef Py_ssize_t ssz;

enum { OK = 0, FAILED = -1 };             /* FAILED: out of memory or too deep (Engine.error says which) */
enum { V_OK = 0, V_MALFORMED = 1, V_FAILED = -1 };
enum { ERR_NONE = 0, ERR_MEMORY, ERR_DEPTH };

/* -- growable buffers ------------------------------------------------------------------------------- */

typedef struct {
    uchar *data;
    ssz len, cap;
} Buf;

static int buf_reserve(Buf *b, ssz extra) {
    if (b->len + extra <= b->cap) return OK;
    ssz cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    uchar *d = realloc(b->data, (size_t)cap);
    if (!d) return FAILED;
    b->data = d;
    b->cap = cap;
    return OK;
}

static int buf_add(Buf *b, const void *p, ssz n) {
    if (n <= 0) return OK;
    if (buf_reserve(b, n)) return FAILED;
    memcpy(b->data + b->len, p, (size_t)n);
    b->len += n;
    return OK;
}

static void buf_drop_front(Buf *b, ssz n) {
    if (n <= 0) return;
    memmove(b->data, b->data + n, (size_t)(b->len - n));
    b->len -= n;
}

static void buf_free(Buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* -- bytes ------------------------------------------------------------------------------------------ */

static uchar IS_HOSTCHAR[256], IS_ALNUM[256], IS_DIGIT[256], DECODE[256], ENCODE[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        int digit = c >= '0' && c <= '9';
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        IS_DIGIT[c] = (uchar)digit;
        IS_ALNUM[c] = (uchar)(digit || alpha);
        IS_HOSTCHAR[c] = (uchar)(digit || alpha || c == '_' || c == '-');
        DECODE[c] = (uchar)c;
        ENCODE[c] = 0;
    }
    /* MySQL's reading of backslash escapes (rewrite._DECODE); any other escaped byte stands for itself. */
    DECODE['0'] = 0; DECODE['b'] = '\b'; DECODE['n'] = '\n'; DECODE['r'] = '\r'; DECODE['t'] = '\t';
    DECODE['Z'] = 0x1a;
    /* What mysqldump escapes (rewrite.mysql_encode). */
    ENCODE['\\'] = '\\'; ENCODE[0] = '0'; ENCODE['\''] = '\''; ENCODE['"'] = '"'; ENCODE['\n'] = 'n';
    ENCODE['\r'] = 'r'; ENCODE[0x1a] = 'Z';
}

/* rewrite.mysql_decode: a lone backslash at the end stays. */
static int decode_into(Buf *out, const uchar *s, ssz n) {
    if (buf_reserve(out, n)) return FAILED;
    uchar *d = out->data + out->len;
    ssz i = 0;
    while (i < n) {
        const uchar *bs = memchr(s + i, '\\', (size_t)(n - i));
        ssz j = bs ? bs - s : n;
        memcpy(d, s + i, (size_t)(j - i));
        d += j - i;
        if (j >= n) break;
        if (j + 1 >= n) {
            *d++ = '\\';
            break;
        }
        *d++ = DECODE[s[j + 1]];
        i = j + 2;
    }
    out->len = d - out->data;
    return OK;
}

/* rewrite.mysql_encode */
static int encode_into(Buf *out, const uchar *s, ssz n) {
    if (buf_reserve(out, 2 * n + 16)) return FAILED;
    uchar *d = out->data + out->len;
    ssz i = 0;
#ifdef __SSE2__
    const __m128i nul = _mm_set1_epi8(0), lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'),
                  ctrlz = _mm_set1_epi8(0x1a), dq = _mm_set1_epi8('"'), sq = _mm_set1_epi8('\''),
                  bs = _mm_set1_epi8('\\');
    while (i + 16 <= n) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, nul), _mm_cmpeq_epi8(x, lf)),
                                 _mm_or_si128(_mm_cmpeq_epi8(x, cr), _mm_cmpeq_epi8(x, ctrlz)));
        m = _mm_or_si128(m, _mm_or_si128(_mm_cmpeq_epi8(x, dq), _mm_or_si128(_mm_cmpeq_epi8(x, sq),
                                                                          _mm_cmpeq_epi8(x, bs))));
        int mask = _mm_movemask_epi8(m);
        _mm_storeu_si128((__m128i *)d, x); /* all 16; what follows the first special byte is written again */
        if (!mask) {
            d += 16;
            i += 16;
            continue;
        }
        int k = __builtin_ctz((unsigned)mask);
        d += k;
        i += k;
        *d++ = '\\';
        *d++ = ENCODE[s[i++]];
    }
#endif
    for (; i < n; i++) {
        uchar c = s[i], e = ENCODE[c];
        if (e) {
            *d++ = '\\';
            *d++ = e;
        } else {
            *d++ = c;
        }
    }
    out->len = d - out->data;
    return OK;
}

/* rewrite._SERIALIZED_START: (?:[aOsCE]:\d|[id]:|b:[01];|N;) */
static int serialized_start(const uchar *v, ssz n) {
    if (n < 2) return 0;
    switch (v[0]) {
    case 'a': case 'O': case 's': case 'C': case 'E':
        return n >= 3 && v[1] == ':' && IS_DIGIT[v[2]];
    case 'i': case 'd':
        return v[1] == ':';
    case 'b':
        return n >= 4 && v[1] == ':' && (v[2] == '0' || v[2] == '1') && v[3] == ';';
    case 'N':
        return v[1] == ';';
    default:
        return 0;
    }
}

/* The first occurrence of needle in text[from:n). With SSE2: 16 positions at a time whose first and last
 * bytes are the needle's, each then compared whole (W. Muła's SIMD strstr). */
static const uchar *find(const uchar *text, ssz from, ssz n, const uchar *needle, ssz len) {
    if (from >= n || len > n - from) return NULL;
    if (len == 1) return memchr(text + from, needle[0], (size_t)(n - from));
    const uchar *s = text + from;
    ssz m = n - from, i = 0;
#ifdef __SSE2__
    const __m128i first = _mm_set1_epi8((char)needle[0]), last = _mm_set1_epi8((char)needle[len - 1]);
    for (; i + len - 1 + 16 <= m; i += 16) {
        __m128i a = _mm_cmpeq_epi8(first, _mm_loadu_si128((const __m128i *)(s + i)));
        __m128i b = _mm_cmpeq_epi8(last, _mm_loadu_si128((const __m128i *)(s + i + len - 1)));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(a, b));
        while (mask) {
            int k = __builtin_ctz(mask);
            if (!memcmp(s + i + k + 1, needle + 1, (size_t)(len - 2))) return s + i + k;
            mask &= mask - 1;
        }
    }
#endif
    for (const uchar *p = s + i, *end = s + m - len; p <= end; p++) { /* the last few positions */
        p = memchr(p, needle[0], (size_t)(end - p + 1));
        if (!p) return NULL;
        if (!memcmp(p + 1, needle + 1, (size_t)(len - 1))) return p;
    }
    return NULL;
}

/* -- the table --------------------------------------------------------------------------------------- */

typedef struct {
    const uchar *old, *new_;
    ssz olen, nlen;
    int form;
    int boundary; /* 0: none (explicit), 1: a host's, 2: a host's in a URL-encoded form (also %3A<digit>) */
    ssz at;       /* where its anchor starts in old */
} Key;

typedef struct {
    const uchar *bytes;
    ssz len;
    int first, count; /* its keys: keys[first .. first + count) */
} Anchor;

typedef struct {
    Key *keys;
    Anchor *anchors;
    ssz *next; /* strtr's scratch: the next occurrence of each anchor */
    int nkeys, nanchors;
    ssz longest, max_at;
} Table;

/* Whether the bytes at ``e`` go on as a host (rewrite.HOST_GOES_ON / HOST_GOES_ON_URL_ENCODED). */
static int goes_on(const uchar *t, ssz e, ssz n, int boundary) {
    if (e >= n) return 0;
    uchar c = t[e];
    if (IS_HOSTCHAR[c]) return 1;
    if (e + 1 < n) {
        if (c == '.' && IS_ALNUM[t[e + 1]]) return 1;
        if (c == ':' && IS_DIGIT[t[e + 1]]) return 1;
        if (boundary == 2 && c == '%' && e + 3 < n && t[e + 1] == '3' && (t[e + 2] == 'A' || t[e + 2] == 'a') &&
            IS_DIGIT[t[e + 3]])
            return 1;
    }
    return 0;
}

static void table_free(Table *t) {
    PyMem_Free(t->keys);
    PyMem_Free(t->anchors);
    PyMem_Free(t->next);
    memset(t, 0, sizeof *t);
}

static int bytes_of(PyObject *o, const uchar **p, ssz *n, const char *what) {
    if (!PyBytes_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
        return FAILED;
    }
    *p = (const uchar *)PyBytes_AS_STRING(o);
    *n = PyBytes_GET_SIZE(o);
    return OK;
}

/* keys: a tuple of (old, new, form index, boundary); anchors: a tuple of bytes every key holds one of. */
static int table_init(Table *t, PyObject *keys, PyObject *anchors) {
    if (PyTuple_GET_SIZE(keys) == 0 || PyTuple_GET_SIZE(anchors) == 0) {
        PyErr_SetString(PyExc_ValueError, "give at least one key and one anchor");
        return FAILED;
    }
    int nk = (int)PyTuple_GET_SIZE(keys), na = (int)PyTuple_GET_SIZE(anchors);
    t->keys = PyMem_Calloc((size_t)nk, sizeof(Key));
    t->anchors = PyMem_Calloc((size_t)na, sizeof(Anchor));
    t->next = PyMem_Calloc((size_t)na, sizeof(ssz));
    Key *raw = PyMem_Calloc((size_t)nk, sizeof(Key));
    int *owner = PyMem_Calloc((size_t)nk, sizeof(int));
    if (!t->keys || !t->anchors || !t->next || !raw || !owner) {
        PyErr_NoMemory();
        goto fail;
    }
    t->nkeys = nk;
    t->nanchors = na;
    for (int j = 0; j < na; j++) {
        Anchor *a = &t->anchors[j];
        if (bytes_of(PyTuple_GET_ITEM(anchors, j), &a->bytes, &a->len, "an anchor")) goto fail;
        if (a->len == 0) {
            PyErr_SetString(PyExc_ValueError, "an anchor must not be empty");
            goto fail;
        }
    }
    for (int i = 0; i < nk; i++) {
        PyObject *item = PyTuple_GET_ITEM(keys, i);
        Key *k = &raw[i];
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "a key must be (old, new, form, boundary)");
            goto fail;
        }
        if (bytes_of(PyTuple_GET_ITEM(item, 0), &k->old, &k->olen, "old") ||
            bytes_of(PyTuple_GET_ITEM(item, 1), &k->new_, &k->nlen, "new"))
            goto fail;
        k->form = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
        k->boundary = (int)PyLong_AsLong(PyTuple_GET_ITEM(item, 3));
        if (PyErr_Occurred()) goto fail;
        if (k->form < 0 || k->form >= NFORMS || k->boundary < 0 || k->boundary > 2 || k->olen == 0) {
            PyErr_SetString(PyExc_ValueError, "a key's form, boundary or old is out of range");
            goto fail;
        }
        owner[i] = -1;
        for (int j = 0; j < na && owner[i] < 0; j++) {
            const uchar *at = find(k->old, 0, k->olen, t->anchors[j].bytes, t->anchors[j].len);
            if (at) {
                owner[i] = j;
                k->at = at - k->old;
            }
        }
        if (owner[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "a key holds none of the anchors");
            goto fail;
        }
        if (k->olen > t->longest) t->longest = k->olen;
        if (k->at > t->max_at) t->max_at = k->at;
    }
    /* Group the keys by anchor. */
    int at = 0;
    for (int j = 0; j < na; j++) {
        t->anchors[j].first = at;
        for (int i = 0; i < nk; i++)
            if (owner[i] == j) t->keys[at++] = raw[i];
        t->anchors[j].count = at - t->anchors[j].first;
    }
    PyMem_Free(raw);
    PyMem_Free(owner);
    return OK;
fail:
    PyMem_Free(raw);
    PyMem_Free(owner);
    table_free(t);
    return FAILED;
}

/* -- the engine -------------------------------------------------------------------------------------- */

typedef struct {
    ssz s;
    const Key *k;
} Cand;

typedef struct {
    PyObject_HEAD
    Table plain, enc; /* keys over decoded values; over literal bodies as the dump escapes them */
    int exact;        /* strtr on a literal's escaped body is exact (rewrite._encoded_is_exact) */
    ssz stream_over;
    PyObject *keep; /* the arguments: the tables point into their bytes */
    int busy;       /* a run is under way (it lets go of the GIL): another thread must not use the engine */
    int error;
    /* counters of the current run */
    int64_t counts[NFORMS];
    int64_t fields, rebuilt, malformed;
    /* buffers */
    Buf out;   /* what the current chunk produced */
    Buf carry; /* an unfinished literal, from its opening quote */
    Buf dec, tmp;
    Cand *cands;
    ssz ncap;
    /* a streamed literal */
    int streaming;
    int esc;      /* the raw bytes so far end in an odd run of backslashes */
    int dpend;    /* the decoder holds a backslash whose escaped byte has not come yet */
    int noncanon; /* an escape that mysql_encode would not write back the same */
    int changed;
    Buf pend, stmp;
} Engine;

static int fail(Engine *e, int error) {
    if (!e->error) e->error = error;
    return FAILED;
}

static int add_cand(Engine *e, Cand **c, ssz *nc, ssz s, const Key *k) {
    /* Sorted by start; one per start (the longest key). Starts mostly come in order: insert from the end. */
    ssz i = *nc;
    while (i > 0 && (*c)[i - 1].s > s) i--;
    if (i > 0 && (*c)[i - 1].s == s) {
        if ((*c)[i - 1].k->olen < k->olen) (*c)[i - 1].k = k;
        return OK;
    }
    if (*nc == e->ncap) {
        ssz cap = e->ncap ? 2 * e->ncap : 64;
        Cand *bigger = realloc(e->cands, (size_t)cap * sizeof(Cand));
        if (!bigger) return fail(e, ERR_MEMORY);
        e->cands = bigger;
        e->ncap = cap;
        *c = bigger;
    }
    memmove(*c + i + 1, *c + i, (size_t)(*nc - i) * sizeof(Cand));
    (*c)[i].s = s;
    (*c)[i].k = k;
    (*nc)++;
    return OK;
}

/* PHP strtr over text[0:n) with host boundaries, appended to out; replacements counted per form.
 * final: the text ends at n. Otherwise only what is decided is written: *consumed says up to where (the
 * rest must be given again, with what follows it). */
static int strtr(Engine *e, Table *t, const uchar *text, ssz n, int final, ssz *consumed, Buf *out) {
    ssz pos = 0, emitted = 0;
    ssz safe = final ? n : n - t->longest - LOOKAHEAD; /* a match starting before this is decided */
    Cand *c = e->cands;
    ssz nc = 0, head = 0;
    for (int j = 0; j < t->nanchors; j++) {
        const uchar *f = find(text, 0, n, t->anchors[j].bytes, t->anchors[j].len);
        t->next[j] = f ? f - text : -1;
    }
    for (;;) {
        int j = -1;
        ssz a = PY_SSIZE_T_MAX;
        for (int jj = 0; jj < t->nanchors; jj++)
            if (t->next[jj] >= 0 && t->next[jj] < a) {
                a = t->next[jj];
                j = jj;
            }
        /* Take the candidates no later occurrence can precede (it would start at a - max_at or later). */
        while (head < nc && (j < 0 || c[head].s + t->max_at < a)) {
            const Cand *m = &c[head++];
            if (m->s < pos) continue;
            if (m->s >= safe) {
                head = nc;
                break;
            }
            if (buf_add(out, text + emitted, m->s - emitted) || buf_add(out, m->k->new_, m->k->nlen))
                return fail(e, ERR_MEMORY);
            e->counts[m->k->form]++;
            pos = emitted = m->s + m->k->olen;
        }
        if (head == nc) {
            head = nc = 0;
        } else if (head > 1024) {
            memmove(c, c + head, (size_t)(nc - head) * sizeof(Cand));
            nc -= head;
            head = 0;
        }
        if (j < 0) break;
        const Anchor *an = &t->anchors[j];
        for (const Key *k = t->keys + an->first, *end = k + an->count; k < end; k++) {
            ssz s = a - k->at;
            if (s < pos || s + k->olen > n) continue;
            if (k->at && text[a - 1] != k->old[k->at - 1]) continue;
            if (memcmp(text + s, k->old, (size_t)k->olen)) continue;
            if (k->boundary && goes_on(text, s + k->olen, n, k->boundary)) continue;
            if (add_cand(e, &c, &nc, s, k)) return FAILED;
        }
        const uchar *f = find(text, a + 1, n, an->bytes, an->len);
        t->next[j] = f ? f - text : -1;
    }
    ssz end = final ? n : (pos > safe ? pos : (safe > 0 ? safe : 0));
    if (end < emitted) end = emitted;
    if (buf_add(out, text + emitted, end - emitted)) return fail(e, ERR_MEMORY);
    if (consumed) *consumed = end;
    return OK;
}

static int strtr_all(Engine *e, Table *t, const uchar *text, ssz n, Buf *out) {
    return strtr(e, t, text, n, 1, NULL, out);
}

/* -- serialized values ------------------------------------------------------------------------------- */

/* Where the first occurrence of any anchor is, remembered while starts only grow. */
typedef struct {
    const Table *t;
    const uchar *v;
    ssz n;
    ssz next[CACHED_ANCHORS];
} AnchorScan;

static void scan_init(AnchorScan *sc, const Table *t, const uchar *v, ssz n) {
    sc->t = t;
    sc->v = v;
    sc->n = n;
    for (int j = 0; j < CACHED_ANCHORS; j++) sc->next[j] = -2; /* not looked for yet */
}

/* Whether an anchor lies wholly in v[start:end); calls come with non-decreasing starts. */
static int scan_has(AnchorScan *sc, ssz start, ssz end) {
    const Table *t = sc->t;
    for (int j = 0; j < t->nanchors; j++) {
        const Anchor *a = &t->anchors[j];
        if (j >= CACHED_ANCHORS) {
            if (find(sc->v, start, end, a->bytes, a->len)) return 1;
            continue;
        }
        if (sc->next[j] == -1) continue; /* none left */
        if (sc->next[j] < start) {
            const uchar *f = find(sc->v, start, sc->n, a->bytes, a->len);
            sc->next[j] = f ? f - sc->v : -1;
            if (!f) continue;
        }
        if (sc->next[j] + a->len <= end) return 1;
    }
    return 0;
}

/* \d+ at *p, saturating at HUGE_NUMBER. */
static int digits(const uchar *v, ssz n, ssz *p, uint64_t *num) {
    ssz i = *p;
    uint64_t x = 0;
    if (i >= n || !IS_DIGIT[v[i]]) return 0;
    for (; i < n && IS_DIGIT[v[i]]; i++)
        if (x < HUGE_NUMBER) x = x * 10 + (uint64_t)(v[i] - '0');
    *num = x;
    *p = i;
    return 1;
}

/* <kind>:(\d+):<open> at pos; *after: where what follows <open> starts. */
static int head(const uchar *v, ssz n, ssz pos, uchar kind, uchar open, uint64_t *num, ssz *after) {
    ssz p = pos + 2;
    if (pos + 1 >= n || v[pos] != kind || v[pos + 1] != ':' || !digits(v, n, &p, num)) return 0;
    if (p + 1 >= n || v[p] != ':' || v[p + 1] != open) return 0;
    *after = p + 2;
    return 1;
}

/* ":(\d+):{ at p (rewrite._AFTER_CLASS). */
static int after_class(const uchar *v, ssz n, ssz p, uint64_t *num, ssz *after) {
    if (p + 1 >= n || v[p] != '"' || v[p + 1] != ':') return 0;
    p += 2;
    if (!digits(v, n, &p, num) || p + 1 >= n || v[p] != ':' || v[p + 1] != '{') return 0;
    *after = p + 2;
    return 1;
}

/* rewrite._SCALAR at p: where it ends, or -1. */
static ssz scalar(const uchar *v, ssz n, ssz p) {
    uint64_t num;
    if (p + 1 >= n) return -1;
    uchar kind = v[p];
    if (kind == 'N') return v[p + 1] == ';' ? p + 2 : -1;
    if (v[p + 1] != ':') return -1;
    ssz i = p + 2;
    switch (kind) {
    case 'i':
        if (i < n && (v[i] == '+' || v[i] == '-')) i++;
        if (!digits(v, n, &i, &num)) return -1;
        break;
    case 'b':
        if (i >= n || (v[i] != '0' && v[i] != '1')) return -1;
        i++;
        break;
    case 'r': case 'R':
        if (!digits(v, n, &i, &num)) return -1;
        break;
    case 'd':
        if (i + 3 <= n && !memcmp(v + i, "NAN", 3)) {
            i += 3;
        } else if (i + 3 <= n && !memcmp(v + i, "INF", 3)) {
            i += 3;
        } else if (i + 4 <= n && !memcmp(v + i, "-INF", 4)) {
            i += 4;
        } else {
            if (i < n && (v[i] == '+' || v[i] == '-')) i++;
            if (i < n && IS_DIGIT[v[i]]) {
                digits(v, n, &i, &num);
                if (i < n && v[i] == '.') i++;
                while (i < n && IS_DIGIT[v[i]]) i++;
            } else if (i + 1 < n && v[i] == '.' && IS_DIGIT[v[i + 1]]) {
                i++;
                digits(v, n, &i, &num);
            } else {
                return -1;
            }
            if (i < n && (v[i] == 'e' || v[i] == 'E')) {
                ssz x = i + 1;
                if (x < n && (v[x] == '+' || v[x] == '-')) x++;
                if (digits(v, n, &x, &num)) i = x;
            }
        }
        break;
    default:
        return -1;
    }
    return i < n && v[i] == ';' ? i + 1 : -1;
}

static int rewrite_value(Engine *e, const uchar *v, ssz n, Buf *out, int depth);

typedef struct {
    uint64_t inline_[32];
    uint64_t *items;
    ssz len, cap;
} Stack;

static int push(Engine *e, Stack *st, uint64_t x) {
    if (st->len == st->cap) {
        ssz cap = 2 * st->cap;
        uint64_t *bigger = st->items == st->inline_ ? malloc((size_t)cap * sizeof(uint64_t))
                                                    : realloc(st->items, (size_t)cap * sizeof(uint64_t));
        if (!bigger) return fail(e, ERR_MEMORY);
        if (st->items == st->inline_) memcpy(bigger, st->inline_, sizeof st->inline_);
        st->items = bigger;
        st->cap = cap;
    }
    st->items[st->len++] = x;
    return OK;
}

static int ndigits(ssz x) {
    int d = 1;
    while (x >= 10) {
        x /= 10;
        d++;
    }
    return d;
}

/* A string's or a payload's new content is written after room for its header, sized for its old length
 * (``open_part``); ``close_part`` then writes the header (moving the content when its length has another
 * number of digits), or takes everything back if the content came out the same. Headers: s:<n>:" ... ";
 * and, for a C: payload, ":<n>:{ ... }. Returns 1 if it changed, 0 if not, FAILED. */
static int open_part(Engine *e, Buf *out, ssz olen, ssz *mark) {
    *mark = out->len;
    ssz room = 4 + ndigits(olen);
    if (buf_reserve(out, room)) return fail(e, ERR_MEMORY);
    out->len += room;
    return OK;
}

static int close_part(Engine *e, Buf *out, ssz mark, const uchar *old, ssz olen, int payload) {
    ssz room = 4 + ndigits(olen), start = mark + room, nl = out->len - start;
    if (nl == olen && !memcmp(out->data + start, old, (size_t)olen)) {
        out->len = mark;
        return 0;
    }
    ssz hl = 4 + ndigits(nl);
    if (hl != room) {
        if (buf_reserve(out, hl - room + 2)) return fail(e, ERR_MEMORY);
        memmove(out->data + mark + hl, out->data + start, (size_t)nl);
        out->len = mark + hl + nl;
    }
    uchar *h = out->data + mark;
    h[0] = payload ? '"' : 's';
    h[1] = ':';
    for (ssz x = nl, at = hl - 3; at >= 2; at--, x /= 10) h[at] = (uchar)('0' + x % 10);
    h[hl - 2] = ':';
    h[hl - 1] = payload ? '{' : '"';
    if (payload ? buf_add(out, "}", 1) : buf_add(out, "\";", 2)) return fail(e, ERR_MEMORY);
    return 1;
}

/* rewrite.Rewriter._rebuild_whole: v rebuilt, appended to out (whether or not anything changed; *changed
 * says), or V_MALFORMED (out then holds garbage after its starting length: the caller truncates). */
static int rebuild(Engine *e, const uchar *v, ssz n, Buf *out, int depth, int *changed) {
    ssz pos = 0, emitted = 0;
    uint64_t remaining = 1; /* values still expected in the innermost open container (keys count) */
    Stack st;
    st.items = st.inline_;
    st.len = 0;
    st.cap = 32;
    AnchorScan sc;
    scan_init(&sc, &e->plain, v, n);
    int rc = V_MALFORMED;
    *changed = 0;
    for (;;) {
        uint64_t num, num2;
        ssz after, after2, end;
        if (remaining == 0) {
            if (st.len == 0) break;
            if (pos >= n || v[pos] != '}') goto done;
            pos++;
            remaining = st.items[--st.len];
            continue;
        }
        if (pos >= n) goto done;
        switch (v[pos]) {
        case 's': /* s:<len>:"<bytes>"; */
            if (!head(v, n, pos, 's', '"', &num, &after) || num > (uint64_t)(n - after)) goto done;
            end = after + (ssz)num;
            if (end + 1 >= n || v[end] != '"' || v[end + 1] != ';') goto done;
            if (scan_has(&sc, after, end)) {
                ssz mark;
                if (buf_add(out, v + emitted, pos - emitted)) goto memory;
                emitted = pos;
                if (open_part(e, out, end - after, &mark)) goto failed;
                int r = serialized_start(v + after, end - after)
                            ? rewrite_value(e, v + after, end - after, out, depth + 1)
                            : strtr_all(e, &e->plain, v + after, end - after, out);
                if (r) goto failed;
                r = close_part(e, out, mark, v + after, end - after, 0);
                if (r < 0) goto failed;
                if (r) {
                    /* the new "s:<n>:\"...\";" stands for the old one */
                    emitted = end + 2;
                    *changed = 1;
                }
            }
            pos = end + 2;
            remaining--;
            break;
        case 'a': /* a:<count>:{ */
            if (!head(v, n, pos, 'a', '{', &num, &after)) goto done;
            if (push(e, &st, remaining - 1)) goto failed;
            remaining = 2 * num;
            pos = after;
            break;
        case 'O': /* O:<len>:"<class>":<count>:{ */
            if (!head(v, n, pos, 'O', '"', &num, &after) || num > (uint64_t)(n - after)) goto done;
            if (!after_class(v, n, after + (ssz)num, &num2, &after2)) goto done;
            if (push(e, &st, remaining - 1)) goto failed;
            remaining = 2 * num2;
            pos = after2;
            break;
        case 'C': { /* C:<len>:"<class>":<len>:{<payload>}: rewrite the payload, fix its length */
            if (!head(v, n, pos, 'C', '"', &num, &after) || num > (uint64_t)(n - after)) goto done;
            ssz quote = after + (ssz)num;
            if (!after_class(v, n, quote, &num2, &after2) || num2 > (uint64_t)(n - after2)) goto done;
            end = after2 + (ssz)num2;
            if (end >= n || v[end] != '}') goto done;
            if (scan_has(&sc, after2, end)) {
                ssz mark;
                if (buf_add(out, v + emitted, quote - emitted)) goto memory;
                emitted = quote;
                if (open_part(e, out, end - after2, &mark)) goto failed;
                if (rewrite_value(e, v + after2, end - after2, out, depth + 1)) goto failed;
                int r = close_part(e, out, mark, v + after2, end - after2, 1);
                if (r < 0) goto failed;
                if (r) {
                    emitted = end + 1;
                    *changed = 1;
                }
            }
            pos = end + 1;
            remaining--;
            break;
        }
        case 'E': /* E:<len>:"<Enum:Case>"; */
            if (!head(v, n, pos, 'E', '"', &num, &after) || num > (uint64_t)(n - after)) goto done;
            end = after + (ssz)num;
            if (end + 1 >= n || v[end] != '"' || v[end + 1] != ';') goto done;
            pos = end + 2;
            remaining--;
            break;
        default:
            if ((pos = scalar(v, n, pos)) < 0) goto done;
            remaining--;
        }
    }
    if (pos != n) goto done;
    if (buf_add(out, v + emitted, n - emitted)) goto memory;
    rc = V_OK;
    goto done;
memory:
    fail(e, ERR_MEMORY);
failed:
    rc = V_FAILED;
done:
    if (st.items != st.inline_) free(st.items);
    return rc;
}

/* rewrite.Rewriter.rewrite_value: the rule on one decoded value, appended to out. */
static int rewrite_value(Engine *e, const uchar *v, ssz n, Buf *out, int depth) {
    if (depth > MAX_DEPTH) return fail(e, ERR_DEPTH);
    if (serialized_start(v, n)) {
        ssz mark = out->len;
        int64_t counted[NFORMS];
        int changed;
        memcpy(counted, e->counts, sizeof counted);
        int r = rebuild(e, v, n, out, depth, &changed);
        if (r == V_OK) return OK;
        if (r == V_FAILED) return FAILED;
        out->len = mark;
        memcpy(e->counts, counted, sizeof counted); /* what the abandoned rebuild counted was not replaced */
        e->malformed++;
    }
    return strtr_all(e, &e->plain, v, n, out);
}

/* -- literals ---------------------------------------------------------------------------------------- */

/* rewrite.Rewriter._replace_encoded: strtr on a literal's escaped body (by way of its value unless exact). */
static int replace_encoded(Engine *e, const uchar *body, ssz n, Buf *out) {
    if (e->exact) return strtr_all(e, &e->enc, body, n, out);
    e->dec.len = e->tmp.len = 0;
    if (decode_into(&e->dec, body, n)) return fail(e, ERR_MEMORY);
    if (strtr_all(e, &e->plain, e->dec.data, e->dec.len, &e->tmp)) return FAILED;
    if (encode_into(out, e->tmp.data, e->tmp.len)) return fail(e, ERR_MEMORY);
    return OK;
}

/* rewrite.Rewriter._rewrite_literal: one literal's escaped body, rewritten into e->out. */
static int rewrite_literal(Engine *e, const uchar *body, ssz n) {
    Buf *out = &e->out;
    if (serialized_start(body, n)) {
        int64_t counted[NFORMS];
        int changed;
        e->dec.len = e->tmp.len = 0;
        if (decode_into(&e->dec, body, n)) return fail(e, ERR_MEMORY);
        memcpy(counted, e->counts, sizeof counted);
        int r = rebuild(e, e->dec.data, e->dec.len, &e->tmp, 0, &changed);
        if (r == V_FAILED) return FAILED;
        if (r == V_OK) {
            if (!changed) return buf_add(out, body, n) ? fail(e, ERR_MEMORY) : OK;
            e->rebuilt++;
            e->fields++;
            return encode_into(out, e->tmp.data, e->tmp.len) ? fail(e, ERR_MEMORY) : OK;
        }
        memcpy(e->counts, counted, sizeof counted);
        e->malformed++;
    }
    ssz mark = out->len;
    if (replace_encoded(e, body, n, out)) return FAILED;
    if (out->len - mark != n || memcmp(out->data + mark, body, (size_t)n)) e->fields++;
    return OK;
}

/* The first delimiter quote at or after i: one not preceded by an odd run of backslashes. */
static ssz find_quote(const uchar *b, ssz i, ssz n) {
    while (i < n) {
        const uchar *q = memchr(b + i, '\'', (size_t)(n - i));
        if (!q) return -1;
        ssz p = q - b, r = p;
        while (r > 0 && b[r - 1] == '\\') r--;
        if (!((p - r) & 1)) return p;
        i = p + 1;
    }
    return -1;
}

/* rewrite.Rewriter._feed: rewrite what b completes (it starts outside any literal); return where the carry
 * (an unfinished literal, from its opening quote) starts, or -1 on failure. */
static ssz process(Engine *e, const uchar *b, ssz n) {
    const Table *t = &e->enc;
    ssz next[CACHED_ANCHORS];
    ssz i = 0, emitted = 0;
    for (int j = 0; j < CACHED_ANCHORS; j++) next[j] = -2;
    for (;;) {
        ssz open = find_quote(b, i, n);
        if (open < 0) break;
        ssz close = find_quote(b, open + 1, n);
        if (close < 0) {
            if (buf_add(&e->out, b + emitted, open - emitted)) return fail(e, ERR_MEMORY);
            return open;
        }
        int held = 0;
        for (int j = 0; j < t->nanchors && !held; j++) {
            const Anchor *a = &t->anchors[j];
            if (j >= CACHED_ANCHORS) {
                held = find(b, open + 1, close, a->bytes, a->len) != NULL;
                continue;
            }
            if (next[j] == -1) continue;
            if (next[j] <= open) {
                const uchar *f = find(b, open + 1, n, a->bytes, a->len);
                next[j] = f ? f - b : -1;
            }
            held = next[j] >= 0 && next[j] + a->len <= close;
        }
        if (held) {
            if (buf_add(&e->out, b + emitted, open + 1 - emitted)) return fail(e, ERR_MEMORY);
            if (rewrite_literal(e, b + open + 1, close - open - 1)) return -1;
            emitted = close;
        }
        i = close + 1;
    }
    if (buf_add(&e->out, b + emitted, n - emitted)) return fail(e, ERR_MEMORY);
    return n;
}

/* Parity of the run of backslashes that ends b[0:n), continuing one of parity ``before``. */
static int trailing_escape(const uchar *b, ssz n, int before) {
    ssz r = n;
    while (r > 0 && b[r - 1] == '\\') r--;
    return r == 0 ? before ^ (int)(n & 1) : (int)((n - r) & 1);
}

/* Body bytes of the streamed literal, through strtr; final: the literal (or the input) ends here. */
static int stream_body(Engine *e, const uchar *seg, ssz n, int final) {
    ssz consumed, mark;
    if (e->exact) {
        if (buf_add(&e->pend, seg, n)) return fail(e, ERR_MEMORY);
        mark = e->out.len;
        if (strtr(e, &e->enc, e->pend.data, e->pend.len, final, &consumed, &e->out)) return FAILED;
        if (e->out.len - mark != consumed || memcmp(e->out.data + mark, e->pend.data, (size_t)consumed))
            e->changed = 1;
        buf_drop_front(&e->pend, consumed);
        return OK;
    }
    /* By way of the value: decode (an escape may be split between two reads), strtr, encode. */
    if (buf_reserve(&e->pend, n + 1)) return fail(e, ERR_MEMORY);
    uchar *d = e->pend.data + e->pend.len;
    for (ssz i = 0; i < n; i++) {
        uchar c = seg[i];
        if (e->dpend) {
            *d++ = DECODE[c];
            if (!ENCODE[DECODE[c]] || ENCODE[DECODE[c]] != c) e->noncanon = 1;
            e->dpend = 0;
        } else if (c == '\\') {
            e->dpend = 1;
        } else {
            if (ENCODE[c]) e->noncanon = 1;
            *d++ = c;
        }
    }
    if (final && e->dpend) { /* a lone backslash at the end of the input stays (and is escaped) */
        *d++ = '\\';
        e->dpend = 0;
        e->noncanon = 1;
    }
    e->pend.len = d - e->pend.data;
    e->stmp.len = 0;
    if (strtr(e, &e->plain, e->pend.data, e->pend.len, final, &consumed, &e->stmp)) return FAILED;
    if (e->noncanon || e->stmp.len != consumed || memcmp(e->stmp.data, e->pend.data, (size_t)consumed))
        e->changed = 1;
    if (encode_into(&e->out, e->stmp.data, e->stmp.len)) return fail(e, ERR_MEMORY);
    buf_drop_front(&e->pend, consumed);
    return OK;
}

/* The closing quote of the streamed literal in b[0:n), or -1 (then e->esc is brought up to date). */
static ssz stream_close(Engine *e, const uchar *b, ssz n) {
    ssz i = 0;
    while (i < n) {
        const uchar *q = memchr(b + i, '\'', (size_t)(n - i));
        if (!q) break;
        ssz p = q - b, r = p;
        while (r > 0 && b[r - 1] == '\\') r--;
        int odd = (int)((p - r) & 1);
        if (r == 0) odd ^= e->esc;
        if (!odd) return p;
        i = p + 1;
    }
    e->esc = trailing_escape(b, n, e->esc);
    return -1;
}

/* One chunk of input (rewrite.Rewriter.rewrite_stream's loop body). */
static int feed(Engine *e, const uchar *data, ssz n) {
    if (e->streaming) {
        ssz close = stream_close(e, data, n);
        if (close < 0) return stream_body(e, data, n, 0);
        if (stream_body(e, data, close, 1) || buf_add(&e->out, "'", 1)) return fail(e, ERR_MEMORY);
        if (e->changed) e->fields++;
        e->streaming = 0;
        data += close + 1;
        n -= close + 1;
    }
    const uchar *b = data;
    ssz bn = n;
    if (e->carry.len) {
        if (buf_add(&e->carry, data, n)) return fail(e, ERR_MEMORY);
        b = e->carry.data;
        bn = e->carry.len;
    }
    ssz k = process(e, b, bn);
    if (k < 0) return FAILED;
    if (b == e->carry.data) {
        buf_drop_front(&e->carry, k);
    } else if (buf_add(&e->carry, b + k, bn - k)) {
        return fail(e, ERR_MEMORY);
    }
    if (e->carry.len > e->stream_over && !serialized_start(e->carry.data + 1, e->carry.len - 1)) {
        /* A long literal that is not serialized: stream it. */
        e->streaming = 1;
        e->esc = trailing_escape(e->carry.data + 1, e->carry.len - 1, 0);
        e->dpend = e->noncanon = e->changed = 0;
        e->pend.len = 0;
        if (buf_add(&e->out, "'", 1)) return fail(e, ERR_MEMORY);
        if (stream_body(e, e->carry.data + 1, e->carry.len - 1, 0)) return FAILED;
        e->carry.len = 0;
    }
    return OK;
}

/* The end of the input: a literal left open is rewritten as plain text (and not counted as a field). */
static int finish(Engine *e) {
    if (e->streaming) {
        e->streaming = 0;
        return stream_body(e, NULL, 0, 1);
    }
    if (e->carry.len) {
        if (buf_add(&e->out, "'", 1)) return fail(e, ERR_MEMORY);
        if (replace_encoded(e, e->carry.data + 1, e->carry.len - 1, &e->out)) return FAILED;
        e->carry.len = 0;
    }
    return OK;
}

/* -- Python ------------------------------------------------------------------------------------------ */

static PyObject *raise_error(Engine *e) {
    int error = e->error;
    e->error = ERR_NONE;
    if (error == ERR_DEPTH)
        PyErr_Format(PyExc_RecursionError, "a serialized value nests serialized strings more than %d deep.",
                     MAX_DEPTH);
    else
        PyErr_NoMemory();
    return NULL;
}

static void release_buffers(Engine *e) {
    buf_free(&e->out);
    buf_free(&e->carry);
    buf_free(&e->dec);
    buf_free(&e->tmp);
    buf_free(&e->pend);
    buf_free(&e->stmp);
    free(e->cands);
    e->cands = NULL;
    e->ncap = 0;
}

static int Engine_init(Engine *e, PyObject *args, PyObject *kwds) {
    static char *names[] = {"plain_keys", "plain_anchors", "encoded_keys", "encoded_anchors", "encoded_is_exact",
                            "stream_literal_over", NULL};
    PyObject *pk, *pa, *ek, *ea;
    int exact;
    ssz over;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOpn", names, &pk, &pa, &ek, &ea, &exact, &over)) return -1;
    if (e->keep) {
        PyErr_SetString(PyExc_RuntimeError, "an Engine is initialized once");
        return -1;
    }
    /* Tuples of the arguments, kept: the tables point into their bytes. */
    PyObject *keep = Py_BuildValue("(NNNN)", PySequence_Tuple(pk), PySequence_Tuple(pa), PySequence_Tuple(ek),
                                   PySequence_Tuple(ea));
    if (!keep) return -1;
    if (table_init(&e->plain, PyTuple_GET_ITEM(keep, 0), PyTuple_GET_ITEM(keep, 1))) {
        Py_DECREF(keep);
        return -1;
    }
    if (table_init(&e->enc, PyTuple_GET_ITEM(keep, 2), PyTuple_GET_ITEM(keep, 3))) {
        table_free(&e->plain);
        Py_DECREF(keep);
        return -1;
    }
    e->exact = exact;
    e->stream_over = over;
    e->keep = keep;
    return 0;
}

static void Engine_dealloc(Engine *e) {
    table_free(&e->plain);
    table_free(&e->enc);
    release_buffers(e);
    Py_XDECREF(e->keep);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int ready(Engine *e) {
    if (!e->keep) {
        PyErr_SetString(PyExc_RuntimeError, "the Engine is not initialized");
        return 0;
    }
    if (e->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "This rewriter is already rewriting a stream: use one Rewriter per stream.");
        return 0;
    }
    return 1;
}

static PyObject *output(Engine *e, PyObject *write, int64_t *bytes_out) {
    if (!e->out.len) return Py_None;
    PyObject *chunk = PyBytes_FromStringAndSize((const char *)e->out.data, e->out.len);
    *bytes_out += e->out.len;
    e->out.len = 0;
    if (!chunk) return NULL;
    PyObject *r = PyObject_CallOneArg(write, chunk);
    Py_DECREF(chunk);
    if (!r) return NULL;
    Py_DECREF(r);
    return Py_None;
}

PyDoc_STRVAR(rewrite_stream_doc,
             "rewrite_stream(src, dst, chunk_size)\n\nRewrite the dump read from src.read into dst.write; return "
             "(bytes_in, bytes_out, fields_rewritten, serialized_rebuilt, malformed_serialized, counts per form).");

static PyObject *Engine_rewrite_stream(Engine *e, PyObject *args) {
    PyObject *src, *dst, *read = NULL, *write = NULL, *result = NULL;
    ssz chunk;
    int64_t bytes_in = 0, bytes_out = 0;
    if (!PyArg_ParseTuple(args, "OOn", &src, &dst, &chunk) || !ready(e)) return NULL;
    if (chunk < 1) {
        PyErr_SetString(PyExc_ValueError, "chunk_size must be positive");
        return NULL;
    }
    e->busy = 1;
    memset(e->counts, 0, sizeof e->counts);
    e->fields = e->rebuilt = e->malformed = 0;
    e->error = ERR_NONE;
    e->streaming = 0;
    e->out.len = e->carry.len = e->pend.len = 0;
    if (!(read = PyObject_GetAttrString(src, "read")) || !(write = PyObject_GetAttrString(dst, "write"))) goto end;
    for (;;) {
        PyObject *data = PyObject_CallFunction(read, "n", chunk > e->carry.len ? chunk : e->carry.len);
        if (!data) goto end;
        Py_buffer view;
        if (data == Py_None || PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)) {
            int none = data == Py_None;
            Py_DECREF(data);
            if (none) break;
            goto end;
        }
        int rc = OK;
        if (view.len) {
            bytes_in += view.len;
            Py_BEGIN_ALLOW_THREADS
            rc = feed(e, view.buf, view.len);
            Py_END_ALLOW_THREADS
        }
        ssz got = view.len;
        PyBuffer_Release(&view);
        Py_DECREF(data);
        if (rc) {
            raise_error(e);
            goto end;
        }
        if (!output(e, write, &bytes_out)) goto end;
        if (!got) break;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = finish(e);
    Py_END_ALLOW_THREADS
    if (rc) {
        raise_error(e);
        goto end;
    }
    if (!output(e, write, &bytes_out)) goto end;
    result = Py_BuildValue("(LLLLL(LLLLLL))", (long long)bytes_in, (long long)bytes_out, (long long)e->fields,
                           (long long)e->rebuilt, (long long)e->malformed, (long long)e->counts[0],
                           (long long)e->counts[1], (long long)e->counts[2], (long long)e->counts[3],
                           (long long)e->counts[4], (long long)e->counts[5]);
end:
    Py_XDECREF(read);
    Py_XDECREF(write);
    e->streaming = 0;
    release_buffers(e);
    e->busy = 0;
    return result;
}

PyDoc_STRVAR(replace_plain_doc, "replace_plain(value)\n\nstrtr over the keys of decoded values (rewrite.Replacer).");

static PyObject *Engine_replace_plain(Engine *e, PyObject *arg) {
    Py_buffer view;
    Buf out = {0};
    if (!ready(e) || PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    int rc = strtr_all(e, &e->plain, view.buf, view.len, &out);
    PyBuffer_Release(&view);
    PyObject *r = rc ? raise_error(e) : PyBytes_FromStringAndSize((const char *)out.data, out.len);
    buf_free(&out);
    return r;
}

PyDoc_STRVAR(counts_doc, "counts()\n\nReplacements per form (rewrite.FORMS) since the last run started.");

static PyObject *Engine_counts(Engine *e, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(LLLLLL)", (long long)e->counts[0], (long long)e->counts[1], (long long)e->counts[2],
                         (long long)e->counts[3], (long long)e->counts[4], (long long)e->counts[5]);
}

static PyMethodDef Engine_methods[] = {
    {"rewrite_stream", (PyCFunction)Engine_rewrite_stream, METH_VARARGS, rewrite_stream_doc},
    {"replace_plain", (PyCFunction)Engine_replace_plain, METH_O, replace_plain_doc},
    {"counts", (PyCFunction)Engine_counts, METH_NOARGS, counts_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Engine_doc,
             "Engine(plain_keys, plain_anchors, encoded_keys, encoded_anchors, encoded_is_exact, "
             "stream_literal_over)\n\nThe rewrite of one table of keys; each key is (old, new, form index, "
             "boundary: 0 none, 1 host, 2 host in a URL-encoded form).");

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "wpclone._rewrite_core.Engine",
    .tp_basicsize = sizeof(Engine),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Engine_doc,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rewrite_core", "The compiled engine of wpclone.rewrite (see _rewrite_core.c).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rewrite_core(void) {
    init_tables();
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
