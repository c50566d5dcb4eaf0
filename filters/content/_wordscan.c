/* filters._wordscan: where the rule words occur in a content-stage word stream, in one C pass,
 * and the stage's other character-at-a-time passes over text.
 *
 * The content stage turns a message's text into a stream of word tokens apart by white space
 * (filters/content/tokens.py). Only the few hundred words that rule phrases are made of matter to
 * the phrase scan; in Python, finding them meant splitting the whole stream into thousands of
 * str objects and hashing each. This module walks the stream's bytes once and looks each token up
 * in its own hash table of the rule words; it also holds the other passes over a message's text
 * (or its styles and URLs) that the stage makes a character at a time, each one C loop:
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
 *   leet_runs_text(data)   -> leet_runs(data.translate(CLASSES)) for lowercased ASCII word text,
 *                             each byte classed as it is read (no copy of the text)
 *   spaced(data)           -> (stream, singles): " " + the bytes with every one but [a-z0-9] made a
 *                             space + " ", as a str, and single_run() of those bytes, in one pass
 *   non_ascii(text)        -> the distinct characters of a str past U+007F, as a str, in the order
 *                             they first occur (filters/content/folding.py folds each on its own);
 *                             None for a str with characters past the BMP
 *   may_hold_url(text)     -> "://" or "ww." (ASCII letters in any case) occurs in the str
 *                             (filters/content/textview_html.py _may_hold_url)
 *   text_urls(text)        -> the URLs written in the str, as filters/content/textview.py _text_links
 *                             finds them with _TEXT_URL (each with _URL_END characters stripped)
 *   hiding_styles(styles)  -> [i, ...] of the styles (a list of str) where a way of hiding can be read:
 *                             display:none, visibility:hidden, overflow:hidden, mso-hide:all,
 *                             opacity:0, font-size:0 or font-size:1px, ASCII white space around the
 *                             colon, ASCII letters in any case (filters/content/textview_html.py _NEEDS)
 *   qp_decode(data)        -> binascii.a2b_qp(data): the same bytes, the runs between = copied whole
 *   count_byte(data, c)    -> data.count(bytes([c])), eight bytes at a time
 *   find_bytes(data, needle, start) -> data.find(needle, start), a memchr to each first byte (bytes.find
 *                             tests at every occurrence of the needle's last byte: "e" of b"<style")
 *   url_suspect(low, extensions, params) -> filters/content/urls.py suspect(low): a lowercased URL
 *                             carries another past its 12th character, its path ends in one of the
 *                             `extensions` (a set), or a ? or & in it is followed by one of the
 *                             `params` (a set) and =
 *   fuzzy(keys, excluded, lo, hi) -> an opaque set for near(): `keys` are the misspelling-tolerant
 *                             rule words and each of them with one letter deleted; `excluded` the
 *                             tokens never to report (rule words, real words near rule words)
 *   near(fuzzy, stream)    -> the set of distinct [a-z] tokens of `stream` of length lo..hi, not
 *                             excluded, that are a key or become one with one letter deleted
 *                             (symmetric deletion: the candidates for edit distance <= 2 with a
 *                             transposition or substitution; the caller verifies the distance), or
 *                             None when `stream` is not ASCII. Tokens found not to be candidates are
 *                             remembered by hash across calls (a newsletter's words recur), so a
 *                             second message costs one hash and one probe per token.
 *
 * Tokens are maximal runs of non-white-space characters, white space being what str.split()
 * splits ASCII at: \t \n \v \f \r, \x1c-\x1f and space. Each caller (filters/content/tokens.py,
 * wordindex.py, folding.py, textview.py, textview_html.py, textview_css.py, urls.py) keeps a Python
 * version of what it calls here, taken without the extension or with one built before the function;
 * tests/test_wordscan.py checks that both give the same.
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

/* append start and end of a run to `runs` as two ints; -1 (an exception set) on failure */
static int append_pair(PyObject *runs, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *a = PyLong_FromSsize_t(start), *b = PyLong_FromSsize_t(end);
    int failed = a == NULL || b == NULL || PyList_Append(runs, a) < 0 || PyList_Append(runs, b) < 0;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return failed ? -1 : 0;
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
        if (append_pair(runs, start, i) < 0)
            Py_CLEAR(runs);
    }
    PyBuffer_Release(&view);
    return runs;
}

