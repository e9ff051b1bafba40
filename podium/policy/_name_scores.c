/* The name tagger's packed scores, added up in C: PackedScores.winner
 * (podium/policy/name_scores.py, which stays as the reference and the fallback when this
 * module was not built) over the same tables, with each packed integer given as its bytes.
 *
 * A packed row is one unsigned 64-bit field per label, little-endian: exactly
 * ``value.to_bytes(8 * labels, "little")`` of the Python integer. Summing the rows field by
 * field in uint64 is summing the integers (name_scores.py keeps every field below 2**64), so
 * the winner and the near-tie answer are the reference's. Python spends ~26k instructions a
 * token on the lookups and the big-integer arithmetic; this is a few thousand.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_LABELS 8
#define CLEAR_LEAD 46 /* name_scores._CLEAR_LEAD */

/* The tables, in PackedScores's order (the integers as bytes). */
enum {
    CONTEXT,
    SHAPED,
    WORD,
    SUFFIX3,
    SUFFIX2,
    PREFIX3,
    LENGTH,
    BEFORE,
    BEFORE2,
    AFTER,
    AFTER2,
    BEFORE_SHAPE,
    AFTER_SHAPE,
    PREVIOUS_WORD,
    BEFORE_WORD,
    SHAPE_AFTER_SHAPE,
    LABEL_COUNT,
    TABLES
};

typedef struct {
    uint64_t sums[MAX_LABELS];
    Py_ssize_t labels;
} Sums;

static int add(Sums *sums, PyObject *row) {
    if (row == NULL) {
        return 0; /* a feature without weights adds nothing */
    }
    if (!PyBytes_Check(row) || PyBytes_GET_SIZE(row) != 8 * sums->labels) {
        PyErr_SetString(PyExc_TypeError, "a packed row must be 8 bytes per label");
        return -1;
    }
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(row);
    for (Py_ssize_t label = 0; label < sums->labels; label++) {
        uint64_t field = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        memcpy(&field, bytes + 8 * label, 8); /* the row's byte order is the machine's */
#else
        for (int k = 7; k >= 0; k--) {
            field = (field << 8) | bytes[8 * label + k];
        }
#endif
        sums->sums[label] += field;
    }
    return 0;
}

/* table.get(key), borrowed; NULL without an error when absent. */
static PyObject *get(PyObject *table, PyObject *key) {
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "a table must be a dict");
        return NULL;
    }
    return PyDict_GetItemWithError(table, key);
}

/* table[key], borrowed, raising KeyError as Python's indexing does. */
static PyObject *item(PyObject *table, PyObject *key) {
    PyObject *found = get(table, key);
    if (found == NULL && !PyErr_Occurred()) {
        PyErr_SetObject(PyExc_KeyError, key);
    }
    return found;
}

/* Adds table.get(key) (key a new reference, consumed); -1 on an error. */
static int add_from(Sums *sums, PyObject *table, PyObject *key) {
    if (key == NULL) {
        return -1;
    }
    PyObject *row = get(table, key);
    Py_DECREF(key);
    if (row == NULL && PyErr_Occurred()) {
        return -1;
    }
    return add(sums, row);
}

/* Adds table.get(first, {}).get(second), for the nested tables. */
static int add_nested(Sums *sums, PyObject *table, PyObject *first, PyObject *second) {
    PyObject *inner = get(table, first);
    if (inner == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *row = get(inner, second);
    if (row == NULL && PyErr_Occurred()) {
        return -1;
    }
    return add(sums, row);
}

static PyObject *sequence_item(PyObject *sequence, Py_ssize_t index) {
    if (!PyTuple_Check(sequence) || index >= PyTuple_GET_SIZE(sequence)) {
        PyErr_SetString(PyExc_TypeError, "expected a tuple of packed rows");
        return NULL;
    }
    return PyTuple_GET_ITEM(sequence, index);
}

static PyObject *winner(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "winner takes the tables and 14 token arguments");
        return NULL;
    }
    PyObject *tables = args[0], *lower = args[1], *word_shape = args[3];
    PyObject *before = args[6], *before2 = args[7], *after = args[8], *after2 = args[9];
    PyObject *before_shape = args[10], *after_shape = args[11];
    PyObject *previous = args[13], *previous2 = args[14];
    if (!PyTuple_Check(tables) || PyTuple_GET_SIZE(tables) != TABLES || !PyUnicode_Check(lower)) {
        PyErr_SetString(PyExc_TypeError, "winner needs the tables tuple and the lower-cased word");
        return NULL;
    }
    Py_ssize_t length = PyLong_AsSsize_t(args[2]);
    int usual = PyObject_IsTrue(args[4]), start = PyObject_IsTrue(args[5]);
    int after_usual = PyObject_IsTrue(args[12]);
    Sums sums = {{0}, PyLong_AsSsize_t(PyTuple_GET_ITEM(tables, LABEL_COUNT))};
    if (PyErr_Occurred() || usual < 0 || start < 0 || after_usual < 0) {
        return NULL;
    }
    if (sums.labels < 1 || sums.labels > MAX_LABELS) {
        PyErr_SetString(PyExc_ValueError, "unsupported number of labels");
        return NULL;
    }
