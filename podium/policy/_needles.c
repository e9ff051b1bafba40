/* Which of a few fixed byte strings occur in a text, in one pass (podium/policy/needles.py
 * is the Python side, and its fallback when this module was not built).
 *
 * The screens ask "does the text contain any of these words?" before they run a regular
 * expression: about seventy words a message. Python's `in` scans the whole text once per
 * word; here an Aho-Corasick automaton, compiled to a table of transitions, reads each byte
 * once and says which words occurred, as the bits of one integer.
 *
 * An automaton may read the text through a shape, a table of 256 bytes (as bytes.maketrans
 * makes): the needles are then looked for in the text's bytes mapped through it, as if by
 * bytes.translate. The table costs nothing a byte: it is folded into the byte classes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define CAPSULE_NAME "podium.policy._needles.Automaton"
#define MAX_NEEDLES 64

typedef struct {
    uint8_t classes[256]; /* byte -> its column in the table; 0: a byte no needle has */
    Py_ssize_t columns;
    Py_ssize_t states;
    int32_t *next;    /* states x columns: the state after reading a byte in a state */
    uint64_t *output; /* per state: the needles that end there (or at one of its suffixes) */
} Automaton;

static void automaton_free(Automaton *automaton) {
    if (automaton != NULL) {
        PyMem_Free(automaton->next);
        PyMem_Free(automaton->output);
        PyMem_Free(automaton);
    }
}

static void capsule_free(PyObject *capsule) {
    automaton_free(PyCapsule_GetPointer(capsule, CAPSULE_NAME));
}

/* The trie of the needles, then the failure links in breadth-first order, folded into the
 * table so that reading a byte is one lookup whatever happened before. */
static int build(Automaton *automaton, PyObject *needles, const unsigned char *shape) {
    Py_ssize_t count = PyTuple_GET_SIZE(needles);
    Py_ssize_t total = 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *needle = PyTuple_GET_ITEM(needles, i);
        if (!PyBytes_Check(needle)) {
            PyErr_SetString(PyExc_TypeError, "needles must be bytes");
            return -1;
        }
        total += PyBytes_GET_SIZE(needle);
        for (Py_ssize_t k = 0; k < PyBytes_GET_SIZE(needle); k++) {
            unsigned char byte = (unsigned char)PyBytes_AS_STRING(needle)[k];
            if (automaton->classes[byte] == 0) {
                automaton->classes[byte] = (uint8_t)++automaton->columns;
            }
        }
    }
    automaton->columns++; /* column 0: every byte that is in no needle */
    if (total > (Py_ssize_t)(INT32_MAX / automaton->columns)) {
        PyErr_SetString(PyExc_ValueError, "the needles are too long");
        return -1;
    }
    Py_ssize_t columns = automaton->columns;
    automaton->next = PyMem_Malloc((size_t)(total * columns) * sizeof(int32_t));
    automaton->output = PyMem_Calloc((size_t)total, sizeof(uint64_t));
    Py_ssize_t *fail = PyMem_Calloc((size_t)total, sizeof(Py_ssize_t));
    Py_ssize_t *queue = PyMem_Malloc((size_t)total * sizeof(Py_ssize_t));
    if (automaton->next == NULL || automaton->output == NULL || fail == NULL || queue == NULL) {
        PyMem_Free(fail);
        PyMem_Free(queue);
        PyErr_NoMemory();
        return -1;
    }
    int32_t *next = automaton->next;
    for (Py_ssize_t k = 0; k < total * columns; k++) {
        next[k] = -1;
    }
    Py_ssize_t states = 1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *needle = PyTuple_GET_ITEM(needles, i);
        Py_ssize_t state = 0;
        for (Py_ssize_t k = 0; k < PyBytes_GET_SIZE(needle); k++) {
            uint8_t column = automaton->classes[(unsigned char)PyBytes_AS_STRING(needle)[k]];
            if (next[state * columns + column] < 0) {
                next[state * columns + column] = (int32_t)states++;
            }
            state = next[state * columns + column];
        }
        automaton->output[state] |= UINT64_C(1) << i;
    }
    automaton->states = states;
    Py_ssize_t head = 0, tail = 0;
    for (Py_ssize_t column = 0; column < columns; column++) {
        int32_t child = next[column];
        if (child < 0) {
            next[column] = 0;
        } else {
            fail[child] = 0;
            queue[tail++] = child;
        }
    }
    while (head < tail) {
        Py_ssize_t state = queue[head++];
        automaton->output[state] |= automaton->output[fail[state]];
        for (Py_ssize_t column = 0; column < columns; column++) {
            int32_t child = next[state * columns + column];
            int32_t fallback = next[fail[state] * columns + column];
            if (child < 0) {
                next[state * columns + column] = fallback;
            } else {
                fail[child] = fallback;
                queue[tail++] = child;
            }
        }
    }
    PyMem_Free(fail);
    PyMem_Free(queue);
    if (shape != NULL) { /* a text byte's column is that of the byte the shape maps it to */
        uint8_t by_needle_byte[256];
        memcpy(by_needle_byte, automaton->classes, sizeof by_needle_byte);
        for (int byte = 0; byte < 256; byte++) {
            automaton->classes[byte] = by_needle_byte[shape[byte]];
        }
    }
    return 0;
}