/* word classes of lowercased ASCII word text (filters/content/tokens.py _CLASSES): a letter 'a', a
 * digit or leet symbol '1', anything else ' ' */
static unsigned char word_class[256];

static PyObject *leet_runs_text(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len, i = 0;
    PyObject *runs = PyList_New(0);
    while (runs != NULL && i < n) {
        while (i < n && word_class[s[i]] == ' ')
            i++;
        if (i >= n)
            break;
        Py_ssize_t start = i;
        unsigned char previous = word_class[s[i++]], c;
        int mixed = 0;
        while (i < n && (c = word_class[s[i]]) != ' ') {
            mixed |= c != previous;
            previous = c;
            i++;
        }
        if (!mixed)
            continue;
        if (append_pair(runs, start, i) < 0)
            Py_CLEAR(runs);
    }
    PyBuffer_Release(&view);
    return runs;
}

static PyObject *spaced(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len;
    PyObject *stream = PyUnicode_New(n + 2, 127);
    if (stream == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(stream);
    out[0] = ' ';
    out[n + 1] = ' ';
    int found = 0;
    Py_ssize_t run = 0, length = 0;  /* one-character tokens in a row; the length of the token read */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            out[i + 1] = c;
            length++;
            continue;
        }
        out[i + 1] = ' ';
        if (length) {
            run = length == 1 ? run + 1 : 0;
            found |= run >= 3;
            length = 0;
        }
    }
    if (length) {
        run = length == 1 ? run + 1 : 0;
        found |= run >= 3;
    }
    PyBuffer_Release(&view);
    PyObject *result = Py_BuildValue("(NO)", stream, found ? Py_True : Py_False);
    return result;
}

static PyObject *non_ascii(PyObject *module, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "non_ascii(text: str)");
        return NULL;
    }
    if (PyUnicode_IS_ASCII(arg))
        return PyUnicode_New(0, 0);
    int kind = PyUnicode_KIND(arg);
    if (kind == PyUnicode_4BYTE_KIND)
        Py_RETURN_NONE;  /* characters past the BMP: the caller's own way */
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    unsigned char seen[65536 / 8];  /* a bit a character */
    memset(seen, 0, sizeof(seen));
    Py_UCS2 *found = PyMem_Malloc(sizeof(Py_UCS2) * (size_t)(n < 65536 ? n : 65536));
    if (found == NULL)
        return PyErr_NoMemory();
    Py_ssize_t count = 0;
    /* eight bytes at a time past the ASCII (most of the text), a character at a time at the others */
    const uint64_t high = kind == PyUnicode_1BYTE_KIND ? 0x8080808080808080ULL : 0xFF80FF80FF80FF80ULL;
    const Py_ssize_t step = kind == PyUnicode_1BYTE_KIND ? 8 : 4;
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + step <= n) {
            uint64_t w;
            memcpy(&w, (const char *)data + i * kind, 8);
            if ((w & high) == 0) {
                i += step;
                continue;
            }
        }
        Py_ssize_t end = i + step < n ? i + step : n;
        for (; i < end; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x80 || (seen[c >> 3] & (1 << (c & 7))))
                continue;
            seen[c >> 3] |= (unsigned char)(1 << (c & 7));
            found[count++] = (Py_UCS2)c;
        }
    }
    PyObject *result = PyUnicode_FromKindAndData(PyUnicode_2BYTE_KIND, found, count);
    PyMem_Free(found);
    return result;
}

/* The two below read a str of any kind, one loop a kind; `c | 0x20` is the lowercase of an ASCII
 * letter, and no other character's is one. */
#define MAY_HOLD_URL(TYPE)                                                        \
    {                                                                             \
        const TYPE *t = (const TYPE *)data;                                       \
        for (Py_ssize_t i = 2; i < n; i++) {                                      \
            TYPE c = t[i];                                                        \
            if (c == '/' ? t[i - 1] == '/' && t[i - 2] == ':'                     \
                         : c == '.' && (t[i - 1] | 0x20) == 'w' && (t[i - 2] | 0x20) == 'w') \
                Py_RETURN_TRUE;                                                   \
        }                                                                         \
        Py_RETURN_FALSE;                                                          \
    }

