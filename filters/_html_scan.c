/* The C version of filters/html_scan.py's `scan`: HTML5 tokenizing of a part, balance of its
 * elements, and where its <html>, <body>, <link> and <style> elements are. See that module for
 * what the answer means; tests/test_html_scan.py holds the two versions equal. */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE /* memmem */
#include <Python.h>
#include <string.h>

#define MAX_DEPTH 512
#define MAX_TAGS 4000 /* filters.content.textview_html.SAFE_TAGS: past it, the full check decides */
#define MAX_ATTRS 64

typedef struct { Py_ssize_t ns, ne, vs, ve; } Attr;
typedef struct { Py_ssize_t start, len; } Name;

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }
static int is_alpha(unsigned char c) { c |= 0x20; return c >= 'a' && c <= 'z'; }
static unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c; }

static int same_name(const unsigned char *data, Name a, Name b) {
    if (a.len != b.len) return 0;
    for (Py_ssize_t i = 0; i < a.len; i++)
        if (lower(data[a.start + i]) != lower(data[b.start + i])) return 0;
    return 1;
}

enum { K_VOID = 1, K_UNFOLLOWED = 2, K_RAW = 4, K_NOTED = 8, K_ROOT = 16, K_STYLE = 32 };
typedef struct { const char *word; Py_ssize_t len; int kind; } Known;
#define K(word, kind) {word, sizeof(word) - 1, kind}
static const Known KNOWN[] = {
    K("area", K_VOID), K("base", K_VOID), K("br", K_VOID), K("col", K_VOID), K("embed", K_VOID), K("hr", K_VOID),
    K("img", K_VOID), K("input", K_VOID), K("link", K_VOID | K_NOTED), K("meta", K_VOID), K("param", K_VOID),
    K("source", K_VOID), K("track", K_VOID), K("wbr", K_VOID), K("keygen", K_VOID), K("basefont", K_VOID),
    K("bgsound", K_VOID), K("frame", K_VOID),
    /* elements whose parsing the scan does not follow (foreign content, script data, elements the
     * tree builder treats by context): the full check decides */
    K("svg", K_UNFOLLOWED), K("math", K_UNFOLLOWED), K("template", K_UNFOLLOWED), K("plaintext", K_UNFOLLOWED),
    K("script", K_UNFOLLOWED), K("noscript", K_UNFOLLOWED), K("iframe", K_UNFOLLOWED), K("noembed", K_UNFOLLOWED),
    K("noframes", K_UNFOLLOWED), K("xmp", K_UNFOLLOWED), K("select", K_UNFOLLOWED), K("frameset", K_UNFOLLOWED),
    K("image", K_UNFOLLOWED), K("isindex", K_UNFOLLOWED), K("form", K_UNFOLLOWED),
    K("style", K_RAW | K_STYLE), K("title", K_RAW), K("textarea", K_RAW),
    K("html", K_ROOT | K_NOTED), K("body", K_ROOT | K_NOTED), K("head", K_ROOT),
    {NULL, 0, 0}};

/* what the parser does with an element of this name (0: an ordinary element); names of 2 to 9
 * letters are looked up among the known ones of their length only */
static int kind_of(const unsigned char *d, Name n) {
    static int first[11], ready = 0;
    char low[10];
    if (n.len < 2 || n.len > 9) return 0;
    if (!ready) {  /* KNOWN's index where each length begins (the table is not sorted: scan from there) */
        for (int len = 0; len <= 10; len++) {
            first[len] = -1;
            for (int k = 0; KNOWN[k].word; k++)
                if (KNOWN[k].len == len) { first[len] = k; break; }
        }
        ready = 1;
    }
    if (first[n.len] < 0) return 0;
    for (Py_ssize_t k = 0; k < n.len; k++) low[k] = (char)lower(d[n.start + k]);
    for (const Known *k = KNOWN + first[n.len]; k->word; k++)
        if (k->len == n.len && memcmp(k->word, low, (size_t)n.len) == 0) return k->kind;
    return 0;
}

/* Parse a tag from data[i] (just after its name), HTML5 tokenizer states from "before attribute
 * name" on. Returns the index after '>' or -1 at the end of data (an unfinished tag). */
