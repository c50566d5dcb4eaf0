/* filters._wordscan: where the rule words occur in a content-stage word stream, in one C pass.
 *
 * The content stage turns a message's text into a stream of word tokens apart by white space
 * (filters/content/text.py). Only the few hundred words that rule phrases are made of matter to
 * the phrase scan; in Python, finding them meant splitting the whole stream into thousands of
 * str objects and hashing each. This module walks the stream's bytes once and looks each token up
 * in its own hash table of the rule words:
 *
 *   index(words, every)    -> an opaque index of the ASCII words among `words` (others can never
 *                             occur in an ASCII stream); `every` (a set) names the words whose
 *                             every occurrence is wanted, for the others the first is enough
 *   offsets(index, stream) -> {word: [offset, ...]} for the indexed words in `stream`: every
 *                             offset of a word in `every`, the first of any other (a dict in order
 *                             of first occurrence), or None when `stream` is not ASCII (the caller
 *                             then takes the Python path)
 *   single_run(data)       -> True when `data` (bytes) holds three or more one-character tokens
 *                             in a row (the hint for spaced-out letters: c a s i n o)
 *   leet_runs(classes)     -> [start, end, start, end, ...] of each run of non-space bytes in
 *                             `classes` (letters 'a', digits and leet symbols '1', else ' ') where
 *                             a letter meets a digit (v1agra, c@sino)
 *
 * Tokens are maximal runs of non-white-space characters, white space being what str.split()
 * splits ASCII at: \t \n \v \f \r, \x1c-\x1f and space. filters/content/text.py holds the Python
 * version of each function; tests/test_wordscan.py checks that both give the same.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static unsigned char is_space[256];

/* The next token of s[0:n] from *at on: its start (its end is left in *at), or -1 when none is left. */
static inline Py_ssize_t next_token(const unsigned char *s, Py_ssize_t n, Py_ssize_t *at)
{
    Py_ssize_t i = *at;
    while (i < n && is_space[s[i]])
        i++;
    if (i >= n)
        return -1;
    Py_ssize_t start = i;
    while (i < n && !is_space[s[i]])
        i++;
    *at = i;
    return start;
}

typedef struct {
    uint64_t hash;
    Py_ssize_t length;       /* 0: empty slot */
    const char *text;        /* the word's ASCII bytes (owned by `word`) */
    PyObject *word;          /* the str, a strong reference */
    int every;               /* record every occurrence, not only the first */
    uint64_t stamp;          /* the offsets() call that last saw the word (under the GIL) */
    PyObject *list;          /* that call's list for it (borrowed from its dict) */
} Entry;

typedef struct {
    Py_ssize_t mask;         /* slots - 1; slots a power of two, at least twice the words */
    Py_ssize_t count;
    uint64_t stamp;          /* offsets() calls so far */
    Entry *slots;
} Index;

static const char *CAPSULE = "filters._wordscan.index";

static inline uint64_t fnv1a(const unsigned char *s, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static Entry *lookup(const Index *index, const unsigned char *s, Py_ssize_t n, uint64_t h)
{
    Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)index->mask);
    for (;;) {
        Entry *e = &index->slots[i];
        if (e->length == 0)
            return e;
        if (e->hash == h && e->length == n && memcmp(e->text, s, (size_t)n) == 0)
            return e;
        i = (i + 1) & index->mask;
    }
}

static void index_free(PyObject *capsule)
{
    Index *index = PyCapsule_GetPointer(capsule, CAPSULE);
    if (index == NULL)
        return;
    for (Py_ssize_t i = 0; i <= index->mask; i++)
        Py_XDECREF(index->slots[i].word);
    PyMem_Free(index->slots);
    PyMem_Free(index);
}