static PyObject *may_hold_url(PyObject *module, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "may_hold_url(text: str)");
        return NULL;
    }
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    switch (PyUnicode_KIND(arg)) {
    case PyUnicode_1BYTE_KIND: MAY_HOLD_URL(Py_UCS1)
    case PyUnicode_2BYTE_KIND: MAY_HOLD_URL(Py_UCS2)
    default: MAY_HOLD_URL(Py_UCS4)
    }
}

/* _TEXT_URL's URL characters: not white space (the 29 that \s matches), a control, < > " or ' */
static inline int url_char(Py_UCS4 c)
{
    if (c <= 0x20 || c == '"' || c == '\'' || c == '<' || c == '>')
        return 0;
    return !(c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028
             || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000);
}

/* _URL_END: what a URL written in text does not end with */
static inline int url_end(Py_UCS4 c)
{
    switch (c) {
    case '.': case ',': case ';': case ':': case '!': case '?': case ')': case ']': case '}': case '>':
    case '\'': case '"':
        return 1;
    default:
        return 0;
    }
}

#define TEXT_URLS(TYPE)                                                           \
    {                                                                             \
        const TYPE *t = (const TYPE *)data;                                       \
        for (Py_ssize_t i = 0; i + 3 < n; i++) {                                  \
            Py_UCS4 c = t[i];                                                     \
            Py_ssize_t p;                                                         \
            if (c == 'h' || c == 'H') { /* [hH], (?i:ttps?://): s is S or long s too, as re.I has it */ \
                if ((t[i + 1] | 0x20) != 't' || (t[i + 2] | 0x20) != 't' || (t[i + 3] | 0x20) != 'p') \
                    continue;                                                     \
                p = i + 4;                                                        \
                if (p + 3 < n && (t[p] == 's' || t[p] == 'S' || t[p] == 0x17f)   \
                        && t[p + 1] == ':' && t[p + 2] == '/' && t[p + 3] == '/') \
                    p++;                                                          \
                if (!(p + 2 < n && t[p] == ':' && t[p + 1] == '/' && t[p + 2] == '/')) \
                    continue;                                                     \
                p += 3;                                                           \
            } else if (c == 'w' || c == 'W') { /* [wW], (?i:ww\.) */              \
                if ((t[i + 1] | 0x20) != 'w' || (t[i + 2] | 0x20) != 'w' || t[i + 3] != '.') \
                    continue;                                                     \
                p = i + 4;                                                        \
            } else                                                                \
                continue;                                                         \
            if (i > 0 && (t[i - 1] == '_' || Py_UNICODE_ISALNUM(t[i - 1])))       \
                continue; /* (?<!\w.): no word character before */                \
            Py_ssize_t end = p;                                                   \
            while (end < n && url_char(t[end]))                                   \
                end++;                                                            \
            if (end == p)                                                         \
                continue;                                                         \
            Py_ssize_t cut = end; /* .rstrip(_URL_END) */                         \
            while (cut > i && url_end(t[cut - 1]))                                \
                cut--;                                                            \
            PyObject *url = PyUnicode_Substring(arg, i, cut);                     \
            if (url == NULL || PyList_Append(urls, url) < 0) {                    \
                Py_XDECREF(url);                                                  \
                Py_DECREF(urls);                                                  \
                return NULL;                                                      \
            }                                                                     \
            Py_DECREF(url);                                                       \
            i = end - 1; /* the next URL starts after this one */                 \
        }                                                                         \
        return urls;                                                              \
    }

static PyObject *text_urls(PyObject *module, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "text_urls(text: str)");
        return NULL;
    }
    const void *data = PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    PyObject *urls = PyList_New(0);
    if (urls == NULL)
        return NULL;
    switch (PyUnicode_KIND(arg)) {
    case PyUnicode_1BYTE_KIND: TEXT_URLS(Py_UCS1)
    case PyUnicode_2BYTE_KIND: TEXT_URLS(Py_UCS2)
    default: TEXT_URLS(Py_UCS4)
    }
}

static const struct {
    const char *word;
    Py_ssize_t length;
    const char *value, *other;
} HIDING[] = {
    {"display", 7, "none", NULL}, {"visibility", 10, "hidden", NULL}, {"overflow", 8, "hidden", NULL},
    {"mso-hide", 8, "all", NULL}, {"opacity", 7, "0", NULL}, {"font-size", 9, "0", "1px"},
};