static Py_ssize_t tag_rest(const unsigned char *d, Py_ssize_t i, Py_ssize_t n, Attr *attrs, int *nattrs) {
    int count = 0;
    for (;;) {
        /* before attribute name */
        while (i < n && is_ws(d[i])) i++;
        if (i >= n) return -1;
        if (d[i] == '>') { *nattrs = count; return i + 1; }
        if (d[i] == '/') {  /* self-closing start tag state: '>' ends, anything else is reconsumed */
            i++;
            if (i < n && d[i] == '>') { *nattrs = count; return i + 1; }
            continue;
        }
        /* attribute name ('=' may start one) */
        Attr a = {i, i, -1, -1};
        i++;
        while (i < n && !is_ws(d[i]) && d[i] != '/' && d[i] != '>' && d[i] != '=') i++;
        a.ne = i;
        /* after attribute name */
        while (i < n && is_ws(d[i])) i++;
        if (i >= n) return -1;
        if (d[i] == '=') {
            i++;
            while (i < n && is_ws(d[i])) i++;
            if (i >= n) return -1;
            if (d[i] == '"' || d[i] == '\'') {
                unsigned char q = d[i++];
                a.vs = i;
                while (i < n && d[i] != q) i++;
                if (i >= n) return -1;
                a.ve = i++;
                /* after attribute value (quoted): anything but '/' or '>' starts the next name */
            } else if (d[i] == '>') {
                a.vs = a.ve = i;  /* a missing value: the tag ends */
            } else {
                a.vs = i;
                while (i < n && !is_ws(d[i]) && d[i] != '>') i++;
                a.ve = i;
            }
        }
        if (count < MAX_ATTRS) attrs[count] = a;
        count++;
    }
}

/* The index after the '>' ending a bogus comment, doctype or the like started before i; -1 if none */
static Py_ssize_t to_gt(const unsigned char *d, Py_ssize_t i, Py_ssize_t n) {
    const unsigned char *gt = memchr(d + i, '>', (size_t)(n - i));
    return gt ? (gt - d) + 1 : -1;
}

/* The index after a comment whose "<!--" ends at i; -1 if it runs to the end */
static Py_ssize_t comment_end(const unsigned char *d, Py_ssize_t i, Py_ssize_t n) {
    if (i < n && d[i] == '>') return i + 1;                               /* <!--> */
    if (i + 1 < n && d[i] == '-' && d[i + 1] == '>') return i + 2;        /* <!---> */
    for (Py_ssize_t j = i; j + 2 < n; j++) {
        if (d[j] != '-' || d[j + 1] != '-') continue;
        if (d[j + 2] == '>') return j + 3;
        if (d[j + 2] == '!' && j + 3 < n && d[j + 3] == '>') return j + 4;
    }
    return -1;
}

/* The index of the "</name" that ends a raw text element whose content starts at i; -1 if none */
static Py_ssize_t raw_end(const unsigned char *d, Py_ssize_t i, Py_ssize_t n, Name name) {
    for (;;) {
        const unsigned char *lt = memchr(d + i, '<', (size_t)(n - i));
        if (!lt) return -1;
        Py_ssize_t j = lt - d;
        if (j + 2 + name.len < n && d[j + 1] == '/') {
            Name here = {j + 2, name.len};
            unsigned char after = d[j + 2 + name.len];
            if (same_name(d, here, name) && (is_ws(after) || after == '/' || after == '>')) return j;
        }
        i = j + 1;
    }
}

