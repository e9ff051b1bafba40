/* The injection classifier's hashed n-gram features, compiled: the same indices as
 * podium/policy/ngrams.py computes with numpy (which stays as the reference and the
 * fallback when this module was not built), summed against the weights.
 *
 * On a short prompt numpy's fixed cost per array operation (about thirty of them) is most of
 * the classifier's time; here a prompt costs two walks: one over its bytes, writing every
 * feature's index (repeats included), one over those indices, keeping the first of each. All
 * the arithmetic is on unsigned integers, which wrap modulo 2**64 and 2**32 exactly as
 * numpy's do.
 *
 * The input is the prompt as ngrams.prepared() makes it (lower-cased, cut, UTF-8), or a str,
 * which is prepared here as prepared() would: an ASCII one without a copy of it as a Python
 * object (its characters are its UTF-8 bytes, and lower-casing them is arithmetic), so a
 * short prompt costs no allocation at all.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CHAR_PRIME UINT64_C(1000003)
#define WORD_PRIME UINT64_C(0x100000001B3)
#define PAIR_PRIME UINT64_C(0x9E3779B97F4A7C15)
#define WORD_SALT UINT64_C(0x5BD1E995)
#define MIX UINT32_C(0x2C1B3C6D)
#define WORD_LIMIT 65536 /* bytes searched for words, as ngrams._LIMIT */
#define MAX_BITS 24
#define MAX_CHARS 20000 /* characters read, as ngrams.prepared's max_chars */
/* At most three character n-grams per byte and two word features per byte. */
#define MOST_SLOTS(size) ((size_t)(size) * 5 + 1)
/* Prompts up to this many bytes need no allocation (buffers on the stack). */
#define LOCAL_BYTES 1024
#define LOCAL_SLOTS MOST_SLOTS(LOCAL_BYTES)
#define LOCAL_BITS 16

static const uint64_t ORDER_SALTS[3] = {0xA5A5, 4 * 0x9E37, 5 * 0x9E37};

/* 1 for the bytes of a word, [a-z0-9'], as ngrams._WORD_BYTE: one lookup, where three range
 * tests cost eight instructions a byte. */