#define ASCII_LOWER(c) ((c) >= 'A' && (c) <= 'Z' ? (c) + 32 : (c))
#define ASCII_SPACE(c) ((c) == ' ' || ((c) >= '\t' && (c) <= '\r'))

/* `value` (lowercase ASCII) is at t[j:] in any case */
#define VALUE_AT(TYPE, t, n, j, value, ok)                                        \
    {                                                                             \
        ok = value != NULL;                                                       \
        for (Py_ssize_t k = 0; ok && value[k]; k++)                               \
            ok = j + k < n && ASCII_LOWER(t[j + k]) == (TYPE)value[k];            \
    }

/* per character, a bit for each HIDING word that starts with it (in either case) */
static unsigned char hiding_first[256];

#define HIDES(TYPE)                                                               \
    {                                                                             \
        const TYPE *t = (const TYPE *)data;                                       \
        for (Py_ssize_t i = 0; i < n && !found; i++) {                            \
            unsigned int bits = t[i] < 256 ? hiding_first[t[i]] : 0;              \
            for (size_t w = 0; bits && !found; w++, bits >>= 1) {                 \
                if (!(bits & 1))                                                  \
                    continue;                                                     \
                int ok;                                                           \
                VALUE_AT(TYPE, t, n, i, HIDING[w].word, ok)                       \
                if (!ok)                                                          \
                    continue;                                                     \
                Py_ssize_t j = i + HIDING[w].length;                              \
                while (j < n && ASCII_SPACE(t[j]))                                \
                    j++;                                                          \
                if (j >= n || t[j] != ':')                                        \
                    continue;                                                     \
                j++;                                                              \
                while (j < n && ASCII_SPACE(t[j]))                                \
                    j++;                                                          \
                VALUE_AT(TYPE, t, n, j, HIDING[w].value, ok)                      \
                if (!ok)                                                          \
                    VALUE_AT(TYPE, t, n, j, HIDING[w].other, ok)                  \
                found = ok;                                                       \
            }                                                                     \
        }                                                                         \
    }

static PyObject *hiding_styles(PyObject *module, PyObject *arg)
{
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "hiding_styles(styles: list of str)");
        return NULL;
    }
    PyObject *picked = PyList_New(0);
    for (Py_ssize_t k = 0; picked != NULL && k < PyList_GET_SIZE(arg); k++) {
        PyObject *style = PyList_GET_ITEM(arg, k);
        if (!PyUnicode_Check(style)) {
            PyErr_SetString(PyExc_TypeError, "hiding_styles(styles: list of str)");
            Py_DECREF(picked);
            return NULL;
        }
        const void *data = PyUnicode_DATA(style);
        Py_ssize_t n = PyUnicode_GET_LENGTH(style);
        int found = 0;
        switch (PyUnicode_KIND(style)) {
        case PyUnicode_1BYTE_KIND: HIDES(Py_UCS1) break;
        case PyUnicode_2BYTE_KIND: HIDES(Py_UCS2) break;
        default: HIDES(Py_UCS4) break;
        }
        if (!found)
            continue;
        PyObject *at = PyLong_FromSsize_t(k);
        if (at == NULL || PyList_Append(picked, at) < 0)
            Py_CLEAR(picked);
        Py_XDECREF(at);
    }
    return picked;
}

static PyObject *count_byte(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    int c;
    if (nargs != 2 || (c = PyLong_AsLong(args[1])) < 0 || c > 255) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "count_byte(data, c: 0..255)");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len, i = 0, count = 0;
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x7F7F7F7F7F7F7F7FULL, pattern = ones * (uint64_t)c;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        w ^= pattern;  /* a byte equal to c is 0 now */
        uint64_t t = (w & highs) + highs;
        t = ~(t | w | highs);  /* the high bit of each zero byte, and only of those */
        count += (Py_ssize_t)(((t >> 7) * ones) >> 56);  /* the byte sum of 0/1 bytes */
    }
    for (; i < n; i++)
        count += s[i] == c;
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyObject *find_bytes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view, needle;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "find_bytes(data, needle, start)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[2]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &needle, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *s = view.buf, *p = needle.buf;
    Py_ssize_t n = view.len, m = needle.len, found = -1;
    if (start < 0)
        start = start + n < 0 ? 0 : start + n;
    if (m == 0)
        found = start <= n ? start : -1;
    else
        for (Py_ssize_t i = start; i + m <= n; i++) {
            const unsigned char *at = memchr(s + i, p[0], (size_t)(n - m + 1 - i));
            if (at == NULL)
                break;
            i = at - s;
            if (memcmp(at + 1, p + 1, (size_t)(m - 1)) == 0) {
                found = i;
                break;
            }
        }
    PyBuffer_Release(&needle);
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}

