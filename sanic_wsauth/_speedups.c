/* Optional accelerator for TicketVerifier: the accepting path of a ticket.
 *
 * One call checks a ticket's format v1 shape and the signature of the
 * verifier's newest key, and returns:
 *   (jti, subject, issued_at)  for an authentic plain ticket, whose payload is
 *                              {"jti":"<32 hex>","sub":"<printable ASCII>"};
 *   issued_at                  for any other authentic ticket: tokens.py then
 *                              reads its payload (audience, address, claims,
 *                              compression, a non-ASCII subject) and checks it;
 *   None                       for everything else: another key, a bad
 *                              signature, a malformed or oversized ticket, a
 *                              non-canonical base64 spelling. The pure-Python
 *                              path in tokens.py then decides, with its error.
 * It never refuses. So it can only make an accepted ticket cheaper; every
 * refusal takes the code that the tests and the format define, and a test
 * holds the two paths to the same answers.
 *
 * The HMAC is computed by the same hash objects the Python path uses (the
 * verifier's precomputed inner and outer SHA-256 states, copied per call):
 * no cryptography is implemented here. The signature is compared in
 * constant time. Every read is bounded by the token's length, checked first
 * against max_chars, and by fixed-size buffers checked before each write.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SIG_CHARS 43          /* unpadded base64url of a SHA-256 digest */
#define DIGEST_BYTES 32
#define MAX_TS_CHARS 11       /* base64url of 8 bytes */
#define JTI_CHARS 32
#define MAX_SUBJECT_CHARS 256 /* tokens.MAX_SUBJECT_CHARS */
#define PREFIX "{\"jti\":\""  /* 8 bytes */
#define PREFIX_LEN 8
#define MIDDLE "\",\"sub\":\"" /* 9 bytes */
#define MIDDLE_LEN 9
#define SUFFIX_LEN 2 /* "} */
#define MAX_PLAIN_BYTES (PREFIX_LEN + JTI_CHARS + MIDDLE_LEN + MAX_SUBJECT_CHARS + SUFFIX_LEN)
#define MIN_PLAIN_BYTES (PREFIX_LEN + JTI_CHARS + MIDDLE_LEN + 1 + SUFFIX_LEN)
/* The longest payload segment a plain ticket can have: 4 characters per 3 bytes. */
#define MAX_PAYLOAD_CHARS ((MAX_PLAIN_BYTES + 2) / 3 * 4)

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/* base64url character -> its 6 bits, or -1; filled once at import. */
static signed char B64URL_VALUE[256];

/* Decode unpadded base64url s[0:n] into out (capacity cap). Returns the number
 * of bytes, or -1 for anything but the canonical spelling: a character outside
 * the alphabet, a length of 4k+1, nonzero unused bits in the last character,
 * or more bytes than cap. */
static Py_ssize_t
b64url_decode(const unsigned char *s, Py_ssize_t n, unsigned char *out, Py_ssize_t cap)
{
    Py_ssize_t rest = n % 4;
    Py_ssize_t size = n / 4 * 3 + (rest ? rest - 1 : 0);
    if (rest == 1 || size > cap) {
        return -1;
    }
    uint32_t bits = 0;
    int count = 0;
    Py_ssize_t written = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int value = B64URL_VALUE[s[i]];
        if (value < 0) {
            return -1;
        }
        bits = (bits << 6) | (uint32_t)value;
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[written++] = (unsigned char)(bits >> count);
            bits &= (1u << count) - 1;
        }
    }
    if (bits != 0) { /* the last character's unused bits */
        return -1;
    }
    return written;
}

static void
b64url_encode_digest(const unsigned char *digest, char *out)
{
    /* 32 bytes -> 43 characters, no padding. */
    int j = 0;
    int i = 0;
    for (; i + 3 <= DIGEST_BYTES; i += 3) {
        uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8) | digest[i + 2];
        out[j++] = B64URL[(v >> 18) & 63];
        out[j++] = B64URL[(v >> 12) & 63];
        out[j++] = B64URL[(v >> 6) & 63];
        out[j++] = B64URL[v & 63];
    }
    /* two bytes left (32 = 10 * 3 + 2) */
    uint32_t v = ((uint32_t)digest[i] << 16) | ((uint32_t)digest[i + 1] << 8);
    out[j++] = B64URL[(v >> 18) & 63];
    out[j++] = B64URL[(v >> 12) & 63];
    out[j++] = B64URL[(v >> 6) & 63];
}

static int
equal_constant_time(const char *a, const char *b, Py_ssize_t n)
{
    volatile unsigned char diff = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    return diff == 0;
}

static int
is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int
is_subject_char(unsigned char c)
{
    /* tokens._PLAIN_RE's [ !#-\[\]-~]: printable ASCII but '"' and '\'. */
    return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
}

typedef struct {
    PyObject_HEAD
    PyObject *inner; /* SHA-256 state after the key XOR ipad block */
    PyObject *outer; /* SHA-256 state after the key XOR opad block */
} PlainVerifier;