#define TABLE(name) PyTuple_GET_ITEM(tables, name)
    /* context[previous][previous2][2 * usual + after_usual] */
    PyObject *by_previous = item(TABLE(CONTEXT), previous);
    PyObject *contexts = by_previous == NULL ? NULL : item(by_previous, previous2);
    PyObject *context = contexts == NULL ? NULL : sequence_item(contexts, 2 * usual + after_usual);
    if (context == NULL || add(&sums, context) < 0) {
        return NULL;
    }
    /* shaped[previous][2 * usual + start].get(word_shape) */
    PyObject *shaped = item(TABLE(SHAPED), previous);
    PyObject *by_shape = shaped == NULL ? NULL : sequence_item(shaped, 2 * usual + start);
    if (by_shape == NULL || add_from(&sums, by_shape, Py_NewRef(word_shape)) < 0) {
        return NULL;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "a token's length cannot be negative");
        return NULL;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(lower);
    PyObject *lengths = TABLE(LENGTH);
    PyObject *length_row = sequence_item(lengths, length < 12 ? length : 12);
    if (length_row == NULL || add(&sums, length_row) < 0 ||
        add_from(&sums, TABLE(WORD), Py_NewRef(lower)) < 0 ||
        add_from(&sums, TABLE(SUFFIX3), PyUnicode_Substring(lower, size > 3 ? size - 3 : 0, size)) <
            0 ||
        add_from(&sums, TABLE(SUFFIX2), PyUnicode_Substring(lower, size > 2 ? size - 2 : 0, size)) <
            0 ||
        add_from(&sums, TABLE(PREFIX3), PyUnicode_Substring(lower, 0, size < 3 ? size : 3)) < 0 ||
        add_from(&sums, TABLE(BEFORE), Py_NewRef(before)) < 0 ||
        add_from(&sums, TABLE(BEFORE2), Py_NewRef(before2)) < 0 ||
        add_from(&sums, TABLE(AFTER), Py_NewRef(after)) < 0 ||
        add_from(&sums, TABLE(AFTER2), Py_NewRef(after2)) < 0 ||
        add_from(&sums, TABLE(BEFORE_SHAPE), Py_NewRef(before_shape)) < 0 ||
        add_from(&sums, TABLE(AFTER_SHAPE), Py_NewRef(after_shape)) < 0) {
        return NULL;
    }
    PyObject *previous_words = item(TABLE(PREVIOUS_WORD), previous);
    if (previous_words == NULL || add_from(&sums, previous_words, Py_NewRef(lower)) < 0 ||
        add_nested(&sums, TABLE(BEFORE_WORD), before, lower) < 0 ||
        add_nested(&sums, TABLE(SHAPE_AFTER_SHAPE), word_shape, after_shape) < 0) {
        return NULL;
    }
#undef TABLE
    /* The best score, its label and the runner-up, as PackedScores.winner finds them. */
    uint64_t best = sums.sums[0], second = 0;
    int have_second = 0;
    Py_ssize_t index = 0;
    for (Py_ssize_t label = 1; label < sums.labels; label++) {
        uint64_t score = sums.sums[label];
        if (score > best) {
            second = best;
            have_second = 1;
            best = score;
            index = label;
        } else if (!have_second || score > second) {
            second = score;
            have_second = 1;
        }
    }
    /* The reference starts the runner-up at -1: with one label, the lead is best + 1. */
    if (have_second ? best - second <= CLEAR_LEAD : best + 1 <= CLEAR_LEAD) {
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(index);
}

static PyMethodDef methods[] = {
    {"winner", (PyCFunction)(void (*)(void))winner, METH_FASTCALL,
     "winner(tables, lower, length, word_shape, usual, start, before, before2, after, after2, "
     "before_shape, after_shape, after_usual, previous, previous2) -> int | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_name_scores",
    .m_doc = "The name tagger's packed scores, added up in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__name_scores(void) { return PyModule_Create(&module); }