static inline int hex_value(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* binascii.a2b_qp(data) (header=False), byte for byte: CPython's loop, but a run of bytes without
 * "=" is found with memchr and copied with memcpy instead of a byte at a time */
static PyObject *qp_decode(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *in = view.buf;
    Py_ssize_t n = view.len, i = 0, out = 0;
    PyObject *result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(result);
    while (i < n) {
        const unsigned char *eq = memchr(in + i, '=', (size_t)(n - i));
        Py_ssize_t run = eq == NULL ? n - i : eq - (in + i);
        memcpy(o + out, in + i, (size_t)run);
        out += run;
        i += run;
        if (i >= n)
            break;
        i++;  /* the = */
        if (i >= n)
            break;
        if (in[i] == '\n' || in[i] == '\r') {  /* a soft line break: to the end of the line */
            if (in[i] != '\n')
                while (i < n && in[i] != '\n')
                    i++;
            if (i < n)
                i++;
        } else if (in[i] == '=') {  /* "==" (broken encoders): one = */
            o[out++] = '=';
            i++;
        } else if (i + 1 < n && hex_value(in[i]) >= 0 && hex_value(in[i + 1]) >= 0) {
            o[out++] = (unsigned char)(hex_value(in[i]) << 4 | hex_value(in[i + 1]));
            i += 2;
        } else
            o[out++] = '=';
    }
    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&result, out) < 0)
        return NULL;
    return result;
}

/* the str s[start:end] is in the set */
static int slice_in(PyObject *s, Py_ssize_t start, Py_ssize_t end, PyObject *set)
{
    PyObject *part = PyUnicode_Substring(s, start, end);
    if (part == NULL)
        return -1;
    int found = PySet_Contains(set, part);
    Py_DECREF(part);
    return found;
}

static PyObject *url_suspect(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_Check(args[0]) || !PyAnySet_Check(args[1]) || !PyAnySet_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "url_suspect(low: str, extensions: set, params: set)");
        return NULL;
    }
    PyObject *low = args[0];
    int kind = PyUnicode_KIND(low);
    const void *data = PyUnicode_DATA(low);
    Py_ssize_t n = PyUnicode_GET_LENGTH(low);
#define AT(i) PyUnicode_READ(kind, data, (i))
    /* another URL in it: "http" or "www." from index 12 on */
    for (Py_ssize_t i = 12; i + 3 < n; i++) {
        Py_UCS4 c = AT(i);
        if ((c == 'h' && AT(i + 1) == 't' && AT(i + 2) == 't' && AT(i + 3) == 'p')
                || (c == 'w' && AT(i + 1) == 'w' && AT(i + 2) == 'w' && AT(i + 3) == '.'))
            Py_RETURN_TRUE;
    }
    /* the path (before ? and #) ends in .EXTENSION, the dot past a slash at index 8 or later */
    Py_ssize_t path = n, slash = -1, dot = -1, equals = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = AT(i);
        if (c == '?' || c == '#') {
            path = i;
            break;
        }
    }
    for (Py_ssize_t i = 0; i < path; i++) {
        Py_UCS4 c = AT(i);
        if (c == '/' && i >= 8 && slash < 0)
            slash = i;
        else if (c == '.')
            dot = i;
    }
    if (slash > 0 && dot > slash) {
        int found = slice_in(low, dot + 1, path, args[1]);
        if (found != 0)
            return found < 0 ? NULL : Py_NewRef(Py_True);
    }
    /* a parameter: ? or &, a name of `params`, = */
    for (Py_ssize_t i = 0; i < n && !equals; i++)
        equals = AT(i) == '=';
    for (Py_ssize_t i = 0; equals && i < n; i++) {
        Py_UCS4 c = AT(i);
        if (c != '?' && c != '&')
            continue;
        Py_ssize_t e = i + 1;
        while (e < n && AT(e) != '=')
            e++;
        if (e >= n)
            break;  /* no = after it: none after any later one either */
        int found = slice_in(low, i + 1, e, args[2]);
        if (found != 0)
            return found < 0 ? NULL : Py_NewRef(Py_True);
    }
