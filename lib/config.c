/* config.c: read jsond.conf into an immutable, reference-counted snapshot.
 *
 * jsond's own INI parser (see jsond.conf(5)): lines of any length, exact line
 * numbers, JSON values over several lines, and every problem reported, not
 * only the first, so `jsond -t` lists them all. Keys are rows of one table
 * (name, type, range, default, where the value goes), as in nginx's command
 * tables: the parser, the defaults, jsond_config_equal(), jsond_config_log()
 * and the destructor all walk it, so adding a key is adding a row.
 *
 * The parser never prints: problems go to a jsond_errors list, and a config
 * with any problem is freed and never returned.
 *
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builtin.h"
#include "config.h" /* lib/config.h: same directory, so not autoconf's */

/* Section kinds, as bits so a key can belong to several (include: any). */
enum {
    S_TOP = 1, /* before any section, or in one whose header was bad */
    S_SERVER = 2,
    S_LISTEN = 4,
    S_POOL = 8,
    S_ROUTE = 16,
    S_ANY = 31,
};

/* Value types; each says how its field is stored (see store_number()). */
enum {
    T_NONE,     /* unsupported keys: parsed no further */
    T_UINT,     /* unsigned */
    T_SIZE,     /* size_t, bytes */
    T_DURATION, /* unsigned, milliseconds */
    T_BOOL,     /* int 0/1; max 0 means "yes" is not supported yet */
    T_LEVEL,    /* jsond_log_level */
    T_ADDR,     /* jsond_addr, in a cfg_listen (sets has_address) */
    T_ROUTE,    /* char *, a route name that must be defined in the file */
    T_HANDLER,  /* char *, "KIND:ARG" */
    T_JSON,     /* json_t *, an object */
};

enum {
    F_UNSUPPORTED = 1, /* recognised, but this version cannot do it */
    F_REQUIRED = 2,    /* a section without it is an error */
};

#define KIB  1024ULL
#define MIB  (1024 * KIB)
#define GIB  (1024 * MIB)
#define SEC  1000ULL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)

typedef struct key_def {
    unsigned section; /* S_* bits */
    const char *name;
    int type;
    int flags;
    unsigned long long min, max, def; /* numeric types, in bytes or ms */
    size_t offset;                    /* into cfg_server, cfg_listen or cfg_route */
} key_def;

/* The table reads best as columns. */
/* clang-format off */
#define KEY(sec, st, nm, ty, lo, hi, dflt, field, fl) \
    {.section = (sec), .name = (nm), .type = (ty), .flags = (fl), \
     .min = (lo), .max = (hi), .def = (dflt), .offset = offsetof(st, field)}
#define SERVER(...) KEY(S_SERVER, cfg_server, __VA_ARGS__)
#define LISTEN(...) KEY(S_LISTEN, cfg_listen, __VA_ARGS__)
#define ROUTE(...)  KEY(S_ROUTE, cfg_route, __VA_ARGS__)
/* DESIGN.md names these; a later version gives each a type and a field. */
#define UNSUPPORTED(sec, nm) {.section = (sec), .name = (nm), .flags = F_UNSUPPORTED}

static const key_def keys[] = {
    /*     name                type        min      max        default   field, flags */
    SERVER("max_connections",  T_UINT,     1,       1000000,   10000,    max_connections, 0),
    SERVER("write_timeout",    T_DURATION, 0,       24 * HOUR, 30 * SEC, write_timeout_ms, 0),
    SERVER("output_buffer",    T_SIZE,     4 * KIB, GIB,       MIB,      output_buffer, 0),
    SERVER("shutdown_timeout", T_DURATION, 0,       HOUR,      10 * SEC, shutdown_timeout_ms, 0),
    SERVER("linger_timeout",   T_DURATION, 0,       HOUR,      5 * SEC,  linger_timeout_ms, 0),
    SERVER("log_level",        T_LEVEL,    0,       0,  JSOND_LOG_INFO,  log_level, 0),
    UNSUPPORTED(S_SERVER, "max_request_size"),
    UNSUPPORTED(S_SERVER, "idle_timeout"),
    UNSUPPORTED(S_SERVER, "max_pipeline"),
    UNSUPPORTED(S_SERVER, "policy"),
    UNSUPPORTED(S_SERVER, "stall_warning"),

    LISTEN("address",          T_ADDR,     0,       0,         0,        address, 0),
    LISTEN("on_connect",       T_ROUTE,    0,       0,         0,        on_connect, 0),
    LISTEN("requests",         T_BOOL,     0,       0,         0,        requests, 0),
    UNSUPPORTED(S_LISTEN, "routes"),
    UNSUPPORTED(S_LISTEN, "protocol"),

    ROUTE("handler",           T_HANDLER,  0,       0,         0,        handler, F_REQUIRED),
    ROUTE("args",              T_JSON,     0,       0,         0,        args, 0),
    ROUTE("fixed_args",        T_JSON,     0,       0,         0,        fixed_args, 0),
    UNSUPPORTED(S_ROUTE, "pool"),
    UNSUPPORTED(S_ROUTE, "timeout"),

    UNSUPPORTED(S_ANY, "include"),
};
/* clang-format on */
#define NKEYS (sizeof keys / sizeof keys[0])