static PyObject *str_copy;
static PyObject *str_update;
static PyObject *str_digest;

/* The digest of state.copy().update(data): a new reference, or NULL. */
static PyObject *
hash_from(PyObject *state, PyObject *data)
{
    PyObject *hash = PyObject_CallMethodNoArgs(state, str_copy);
    if (hash == NULL) {
        return NULL;
    }
    PyObject *result = PyObject_CallMethodOneArg(hash, str_update, data);
    if (result == NULL) {
        Py_DECREF(hash);
        return NULL;
    }
    Py_DECREF(result);
    PyObject *digest = PyObject_CallMethodNoArgs(hash, str_digest);
    Py_DECREF(hash);
    if (digest != NULL && (!PyBytes_Check(digest) || PyBytes_GET_SIZE(digest) != DIGEST_BYTES)) {
        Py_DECREF(digest);
        PyErr_SetString(PyExc_TypeError, "the hash state must give a 32-byte digest");
        return NULL;
    }
    return digest;
}

/* 1 if the signature segment sig (SIG_CHARS long) signs value[0:n], 0 if not,
 * -1 with an exception set. */
static int
signature_matches(PlainVerifier *self, const char *value, Py_ssize_t n, const char *sig)
{
    PyObject *message = PyBytes_FromStringAndSize(value, n);
    if (message == NULL) {
        return -1;
    }
    /* Own references for the call: a re-entrant __init__ cannot free them. */
    PyObject *inner_state = self->inner;
    PyObject *outer_state = self->outer;
    Py_INCREF(inner_state);
    Py_INCREF(outer_state);
    PyObject *inner = hash_from(inner_state, message);
    Py_DECREF(inner_state);
    Py_DECREF(message);
    if (inner == NULL) {
        Py_DECREF(outer_state);
        return -1;
    }
    PyObject *outer = hash_from(outer_state, inner);
    Py_DECREF(outer_state);
    Py_DECREF(inner);
    if (outer == NULL) {
        return -1;
    }
    char expected[SIG_CHARS];
    b64url_encode_digest((const unsigned char *)PyBytes_AS_STRING(outer), expected);
    Py_DECREF(outer);
    return equal_constant_time(expected, sig, SIG_CHARS);
}