#undef AT
    Py_RETURN_FALSE;
}


/* ---- fuzzy candidates (filters/content_fuzzy.py) ---- */

typedef struct {
    Py_ssize_t mask;
    Py_ssize_t count;
    uint64_t *slots;         /* hashes; 0: empty (a hash of 0 is stored as 1) */
} HashSet;

typedef struct {
    HashSet keys, excluded, seen;
    Py_ssize_t lo, hi;
} Fuzzy;

static const char *FUZZY_CAPSULE = "filters._wordscan.fuzzy";
#define SEEN_SLOTS (1 << 17)

static int hs_init(HashSet *set, Py_ssize_t n)
{
    Py_ssize_t slots = 16;
    while (slots < 2 * n + 2)
        slots *= 2;
    set->slots = PyMem_Calloc((size_t)slots, sizeof(uint64_t));
    set->mask = slots - 1;
    set->count = 0;
    return set->slots == NULL ? -1 : 0;
}

/* 1 when h is in the set; with add, it is added when absent (0 returned). */
static inline int hs_probe(HashSet *set, uint64_t h, int add)
{
    h = h ? h : 1;
    Py_ssize_t i = (Py_ssize_t)(h & (uint64_t)set->mask);
    for (;;) {
        uint64_t v = set->slots[i];
        if (v == h)
            return 1;
        if (v == 0) {
            if (add) {
                set->slots[i] = h;
                set->count++;
            }
            return 0;
        }
        i = (i + 1) & set->mask;
    }
}

static void fuzzy_free(PyObject *capsule)
{
    Fuzzy *f = PyCapsule_GetPointer(capsule, FUZZY_CAPSULE);
    if (f == NULL)
        return;
    PyMem_Free(f->keys.slots);
    PyMem_Free(f->excluded.slots);
    PyMem_Free(f->seen.slots);
    PyMem_Free(f);
}

static int add_words(HashSet *set, PyObject *words)
{
    PyObject *seq = PySequence_Fast(words, "fuzzy() takes sequences of str");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (hs_init(set, n) < 0) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *word = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyUnicode_Check(word)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "fuzzy() takes sequences of str");
            return -1;
        }
        if (!PyUnicode_IS_ASCII(word))
            continue;
        hs_probe(set, fnv1a(PyUnicode_1BYTE_DATA(word), PyUnicode_GET_LENGTH(word)), 1);
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *build_fuzzy(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "fuzzy(keys, excluded, lo, hi)");
        return NULL;
    }
    Py_ssize_t lo = PyLong_AsSsize_t(args[2]), hi = PyLong_AsSsize_t(args[3]);
    if ((lo == -1 || hi == -1) && PyErr_Occurred())
        return NULL;
    Fuzzy *f = PyMem_Calloc(1, sizeof(Fuzzy));
    if (f == NULL)
        return PyErr_NoMemory();
    f->lo = lo;
    f->hi = hi;
    PyObject *capsule = PyCapsule_New(f, FUZZY_CAPSULE, fuzzy_free);
    if (capsule == NULL) {
        PyMem_Free(f);
        return NULL;
    }
    if (add_words(&f->keys, args[0]) < 0 || add_words(&f->excluded, args[1]) < 0) {
        Py_DECREF(capsule);
        return NULL;
    }
    if (hs_init(&f->seen, SEEN_SLOTS / 2 - 1) < 0) {
        Py_DECREF(capsule);
        return PyErr_NoMemory();
    }
    return capsule;
}

/* token t (length n, [a-z]) is a key, or one deletion of it is */
static int is_candidate(const Fuzzy *f, const unsigned char *t, Py_ssize_t n, uint64_t h)
{
    if (hs_probe((HashSet *)&f->keys, h, 0))
        return 1;
    uint64_t prefix = 1469598103934665603ULL;
    for (Py_ssize_t skip = 0; skip < n; skip++) {
        uint64_t d = prefix;
        for (Py_ssize_t k = skip + 1; k < n; k++) {
            d ^= t[k];
            d *= 1099511628211ULL;
        }
        if (hs_probe((HashSet *)&f->keys, d, 0))
            return 1;
        prefix ^= t[skip];
        prefix *= 1099511628211ULL;
    }
    return 0;
}