typedef struct section_def {
    const char *name;
    unsigned kind;
    int named;            /* [KIND NAME] rather than [KIND] */
    int unsupported;      /* recognised, but this version cannot do it */
    const char *reserved; /* names with this prefix are refused */
} section_def;

static const section_def sections[] = {
    {"server", S_SERVER, 0, 0, NULL},
    {"listen", S_LISTEN, 1, 0, NULL},
    {"pool", S_POOL, 1, 1, NULL},
    {"route", S_ROUTE, 1, 0, "rpc."}, /* JSON-RPC reserves rpc.* method names */
};

typedef struct unit {
    const char *suffix;
    unsigned long long mult;
} unit;

/* For printing, the first spelling of the largest unit that divides wins. */
static const unit plain_units[] = {{"", 1}, {NULL, 0}};
static const unit size_units[] = {{"", 1},    {"K", KIB}, {"k", KIB}, {"M", MIB},
                                  {"m", MIB}, {"G", GIB}, {"g", GIB}, {NULL, 0}};
static const unit duration_units[] = {{"ms", 1},  {"s", SEC},  {"", SEC},
                                      {"m", MIN}, {"h", HOUR}, {NULL, 0}};

/* For messages: "bad WHAT 'value' for KEY HINT". */
static const struct type_def {
    const char *what;
    const char *hint;
    const unit *units; /* numeric types */
} types[T_JSON + 1] = {
    [T_UINT] = {"integer", "", plain_units},
    [T_SIZE] = {"size", " (e.g. 64K, 1M)", size_units},
    [T_DURATION] = {"duration", " (e.g. 500ms, 30s, 5m, 1h)", duration_units},
    [T_BOOL] = {"boolean", " (yes/no, on/off, true/false)", NULL},
    [T_LEVEL] = {"log level", " (debug, info, notice, warning, error)", NULL},
    [T_ROUTE] = {"route name", " (1 to 64 of A-Z a-z 0-9 _ . -)", NULL},
    [T_HANDLER] = {"handler", " (builtin:NAME, file:PATH, exec:COMMAND or module:PATH.so:NAME)",
                   NULL},
};

/* Echoed input is cut to this many bytes and made printable: a config can be
 * a binary file given by mistake, and messages end up in terminals and logs. */
#define SHOW_MAX 64
#define SHOW_BUF (SHOW_MAX + 4)

/* More than this and the file is probably not a config at all. */
#define MAX_ERRORS 100

/* A route name to check once every [route] is known. */
typedef struct route_ref {
    const char *name; /* owned by the config */
    int line;
} route_ref;

typedef struct parser {
    const char *file;
    const char *p, *end; /* text not read yet */
    int lineno;          /* of the last line read */
    jsond_errors *errs;  /* sorted by line into the caller's list at the end */
    int failed;          /* an error was reported */
    int stop;            /* out of memory or too many errors */
    jsond_config *cfg;
    size_t listen_cap, route_cap;
    /* The section being read. */
    unsigned kind; /* S_TOP outside any section */
    int skip;      /* its header was bad: ignore its keys, do not cascade */
    size_t index;  /* into cfg->listens or cfg->routes */
    int header_line;
    int server_line; /* of [server], 0 if none yet */
    int seen[NKEYS]; /* line each key was set at in this section, or 0 */
    route_ref *refs;
    size_t nrefs, refs_cap;
    char *buf; /* the current value, comments stripped, NUL-terminated */
    size_t buflen, bufcap;
} parser;

static const char default_text[] = "; jsond built-in default config: equals conf/jsond.conf.\n"
                                   "[listen v4]\n"
                                   "address = 0.0.0.0:25000\n"
                                   "on_connect = hello\n"
                                   "requests = no\n"
                                   "\n"
                                   "[listen v6]\n"
                                   "address = [::]:25000\n"
                                   "on_connect = hello\n"
                                   "requests = no\n"
                                   "\n"
                                   "[route hello]\n"
                                   "handler = builtin:hello\n";

/* ---- small helpers ----------------------------------------------------- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static const char *skip_blanks(const char *s, const char *end)
{
    while (s < end && is_blank(*s))
        s++;
    return s;
}

static size_t trim_len(const char *s, size_t n)
{
    while (n && is_blank(s[n - 1]))
        n--;
    return n;
}

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Grows an array to hold at least `need` elements; NULL (and v untouched)
 * when out of memory. */
