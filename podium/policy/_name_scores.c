/* The name tagger in C, over the tables of name_scores.PackedScores:
 *
 * - winner: PackedScores.winner for one token (name_scores.py stays as the reference and the
 *   fallback when this module was not built), each packed integer given as its bytes;
 * - tag: the whole tagger over an ASCII text, NameTagger.labels over names.tokenize and then
 *   names.spans, so that the tokens never scored cost no Python object. It returns None for
 *   what it leaves to the Python tagger: text that is not ASCII, or a call too close for the
 *   packed scores.
 *
 * A packed row is one unsigned 64-bit field per label, little-endian: exactly
 * ``value.to_bytes(8 * labels, "little")`` of the Python integer. Summing the rows field by
 * field in uint64 is summing the integers (name_scores.py keeps every field below 2**64), so
 * the winner and the near-tie answer are the reference's. Python spends ~26k instructions a
 * token on the lookups and the big-integer arithmetic; this is a few thousand, and a whole
 * message of the gateway benchmark ~34k instead of ~126k with the tagger's walk in Python.
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

/* The winning label's index for one token (PackedScores.winner over the same tables), -1 for a
 * call too close for the integer sums, -2 with an exception set. */
static Py_ssize_t score(PyObject *tables, PyObject *lower, Py_ssize_t length, PyObject *word_shape,
                        int usual, int start, PyObject *before, PyObject *before2,
                        PyObject *after, PyObject *after2, PyObject *before_shape,
                        PyObject *after_shape, int after_usual, PyObject *previous,
                        PyObject *previous2) {
    if (!PyTuple_Check(tables) || PyTuple_GET_SIZE(tables) != TABLES || !PyUnicode_Check(lower)) {
        PyErr_SetString(PyExc_TypeError, "winner needs the tables tuple and the lower-cased word");
        return -2;
    }
    Sums sums = {{0}, PyLong_AsSsize_t(PyTuple_GET_ITEM(tables, LABEL_COUNT))};
    if (PyErr_Occurred()) {
        return -2;
    }
    if (sums.labels < 1 || sums.labels > MAX_LABELS) {
        PyErr_SetString(PyExc_ValueError, "unsupported number of labels");
        return -2;
    }
#define TABLE(name) PyTuple_GET_ITEM(tables, name)
    /* context[previous][previous2][2 * usual + after_usual] */
    PyObject *by_previous = item(TABLE(CONTEXT), previous);
    PyObject *contexts = by_previous == NULL ? NULL : item(by_previous, previous2);
    PyObject *context = contexts == NULL ? NULL : sequence_item(contexts, 2 * usual + after_usual);
    if (context == NULL || add(&sums, context) < 0) {
        return -2;
    }
    /* shaped[previous][2 * usual + start].get(word_shape) */
    PyObject *shaped = item(TABLE(SHAPED), previous);
    PyObject *by_shape = shaped == NULL ? NULL : sequence_item(shaped, 2 * usual + start);
    if (by_shape == NULL || add_from(&sums, by_shape, Py_NewRef(word_shape)) < 0) {
        return -2;
    }
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "a token's length cannot be negative");
        return -2;
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
        return -2;
    }
    PyObject *previous_words = item(TABLE(PREVIOUS_WORD), previous);
    if (previous_words == NULL || add_from(&sums, previous_words, Py_NewRef(lower)) < 0 ||
        add_nested(&sums, TABLE(BEFORE_WORD), before, lower) < 0 ||
        add_nested(&sums, TABLE(SHAPE_AFTER_SHAPE), word_shape, after_shape) < 0) {
        return -2;
    }
#undef TABLE
    /* The best score, its label and the runner-up, as PackedScores.winner finds them. */
    uint64_t best = sums.sums[0], second = 0;
    int have_second = 0;
    Py_ssize_t index = 0;
    for (Py_ssize_t label = 1; label < sums.labels; label++) {
        uint64_t value = sums.sums[label];
        if (value > best) {
            second = best;
            have_second = 1;
            best = value;
            index = label;
        } else if (!have_second || value > second) {
            second = value;
            have_second = 1;
        }
    }
    /* The reference starts the runner-up at -1: with one label, the lead is best + 1. */
    if (have_second ? best - second <= CLEAR_LEAD : best + 1 <= CLEAR_LEAD) {
        return -1;
    }
    return index;
}