/* the fuzzy test of one token (its hash h): 1 candidate, 0 not (remembered), -1 out of range or excluded */
static int fuzzy_token(Fuzzy *f, const unsigned char *t, Py_ssize_t len, uint64_t h)
{
    if (len < f->lo || len > f->hi)
        return -1;
    for (Py_ssize_t k = 0; k < len; k++)
        if (t[k] < 'a' || t[k] > 'z')
            return -1;
    if (hs_probe(&f->seen, h, 0) || hs_probe(&f->excluded, h, 0))
        return -1;
    if (is_candidate(f, t, len, h))
        return 1;
    if (f->seen.count >= SEEN_SLOTS / 2) {  /* full: start again rather than grow */
        memset(f->seen.slots, 0, sizeof(uint64_t) * (size_t)(f->seen.mask + 1));
        f->seen.count = 0;
    }
    hs_probe(&f->seen, h, 1);
    return 0;
}

/* offsets() and near() in one walk over the stream: (offsets, candidates), or None when not ASCII */
static PyObject *offsets_near(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "offsets_near(index, fuzzy, stream: str)");
        return NULL;
    }
    Index *index = PyCapsule_GetPointer(args[0], CAPSULE);
    Fuzzy *f = PyCapsule_GetPointer(args[1], FUZZY_CAPSULE);
    if (index == NULL || f == NULL)
        return NULL;
    PyObject *stream = args[2];
    if (!PyUnicode_IS_ASCII(stream))
        Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(stream);
    Py_ssize_t n = PyUnicode_GET_LENGTH(stream);
    PyObject *found = PyDict_New();
    PyObject *near_set = PySet_New(NULL);
    if (found == NULL || near_set == NULL)
        goto error;
    uint64_t stamp = ++index->stamp;
    Py_ssize_t i = 0, start;
    while ((start = next_token(s, n, &i)) >= 0) {
        uint64_t h = fnv1a(s + start, i - start);
        Entry *e = lookup(index, s + start, i - start, h);
        if (e->length == 0) {  /* not a rule word: a misspelling of one? */
            if (fuzzy_token(f, s + start, i - start, h) == 1) {
                PyObject *word = PyUnicode_FromStringAndSize((const char *)s + start, i - start);
                if (word == NULL || PySet_Add(near_set, word) < 0) {
                    Py_XDECREF(word);
                    goto error;
                }
                Py_DECREF(word);
            }
            continue;
        }
        if (e->stamp == stamp && !e->every)
            continue;
        PyObject *at = PyLong_FromSsize_t(start);
        if (at == NULL)
            goto error;
        if (e->stamp != stamp) {
            PyObject *list = PyList_New(1);
            if (list == NULL) {
                Py_DECREF(at);
                goto error;
            }
            PyList_SET_ITEM(list, 0, at);
            int failed = PyDict_SetItem(found, e->word, list);
            Py_DECREF(list);
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
    return Py_BuildValue("(NN)", found, near_set);
error:
    Py_XDECREF(found);
    Py_XDECREF(near_set);
    return NULL;
}

static PyObject *near(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "near(fuzzy, stream: str)");
        return NULL;
    }
    Fuzzy *f = PyCapsule_GetPointer(args[0], FUZZY_CAPSULE);
    if (f == NULL)
        return NULL;
    PyObject *stream = args[1];
    if (!PyUnicode_IS_ASCII(stream))
        Py_RETURN_NONE;
    const unsigned char *s = PyUnicode_1BYTE_DATA(stream);
    Py_ssize_t n = PyUnicode_GET_LENGTH(stream);
    PyObject *found = PySet_New(NULL);
    if (found == NULL)
        return NULL;
    Py_ssize_t i = 0, start;
    while ((start = next_token(s, n, &i)) >= 0) {
        Py_ssize_t len = i - start;
        if (len < f->lo || len > f->hi)
            continue;
        const unsigned char *t = s + start;
        int letters = 1;
        for (Py_ssize_t k = 0; k < len && letters; k++)
            letters = t[k] >= 'a' && t[k] <= 'z';
        if (!letters)
            continue;
        uint64_t h = fnv1a(t, len);
        if (hs_probe(&f->seen, h, 0) || hs_probe(&f->excluded, h, 0))
            continue;
        if (is_candidate(f, t, len, h)) {
            PyObject *word = PyUnicode_FromStringAndSize((const char *)t, len);
            if (word == NULL || PySet_Add(found, word) < 0) {
                Py_XDECREF(word);
                Py_DECREF(found);
                return NULL;
            }
            Py_DECREF(word);
            continue;
        }
        if (f->seen.count >= SEEN_SLOTS / 2) {  /* full: start again rather than grow */
            memset(f->seen.slots, 0, sizeof(uint64_t) * (size_t)(f->seen.mask + 1));
            f->seen.count = 0;
        }
        hs_probe(&f->seen, h, 1);
    }
    return found;
}