static void *grow(void *v, size_t *cap, size_t need, size_t size)
{
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return NULL;
        ncap *= 2;
    }
    if (ncap == *cap)
        return v;
    if (ncap > SIZE_MAX / size)
        return NULL;
    void *nv = realloc(v, ncap * size);
    if (nv)
        *cap = ncap;
    return nv;
}

static const char *show(char *out, size_t size, const char *s, size_t n)
{
    size_t max = size - 4, i;
    for (i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    memcpy(out + i, n > max ? "..." : "", n > max ? 4 : 1);
    return out;
}

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || n > JSOND_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static const char *kind_name(unsigned kind)
{
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (sections[i].kind == kind)
            return sections[i].name;
    return "";
}

/* ---- numbers with units ------------------------------------------------ */

/* Reads digits and one of `units`' suffixes. Returns 0, -1 for bad syntax or
 * -2 when the value does not fit (reported as "out of range"). */
static int parse_number(const char *s, const unit *units, unsigned long long *out)
{
    unsigned long long v = 0;
    int overflow = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10)
            overflow = 1;
        else
            v = v * 10 + d;
    }
    if (p == s)
        return -1;
    for (const unit *u = units; u->suffix; u++) {
        if (strcmp(p, u->suffix) != 0)
            continue;
        if (overflow || v > ULLONG_MAX / u->mult)
            return -2;
        *out = v * u->mult;
        return 0;
    }
    return -1;
}

static const char *format_number(char *buf, size_t size, const unit *units, unsigned long long v)
{
    const unit *best = units;
    for (const unit *u = units; u->suffix; u++)
        if (v % u->mult == 0 && u->mult > best->mult)
            best = u;
    snprintf(buf, size, "%llu%s", v / best->mult, v ? best->suffix : "");
    return buf;
}

static void store_number(const key_def *k, void *field, unsigned long long v)
{
    switch (k->type) {
    case T_UINT:
    case T_DURATION:
        *(unsigned *)field = (unsigned)v;
        break;
    case T_SIZE:
        *(size_t *)field = (size_t)v;
        break;
    case T_BOOL:
        *(int *)field = (int)v;
        break;
    case T_LEVEL:
        *(jsond_log_level *)field = (jsond_log_level)v;
        break;
    }
}

static unsigned long long load_number(const key_def *k, const void *field)
{
    switch (k->type) {
    case T_UINT:
    case T_DURATION:
        return *(const unsigned *)field;
    case T_SIZE:
        return *(const size_t *)field;
    case T_BOOL:
        return (unsigned long long)*(const int *)field;
    default: /* T_LEVEL */
        return (unsigned long long)*(const jsond_log_level *)field;
    }
}

static int is_number_type(int type)
{
    return type == T_UINT || type == T_SIZE || type == T_DURATION || type == T_BOOL ||
           type == T_LEVEL;
}

/* ---- per-section walks over the table ----------------------------------- */

static void apply_defaults(unsigned kind, void *base)
{
    for (size_t i = 0; i < NKEYS; i++)
        if ((keys[i].section & kind) && is_number_type(keys[i].type))
            store_number(&keys[i], (char *)base + keys[i].offset, keys[i].def);
}

static void free_values(unsigned kind, void *base)
{
    for (size_t i = 0; i < NKEYS; i++) {
        void *field = (char *)base + keys[i].offset;
        if (!(keys[i].section & kind))
            continue;
        if (keys[i].type == T_ROUTE || keys[i].type == T_HANDLER)
            free(*(char **)field);
        else if (keys[i].type == T_JSON)
            json_decref(*(json_t **)field);
    }
}

static int values_equal(unsigned kind, const void *a, const void *b)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        if (!(k->section & kind) || k->type == T_NONE)
            continue;
        if (is_number_type(k->type)) {
            if (load_number(k, fa) != load_number(k, fb))
                return 0;
        } else if (k->type == T_ADDR) {
            if (!jsond_addr_equal(fa, fb))
                return 0;
        } else if (k->type == T_JSON) {
            const json_t *ja = *(json_t *const *)fa, *jb = *(json_t *const *)fb;
            if (ja != jb && !(ja && jb && json_equal(ja, jb)))
                return 0;
        } else {
            const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
            if (sa != sb && !(sa && sb && strcmp(sa, sb) == 0))
                return 0;
        }
    }
    return 1;
}

/* ---- errors ------------------------------------------------------------ */

static void perr(parser *P, int line, const char *fmt, ...) JSOND_PRINTF(3, 4);

static void perr(parser *P, int line, const char *fmt, ...)
{
    char text[512]; /* jsond_error.text's size */
    va_list ap;
    P->failed = 1;
    if (P->stop)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (jsond_errors_add(P->errs, P->file, line, "%s", text) < 0)
        P->stop = 1;
    else if (jsond_errors_count(P->errs) == MAX_ERRORS) {
        jsond_errors_add(P->errs, P->file, line, "too many errors, giving up");
        P->stop = 1;
    }
}

static void oom(parser *P)
{
    perr(P, P->lineno, "out of memory");
    P->stop = 1;
}