static PyObject *
PlainVerifier_verify(PlainVerifier *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "verify(token, max_chars) takes 2 arguments");
        return NULL;
    }
    PyObject *token = args[0];
    /* Exact types only: a subclass may override len(), isascii(), slicing or
     * the comparison the Python path relies on, so the Python path decides. */
    if (!PyLong_CheckExact(args[1])) {
        Py_RETURN_NONE; /* a float limit, say: the Python path compares it */
    }
    /* An int past Py_ssize_t's range clamps to it: the same comparison. */
    Py_ssize_t max_chars = PyNumber_AsSsize_t(args[1], NULL);
    if (max_chars == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyUnicode_CheckExact(token)) {
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(token) < 0) {
        return NULL;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(token);
    /* Shortest: a 1-character payload segment, '.', a 1-character
     * timestamp, '.', the signature. */
    if (n < SIG_CHARS + 4 || n > max_chars || !PyUnicode_IS_ASCII(token)) {
        Py_RETURN_NONE;
    }
    const unsigned char *s = (const unsigned char *)PyUnicode_DATA(token);
    Py_ssize_t value_len = n - SIG_CHARS - 1;
    if (s[value_len] != '.') {
        Py_RETURN_NONE; /* the signature is not 43 characters */
    }
    /* value = payload '.' timestamp, the payload with a leading '.' when
     * compressed: the rest base64url, no segment empty (tokens._well_formed). */
    Py_ssize_t compressed = s[0] == '.';
    Py_ssize_t dot = -1;
    for (Py_ssize_t i = compressed; i < value_len; i++) {
        if (s[i] == '.') {
            if (dot >= 0) {
                Py_RETURN_NONE;
            }
            dot = i;
        }
        else if (B64URL_VALUE[s[i]] < 0) {
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t ts_chars = value_len - dot - 1;
    if (dot < compressed + 1 || ts_chars < 1 || ts_chars > MAX_TS_CHARS) {
        Py_RETURN_NONE;
    }
    int matches = signature_matches(self, (const char *)s, value_len, (const char *)s + n - SIG_CHARS);
    if (matches <= 0) {
        if (matches < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }

    unsigned char ts[8];
    Py_ssize_t ts_len = b64url_decode(s + dot + 1, ts_chars, ts, sizeof ts);
    if (ts_len < 0) {
        Py_RETURN_NONE;
    }
    unsigned long long issued_at = 0;
    for (Py_ssize_t i = 0; i < ts_len; i++) {
        issued_at = (issued_at << 8) | ts[i];
    }

    PyObject *issued = PyLong_FromUnsignedLongLong(issued_at);
    if (issued == NULL || compressed) {
        return issued;
    }
    /* From here on, anything but a plain payload returns issued_at alone: the
     * ticket is authentic, and tokens.py reads its payload. */
    unsigned char text[MAX_PLAIN_BYTES];
    Py_ssize_t size = b64url_decode(s, dot, text, sizeof text);
    if (size < MIN_PLAIN_BYTES || memcmp(text, PREFIX, PREFIX_LEN) != 0 ||
        memcmp(text + PREFIX_LEN + JTI_CHARS, MIDDLE, MIDDLE_LEN) != 0 ||
        text[size - 2] != '"' || text[size - 1] != '}') {
        return issued;
    }
    const unsigned char *jti = text + PREFIX_LEN;
    for (Py_ssize_t i = 0; i < JTI_CHARS; i++) {
        if (!is_lower_hex(jti[i])) {
            return issued;
        }
    }
    const unsigned char *subject = jti + JTI_CHARS + MIDDLE_LEN;
    Py_ssize_t subject_len = size - (PREFIX_LEN + JTI_CHARS + MIDDLE_LEN + SUFFIX_LEN);
    for (Py_ssize_t i = 0; i < subject_len; i++) {
        if (!is_subject_char(subject[i])) {
            return issued;
        }
    }
    /* subject_len is 1 to MAX_SUBJECT_CHARS: MIN_PLAIN_BYTES and text's size. */
    PyObject *jti_str = PyUnicode_DecodeASCII((const char *)jti, JTI_CHARS, NULL);
    PyObject *subject_str = PyUnicode_DecodeASCII((const char *)subject, subject_len, NULL);
    if (jti_str == NULL || subject_str == NULL) {
        Py_XDECREF(jti_str);
        Py_XDECREF(subject_str);
        Py_XDECREF(issued);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(jti_str);
        Py_DECREF(subject_str);
        Py_DECREF(issued);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, jti_str);
    PyTuple_SET_ITEM(result, 1, subject_str);
    PyTuple_SET_ITEM(result, 2, issued);
    return result;
}

static int
PlainVerifier_init(PlainVerifier *self, PyObject *args, PyObject *kwds)
{
    PyObject *inner;
    PyObject *outer;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "PlainVerifier takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OO:PlainVerifier", &inner, &outer)) {
        return -1;
    }
    Py_INCREF(inner);
    Py_INCREF(outer);
    Py_XSETREF(self->inner, inner);
    Py_XSETREF(self->outer, outer);
    return 0;
}

static int
PlainVerifier_traverse(PlainVerifier *self, visitproc visit, void *arg)
{
    Py_VISIT(self->inner);
    Py_VISIT(self->outer);
    return 0;
}

static int
PlainVerifier_clear(PlainVerifier *self)
{
    Py_CLEAR(self->inner);
    Py_CLEAR(self->outer);
    return 0;
}

static void
PlainVerifier_dealloc(PlainVerifier *self)
{
    PyObject_GC_UnTrack(self);
    PlainVerifier_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
PlainVerifier_verify_checked(PlainVerifier *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->inner == NULL || self->outer == NULL) {
        PyErr_SetString(PyExc_ValueError, "PlainVerifier was not initialised");
        return NULL;
    }
    return PlainVerifier_verify(self, args, nargs);
}

static PyMethodDef PlainVerifier_methods[] = {
    {"verify", (PyCFunction)(void (*)(void))PlainVerifier_verify_checked, METH_FASTCALL,
     "verify(token, max_chars) -> (jti, subject, issued_at) for an authentic plain ticket, "
     "issued_at for another authentic ticket, else None (the caller's own checks decide)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PlainVerifierType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sanic_wsauth._speedups.PlainVerifier",
    .tp_doc = "PlainVerifier(inner, outer): the accepting path of a plain ticket, for one key.",
    .tp_basicsize = sizeof(PlainVerifier),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PlainVerifier_init,
    .tp_dealloc = (destructor)PlainVerifier_dealloc,
    .tp_traverse = (traverseproc)PlainVerifier_traverse,
    .tp_clear = (inquiry)PlainVerifier_clear,
    .tp_methods = PlainVerifier_methods,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sanic_wsauth._speedups",
    .m_doc = "Optional C accelerator for verifying plain tickets (see tokens.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    memset(B64URL_VALUE, -1, sizeof B64URL_VALUE);
    for (int i = 0; i < 64; i++) {
        B64URL_VALUE[(unsigned char)B64URL[i]] = (signed char)i;
    }
    str_copy = PyUnicode_InternFromString("copy");
    str_update = PyUnicode_InternFromString("update");
    str_digest = PyUnicode_InternFromString("digest");
    if (str_copy == NULL || str_update == NULL || str_digest == NULL) {
        return NULL;
    }
    if (PyType_Ready(&PlainVerifierType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&PlainVerifierType);
    if (PyModule_AddObject(module, "PlainVerifier", (PyObject *)&PlainVerifierType) < 0) {
        Py_DECREF(&PlainVerifierType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