static PyObject *winner(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 15) {
        PyErr_SetString(PyExc_TypeError, "winner takes the tables and 14 token arguments");
        return NULL;
    }
    Py_ssize_t length = PyLong_AsSsize_t(args[2]);
    int usual = PyObject_IsTrue(args[4]), start = PyObject_IsTrue(args[5]);
    int after_usual = PyObject_IsTrue(args[12]);
    if (PyErr_Occurred() || usual < 0 || start < 0 || after_usual < 0) {
        return NULL;
    }
    Py_ssize_t index = score(args[0], args[1], length, args[3], usual, start, args[6], args[7],
                             args[8], args[9], args[10], args[11], after_usual, args[13], args[14]);
    if (index == -2) {
        return NULL;
    }
    if (index == -1) {
        Py_RETURN_NONE;
    }
    return PyLong_FromSsize_t(index);
}

/* ---- The whole tagger over ASCII text: NameTagger.labels over names.tokenize, then
 * names.spans, without a Python object for the tokens that are never scored. ---- */

/* A token's characters; the text before the first token and after the last reads as the
 * tagger's markers "<s>" and "</s>". */
typedef struct {
    const unsigned char *chars;
    Py_ssize_t size;
} Word;

static const Word NO_WORD_BEFORE = {(const unsigned char *)"<s>", 3};
static const Word NO_WORD_AFTER = {(const unsigned char *)"</s>", 4};

/* \w and \s of Python's regular expressions, for ASCII characters. */
static int is_word_char(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_space_char(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static int is_alnum_char(unsigned char c) { return is_word_char(c) && c != '_'; }

/* The first token at or after ``pos``, as names.TOKEN finds it in ASCII text (\w+('\w+)*, a
 * newline, or one character that is neither a word character nor a space); size 0 at the end. */
static Word next_token(const unsigned char *text, Py_ssize_t size, Py_ssize_t pos) {
    while (pos < size && text[pos] != '\n' && is_space_char(text[pos])) {
        pos++;
    }
    if (pos >= size) {
        return (Word){text + size, 0};
    }
    Py_ssize_t end = pos + 1;
    if (is_word_char(text[pos])) {
        while (end < size && is_word_char(text[end])) {
            end++;
        }
        while (end + 1 < size && text[end] == '\'' && is_word_char(text[end + 1])) {
            end += 2;
            while (end < size && is_word_char(text[end])) {
                end++;
            }
        }
    }
    return (Word){text + pos, end - pos};
}

/* The word as a new str, lower-cased (ASCII). */
static PyObject *lowered(Word word) {
    PyObject *out = PyUnicode_New(word.size, 127);
    if (out == NULL) {
        return NULL;
    }
    Py_UCS1 *chars = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < word.size; i++) {
        unsigned char c = word.chars[i];
        chars[i] = c >= 'A' && c <= 'Z' ? c + 32 : c;
    }
    return out;
}

/* names.shape: letters to X or x, digits to d, runs of one character cut to two, at most six. */
static PyObject *shape(Word word) {
    unsigned char out[6];
    Py_ssize_t size = 0, run = 0;
    unsigned char last = 0;
    for (Py_ssize_t i = 0; i < word.size && size < 6; i++) {
        unsigned char c = word.chars[i];
        c = c >= 'A' && c <= 'Z' ? 'X' : c >= 'a' && c <= 'z' ? 'x' : c >= '0' && c <= '9' ? 'd' : c;
        run = i > 0 && c == last ? run + 1 : 1;
        last = c;
        if (run <= 2) {
            out[size++] = c;
        }
    }
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, out, size);
}

/* A short list of words (the trigger words), read from the words between single spaces. */
#define MAX_LISTED 64
typedef struct {
    const char *chars[MAX_LISTED];
    Py_ssize_t sizes[MAX_LISTED];
    int count;
} Listed;