typedef struct found {
    const jsond_error *e;
    size_t order; /* makes the sort stable: same line, order of finding */
} found;

static int by_line(const void *a, const void *b)
{
    const found *x = a, *y = b;
    if (x->e->line != y->e->line)
        return x->e->line < y->e->line ? -1 : 1;
    return x->order < y->order ? -1 : 1;
}

/* Appends the errors found to `out` in line order (an undefined route, say,
 * is only found at the end of the file). */
static void flush_errors(parser *P, jsond_errors *out)
{
    size_t n = jsond_errors_count(P->errs);
    if (!out || !P->failed)
        return;
    found *v = n ? malloc(n * sizeof *v) : NULL;
    /* Failed with nothing recorded: the list itself ran out of memory. */
    if (!v) {
        jsond_errors_add(out, P->file, 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = (found){jsond_errors_get(P->errs, i), i};
    qsort(v, n, sizeof *v, by_line);
    for (size_t i = 0; i < n; i++)
        jsond_errors_add(out, v[i].e->file, v[i].e->line, "%s", v[i].e->text);
    free(v);
}

/* ---- lines and values -------------------------------------------------- */

/* The next line without its "\n" or "\r\n"; 0 at the end of the text. */
static int next_line(parser *P, const char **line, size_t *len)
{
    if (P->p >= P->end || P->stop)
        return 0;
    if (P->lineno == INT_MAX) {
        perr(P, P->lineno, "too many lines");
        P->stop = 1;
        return 0;
    }
    const char *nl = memchr(P->p, '\n', (size_t)(P->end - P->p));
    const char *e = nl ? nl : P->end;
    *line = P->p;
    *len = (size_t)(e - P->p);
    if (*len && e[-1] == '\r')
        (*len)--;
    P->p = nl ? nl + 1 : P->end;
    P->lineno++;
    return 1;
}

static int has_nul(parser *P, const char *s, size_t n)
{
    if (!memchr(s, '\0', n))
        return 0;
    perr(P, P->lineno, "NUL byte in line (not a text file?)");
    return 1;
}

/* Length of s before its comment: ';' or '#' after whitespace (or at the
 * start), outside double-quoted strings. Counts brackets into *depth. */
static size_t scan(const char *s, size_t n, long *depth)
{
    int in_str = 0, esc = 0, space = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if ((c == ';' || c == '#') && space)
            return i;
        if (c == '"')
            in_str = 1;
        else if (c == '{' || c == '[')
            ++*depth;
        else if (c == '}' || c == ']')
            --*depth;
        space = is_blank(c);
    }
    return n;
}

static int buf_append(parser *P, const char *s, size_t n)
{
    char *nb = grow(P->buf, &P->bufcap, P->buflen + n + 2, 1);
    if (!nb) {
        oom(P);
        return -1;
    }
    P->buf = nb;
    memcpy(P->buf + P->buflen, s, n);
    P->buflen += n;
    P->buf[P->buflen] = '\0';
    return 0;
}

/* Reads the value that starts at v (the rest of line `start`) into P->buf.
 * A value starting with { or [ is JSON and takes the following lines until
 * its brackets balance; their comments are stripped too and their line
 * breaks kept, so a JSON error's line maps back to the file. Returns 0, or
 * -1 after reporting a problem (the value is consumed either way). */
static int read_value(parser *P, const char *v, size_t n, int start)
{
    int json = n && (*v == '{' || *v == '['), bad = 0;
    long depth = 0;
    P->buflen = 0;
    for (;;) {
        if (buf_append(P, v, scan(v, n, &depth)) < 0)
            return -1;
        if (!json || depth <= 0)
            break;
        if (!next_line(P, &v, &n)) {
            if (!P->stop)
                perr(P, start, "unbalanced JSON value");
            return -1;
        }
        bad |= has_nul(P, v, n);
        if (buf_append(P, "\n", 1) < 0)
            return -1;
    }
    P->buflen = trim_len(P->buf, P->buflen);
    P->buf[P->buflen] = '\0';
    return bad ? -1 : 0;
}

/* ---- typed values ------------------------------------------------------ */

static int check_builtin(parser *P, const char *arg, int line)
{
    char s[SHOW_BUF];
    if (jsond_builtin_find(arg))
        return 0;
    perr(P, line, "unknown builtin handler '%s'", show(s, sizeof s, arg, strlen(arg)));
    return -1;
}

/* Handler kinds; NULL check: recognised, not supported by this version. */
static const struct handler_kind {
    const char *name;
    int (*check)(parser *P, const char *arg, int line);
} handler_kinds[] = {
    {"builtin", check_builtin},
    {"file", NULL},
    {"exec", NULL},
    {"module", NULL},
};

static int check_handler(parser *P, const char *v, int line)
{
    char s[SHOW_BUF];
    const char *colon = strchr(v, ':');
    for (size_t i = 0; colon && i < sizeof handler_kinds / sizeof handler_kinds[0]; i++) {
        const struct handler_kind *h = &handler_kinds[i];
        if (strlen(h->name) != (size_t)(colon - v) || memcmp(v, h->name, (size_t)(colon - v)) != 0)
            continue;
        if (h->check)
            return h->check(P, colon + 1, line);
        perr(P, line, "handler kind '%s' is not supported by this version", h->name);
        return -1;
    }
    perr(P, line, "bad handler '%s'%s", show(s, sizeof s, v, strlen(v)), types[T_HANDLER].hint);
    return -1;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const words[][2] = {{"no", "yes"}, {"off", "on"}, {"false", "true"}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        for (int b = 0; b < 2; b++) {
            if (strcmp(v, words[i][b]) == 0) {
                *out = b;
                return 0;
            }
        }
    }
    return -1;
}

static void set_json(parser *P, const key_def *k, json_t **field, const char *v, int line)
{
    json_error_t jerr;
    char s[sizeof jerr.text + 4];
    if (*v != '{' && *v != '[') {
        perr(P, line, "%s must be a JSON object", k->name);
        return;
    }
    json_t *j = json_loadb(v, strlen(v), JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        perr(P, jerr.line > 0 ? line + jerr.line - 1 : line, "bad JSON in %s: %s", k->name,
             show(s, sizeof s, jerr.text, strlen(jerr.text)));
        return;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        perr(P, line, "%s must be a JSON object", k->name);
        return;
    }
    *field = j;
}

static void set_route(parser *P, const key_def *k, char **field, const char *v, int line)
{
    char s[SHOW_BUF];
    size_t n = strlen(v);
    if (!valid_name(v, n)) {
        perr(P, line, "bad %s '%s' for %s%s", types[k->type].what, show(s, sizeof s, v, n), k->name,
             types[k->type].hint);
        return;
    }
    route_ref *nr = grow(P->refs, &P->refs_cap, P->nrefs + 1, sizeof *nr);
    if (nr)
        P->refs = nr;
    if (!nr || !(*field = dupn(v, n))) {
        oom(P);
        return;
    }
    P->refs[P->nrefs++] = (route_ref){*field, line};
}

/* Parses value v of key k (set at `line`) into its field of `base`. */
static void set_value(parser *P, const key_def *k, void *base, const char *v, int line)
{
    void *field = (char *)base + k->offset;
    const struct type_def *t = &types[k->type];
    char s[SHOW_BUF], lo[32], hi[32];
    const char *why;
    unsigned long long num;
    int b, rc;
    jsond_log_level level;

    switch (k->type) {
    case T_UINT:
    case T_SIZE:
    case T_DURATION:
        rc = parse_number(v, t->units, &num);
        if (rc == -1)
            break;
        if (rc == -2 || num < k->min || num > k->max) {
            perr(P, line, "%s = %s is out of range (%s..%s)", k->name,
                 show(s, sizeof s, v, strlen(v)), format_number(lo, sizeof lo, t->units, k->min),
                 format_number(hi, sizeof hi, t->units, k->max));
            return;
        }
        store_number(k, field, num);
        return;
    case T_BOOL:
        if (parse_bool(v, &b) < 0)
            break;
        if ((unsigned long long)b > k->max) {
            perr(P, line, "%s = %s is not supported by this version", k->name, v);
            return;
        }
        store_number(k, field, (unsigned long long)b);
        return;
    case T_LEVEL:
        if (jsond_log_level_parse(v, &level) < 0)
            break;
        store_number(k, field, (unsigned long long)level);
        return;
    case T_ADDR:
        if (jsond_addr_parse(v, field, &why) < 0) {
            perr(P, line, "bad address '%s': %s", show(s, sizeof s, v, strlen(v)), why);
            return;
        }
        /* The address is optional: a listener without one only takes
         * sockets handed over by systemd. */
        ((cfg_listen *)base)->has_address = 1;
        return;
    case T_ROUTE:
        set_route(P, k, field, v, line);
        return;
    case T_HANDLER:
        if (check_handler(P, v, line) == 0 && !(*(char **)field = dupn(v, strlen(v))))
            oom(P);
        return;
    default: /* T_JSON */
        set_json(P, k, field, v, line);
        return;
    }
    perr(P, line, "bad %s '%s' for %s%s", t->what, show(s, sizeof s, v, strlen(v)), k->name,
         t->hint);
}

/* ---- sections and keys ------------------------------------------------- */

static const char *section_name(const parser *P)
{
    if (P->kind == S_LISTEN)
        return P->cfg->listens[P->index].name;
    if (P->kind == S_ROUTE)
        return P->cfg->routes[P->index].name;
    return NULL;
}

static void *section_base(const parser *P)
{
    if (P->kind == S_LISTEN)
        return &P->cfg->listens[P->index];
    if (P->kind == S_ROUTE)
        return &P->cfg->routes[P->index];
    return &P->cfg->server;
}

/* Checks the section just finished for keys it must have. */
static void close_section(parser *P)
{
    if (P->skip || P->kind == S_TOP)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        if ((keys[i].section & P->kind) && (keys[i].flags & F_REQUIRED) && !P->seen[i]) {
            const char *name = section_name(P);
            perr(P, P->header_line, "[%s%s%s] has no %s", kind_name(P->kind), name ? " " : "",
                 name ? name : "", keys[i].name);
        }
    }
}

