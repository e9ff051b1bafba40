/* The injection classifier's hashed n-gram features, compiled: the same indices as
 * podium/policy/ngrams.py computes with numpy (which stays as the reference and the
 * fallback when this module was not built), summed against the weights in one pass.
 *
 * On a short prompt numpy's fixed cost per array operation (about thirty of them) is most of
 * the classifier's time; here a prompt costs one walk over its bytes. The input is the
 * prompt already lower-cased, cut and encoded by the caller: all the arithmetic below is on
 * unsigned integers, which wrap modulo 2**64 and 2**32 exactly as numpy's do.
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

static const uint64_t ORDER_SALTS[3] = {0xA5A5, 4 * 0x9E37, 5 * 0x9E37};

typedef struct {
    uint64_t *seen;  /* one bit per index */
    uint32_t mask;
    const float *weights; /* NULL: only collect */
    double total;
    Py_ssize_t count;
    uint32_t *indices; /* NULL: only sum */
} Features;

static inline int is_word_byte(unsigned char byte) {
    return (byte >= 'a' && byte <= 'z') || (byte >= '0' && byte <= '9') || byte == '\'';
}

static inline void add(Features *features, uint64_t hash) {
    uint32_t mixed = (uint32_t)hash ^ (uint32_t)(hash >> 32);
    mixed ^= mixed >> 15;
    mixed *= MIX;
    mixed ^= mixed >> 12;
    uint32_t index = mixed & features->mask;
    uint64_t bit = UINT64_C(1) << (index & 63);
    uint64_t *slot = &features->seen[index >> 6];
    if (*slot & bit) {
        return;
    }
    *slot |= bit;
    if (features->weights != NULL) {
        features->total += features->weights[index];
    }
    if (features->indices != NULL) {
        features->indices[features->count] = index;
    }
    features->count++;
}

static void walk(const unsigned char *data, Py_ssize_t size, Features *features) {
    /* Character 3-, 4- and 5-grams: value(i, n) = value(i, n - 1) * P + byte(i + n - 1). */
    for (Py_ssize_t i = 0; i + 3 <= size; i++) {
        uint64_t value = ((uint64_t)data[i] * CHAR_PRIME + data[i + 1]) * CHAR_PRIME + data[i + 2];
        add(features, value ^ ORDER_SALTS[0]);
        if (i + 4 <= size) {
            value = value * CHAR_PRIME + data[i + 3];
            add(features, value ^ ORDER_SALTS[1]);
            if (i + 5 <= size) {
                value = value * CHAR_PRIME + data[i + 4];
                add(features, value ^ ORDER_SALTS[2]);
            }
        }
    }
    /* Runs of [a-z0-9'] (within the first WORD_LIMIT bytes), each hashed as
     * sum(byte[k] * P**(end - 1 - k)), then every neighbouring pair. */
    Py_ssize_t limit = size < WORD_LIMIT ? size : WORD_LIMIT;
    int have_previous = 0;
    uint64_t previous = 0;
    Py_ssize_t k = 0;
    while (k < limit) {
        if (!is_word_byte(data[k])) {
            k++;
            continue;
        }
        uint64_t word = 0;
        while (k < limit && is_word_byte(data[k])) {
            word = word * WORD_PRIME + data[k];
            k++;
        }
        add(features, word ^ WORD_SALT);
        if (have_previous) {
            add(features, previous * PAIR_PRIME ^ word);
        }
        previous = word;
        have_previous = 1;
    }
}

static int prepare(Features *features, int bits) {
    if (bits < 1 || bits > MAX_BITS) {
        PyErr_Format(PyExc_ValueError, "bits must be between 1 and %d", MAX_BITS);
        return -1;
    }
    size_t words = ((size_t)1 << bits) / 64 + 1;
    features->seen = PyMem_Calloc(words, sizeof(uint64_t));
    if (features->seen == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    features->mask = (uint32_t)(((uint64_t)1 << bits) - 1);
    features->total = 0.0;
    features->count = 0;
    features->weights = NULL;
    features->indices = NULL;
    return 0;
}

/* Called once a request: METH_FASTCALL, its three arguments read without a format string
 * (PyArg_ParseTuple cost ~1.5k instructions a call). */
static PyObject *weight_sum(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer text, weights;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "weight_sum(encoded, bits, weights) takes 3 arguments");
        return NULL;
    }
    long wide_bits = PyLong_AsLong(args[1]);
    if (wide_bits == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int bits = wide_bits < 0 || wide_bits > MAX_BITS ? -1 : (int)wide_bits;
    if (PyUnicode_Check(args[0])) { /* as "y*" refuses it */
        PyErr_SetString(PyExc_TypeError, "weight_sum() argument 1 must be bytes-like, not str");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &text, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &weights, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&text);
        return NULL;
    }
    PyObject *result = NULL;
    Features features;
    if (prepare(&features, bits) < 0) {
        goto done;
    }
    if (weights.len < (Py_ssize_t)(((size_t)1 << bits) * sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "the weights are fewer than 2**bits float32 values");
        PyMem_Free(features.seen);
        goto done;
    }
    features.weights = (const float *)weights.buf;
    walk((const unsigned char *)text.buf, text.len, &features);
    PyMem_Free(features.seen);
    result = Py_BuildValue("(dn)", features.total, features.count);
done:
    PyBuffer_Release(&text);
    PyBuffer_Release(&weights);
    return result;
}

static int ascending(const void *left, const void *right) {
    uint32_t a = *(const uint32_t *)left, b = *(const uint32_t *)right;
    return (a > b) - (a < b);
}

static PyObject *indices(PyObject *module, PyObject *args) {
    Py_buffer text;
    int bits;
    if (!PyArg_ParseTuple(args, "y*i:indices", &text, &bits)) {
        return NULL;
    }
    PyObject *result = NULL;
    Features features;
    if (prepare(&features, bits) < 0) {
        goto done;
    }
    /* At most three character n-grams per byte and two word features per byte. */
    size_t most = (size_t)text.len * 5 + 1;
    features.indices = PyMem_Malloc(most * sizeof(uint32_t));
    if (features.indices == NULL) {
        PyErr_NoMemory();
        PyMem_Free(features.seen);
        goto done;
    }
    walk((const unsigned char *)text.buf, text.len, &features);
    qsort(features.indices, (size_t)features.count, sizeof(uint32_t), ascending);
    result = PyList_New(features.count);
    for (Py_ssize_t i = 0; result != NULL && i < features.count; i++) {
        PyObject *item = PyLong_FromUnsignedLong(features.indices[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, item);
    }
    PyMem_Free(features.indices);
    PyMem_Free(features.seen);
done:
    PyBuffer_Release(&text);
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