/* -1 if there are more words than a Listed holds. */
static int read_listed(Listed *listed, const char *words, Py_ssize_t size) {
    listed->count = 0;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= size; i++) {
        if (i < size && words[i] != ' ') {
            continue;
        }
        if (i > start) {
            if (listed->count == MAX_LISTED) {
                return -1;
            }
            listed->chars[listed->count] = words + start;
            listed->sizes[listed->count++] = i - start;
        }
        start = i + 1;
    }
    return 0;
}

/* Whether the word, lower-cased, is one of the listed words. */
static int listed(const Listed *listed, Word word) {
    for (int i = 0; i < listed->count; i++) {
        if (listed->sizes[i] != word.size) {
            continue;
        }
        Py_ssize_t k = 0;
        while (k < word.size) {
            unsigned char c = word.chars[k];
            if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != (unsigned char)listed->chars[i][k]) {
                break;
            }
            k++;
        }
        if (k == word.size) {
            return 1;
        }
    }
    return 0;
}

/* names.BOUNDARY */
static int is_boundary(Word word) {
    static const char boundary[] = ".\n!?:;>\"(";
    return word.size == 1 && memchr(boundary, word.chars[0], sizeof boundary - 1) != NULL;
}

/* The label of the token ``word`` between its neighbours (the arguments of score, built),
 * or -1 / -2 as score returns. ``lower``: the word lower-cased, if already made (borrowed). */
static Py_ssize_t label_token(PyObject *tables, PyObject *labels, PyObject *common, Word before2,
                              Word before, Word word, Word after, Word after2, PyObject *lower,
                              Py_ssize_t previous, Py_ssize_t previous2, int first) {
    PyObject *made[9] = {NULL};
    made[0] = lower == NULL ? lowered(word) : Py_NewRef(lower);
    made[1] = shape(word);
    made[2] = lowered(before);
    made[3] = lowered(before2);
    made[4] = lowered(after);
    made[5] = lowered(after2);
    made[6] = shape(before);
    made[7] = shape(after);
    Py_ssize_t index = -2;
    for (int i = 0; i < 8; i++) {
        if (made[i] == NULL) {
            goto done;
        }
    }
    int usual = PySet_Contains(common, made[0]), after_usual = PySet_Contains(common, made[4]);
    if (usual < 0 || after_usual < 0) {
        goto done;
    }
    index = score(tables, made[0], word.size, made[1], usual, first || is_boundary(before),
                  made[2], made[3], made[4], made[5], made[6], made[7], after_usual,
                  PyTuple_GET_ITEM(labels, previous), PyTuple_GET_ITEM(labels, previous2));
done:
    for (int i = 0; i < 8; i++) {
        Py_XDECREF(made[i]);
    }
    return index;
}

/* Appends the run's finding (start, end, label) if it has one; -1 on an error. */
static int close_run(PyObject *found, Py_ssize_t start, Py_ssize_t end, Py_ssize_t label) {
    if (start < 0) {
        return 0;
    }
    PyObject *finding = Py_BuildValue("(nnn)", start, end, label);
    if (finding == NULL) {
        return -1;
    }
    int failed = PyList_Append(found, finding);
    Py_DECREF(finding);
    return failed;
}