/* Opens [KIND NAME] as the current section; 0 or the line of the first one
 * of that name. */
static int open_named(parser *P, unsigned kind, const char *name, size_t n, int line)
{
    jsond_config *cfg = P->cfg;
    char nm[JSOND_NAME_MAX + 1];
    memcpy(nm, name, n);
    nm[n] = '\0';
    if (kind == S_LISTEN) {
        for (size_t i = 0; i < cfg->nlistens; i++)
            if (strcmp(cfg->listens[i].name, nm) == 0)
                return cfg->listens[i].line;
        cfg_listen *nl = grow(cfg->listens, &P->listen_cap, cfg->nlistens + 1, sizeof *nl);
        if (!nl)
            goto fail;
        cfg->listens = nl;
        P->index = cfg->nlistens++;
        memset(&nl[P->index], 0, sizeof nl[P->index]);
        memcpy(nl[P->index].name, nm, n + 1);
        nl[P->index].line = line;
    } else {
        const cfg_route *r = jsond_config_route(cfg, nm);
        if (r)
            return r->line;
        cfg_route *nr = grow(cfg->routes, &P->route_cap, cfg->nroutes + 1, sizeof *nr);
        if (!nr)
            goto fail;
        cfg->routes = nr;
        P->index = cfg->nroutes++;
        memset(&nr[P->index], 0, sizeof nr[P->index]);
        memcpy(nr[P->index].name, nm, n + 1);
        nr[P->index].line = line;
    }
    P->kind = kind;
    P->skip = 0;
    apply_defaults(kind, section_base(P));
    return 0;
fail:
    oom(P);
    return 0;
}