static const unsigned char WORD_BYTE[256] = {
    ['\''] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* A 64-bit hash folded to 32 bits, mixed (the polynomial hash's low bits are weak) and
 * masked to an index. */
static inline uint32_t slot(uint64_t hash, uint32_t mask) {
    uint32_t mixed = (uint32_t)hash ^ (uint32_t)(hash >> 32);
    mixed ^= mixed >> 15;
    mixed *= MIX;
    mixed ^= mixed >> 12;
    return mixed & mask;
}

/* Writes an index, and clears its word of the bitmap of seen indices: the bitmap then needs
 * no zeroing beforehand (2**16 bits cost more than the rest of a short prompt), and every
 * word of it that is read was written. */
static inline void emit(uint32_t **next, uint64_t *seen, uint32_t index) {
    *(*next)++ = index;
    seen[index >> 6] = 0;
}

/* Every feature's index, repeats included, into `out` (room for MOST_SLOTS(size)), in the
 * order the weights are summed: each position's 3-, 4- and 5-gram, then each run of
 * [a-z0-9'] (within the first WORD_LIMIT bytes) and the pair it closes. Returns how many. */
static Py_ssize_t slots(const unsigned char *data, Py_ssize_t size, uint32_t mask, uint32_t *out,
                        uint64_t *seen) {
    uint32_t *next = out;
    /* value(i, n) = value(i, n - 1) * P + byte(i + n - 1). */
    Py_ssize_t i = 0;
    for (; i + 5 <= size; i++) {
        uint64_t value = ((uint64_t)data[i] * CHAR_PRIME + data[i + 1]) * CHAR_PRIME + data[i + 2];
        emit(&next, seen, slot(value ^ ORDER_SALTS[0], mask));
        value = value * CHAR_PRIME + data[i + 3];
        emit(&next, seen, slot(value ^ ORDER_SALTS[1], mask));
        value = value * CHAR_PRIME + data[i + 4];
        emit(&next, seen, slot(value ^ ORDER_SALTS[2], mask));
    }
    for (; i + 3 <= size; i++) { /* the last two positions have no 5-gram, the last no 4-gram */
        uint64_t value = ((uint64_t)data[i] * CHAR_PRIME + data[i + 1]) * CHAR_PRIME + data[i + 2];
        emit(&next, seen, slot(value ^ ORDER_SALTS[0], mask));
        if (i + 4 <= size) {
            value = value * CHAR_PRIME + data[i + 3];
            emit(&next, seen, slot(value ^ ORDER_SALTS[1], mask));
        }
    }
    /* Each word hashed as sum(byte[k] * P**(end - 1 - k)), then every neighbouring pair. */
    Py_ssize_t limit = size < WORD_LIMIT ? size : WORD_LIMIT;
    int have_previous = 0;
    uint64_t previous = 0;
    Py_ssize_t k = 0;
    while (k < limit) {
        if (!WORD_BYTE[data[k]]) {
            k++;
            continue;
        }
        uint64_t word = 0;
        do {
            word = word * WORD_PRIME + data[k];
            k++;
        } while (k < limit && WORD_BYTE[data[k]]);
        emit(&next, seen, slot(word ^ WORD_SALT, mask));
        if (have_previous) {
            emit(&next, seen, slot(previous * PAIR_PRIME ^ word, mask));
        }
        previous = word;
        have_previous = 1;
    }
    return next - out;
}

/* 1 the first time `index` is given, else 0 (the words of `seen` were cleared by emit). */
static inline int first_time(uint64_t *seen, uint32_t index) {
    uint64_t word = seen[index >> 6];
    if ((word >> (index & 63)) & 1) {
        return 0;
    }
    seen[index >> 6] = word | UINT64_C(1) << (index & 63);
    return 1;
}

/* ASCII lower-cased, as str.lower() does it (only A-Z change), eight bytes at a time. */
static void lower_ascii(const unsigned char *from, unsigned char *to, Py_ssize_t length) {
    const uint64_t ones = UINT64_C(0x0101010101010101);
    Py_ssize_t k = 0;
    for (; k + 8 <= length; k += 8) {
        uint64_t chunk;
        memcpy(&chunk, from + k, 8);
        /* Every byte is below 0x80, so no sum carries into the next byte: adding 0x3F sets a
         * byte's top bit when it is 'A' or above, adding 0x25 when it is above 'Z'. */
        uint64_t capitals = (chunk + 0x3F * ones) & ~(chunk + 0x25 * ones) & 0x80 * ones;
        chunk |= capitals >> 2; /* 0x20: the small letter */
        memcpy(to + k, &chunk, 8);
    }
    for (; k < length; k++) {
        to[k] = (unsigned char)Py_TOLOWER(from[k]);
    }
}

/* Any other str as ngrams.prepared() makes it: lower-cased, cut to its first and last
 * MAX_CHARS / 2 characters, as UTF-8 ("replace" for lone surrogates). */
static PyObject *prepared(PyObject *text) {
    PyObject *lowered = PyObject_CallMethod(text, "lower", NULL);
    if (lowered == NULL) {
        return NULL;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(lowered), half = MAX_CHARS / 2;
    if (length > MAX_CHARS) {
        PyObject *head = PyUnicode_Substring(lowered, 0, half);
        PyObject *tail = PyUnicode_Substring(lowered, length - half, length);
        PyObject *cut = head && tail ? PyUnicode_FromFormat("%U %U", head, tail) : NULL;
        Py_XDECREF(head);
        Py_XDECREF(tail);
        Py_SETREF(lowered, cut);
        if (lowered == NULL) {
            return NULL;
        }
    }
    PyObject *encoded = PyUnicode_AsEncodedString(lowered, "utf-8", "replace");
    Py_DECREF(lowered);
    return encoded;
}

/* The text to read, prepared (see the top of the file): `view` over a bytes-like object, over
 * `scratch` (or a new buffer in `*owned`) holding an ASCII str lower-cased and cut, or over
 * the bytes (in `*encoded`) prepared from any other str. */
static int text_bytes(PyObject *text, Py_buffer *view, unsigned char *scratch,
                      unsigned char **owned, PyObject **encoded) {
    *owned = NULL;
    *encoded = NULL;
    if (!PyUnicode_Check(text)) {
        return PyObject_GetBuffer(text, view, PyBUF_SIMPLE);
    }
    if (!PyUnicode_IS_ASCII(text)) {
        *encoded = prepared(text);
        if (*encoded == NULL) {
            return -1;
        }
        return PyObject_GetBuffer(*encoded, view, PyBUF_SIMPLE);
    }
    const unsigned char *chars = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    Py_ssize_t half = MAX_CHARS / 2, size = length > MAX_CHARS ? 2 * half + 1 : length;
    unsigned char *lowered = scratch;
    if (size > LOCAL_BYTES) {
        lowered = *owned = PyMem_Malloc((size_t)size);
        if (lowered == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (length > MAX_CHARS) {
        lower_ascii(chars, lowered, half);
        lowered[half] = ' ';
        lower_ascii(chars + length - half, lowered + half + 1, half);
    } else {
        lower_ascii(chars, lowered, length);
    }
    return PyBuffer_FillInfo(view, NULL, lowered, size, 1, PyBUF_SIMPLE);
}

static void release_text(Py_buffer *view, unsigned char *owned, PyObject *encoded) {
    if (view != NULL) {
        PyBuffer_Release(view);
    }
    PyMem_Free(owned);
    Py_XDECREF(encoded);
}

/* Room for a text's feature indices and for the bitmap of the seen ones: on the stack when
 * they fit there, else on the heap. */
typedef struct {
    uint32_t *slots;
    uint64_t *seen;
    void *heap;
    uint32_t local_slots[LOCAL_SLOTS];
    uint64_t local_seen[(1 << LOCAL_BITS) / 64];
} Room;

static int make_room(Room *room, Py_ssize_t size, int bits) {
    if (bits < 1 || bits > MAX_BITS) {
        PyErr_Format(PyExc_ValueError, "bits must be between 1 and %d", MAX_BITS);
        return -1;
    }
    size_t slots_wanted = MOST_SLOTS(size);
    size_t words = (((size_t)1 << bits) + 63) / 64;
    int small_text = slots_wanted <= LOCAL_SLOTS, small_map = bits <= LOCAL_BITS;
    size_t heap = (small_text ? 0 : slots_wanted * sizeof(uint32_t)) +
                  (small_map ? 0 : words * sizeof(uint64_t));
    room->heap = NULL;
    if (heap) {
        room->heap = PyMem_Malloc(heap);
        if (room->heap == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    /* The bitmap first: its words are 8-byte aligned at the start of the block. */
    uint64_t *free_words = room->heap;
    if (small_map) {
        room->seen = room->local_seen;
    } else {
        room->seen = free_words;
        free_words += words;
    }
    room->slots = small_text ? room->local_slots : (uint32_t *)free_words;
    return 0;
}

/* Called once a request: METH_FASTCALL, its three arguments read without a format string
 * (PyArg_ParseTuple cost ~1.5k instructions a call). */
static PyObject *weight_sum(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "weight_sum(encoded, bits, weights) takes 3 arguments");
        return NULL;
    }
    long wide_bits = PyLong_AsLong(args[1]);
    if (wide_bits == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int bits = wide_bits < 0 || wide_bits > MAX_BITS ? -1 : (int)wide_bits;
    Py_buffer text, weights;
    unsigned char scratch[LOCAL_BYTES], *owned;
    PyObject *encoded;
    if (text_bytes(args[0], &text, scratch, &owned, &encoded) < 0) {
        release_text(NULL, owned, encoded);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &weights, PyBUF_SIMPLE) < 0) {
        release_text(&text, owned, encoded);
        return NULL;
    }
    PyObject *result = NULL;
    Room room;
    if (make_room(&room, text.len, bits) < 0) {
        goto done;
    }
    if (weights.len < (Py_ssize_t)(((size_t)1 << bits) * sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "the weights are fewer than 2**bits float32 values");
        PyMem_Free(room.heap);
        goto done;
    }
    const float *weight = (const float *)weights.buf;
    uint32_t mask = (uint32_t)(((uint64_t)1 << bits) - 1);
    Py_ssize_t found = slots((const unsigned char *)text.buf, text.len, mask, room.slots, room.seen);
    /* In the order of first appearance, as the sum has always been taken: float rounding
     * depends on the order, and a threshold compares the result. */
    double total = 0.0;
    Py_ssize_t count = 0;
    for (Py_ssize_t k = 0; k < found; k++) {
        uint32_t index = room.slots[k];
        if (first_time(room.seen, index)) {
            total += weight[index];
            count++;
        }
    }
    PyMem_Free(room.heap);
    result = PyTuple_New(2); /* what Py_BuildValue("(dn)") makes, without its format */
    PyObject *sum = PyFloat_FromDouble(total), *many = PyLong_FromSsize_t(count);
    if (result == NULL || sum == NULL || many == NULL) {
        Py_CLEAR(result);
        Py_XDECREF(sum);
        Py_XDECREF(many);
    } else {
        PyTuple_SET_ITEM(result, 0, sum);
        PyTuple_SET_ITEM(result, 1, many);
    }
done:
    release_text(&text, owned, encoded);
    PyBuffer_Release(&weights);
    return result;
}

static int ascending(const void *left, const void *right) {
    uint32_t a = *(const uint32_t *)left, b = *(const uint32_t *)right;
    return (a > b) - (a < b);
}

static PyObject *indices(PyObject *module, PyObject *args) {
    PyObject *encoded;
    int bits;
    if (!PyArg_ParseTuple(args, "Oi:indices", &encoded, &bits)) {
        return NULL;
    }
    Py_buffer text;
    unsigned char scratch[LOCAL_BYTES], *owned;
    PyObject *prepared_text;
    if (text_bytes(encoded, &text, scratch, &owned, &prepared_text) < 0) {
        release_text(NULL, owned, prepared_text);
        return NULL;
    }
    PyObject *result = NULL;
    Room room;
    if (make_room(&room, text.len, bits) < 0) {
        goto done;
    }
    uint32_t mask = (uint32_t)(((uint64_t)1 << bits) - 1);
    Py_ssize_t found = slots((const unsigned char *)text.buf, text.len, mask, room.slots, room.seen);
    Py_ssize_t count = 0;
    for (Py_ssize_t k = 0; k < found; k++) {
        if (first_time(room.seen, room.slots[k])) {
            room.slots[count++] = room.slots[k];
        }
    }
    qsort(room.slots, (size_t)count, sizeof(uint32_t), ascending);
    result = PyList_New(count);
    for (Py_ssize_t k = 0; result != NULL && k < count; k++) {
        PyObject *item = PyLong_FromUnsignedLong(room.slots[k]);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, item);
    }
    PyMem_Free(room.heap);
done:
    release_text(&text, owned, prepared_text);
    return result;
}

static PyMethodDef methods[] = {
    {"weight_sum", (PyCFunction)(void (*)(void))weight_sum, METH_FASTCALL,
     "weight_sum(encoded, bits, weights) -> (sum of the weights of the distinct indices, "
     "how many there are)"},
    {"indices", indices, METH_VARARGS, "indices(encoded, bits) -> the distinct indices, ascending"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "podium.policy._ngrams", NULL, 0, methods,
};

PyMODINIT_FUNC PyInit__ngrams(void) { return PyModule_Create(&module); }