static PyObject *compile(PyObject *module, PyObject *args) {
    PyObject *needles, *shape = Py_None;
    if (!PyArg_ParseTuple(args, "O!|O:compile", &PyTuple_Type, &needles, &shape)) {
        return NULL;
    }
    if (shape != Py_None && !(PyBytes_Check(shape) && PyBytes_GET_SIZE(shape) == 256)) {
        PyErr_SetString(PyExc_TypeError, "a shape is 256 bytes (as bytes.maketrans makes)");
        return NULL;
    }
    if (PyTuple_GET_SIZE(needles) > MAX_NEEDLES) {
        PyErr_Format(PyExc_ValueError, "at most %d needles", MAX_NEEDLES);
        return NULL;
    }
    Automaton *automaton = PyMem_Calloc(1, sizeof(Automaton));
    if (automaton == NULL) {
        return PyErr_NoMemory();
    }
    const unsigned char *table =
        shape == Py_None ? NULL : (const unsigned char *)PyBytes_AS_STRING(shape);
    if (build(automaton, needles, table) < 0) {
        automaton_free(automaton);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(automaton, CAPSULE_NAME, capsule_free);
    if (capsule == NULL) {
        automaton_free(automaton);
    }
    return capsule;
}

/* The text as bytes to search: an ASCII str as it is stored (its characters are its UTF-8
 * bytes), any other str as UTF-8 with lone surrogates kept, or any bytes-like object. */
static int text_bytes(PyObject *text, Py_buffer *view, PyObject **encoded) {
    *encoded = NULL;
    if (PyUnicode_Check(text)) {
        if (PyUnicode_IS_ASCII(text)) {
            return PyBuffer_FillInfo(view, text, PyUnicode_1BYTE_DATA(text),
                                     PyUnicode_GET_LENGTH(text), 1, PyBUF_SIMPLE);
        }
        *encoded = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass");
        if (*encoded == NULL) {
            return -1;
        }
        text = *encoded;
    }
    if (PyObject_GetBuffer(text, view, PyBUF_SIMPLE) < 0) {
        Py_XDECREF(*encoded);
        return -1;
    }
    return 0;
}

/* Called a few times a request: METH_FASTCALL, without a format string to parse. */
static PyObject *found(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "found(automaton, text) takes 2 arguments");
        return NULL;
    }
    PyObject *capsule = args[0], *text = args[1], *encoded;
    Automaton *automaton = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (automaton == NULL) {
        return NULL;
    }
    Py_buffer view;
    if (text_bytes(text, &view, &encoded) < 0) {
        return NULL;
    }
    const unsigned char *data = view.buf;
    const uint8_t *classes = automaton->classes;
    const int32_t *next = automaton->next;
    const uint64_t *output = automaton->output;
    Py_ssize_t columns = automaton->columns;
    uint64_t mask = output[0];
    int32_t state = 0;
    /* Unrolled: the loop's own test and increment are a quarter of its instructions. */
#pragma GCC unroll 4
    for (Py_ssize_t k = 0; k < view.len; k++) {
        state = next[state * columns + classes[data[k]]];
        mask |= output[state];
    }
    PyBuffer_Release(&view);
    Py_XDECREF(encoded);
    return PyLong_FromUnsignedLongLong(mask);
}

static PyMethodDef methods[] = {
    {"compile", compile, METH_VARARGS,
     "compile(needles: tuple[bytes, ...], shape: bytes | None = None) -> automaton: at most 64 "
     "needles, looked for in the text's bytes mapped through the shape when one is given."},
    {"found", (PyCFunction)(void (*)(void))found, METH_FASTCALL,
     "found(automaton, text: str | bytes) -> int: bit i set when needle i occurs in text."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_needles",
    .m_doc = "Which fixed byte strings occur in a text.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__needles(void) { return PyModule_Create(&module); }