static PyObject *noted(const unsigned char *d, Name name, Attr *attrs, int nattrs, Py_ssize_t cs, Py_ssize_t ce) {
    char low[16];
    for (Py_ssize_t k = 0; k < name.len && k < 15; k++) low[k] = (char)lower(d[name.start + k]);
    PyObject *list;
    if (attrs) {
        int shown = nattrs < MAX_ATTRS ? nattrs : MAX_ATTRS;
        list = PyList_New(shown);
        if (!list) return NULL;
        for (int k = 0; k < shown; k++) {
            PyObject *t = Py_BuildValue("(nnnn)", attrs[k].ns, attrs[k].ne, attrs[k].vs, attrs[k].ve);
            if (!t) { Py_DECREF(list); return NULL; }
            PyList_SET_ITEM(list, k, t);
        }
    } else {
        list = Py_None;
        Py_INCREF(list);
    }
    PyObject *out = Py_BuildValue("(y#Nnn)", low, name.len < 15 ? name.len : 15, list, cs, ce);
    return out;
}

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer buf;
    int balanced;
    const char *marker;
    Py_ssize_t marker_len;
    if (nargs != 3 || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan(data, balanced, marker: bytes)");
        return NULL;
    }
    marker = PyBytes_AS_STRING(args[2]);
    marker_len = PyBytes_GET_SIZE(args[2]);
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_SIMPLE) < 0) return NULL;
    balanced = PyObject_IsTrue(args[1]);
    const unsigned char *d = buf.buf;
    Py_ssize_t n = buf.len, i = 0;
    Name stack[MAX_DEPTH];
    int depth = 0, tags = 0;
    Attr attrs[MAX_ATTRS];
    PyObject *found = PyList_New(0);
    if (!found || balanced < 0) goto fail;
    if (memchr(d, 0, (size_t)n)) goto unknown;
    if (marker_len && memmem(d, (size_t)n, marker, (size_t)marker_len)) goto unknown;
    while (i < n) {
        const unsigned char *lt = memchr(d + i, '<', (size_t)(n - i));
        if (!lt) break;
        i = lt - d + 1;
        if (i >= n) break;
        unsigned char c = d[i];
        if (c == '!') {
            if (i + 2 < n && d[i + 1] == '-' && d[i + 2] == '-') i = comment_end(d, i + 3, n);
            else i = to_gt(d, i + 1, n);  /* doctype, CDATA (outside foreign content) and bogus comments */
            if (i < 0) goto unknown;
            continue;
        }
        if (c == '?') {
            i = to_gt(d, i + 1, n);
            if (i < 0) goto unknown;
            continue;
        }
        int end = 0;
        if (c == '/') {
            if (i + 1 >= n) break;  /* "</" at the end is text */
            if (d[i + 1] == '>') { i += 2; continue; }
            if (!is_alpha(d[i + 1])) {
                i = to_gt(d, i + 1, n);
                if (i < 0) goto unknown;
                continue;
            }
            end = 1;
            i++;
        } else if (!is_alpha(c)) {
            continue;  /* a '<' that is text */
        }
        Name name = {i, 0};
        while (i < n && !is_ws(d[i]) && d[i] != '/' && d[i] != '>') i++;
        name.len = i - name.start;
        int nattrs = 0;
        i = tag_rest(d, i, n, attrs, &nattrs);
        if (i < 0 || ++tags > MAX_TAGS) goto unknown;
        int kind = kind_of(d, name), root = kind & K_ROOT;
        if (kind & K_UNFOLLOWED) goto unknown;
        if (end) {
            if (root) {
                if (balanced && depth) goto unknown;  /* </body> with elements open: they stay open */
                continue;
            }
            if (!balanced) continue;
            if (!depth || !same_name(d, stack[depth - 1], name)) goto unknown;
            depth--;
            continue;
        }
        if (kind & K_NOTED) {
            PyObject *item = noted(d, name, attrs, nattrs, -1, -1);
            if (!item || PyList_Append(found, item) < 0) { Py_XDECREF(item); goto fail; }
            Py_DECREF(item);
        }
        if (root || (kind & K_VOID)) continue;
        if (kind & K_RAW) {
            Py_ssize_t stop = raw_end(d, i, n, name);
            if (stop < 0) goto unknown;
            if (kind & K_STYLE) {  /* its sheet is noted */
                PyObject *item = noted(d, name, NULL, 0, i, stop);
                if (!item || PyList_Append(found, item) < 0) { Py_XDECREF(item); goto fail; }
                Py_DECREF(item);
            }
            i = stop;  /* its end tag is read next, and closes it */
        }
        if (balanced) {
            if (depth >= MAX_DEPTH) goto unknown;
            stack[depth++] = name;
        }
    }
    if (balanced && depth) goto unknown;
    PyBuffer_Release(&buf);
    return found;
unknown:
    Py_XDECREF(found);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(found);
    PyBuffer_Release(&buf);
    return NULL;
}

/* markup(data) -> its tags (each '<' to the next '>'), joined: re.findall(rb"<[^>]*>", data) joined */
static PyObject *markup(PyObject *module, PyObject *arg) {
    Py_buffer buf;
    if (PyObject_GetBuffer(arg, &buf, PyBUF_SIMPLE) < 0) return NULL;
    const char *d = buf.buf, *end = d + buf.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, buf.len);
    if (!out) { PyBuffer_Release(&buf); return NULL; }
    char *w = PyBytes_AS_STRING(out);
    Py_ssize_t used = 0;
    while (d < end) {
        const char *lt = memchr(d, '<', (size_t)(end - d));
        if (!lt) break;
        const char *gt = memchr(lt, '>', (size_t)(end - lt));
        if (!gt) break;
        memcpy(w + used, lt, (size_t)(gt - lt + 1));
        used += gt - lt + 1;
        d = gt + 1;
    }
    PyBuffer_Release(&buf);
    if (_PyBytes_Resize(&out, used) < 0) return NULL;
    return out;
}

static PyMethodDef methods[] = {
    {"markup", markup, METH_O, "markup(data) -> its tags joined: b''.join(re.findall(rb'<[^>]*>', data))"},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, balanced, marker) -> [(name, attrs, content_start, content_end), ...] or None: see filters.html_scan"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_html_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__html_scan(void) { return PyModule_Create(&module); }