static void section(parser *P, const char *s, size_t n)
{
    const char *end = s + n, *close = memchr(s, ']', n);
    int line = P->lineno, first;
    char shown[SHOW_BUF];

    close_section(P);
    /* Until the header proves good, the keys that follow are ignored: one
     * bad header is one error, not one per key. */
    P->kind = S_TOP;
    P->skip = 1;
    P->header_line = line;
    memset(P->seen, 0, sizeof P->seen);
    if (!close) {
        perr(P, line, "missing ']' in section header");
        return;
    }
    const char *rest = skip_blanks(close + 1, end);
    if (rest < end && *rest != ';' && *rest != '#') {
        perr(P, line, "unexpected text after ']'");
        return;
    }
    const char *kw = skip_blanks(s + 1, close), *kwe = kw;
    while (kwe < close && !is_blank(*kwe))
        kwe++;
    const char *name = skip_blanks(kwe, close);
    size_t namelen = trim_len(name, (size_t)(close - name));

    const section_def *sd = NULL;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (strlen(sections[i].name) == (size_t)(kwe - kw) &&
            memcmp(sections[i].name, kw, (size_t)(kwe - kw)) == 0)
            sd = &sections[i];
    if (!sd) {
        perr(P, line, "unknown section [%s]", show(shown, sizeof shown, kw, (size_t)(kwe - kw)));
        return;
    }
    if (!sd->named) {
        if (namelen) {
            perr(P, line, "[%s] takes no name", sd->name);
        } else if (P->server_line) {
            perr(P, line, "duplicate section [%s] (first at line %d)", sd->name, P->server_line);
        } else {
            P->server_line = line;
            P->kind = sd->kind;
            P->skip = 0;
        }
        return;
    }
    if (!namelen) {
        perr(P, line, "[%s] needs a name", sd->name);
    } else if (!valid_name(name, namelen)) {
        perr(P, line, "bad section name '%s' (1 to 64 of A-Z a-z 0-9 _ . -)",
             show(shown, sizeof shown, name, namelen));
    } else if (sd->unsupported) {
        perr(P, line, "[%s] sections are not supported by this version", sd->name);
    } else if (sd->reserved && namelen >= strlen(sd->reserved) &&
               memcmp(name, sd->reserved, strlen(sd->reserved)) == 0) {
        perr(P, line, "%s name '%.*s' is reserved (%s prefix)", sd->name, (int)namelen, name,
             sd->reserved);
    } else if ((first = open_named(P, sd->kind, name, namelen, line)) != 0) {
        perr(P, line, "duplicate section [%s %.*s] (first at line %d)", sd->name, (int)namelen,
             name, first);
    }
}