static PyObject *tag(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "tag takes the tables, labels, common words, sentence words, trigger "
                        "words, the emitted labels and the text");
        return NULL;
    }
    PyObject *tables = args[0], *labels = args[1], *common = args[2], *sentence_words = args[3];
    PyObject *triggers = args[4], *text = args[6];
    long emitted = PyLong_AsLong(args[5]);
    if (emitted == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyTuple_Check(labels) || !PyAnySet_Check(common) || !PyAnySet_Check(sentence_words) ||
        !PyBytes_Check(triggers) || !PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "tag: unexpected argument types");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(text)) {
        Py_RETURN_NONE; /* the Python tagger reads other text */
    }
    Py_ssize_t label_count = PyTuple_GET_SIZE(labels);
    const unsigned char *chars = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text);
    Listed trigger_words;
    if (read_listed(&trigger_words, PyBytes_AS_STRING(triggers), PyBytes_GET_SIZE(triggers)) < 0) {
        PyErr_SetString(PyExc_ValueError, "tag: too many trigger words");
        return NULL;
    }
    PyObject *found = PyList_New(0);
    if (found == NULL) {
        return NULL;
    }
    /* The tokens two before to two after the current one (size 0: none). */
    Word window[5];
    window[0] = window[1] = (Word){chars, 0};
    window[2] = next_token(chars, size, 0);
    window[3] = next_token(chars, size, window[2].chars + window[2].size - chars);
    window[4] = next_token(chars, size, window[3].chars + window[3].size - chars);
    Py_ssize_t previous = 0, previous2 = 0;
    Py_ssize_t run_label = 0, run_start = -1, run_end = -1;
    int first = 1;
    while (window[2].size > 0) {
        Word word = window[2];
        Py_ssize_t label = 0;
        PyObject *lower = NULL;
        int candidate = previous != 0;
        if (!candidate) { /* names.is_candidate after an "O" */
            unsigned char c = word.chars[0];
            if (c >= 'A' && c <= 'Z') {
                lower = lowered(word);
                int sentence_word = lower == NULL ? -1 : PySet_Contains(sentence_words, lower);
                candidate = sentence_word < 0 ? -1 : !sentence_word;
            } else if (c >= '0' && c <= '9') {
                candidate = 1;
            } else if (c >= 'a' && c <= 'z') {
                candidate = window[1].size > 0 && listed(&trigger_words, window[1]);
            }
        }
        if (candidate < 0) {
            Py_XDECREF(lower);
            Py_DECREF(found);
            return NULL;
        }
        if (candidate) {
            Word before = window[1].size ? window[1] : NO_WORD_BEFORE;
            Word before2 = window[0].size ? window[0] : NO_WORD_BEFORE;
            Word after = window[3].size ? window[3] : NO_WORD_AFTER;
            Word after2 = window[4].size ? window[4] : NO_WORD_AFTER;
            label = label_token(tables, labels, common, before2, before, word, after, after2, lower,
                                previous, previous2, first);
            if (label >= label_count) {
                PyErr_SetString(PyExc_ValueError, "a label beyond the labels given");
                label = -2;
            }
        }
        Py_XDECREF(lower);
        if (label < 0) {
            Py_DECREF(found);
            if (label == -1) {
                Py_RETURN_NONE; /* a close call: the Python tagger adds the float weights */
            }
            return NULL;
        }
        /* names.spans: a run of one emitted label, trimmed to its first and last tokens
         * that start with a letter or digit. */
        if (label != run_label) {
            if (close_run(found, run_start, run_end, run_label) < 0) {
                Py_DECREF(found);
                return NULL;
            }
            run_label = label;
            run_start = -1;
        }
        if (label < 64 && (emitted >> label & 1) && is_alnum_char(word.chars[0])) {
            if (run_start < 0) {
                run_start = word.chars - chars;
            }
            run_end = word.chars - chars + word.size;
        }
        previous2 = previous;
        previous = label;
        first = 0;
        window[0] = window[1];
        window[1] = window[2];
        window[2] = window[3];
        window[3] = window[4];
        window[4] = window[4].size ? next_token(chars, size, window[4].chars + window[4].size - chars)
                                   : window[4];
    }
    if (close_run(found, run_start, run_end, run_label) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

static PyMethodDef methods[] = {
    {"winner", (PyCFunction)(void (*)(void))winner, METH_FASTCALL,
     "winner(tables, lower, length, word_shape, usual, start, before, before2, after, after2, "
     "before_shape, after_shape, after_usual, previous, previous2) -> int | None"},
    {"tag", (PyCFunction)(void (*)(void))tag, METH_FASTCALL,
     "tag(tables, labels, common, sentence_words, triggers, emitted, text) -> "
     "list[tuple[int, int, int]] | None"},
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