static PyObject *build_index(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyAnySet_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "index(words, every: set)");
        return NULL;
    }
    PyObject *words = args[0], *every = args[1];
    PyObject *seq = PySequence_Fast(words, "index() takes a sequence of str");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_ssize_t slots = 16;
    while (slots < 2 * n + 2)
        slots *= 2;
    Index *index = PyMem_Calloc(1, sizeof(Index));
    Entry *table = PyMem_Calloc((size_t)slots, sizeof(Entry));
    if (index == NULL || table == NULL) {
        PyMem_Free(index);
        PyMem_Free(table);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    index->mask = slots - 1;
    index->slots = table;
    PyObject *capsule = PyCapsule_New(index, CAPSULE, index_free);
    if (capsule == NULL) {
        PyMem_Free(table);
        PyMem_Free(index);
        Py_DECREF(seq);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *word = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyUnicode_Check(word)) {
            PyErr_SetString(PyExc_TypeError, "index() takes a sequence of str");
            Py_DECREF(seq);
            Py_DECREF(capsule);
            return NULL;
        }
        if (!PyUnicode_IS_ASCII(word) || PyUnicode_GET_LENGTH(word) == 0)
            continue;  /* cannot occur in an ASCII stream */
        const unsigned char *s = PyUnicode_1BYTE_DATA(word);
        Py_ssize_t len = PyUnicode_GET_LENGTH(word);
        uint64_t h = fnv1a(s, len);
        Entry *e = lookup(index, s, len, h);
        if (e->length != 0)
            continue;  /* listed twice */
        int wanted = PySet_Contains(every, word);
        if (wanted < 0) {
            Py_DECREF(seq);
            Py_DECREF(capsule);
            return NULL;
        }
        Py_INCREF(word);
        e->every = wanted;
        e->hash = h;
        e->length = len;
        e->text = (const char *)s;
        e->word = word;
        index->count++;
    }
    Py_DECREF(seq);
    return capsule;
}

static PyObject *offsets(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "offsets(index, stream: str)");
        return NULL;
    }
    Index *index = PyCapsule_GetPointer(args[0], CAPSULE);
    if (index == NULL)
        return NULL;
    PyObject *stream = args[1];
    if (!PyUnicode_IS_ASCII(stream))
        Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(stream);
    Py_ssize_t n = PyUnicode_GET_LENGTH(stream);
    PyObject *found = PyDict_New();
    if (found == NULL)
        return NULL;
    uint64_t stamp = ++index->stamp;
    Py_ssize_t i = 0, start;
    while ((start = next_token(s, n, &i)) >= 0) {
        uint64_t h = fnv1a(s + start, i - start);
        Entry *e = lookup(index, s + start, i - start, h);
        if (e->length == 0 || (e->stamp == stamp && !e->every))
            continue;
        PyObject *at = PyLong_FromSsize_t(start);
        if (at == NULL)
            goto error;
        if (e->stamp != stamp) {  /* its first occurrence in this stream */
            PyObject *list = PyList_New(1);
            if (list == NULL) {
                Py_DECREF(at);
                goto error;
            }
            PyList_SET_ITEM(list, 0, at);  /* steals the reference */
            int failed = PyDict_SetItem(found, e->word, list);
            Py_DECREF(list);  /* the dict holds it */
            if (failed)
                goto error;
            e->stamp = stamp;
            e->list = list;
            continue;
        }
        int failed = PyList_Append(e->list, at);
        Py_DECREF(at);
        if (failed)
            goto error;
    }
    return found;
error:
    Py_DECREF(found);
    return NULL;
}

static PyObject *single_run(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len, i = 0;
    Py_ssize_t start;
    int run = 0, found = 0;
    while (!found && (start = next_token(s, n, &i)) >= 0) {
        run = (i - start == 1) ? run + 1 : 0;
        found = run >= 3;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

static PyObject *leet_runs(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len, i = 0;
    PyObject *runs = PyList_New(0);
    Py_ssize_t start;
    while (runs != NULL && (start = next_token(s, n, &i)) >= 0) {
        int mixed = 0;
        for (Py_ssize_t k = start + 1; k < i && !mixed; k++)
            mixed = s[k] != s[k - 1];
        if (!mixed)
            continue;
        PyObject *a = PyLong_FromSsize_t(start), *b = PyLong_FromSsize_t(i);
        if (a == NULL || b == NULL || PyList_Append(runs, a) < 0 || PyList_Append(runs, b) < 0)
            Py_CLEAR(runs);
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    PyBuffer_Release(&view);
    return runs;
}

static PyMethodDef methods[] = {
    {"index", (PyCFunction)(void (*)(void))build_index, METH_FASTCALL,
     "index(words, every) -> an index of the ASCII words, for offsets()"},
    {"offsets", (PyCFunction)(void (*)(void))offsets, METH_FASTCALL,
     "offsets(index, stream) -> {word: [offset, ...]} of the indexed words in an ASCII stream, else None"},
    {"single_run", single_run, METH_O, "single_run(data) -> three or more one-character tokens in a row"},
    {"leet_runs", leet_runs, METH_O, "leet_runs(classes) -> [start, end, ...] of the runs where a letter meets a digit"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "filters._wordscan",
    "Where the rule words occur in a content-stage word stream, in one C pass.", -1, methods,
};

PyMODINIT_FUNC PyInit__wordscan(void)
{
    const char *spaces = " \t\n\v\f\r\x1c\x1d\x1e\x1f";
    for (const char *c = spaces; *c; c++)
        is_space[(unsigned char)*c] = 1;
    return PyModule_Create(&module_def);
}