static const key_def *find_key(unsigned kind, const char *name, size_t n)
{
    for (size_t i = 0; i < NKEYS; i++)
        if ((keys[i].section & kind) && strlen(keys[i].name) == n &&
            memcmp(keys[i].name, name, n) == 0)
            return &keys[i];
    return NULL;
}

static void key_value(parser *P, const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? trim_len(s, (size_t)(eq - s)) : 0;
    int line = P->lineno;
    char shown[SHOW_BUF];

    if (!klen) {
        perr(P, line, "syntax error: expected 'key = value' or '[section]'");
        return;
    }
    const char *v = skip_blanks(eq + 1, s + n);
    /* Read the whole value first: a JSON value's lines must be consumed
     * whatever becomes of the key. */
    int ok = read_value(P, v, (size_t)(s + n - v), line) == 0;
    if (P->skip)
        return;
    const key_def *k = find_key(P->kind, s, klen);
    if (!k) {
        show(shown, sizeof shown, s, klen);
        if (P->kind == S_TOP)
            perr(P, line, "key '%s' outside any section", shown);
        else
            perr(P, line, "unknown key '%s' in [%s]", shown, kind_name(P->kind));
        return;
    }
    if (k->flags & F_UNSUPPORTED) {
        perr(P, line, "%s is not supported by this version", k->name);
        return;
    }
    size_t i = (size_t)(k - keys);
    if (P->seen[i]) {
        perr(P, line, "duplicate key '%s' (first at line %d)", k->name, P->seen[i]);
        return;
    }
    P->seen[i] = line;
    if (ok)
        set_value(P, k, section_base(P), P->buf, line);
}

static void parse_lines(parser *P)
{
    const char *s;
    size_t n;
    while (next_line(P, &s, &n)) {
        if (has_nul(P, s, n))
            continue;
        const char *end = s + n;
        s = skip_blanks(s, end);
        if (s == end || *s == ';' || *s == '#')
            continue;
        if (*s == '[')
            section(P, s, (size_t)(end - s));
        else
            key_value(P, s, (size_t)(end - s));
    }
    if (P->stop)
        return;
    close_section(P);
    for (size_t i = 0; i < P->nrefs; i++)
        if (!jsond_config_route(P->cfg, P->refs[i].name))
            perr(P, P->refs[i].line, "route '%s' is not defined", P->refs[i].name);
}

/* ---- the public interface ---------------------------------------------- */

static void config_free(jsond_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlistens; i++)
        free_values(S_LISTEN, &cfg->listens[i]);
    for (size_t i = 0; i < cfg->nroutes; i++)
        free_values(S_ROUTE, &cfg->routes[i]);
    free(cfg->listens);
    free(cfg->routes);
    free(cfg->source);
    free(cfg);
}

jsond_config *jsond_config_parse(const char *name, const char *text, size_t len, jsond_errors *errs)
{
    parser P = {0};
    P.file = name ? name : "(string)";
    P.p = text ? text : "";
    P.end = P.p + (text ? len : 0);
    P.kind = S_TOP;
    P.errs = jsond_errors_new();
    P.cfg = calloc(1, sizeof *P.cfg);
    if (!P.errs || !P.cfg || !(P.cfg->source = dupn(P.file, strlen(P.file)))) {
        P.failed = 1;
        if (errs)
            jsond_errors_add(errs, P.file, 0, "out of memory");
        goto done;
    }
    atomic_init(&P.cfg->refs, 1);
    apply_defaults(S_SERVER, &P.cfg->server);
    parse_lines(&P);
    flush_errors(&P, errs);
done:
    if (P.failed) {
        config_free(P.cfg);
        P.cfg = NULL;
    }
    free(P.refs);
    free(P.buf);
    jsond_errors_free(P.errs);
    return P.cfg;
}

jsond_config *jsond_config_load(const char *path, jsond_errors *errs)
{
    jsond_config *cfg = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char *what = "cannot open";
    FILE *f = fopen(path, "rb");
    if (!f)
        goto fail;
    what = "cannot read";
    for (;;) {
        char *nb = grow(buf, &cap, len + 65536, 1);
        if (!nb) {
            errno = ENOMEM;
            goto fail;
        }
        buf = nb;
        size_t want = cap - len, got = fread(buf + len, 1, want, f);
        len += got;
        if (got < want) {
            if (ferror(f))
                goto fail;
            break;
        }
    }
    cfg = jsond_config_parse(path, buf, len, errs);
    goto done;
fail:
    if (errs)
        jsond_errors_add(errs, path, 0, "%s: %s", what, strerror(errno));
done:
    free(buf);
    if (f)
        fclose(f);
    return cfg;
}

const char *jsond_config_default_text(void)
{
    return default_text;
}

jsond_config *jsond_config_default(void)
{
    return jsond_config_parse("(built-in)", default_text, sizeof default_text - 1, NULL);
}