static PyMethodDef methods[] = {
    {"fuzzy", (PyCFunction)(void (*)(void))build_fuzzy, METH_FASTCALL,
     "fuzzy(keys, excluded, lo, hi) -> the misspelling candidate set, for near()"},
    {"offsets_near", (PyCFunction)(void (*)(void))offsets_near, METH_FASTCALL,
     "offsets_near(index, fuzzy, stream) -> (offsets(index, stream), near(fuzzy, stream)) in one walk"},
    {"near", (PyCFunction)(void (*)(void))near, METH_FASTCALL,
     "near(fuzzy, stream) -> the distinct tokens that may be misspelt rule words, or None"},
    {"index", (PyCFunction)(void (*)(void))build_index, METH_FASTCALL,
     "index(words, every) -> an index of the ASCII words, for offsets()"},
    {"offsets", (PyCFunction)(void (*)(void))offsets, METH_FASTCALL,
     "offsets(index, stream) -> {word: [offset, ...]} of the indexed words in an ASCII stream, else None"},
    {"single_run", single_run, METH_O, "single_run(data) -> three or more one-character tokens in a row"},
    {"leet_runs", leet_runs, METH_O, "leet_runs(classes) -> [start, end, ...] of the runs where a letter meets a digit"},
    {"leet_runs_text", leet_runs_text, METH_O, "leet_runs_text(data) -> leet_runs(data.translate(CLASSES))"},
    {"spaced", spaced, METH_O, "spaced(data) -> (the word stream of ASCII word text, single_run of it)"},
    {"non_ascii", non_ascii, METH_O, "non_ascii(text) -> its distinct characters past U+007F, in order"},
    {"may_hold_url", may_hold_url, METH_O, "may_hold_url(text) -> '://' or 'ww.' (any case) occurs in it"},
    {"text_urls", text_urls, METH_O, "text_urls(text) -> the URLs written in it, as textview._text_links finds them"},
    {"qp_decode", qp_decode, METH_O, "qp_decode(data) -> binascii.a2b_qp(data), in runs"},
    {"count_byte", (PyCFunction)(void (*)(void))count_byte, METH_FASTCALL, "count_byte(data, c) -> data.count(bytes([c]))"},
    {"find_bytes", (PyCFunction)(void (*)(void))find_bytes, METH_FASTCALL, "find_bytes(data, needle, start) -> data.find(needle, start)"},
    {"url_suspect", (PyCFunction)(void (*)(void))url_suspect, METH_FASTCALL,
     "url_suspect(low, extensions, params) -> the URL rules must read it closer (urls.py suspect)"},
    {"hiding_styles", hiding_styles, METH_O, "hiding_styles(styles) -> [i, ...] of the styles a way of hiding can be read in"},
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
    for (int c = 0; c < 256; c++)
        word_class[c] = (c >= 'a' && c <= 'z') ? 'a' : (c && strchr("0123456789@$!|", c)) ? '1' : ' ';
    for (size_t w = 0; w < sizeof(HIDING) / sizeof(HIDING[0]); w++) {
        unsigned char first = (unsigned char)HIDING[w].word[0];
        hiding_first[first] |= (unsigned char)(1 << w);
        hiding_first[first - 32] |= (unsigned char)(1 << w);  /* (each word starts with a letter) */
    }
    return PyModule_Create(&module_def);
}