jsond_config *jsond_config_ref(jsond_config *cfg)
{
    if (cfg)
        atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void jsond_config_unref(jsond_config *cfg)
{
    if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
        config_free(cfg);
}

int jsond_config_equal(const jsond_config *a, const jsond_config *b)
{
    if (!values_equal(S_SERVER, &a->server, &b->server) || a->nlistens != b->nlistens ||
        a->nroutes != b->nroutes)
        return 0;
    /* Matched by name: sections in another order have the same effect. Names
     * are unique on each side, so equal counts make this a bijection. */
    for (size_t i = 0; i < a->nlistens; i++) {
        const cfg_listen *la = &a->listens[i], *lb = NULL;
        for (size_t j = 0; j < b->nlistens && !lb; j++)
            if (strcmp(la->name, b->listens[j].name) == 0)
                lb = &b->listens[j];
        if (!lb || !values_equal(S_LISTEN, la, lb))
            return 0;
    }
    for (size_t i = 0; i < a->nroutes; i++) {
        const cfg_route *rb = jsond_config_route(b, a->routes[i].name);
        if (!rb || !values_equal(S_ROUTE, &a->routes[i], rb))
            return 0;
    }
    return 1;
}

typedef struct line_buf {
    char s[1024];
    size_t n;
} line_buf;

static void line_add(line_buf *lb, const char *fmt, ...) JSOND_PRINTF(2, 3);

static void line_add(line_buf *lb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(lb->s + lb->n, sizeof lb->s - lb->n, fmt, ap);
    va_end(ap);
    if (r > 0)
        lb->n += (size_t)r < sizeof lb->s - lb->n ? (size_t)r : sizeof lb->s - lb->n - 1;
}

/* json_dump_callback sink that keeps a prefix of a value of any size. */
static int dump_prefix(const char *s, size_t n, void *data)
{
    line_buf *lb = data;
    /* Leaves room for the "..." that marks the cut. */
    size_t room = lb->n + 4 < sizeof lb->s ? sizeof lb->s - 4 - lb->n : 0;
    memcpy(lb->s + lb->n, s, n < room ? n : room);
    lb->n += n < room ? n : room;
    return n < room ? 0 : -1;
}

/* " key=value" for every key of the section that is set. */
static void log_values(line_buf *lb, unsigned kind, const void *base)
{
    char num[32], addr[128];
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def *k = &keys[i];
        const void *field = (const char *)base + k->offset;
        if (!(k->section & kind))
            continue;
        if (k->type == T_UINT || k->type == T_SIZE || k->type == T_DURATION) {
            line_add(lb, " %s=%s", k->name,
                     format_number(num, sizeof num, types[k->type].units, load_number(k, field)));
        } else if (k->type == T_BOOL) {
            line_add(lb, " %s=%s", k->name, load_number(k, field) ? "yes" : "no");
        } else if (k->type == T_LEVEL) {
            line_add(lb, " %s=%s", k->name,
                     jsond_log_level_name((jsond_log_level)load_number(k, field)));
        } else if (k->type == T_ADDR && ((const jsond_addr *)field)->len) {
            line_add(lb, " %s=%s", k->name, jsond_addr_format(field, addr, sizeof addr));
        } else if ((k->type == T_ROUTE || k->type == T_HANDLER) && *(char *const *)field) {
            line_add(lb, " %s=%s", k->name, *(char *const *)field);
        } else if (k->type == T_JSON && *(json_t *const *)field) {
            line_add(lb, " %s=", k->name);
            /* A 10 MB args object is logged as its first few hundred bytes. */
            if (json_dump_callback(*(json_t *const *)field, dump_prefix, lb, JSON_COMPACT) < 0)
                line_add(lb, "...");
            lb->s[lb->n] = '\0';
        }
    }
}

void jsond_config_log(const jsond_config *cfg)
{
    line_buf lb = {.n = 0};
    line_add(&lb, "[server]");
    log_values(&lb, S_SERVER, &cfg->server);
    jsond_log(JSOND_LOG_INFO, "%s", lb.s);
    for (size_t i = 0; i < cfg->nlistens; i++) {
        lb.n = 0;
        line_add(&lb, "[listen %s]", cfg->listens[i].name);
        log_values(&lb, S_LISTEN, &cfg->listens[i]);
        jsond_log(JSOND_LOG_INFO, "%s", lb.s);
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        lb.n = 0;
        line_add(&lb, "[route %s]", cfg->routes[i].name);
        log_values(&lb, S_ROUTE, &cfg->routes[i]);
        jsond_log(JSOND_LOG_INFO, "%s", lb.s);
    }
}

const char *jsond_config_source(const jsond_config *cfg)
{
    return cfg->source;
}

jsond_log_level jsond_config_log_level(const jsond_config *cfg)
{
    return cfg->server.log_level;
}

unsigned jsond_config_max_connections(const jsond_config *cfg)
{
    return cfg->server.max_connections;
}

const cfg_route *jsond_config_route(const jsond_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    return NULL;
}
