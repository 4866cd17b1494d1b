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
 * Handlers are not config's business: it checks that a handler reads
 * KIND:ARG and keeps the string. Whether such a handler exists is asked of
 * the resolver the caller passes (the handler registry, handler.c), once per
 * route after every file is read; its problems join the others, in reading
 * order, so `jsond -t` and a reload report them like any other.
 *
 * `include = GLOB` reads other files in place (see include()). Each file read
 * is an entry of the parser's file table, which knows who included it where:
 * that is enough to name every problem's own FILE:LINE, to refuse cycles,
 * and to sort the problems in reading order.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h" /* lib/config.h: same directory, so not autoconf's */

/* Section kinds, as bits so a key can belong to several. */
enum {
    S_TOP = 1, /* before any section, or in one whose header was bad */
    S_SERVER = 2,
    S_LISTEN = 4,
    S_POOL = 8,
    S_ROUTE = 16,
};

/* Value types; each says how its field is stored (see store_number()). */
enum {
    T_NONE,     /* unsupported keys: parsed no further */
    T_UINT,     /* unsigned */
    T_SIZE,     /* size_t, bytes */
    T_DURATION, /* unsigned, milliseconds */
    T_BOOL,     /* int 0/1 */
    T_LEVEL,    /* jsond_log_level */
    T_PROTOCOL, /* int, JSOND_PROTOCOL_* */
    T_POLICY,   /* int, JSOND_POLICY_* */
    T_ADDR,     /* jsond_addr, in a cfg_listen (sets has_address) */
    T_ROUTE,    /* char *, a route name that must be defined in the file */
    T_ROUTES,   /* char **, in a cfg_listen with all_routes (default 1: "*") and nroutes */
    T_POOL,     /* char *, a pool name that must be declared in the config, or default */
    T_HANDLER,  /* char *, "KIND:ARG" */
    T_JSON,     /* json_t *, an object */
};

enum {
    F_REQUIRED = 1, /* a section without it is an error */
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
    size_t offset;                    /* into cfg_server, cfg_listen, cfg_pool or cfg_route */
} key_def;

/* The table reads best as columns. */
/* clang-format off */
#define KEY(sec, st, nm, ty, lo, hi, dflt, field, fl) \
    {.section = (sec), .name = (nm), .type = (ty), .flags = (fl), \
     .min = (lo), .max = (hi), .def = (dflt), .offset = offsetof(st, field)}
#define SERVER(...) KEY(S_SERVER, cfg_server, __VA_ARGS__)
#define LISTEN(...) KEY(S_LISTEN, cfg_listen, __VA_ARGS__)
#define POOL(...)   KEY(S_POOL, cfg_pool, __VA_ARGS__)
#define ROUTE(...)  KEY(S_ROUTE, cfg_route, __VA_ARGS__)

static const key_def keys[] = {
    /*     name                type        min      max        default   field, flags */
    SERVER("max_connections",  T_UINT,     1,       1000000,   10000,    max_connections, 0),
    SERVER("max_request_size", T_SIZE,     1,       GIB,       64 * KIB, max_request_size, 0),
    SERVER("idle_timeout",     T_DURATION, 0,       24 * HOUR, 60 * SEC, idle_timeout_ms, 0),
    SERVER("write_timeout",    T_DURATION, 0,       24 * HOUR, 30 * SEC, write_timeout_ms, 0),
    SERVER("output_buffer",    T_SIZE,     4 * KIB, GIB,       MIB,      output_buffer, 0),
    SERVER("shutdown_timeout", T_DURATION, 0,       HOUR,      10 * SEC, shutdown_timeout_ms, 0),
    SERVER("linger_timeout",   T_DURATION, 0,       HOUR,      5 * SEC,  linger_timeout_ms, 0),
    SERVER("max_pipeline",     T_UINT,     1,       65536,     128,      max_pipeline, 0),
    SERVER("request_timeout",  T_DURATION, 0,       24 * HOUR, 60 * SEC, request_timeout_ms, 0),
    SERVER("log_level",        T_LEVEL,    0,       0,  JSOND_LOG_INFO,  log_level, 0),
    SERVER("policy",           T_POLICY,   0,       0, JSOND_POLICY_ADAPTIVE, policy, 0),
    SERVER("stall_warning",    T_DURATION, 0,       HOUR,      100,      stall_warning_ms, 0),

    LISTEN("address",          T_ADDR,     0,       0,         0,        address, 0),
    LISTEN("on_connect",       T_ROUTE,    0,       0,         0,        on_connect, 0),
    LISTEN("requests",         T_BOOL,     0,       0,         0,        requests, 0),
    LISTEN("routes",           T_ROUTES,   0,       0,         1,        routes, 0),
    LISTEN("protocol",         T_PROTOCOL, 0,       0, JSOND_PROTOCOL_AUTO, protocol, 0),

    POOL("threads",            T_UINT,     1,       1024,      4,        threads, 0),
    POOL("queue_limit",        T_UINT,     0,       1000000,   256,      queue_limit, 0),

    ROUTE("handler",           T_HANDLER,  0,       0,         0,        handler, F_REQUIRED),
    ROUTE("args",              T_JSON,     0,       0,         0,        args, 0),
    ROUTE("fixed_args",        T_JSON,     0,       0,         0,        fixed_args, 0),
    ROUTE("timeout",           T_DURATION, 0,       24 * HOUR, JSOND_TIMEOUT_INHERIT, timeout_ms, 0),
    ROUTE("pool",              T_POOL,     0,       0,         0,        pool, 0),
    ROUTE("policy",            T_POLICY,   0,       0, JSOND_POLICY_INHERIT, policy, 0),
    ROUTE("max_output",        T_SIZE,     1,       GIB,       16 * MIB, max_output, 0),
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
    {"pool", S_POOL, 1, 0, NULL},
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
    [T_PROTOCOL] = {"protocol", " (auto, jsonrpc)", NULL},
    [T_POLICY] = {"policy", " (adaptive, strict)", NULL},
    [T_ROUTE] = {"route name", " (1 to 64 of A-Z a-z 0-9 _ . -)", NULL},
    [T_ROUTES] = {"route list", " (* or route names separated by commas or blanks)", NULL},
    [T_POOL] = {"pool name", " (1 to 64 of A-Z a-z 0-9 _ . -)", NULL},
    [T_HANDLER] = {"handler", " (builtin:NAME, file:PATH, exec:COMMAND or module:PATH.so:NAME)",
                   NULL},
};

static const char *const protocol_names[] = {
    [JSOND_PROTOCOL_AUTO] = "auto",
    [JSOND_PROTOCOL_JSONRPC] = "jsonrpc",
};

static const char *const policy_names[] = {
    [JSOND_POLICY_ADAPTIVE] = "adaptive",
    [JSOND_POLICY_STRICT] = "strict",
};

/* on_connect = none: no push. Reserved: no route may have this name. */
#define JSOND_ROUTE_NONE "none"

/* More than this and the file is probably not a config at all. */
#define MAX_ERRORS 100

/* Safety nets for include: a cycle is caught by itself, but files that each
 * include the next one twice would read 2^depth files. */
#define MAX_DEPTH 16
#define MAX_FILES 1000

/* Reading a config never balloons: one file is at most MAX_FILE bytes, and
 * all the files of one config (the top file and what it includes) at most
 * MAX_TOTAL. A real config is a few KB; a route's args may be large. */
#define MAX_FILE  (16 * MIB)
#define MAX_TOTAL (64 * MIB)

/* Shown paths are cut to this many bytes (see jsond_config_show()). */
#define PATH_SHOW 256

/* One file read: the top file, or one read by an include line. The same
 * file included twice is two entries. Its name is cfg->files[i]. */
typedef struct src {
    char *real;    /* realpath(), to detect cycles; NULL for text from memory */
    size_t parent; /* the entry that included it; the top file is its own */
    int line;      /* of the include line, in the parent */
    int depth;     /* 0 for the top file */
    size_t dirlen; /* relative includes are relative to name[0..dirlen) */
} src;

/* A route or pool name to check once every section is known. */
typedef struct name_ref {
    unsigned kind;    /* S_ROUTE or S_POOL: what it names */
    const char *name; /* owned by the config */
    size_t file;      /* a src */
    int line;
} name_ref;

typedef struct parser {
    const char *top; /* the top file's name, for errors with no entry */
    src *files;      /* every file read, in reading order */
    size_t nfiles, files_cap;
    size_t cur;          /* the file being read */
    const char *p, *end; /* its text not read yet */
    int lineno;          /* its last line read */
    jsond_errors *errs;  /* sorted into the caller's list at the end */
    size_t *err_file;    /* the src of each error in errs */
    size_t err_cap;
    int failed; /* an error was reported */
    int stop;   /* out of memory or too many errors */
    int lost;   /* an error could not be recorded: out of memory */
    jsond_config *cfg;
    size_t listen_cap, pool_cap, route_cap, names_cap;
    /* The section being read; a section never spans files (an include line
     * ends it, and so does the end of a file). */
    unsigned kind; /* S_TOP outside any section */
    int skip;      /* its header was bad: ignore its keys, do not cascade */
    size_t index;  /* into cfg->listens, cfg->pools or cfg->routes */
    int header_line;
    int server_line;    /* of [server], 0 if none yet */
    size_t server_file; /* and its src */
    int seen[NKEYS];    /* line each key was set at in this section, or 0 */
    int section_failed; /* one of its lines was in error */
    /* The include line since the last header, or 0, and the section it
     * ended ("[route r]", or ""): keys after it get a hint. */
    int include_line;
    char ended[JSOND_NAME_MAX + 16];
    name_ref *refs;
    size_t nrefs, refs_cap;
    char *buf; /* the current value, comments stripped, NUL-terminated */
    size_t buflen, bufcap;
    size_t total;    /* bytes of every file read so far, at most MAX_TOTAL */
    int listen_seen; /* a [listen ...] header, even a bad one, was read */
} parser;

/* No include line: it has no directory to be relative to, and conf.d/ is
 * empty where the installed file is the default. */
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

const char *jsond_config_show(char *out, size_t size, const char *s, size_t n)
{
    size_t max = size - 4, i;
    for (i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    memcpy(out + i, n > max ? "..." : "", n > max ? 4 : 1);
    return out;
}

/* A line of text built piece by piece, cut (not overflowed) when full. */
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

int jsond_config_valid_name(const char *s, size_t n)
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
    case T_PROTOCOL:
    case T_POLICY:
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
    case T_PROTOCOL:
    case T_POLICY:
        return (unsigned long long)*(const int *)field;
    default: /* T_LEVEL */
        return (unsigned long long)*(const jsond_log_level *)field;
    }
}

static int is_number_type(int type)
{
    return type == T_UINT || type == T_SIZE || type == T_DURATION || type == T_BOOL ||
           type == T_LEVEL || type == T_PROTOCOL || type == T_POLICY;
}

/* ---- per-section walks over the table ----------------------------------- */

static void apply_defaults(unsigned kind, void *base)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (!(keys[i].section & kind))
            continue;
        if (is_number_type(keys[i].type))
            store_number(&keys[i], (char *)base + keys[i].offset, keys[i].def);
        else if (keys[i].type == T_ROUTES)
            ((cfg_listen *)base)->all_routes = (int)keys[i].def;
    }
}

static void free_route_list(cfg_listen *l)
{
    for (size_t i = 0; i < l->nroutes; i++)
        free(l->routes[i]);
    free(l->routes);
    l->routes = NULL;
    l->nroutes = 0;
}

static void free_values(unsigned kind, void *base)
{
    for (size_t i = 0; i < NKEYS; i++) {
        void *field = (char *)base + keys[i].offset;
        if (!(keys[i].section & kind))
            continue;
        if (keys[i].type == T_ROUTE || keys[i].type == T_POOL || keys[i].type == T_HANDLER)
            free(*(char **)field);
        else if (keys[i].type == T_ROUTES)
            free_route_list(base);
        else if (keys[i].type == T_JSON)
            json_decref(*(json_t **)field);
    }
}

static int listed(const cfg_listen *l, const char *name, size_t n)
{
    for (size_t i = 0; i < l->nroutes; i++)
        if (strlen(l->routes[i]) == n && memcmp(l->routes[i], name, n) == 0)
            return 1;
    return 0;
}

/* The same set of routes: the order of a list has no effect. Names are
 * unique in each list, so equal counts make inclusion a bijection. */
static int route_lists_equal(const cfg_listen *a, const cfg_listen *b)
{
    if (a->all_routes != b->all_routes || a->nroutes != b->nroutes)
        return 0;
    for (size_t i = 0; i < a->nroutes; i++)
        if (!listed(b, a->routes[i], strlen(a->routes[i])))
            return 0;
    return 1;
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
        } else if (k->type == T_ROUTES) {
            if (!route_lists_equal(a, b))
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

static const char *file_name(const parser *P, size_t file)
{
    return P->cfg->files[file];
}

static void perr_at(parser *P, size_t file, int line, const char *fmt, ...) JSOND_PRINTF(4, 5);
static void perr(parser *P, int line, const char *fmt, ...) JSOND_PRINTF(3, 4);

static void vperr(parser *P, size_t file, int line, const char *fmt, va_list ap) JSOND_PRINTF(4, 0);

/* Records a problem at `line` of src `file`. */
static void vperr(parser *P, size_t file, int line, const char *fmt, va_list ap)
{
    char text[512]; /* jsond_error.text's size */
    P->failed = 1;
    P->section_failed = 1;
    if (P->stop)
        return;
    /* Room for this error and a "too many errors" after it. */
    size_t n = jsond_errors_count(P->errs);
    size_t *nf = grow(P->err_file, &P->err_cap, n + 2, sizeof *nf);
    if (!nf) {
        P->lost = P->stop = 1;
        return;
    }
    P->err_file = nf;
    vsnprintf(text, sizeof text, fmt, ap);
    if (jsond_errors_add(P->errs, file_name(P, file), line, "%s", text) < 0) {
        P->lost = P->stop = 1;
        return;
    }
    nf[n] = file;
    if (n + 1 == MAX_ERRORS) {
        if (jsond_errors_add(P->errs, file_name(P, file), line, "too many errors, giving up") < 0)
            P->lost = 1;
        else
            nf[n + 1] = file;
        P->stop = 1;
    }
}

static void perr_at(parser *P, size_t file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vperr(P, file, line, fmt, ap);
    va_end(ap);
}

/* Records a problem at `line` of the file being read. */
static void perr(parser *P, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vperr(P, P->cur, line, fmt, ap);
    va_end(ap);
}

static void oom(parser *P)
{
    perr(P, P->lineno, "out of memory");
    P->stop = 1;
}

/* " (first at line N)" when `file` is the file being read, else
 * " (first at FILE:N)": a duplicate names both places. */
static const char *first_at(char *buf, size_t size, const parser *P, const char *file, int line)
{
    if (file == file_name(P, P->cur))
        snprintf(buf, size, " (first at line %d)", line);
    else
        snprintf(buf, size, " (first at %s:%d)", file, line);
    return buf;
}

typedef struct found {
    const jsond_error *e;
    const src *files; /* the parser's, so that the sort needs no global */
    size_t file;      /* the src of e */
    size_t order;     /* makes the sort stable: same place, order of finding */
} found;

/* Reading order, as if every included file were pasted in place of its
 * include line (a problem with the include line itself comes first). Both
 * places are walked up to the file that holds both, then compared there. */
static int by_place(const void *a, const void *b)
{
    const found *x = a, *y = b;
    const src *f = x->files;
    size_t fx = x->file, fy = y->file, cx = SIZE_MAX, cy = SIZE_MAX; /* came up from */
    int lx = x->e->line, ly = y->e->line;
    while (f[fx].depth > f[fy].depth) {
        cx = fx;
        lx = f[fx].line;
        fx = f[fx].parent;
    }
    while (f[fy].depth > f[fx].depth) {
        cy = fy;
        ly = f[fy].line;
        fy = f[fy].parent;
    }
    while (fx != fy) {
        cx = fx;
        lx = f[fx].line;
        fx = f[fx].parent;
        cy = fy;
        ly = f[fy].line;
        fy = f[fy].parent;
    }
    if (lx != ly)
        return lx < ly ? -1 : 1;
    if (cx != cy) {
        if (cx == SIZE_MAX || cy == SIZE_MAX) /* the include line itself */
            return cx == SIZE_MAX ? -1 : 1;
        return cx < cy ? -1 : 1; /* two files of one glob: reading order */
    }
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends the errors found to `out` in reading order (an undefined route,
 * say, is only found at the end). */
static void flush_errors(parser *P, jsond_errors *out)
{
    size_t n = jsond_errors_count(P->errs);
    if (!out || !P->failed)
        return;
    found *v = n ? malloc(n * sizeof *v) : NULL;
    for (size_t i = 0; v && i < n; i++)
        v[i] = (found){jsond_errors_get(P->errs, i), P->files, P->err_file[i], i};
    if (v)
        qsort(v, n, sizeof *v, by_place);
    /* Without the memory to sort them, in the order found. */
    for (size_t i = 0; i < n; i++) {
        const jsond_error *e = v ? v[i].e : jsond_errors_get(P->errs, i);
        jsond_errors_add(out, e->file, e->line, "%s", e->text);
    }
    free(v);
    /* Failed with nothing recorded: the list itself ran out of memory. */
    if (!n || P->lost)
        jsond_errors_add(out, P->top, 0, "out of memory");
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

/* Handler kinds: the grammar of a handler. Which of them this version runs,
 * and which names exist, is the resolver's to say. */
static const char *const handler_kinds[] = {"builtin", "file", "exec", "module"};

static int check_handler(parser *P, const char *v, int line)
{
    char s[JSOND_SHOW_BUF];
    const char *colon = strchr(v, ':');
    for (size_t i = 0; colon && i < sizeof handler_kinds / sizeof handler_kinds[0]; i++) {
        const char *kind = handler_kinds[i];
        if (strlen(kind) == (size_t)(colon - v) && memcmp(v, kind, (size_t)(colon - v)) == 0)
            return 0;
    }
    perr(P, line, "bad handler '%s'%s", jsond_config_show(s, sizeof s, v, strlen(v)),
         types[T_HANDLER].hint);
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
             jsond_config_show(s, sizeof s, jerr.text, strlen(jerr.text)));
        return;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        perr(P, line, "%s must be a JSON object", k->name);
        return;
    }
    *field = j;
}

/* Copies name s[0..n) of a `kind` section (S_ROUTE or S_POOL) for the
 * config and remembers to check, once every section is known, that it is
 * defined. NULL when out of memory. */
static char *name_ref_new(parser *P, unsigned kind, const char *s, size_t n, int line)
{
    name_ref *nr = grow(P->refs, &P->refs_cap, P->nrefs + 1, sizeof *nr);
    char *name = nr ? dupn(s, n) : NULL;
    if (nr)
        P->refs = nr;
    if (!name) {
        oom(P);
        return NULL;
    }
    P->refs[P->nrefs++] = (name_ref){kind, name, P->cur, line};
    return name;
}

/* A route name (T_ROUTE) or a pool name (T_POOL). */
static void set_ref(parser *P, const key_def *k, char **field, const char *v, int line)
{
    char s[JSOND_SHOW_BUF];
    size_t n = strlen(v);
    if (!jsond_config_valid_name(v, n)) {
        perr(P, line, "bad %s '%s' for %s%s", types[k->type].what,
             jsond_config_show(s, sizeof s, v, n), k->name, types[k->type].hint);
        return;
    }
    *field = name_ref_new(P, k->type == T_POOL ? S_POOL : S_ROUTE, v, n, line);
}

/* `*`, or route names separated by a comma, blanks, or both ("a, b c"):
 * each must be a defined route, listed once. On a problem the list is left
 * empty, so a bad list is one error, not one per name. */
static void set_routes(parser *P, const key_def *k, cfg_listen *l, const char *v, int line)
{
    char s[JSOND_SHOW_BUF];
    const char *p = v, *end = v + strlen(v); /* v is trimmed */
    size_t cap = 0, refs = P->nrefs;
    if (strcmp(v, "*") == 0)
        return; /* all_routes is the default */
    l->all_routes = 0;
    for (;;) {
        size_t n = strcspn(p, ", \t\f\v\r");
        if (n == 0) /* empty: the whole list, or between commas */
            goto bad_list;
        if (!jsond_config_valid_name(p, n)) {
            perr(P, line, "bad route name '%s' in %s%s", jsond_config_show(s, sizeof s, p, n),
                 k->name, types[T_ROUTE].hint);
            goto fail;
        }
        if (listed(l, p, n)) {
            perr(P, line, "route '%s' is listed twice in %s", jsond_config_show(s, sizeof s, p, n),
                 k->name);
            goto fail;
        }
        char **nl = grow(l->routes, &cap, l->nroutes + 1, sizeof *nl);
        if (!nl) {
            oom(P);
            goto fail;
        }
        l->routes = nl;
        if (!(l->routes[l->nroutes] = name_ref_new(P, S_ROUTE, p, n, line)))
            goto fail;
        l->nroutes++;
        p = skip_blanks(p + n, end);
        if (p == end)
            return;
        if (*p == ',')
            p = skip_blanks(p + 1, end);
    }
bad_list:
    perr(P, line, "bad %s '%s' for %s%s", types[k->type].what,
         jsond_config_show(s, sizeof s, v, strlen(v)), k->name, types[k->type].hint);
fail:
    P->nrefs = refs;
    free_route_list(l);
}

static int parse_word(const char *v, const char *const *words, size_t n, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, words[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return -1;
}

/* Parses value v of key k (set at `line`) into its field of `base`. */
static void set_value(parser *P, const key_def *k, void *base, const char *v, int line)
{
    void *field = (char *)base + k->offset;
    const struct type_def *t = &types[k->type];
    char s[JSOND_SHOW_BUF], lo[32], hi[32];
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
                 jsond_config_show(s, sizeof s, v, strlen(v)),
                 format_number(lo, sizeof lo, t->units, k->min),
                 format_number(hi, sizeof hi, t->units, k->max));
            return;
        }
        store_number(k, field, num);
        return;
    case T_BOOL:
        if (parse_bool(v, &b) < 0)
            break;
        store_number(k, field, (unsigned long long)b);
        return;
    case T_PROTOCOL:
        if (parse_word(v, protocol_names, sizeof protocol_names / sizeof protocol_names[0], &b) < 0)
            break;
        store_number(k, field, (unsigned long long)b);
        return;
    case T_POLICY:
        if (parse_word(v, policy_names, sizeof policy_names / sizeof policy_names[0], &b) < 0)
            break;
        store_number(k, field, (unsigned long long)b);
        return;
    case T_LEVEL:
        if (jsond_log_level_parse(v, &level) < 0)
            break;
        store_number(k, field, (unsigned long long)level);
        return;
    case T_ADDR:
        if (jsond_addr_parse(v, field, &why) < 0) {
            perr(P, line, "bad address '%s': %s", jsond_config_show(s, sizeof s, v, strlen(v)),
                 why);
            return;
        }
        /* Checked here, so -t sees it too: binding would need the path
         * removed, and jsond removes nothing but a socket. */
        if (jsond_addr_unix_check(field, &why) < 0) {
            perr(P, line, "'%s' is %s, not a socket: jsond replaces only a stale socket",
                 jsond_config_show(s, sizeof s, v, strlen(v)), why);
            return;
        }
        /* The address is optional: a listener without one only takes
         * sockets handed over by systemd. */
        ((cfg_listen *)base)->has_address = 1;
        ((cfg_listen *)base)->address_line = line;
        return;
    case T_ROUTE:
        /* on_connect = none: no push (so no route may be called none). */
        if (strcmp(v, JSOND_ROUTE_NONE) != 0)
            set_ref(P, k, field, v, line);
        return;
    case T_POOL:
        set_ref(P, k, field, v, line);
        return;
    case T_ROUTES:
        set_routes(P, k, base, v, line);
        return;
    case T_HANDLER:
        if (check_handler(P, v, line) < 0)
            return;
        if (!(*(char **)field = dupn(v, strlen(v))))
            oom(P);
        ((cfg_route *)base)->handler_line = line;
        return;
    default: /* T_JSON */
        set_json(P, k, field, v, line);
        return;
    }
    perr(P, line, "bad %s '%s' for %s%s", t->what, jsond_config_show(s, sizeof s, v, strlen(v)),
         k->name, t->hint);
}

/* ---- sections and keys ------------------------------------------------- */

static const char *section_name(const parser *P)
{
    if (P->kind == S_LISTEN)
        return P->cfg->listens[P->index].name;
    if (P->kind == S_POOL)
        return P->cfg->pools[P->index].name;
    if (P->kind == S_ROUTE)
        return P->cfg->routes[P->index].name;
    return NULL;
}

static void *section_base(const parser *P)
{
    if (P->kind == S_LISTEN)
        return &P->cfg->listens[P->index];
    if (P->kind == S_POOL)
        return &P->cfg->pools[P->index];
    if (P->kind == S_ROUTE)
        return &P->cfg->routes[P->index];
    return &P->cfg->server;
}

/* A listener that neither pushes nor reads requests would accept and
 * close: surely a mistake. A [listen NAME] without keys only declares its
 * name, and a section with a bad line has been reported already (its
 * on_connect or requests may be that line). */
static void check_listen(parser *P)
{
    const cfg_listen *l = &P->cfg->listens[P->index];
    int empty = 1;
    for (size_t i = 0; i < NKEYS && empty; i++)
        empty = !P->seen[i];
    if (!empty && !P->section_failed && !l->on_connect && !l->requests)
        perr(P, P->header_line, "listener %s has neither on_connect nor requests = yes", l->name);
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
    if (P->kind == S_LISTEN)
        check_listen(P);
}

/* Opens [KIND NAME] as the current section; 0, or the line of the first one
 * of that name and its file in *first. */
static int open_named(parser *P, unsigned kind, const char *name, size_t n, int line,
                      const char **first)
{
    jsond_config *cfg = P->cfg;
    char nm[JSOND_NAME_MAX + 1], *slot_name;
    const char **slot_file;
    int *slot_line;
    memcpy(nm, name, n);
    nm[n] = '\0';
    if (kind == S_LISTEN) {
        for (size_t i = 0; i < cfg->nlistens; i++) {
            if (strcmp(cfg->listens[i].name, nm) == 0) {
                *first = cfg->listens[i].file;
                return cfg->listens[i].line;
            }
        }
        cfg_listen *nl = grow(cfg->listens, &P->listen_cap, cfg->nlistens + 1, sizeof *nl);
        if (!nl)
            goto fail;
        cfg->listens = nl;
        P->index = cfg->nlistens++;
        memset(&nl[P->index], 0, sizeof nl[P->index]);
        slot_name = nl[P->index].name;
        slot_file = &nl[P->index].file;
        slot_line = &nl[P->index].line;
    } else if (kind == S_POOL) {
        const cfg_pool *p = jsond_config_pool(cfg, nm);
        if (p) {
            *first = p->file;
            return p->line;
        }
        cfg_pool *np = grow(cfg->pools, &P->pool_cap, cfg->npools + 1, sizeof *np);
        if (!np)
            goto fail;
        cfg->pools = np;
        P->index = cfg->npools++;
        memset(&np[P->index], 0, sizeof np[P->index]);
        slot_name = np[P->index].name;
        slot_file = &np[P->index].file;
        slot_line = &np[P->index].line;
    } else {
        const cfg_route *r = jsond_config_route(cfg, nm);
        if (r) {
            *first = r->file;
            return r->line;
        }
        cfg_route *nr = grow(cfg->routes, &P->route_cap, cfg->nroutes + 1, sizeof *nr);
        if (!nr)
            goto fail;
        cfg->routes = nr;
        P->index = cfg->nroutes++;
        memset(&nr[P->index], 0, sizeof nr[P->index]);
        slot_name = nr[P->index].name;
        slot_file = &nr[P->index].file;
        slot_line = &nr[P->index].line;
    }
    memcpy(slot_name, nm, n + 1);
    *slot_file = file_name(P, P->cur);
    *slot_line = line;
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
    const char *end = s + n, *close = memchr(s, ']', n), *first_file = NULL;
    int line = P->lineno, first;
    char shown[JSOND_SHOW_BUF], at[PATH_SHOW + 32];

    close_section(P);
    /* Until the header proves good, the keys that follow are ignored: one
     * bad header is one error, not one per key. */
    P->kind = S_TOP;
    P->skip = 1;
    P->header_line = line;
    P->section_failed = 0;
    P->include_line = 0;
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
    if (sd && sd->kind == S_LISTEN)
        P->listen_seen = 1;
    if (!sd) {
        perr(P, line, "unknown section [%s]",
             jsond_config_show(shown, sizeof shown, kw, (size_t)(kwe - kw)));
        return;
    }
    if (!sd->named) {
        if (namelen) {
            perr(P, line, "[%s] takes no name", sd->name);
        } else if (P->server_line) {
            perr(P, line, "duplicate section [%s]%s", sd->name,
                 first_at(at, sizeof at, P, file_name(P, P->server_file), P->server_line));
        } else {
            P->server_line = line;
            P->server_file = P->cur;
            P->kind = sd->kind;
            P->skip = 0;
        }
        return;
    }
    if (!namelen) {
        perr(P, line, "[%s] needs a name", sd->name);
    } else if (!jsond_config_valid_name(name, namelen)) {
        perr(P, line, "bad section name '%s' (1 to 64 of A-Z a-z 0-9 _ . -)",
             jsond_config_show(shown, sizeof shown, name, namelen));
    } else if (sd->unsupported) {
        perr(P, line, "[%s] sections are not supported by this version", sd->name);
    } else if (sd->reserved && namelen >= strlen(sd->reserved) &&
               memcmp(name, sd->reserved, strlen(sd->reserved)) == 0) {
        perr(P, line, "%s name '%.*s' is reserved (%s prefix)", sd->name, (int)namelen, name,
             sd->reserved);
    } else if (sd->kind == S_ROUTE && namelen == strlen(JSOND_ROUTE_NONE) &&
               memcmp(name, JSOND_ROUTE_NONE, namelen) == 0) {
        perr(P, line, "route name '%s' is reserved (on_connect = %s means no push)",
             JSOND_ROUTE_NONE, JSOND_ROUTE_NONE);
    } else if ((first = open_named(P, sd->kind, name, namelen, line, &first_file)) != 0) {
        perr(P, line, "duplicate section [%s %.*s]%s", sd->name, (int)namelen, name,
             first_at(at, sizeof at, P, first_file, first));
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

/* ---- include ------------------------------------------------------------ */

static void parse_file(parser *P, size_t file, const char *text, size_t len);

/* Outside any section, as at the start of a file. */
static void no_section(parser *P)
{
    P->kind = S_TOP;
    P->skip = 0;
    P->section_failed = 0;
    P->include_line = 0;
    memset(P->seen, 0, sizeof P->seen);
}

/* What a file that is not a regular file is, for messages. */
static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

/* Reads the whole file at `path`, at most `budget` bytes (what is left of
 * MAX_TOTAL for this config, never more than MAX_FILE). Only a regular file
 * is read: opened nonblocking, so a FIFO with no writer cannot hang the
 * loop, then checked with fstat, so /dev/zero cannot fill memory. NULL when
 * it cannot, with *what naming the step that failed and `why` the reason. */
static char *read_all(const char *path, size_t budget, size_t *len, const char **what, char *why,
                      size_t whysize)
{
    char *buf = NULL;
    size_t cap = 0;
    struct stat st;
    char lim[32];
    *len = 0;
    *what = "cannot open";
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whysize, "%s", strerror(errno));
        return NULL;
    }
    *what = "cannot read";
    if (fstat(fd, &st) < 0) {
        snprintf(why, whysize, "%s", strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(why, whysize, "%s", strerror(EISDIR));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whysize, "not a regular file (%s)", file_kind(st.st_mode));
        goto fail;
    }
    if (budget > MAX_FILE)
        budget = MAX_FILE;
    /* Checked before and while reading: the file may grow meanwhile. */
    for (;;) {
        if ((unsigned long long)st.st_size > budget || *len > budget) {
            if (budget == MAX_FILE)
                snprintf(why, whysize, "larger than %s, the limit for one config file",
                         format_number(lim, sizeof lim, size_units, MAX_FILE));
            else
                snprintf(why, whysize, "the config's files add up to more than %s, the limit",
                         format_number(lim, sizeof lim, size_units, MAX_TOTAL));
            goto fail;
        }
        char *nb = grow(buf, &cap, *len + 65536, 1);
        if (!nb) {
            snprintf(why, whysize, "%s", strerror(ENOMEM));
            goto fail;
        }
        buf = nb;
        ssize_t got = read(fd, buf + *len, cap - *len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(why, whysize, "%s", strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        *len += (size_t)got;
    }
    close(fd);
    return buf; /* never NULL: grown before the first read */
fail:
    free(buf);
    close(fd);
    return NULL;
}

/* Adds the entry of a file about to be read: the top file (the first
 * entry), or one included at `line` of the file being read. Takes `real`.
 * Its index, or SIZE_MAX when out of memory. */
static size_t add_file(parser *P, const char *name, char *real, int line, int relative)
{
    jsond_config *cfg = P->cfg;
    src *nf = grow(P->files, &P->files_cap, P->nfiles + 1, sizeof *nf);
    if (nf)
        P->files = nf;
    char **nn = nf ? grow(cfg->files, &P->names_cap, cfg->nfiles + 1, sizeof *nn) : NULL;
    if (nn)
        cfg->files = nn;
    char *copy = nn ? dupn(name, strlen(name)) : NULL;
    if (!copy) {
        free(real);
        return SIZE_MAX;
    }
    const char *slash = relative ? strrchr(name, '/') : NULL;
    size_t i = P->nfiles++, parent = i ? P->cur : 0;
    cfg->files[cfg->nfiles++] = copy;
    P->files[i] = (src){.real = real,
                        .parent = parent,
                        .line = line,
                        .depth = i ? P->files[parent].depth + 1 : 0,
                        .dirlen = slash ? (size_t)(slash - name) + 1 : 0};
    return i;
}

/* "include cycle: a.conf -> b.conf -> a.conf": from src `from` down to the
 * file being read, then `shown`, the file that would come again. */
static void report_cycle(parser *P, size_t from, const char *shown, int line)
{
    size_t chain[MAX_DEPTH + 1], n = 0;
    char s[PATH_SHOW];
    line_buf lb = {.n = 0};
    /* Depths are at most MAX_DEPTH, so the chain fits. */
    for (size_t i = P->cur; n < MAX_DEPTH + 1; i = P->files[i].parent) {
        chain[n++] = i;
        if (i == from)
            break;
    }
    while (n--) {
        const char *name = file_name(P, chain[n]);
        line_add(&lb, "%s -> ", jsond_config_show(s, sizeof s, name, strlen(name)));
    }
    line_add(&lb, "%s", shown);
    perr(P, line, "include cycle: %s", lb.s);
}

/* Reads one file named by the include at `line` of the file being read. */
static void include_file(parser *P, const char *path, int line)
{
    char shown[PATH_SHOW], *text = NULL, *real, why[128];
    const char *what;
    size_t len, f;

    jsond_config_show(shown, sizeof shown, path, strlen(path));
    if (!(real = realpath(path, NULL))) {
        perr(P, line, "cannot open included file '%s': %s", shown, strerror(errno));
        return;
    }
    /* The same file on the way from the top file to here: a cycle. */
    for (f = P->cur;; f = P->files[f].parent) {
        if (P->files[f].real && strcmp(P->files[f].real, real) == 0) {
            report_cycle(P, f, shown, line);
            goto done;
        }
        if (f == P->files[f].parent)
            break;
    }
    if (P->files[P->cur].depth >= MAX_DEPTH) {
        perr(P, line, "includes nested too deeply (more than %d levels)", MAX_DEPTH);
        goto done;
    }
    if (P->nfiles > MAX_FILES) {
        perr(P, line, "too many included files (more than %d)", MAX_FILES);
        goto done;
    }
    if (!(text = read_all(path, P->total < MAX_TOTAL ? MAX_TOTAL - P->total : 0, &len, &what, why,
                          sizeof why))) {
        perr(P, line, "%s included file '%s': %s", what, shown, why);
        goto done;
    }
    P->total += len;
    f = add_file(P, path, real, line, 1);
    real = NULL; /* taken, even on failure */
    if (f == SIZE_MAX)
        oom(P);
    else
        parse_file(P, f, text, len);
done:
    free(text);
    free(real);
}

/* dir[0..dirlen) followed by s[0..n), NUL-terminated; with `escape`, the
 * directory's own glob characters are escaped so that only s is a pattern. */
static char *join(const char *dir, size_t dirlen, const char *s, size_t n, int escape)
{
    char *out = malloc(2 * dirlen + n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < dirlen; i++) {
        if (escape && strchr("*?[\\", dir[i]))
            *o++ = '\\';
        *o++ = dir[i];
    }
    memcpy(o, s, n);
    o[n] = '\0';
    return out;
}

/* `include = GLOB` at `line`, v[0..n) the rest of the line. It ends the
 * section before it; the matching files are read here, in sorted order,
 * each starting outside any section; after them, this file is outside any
 * section until its next header. So every file is whole sections, and
 * pasting a file in place of the line has the same effect. */
static void include(parser *P, const char *v, size_t n, int line)
{
    const char *dir = file_name(P, P->cur);
    char ended[sizeof P->ended] = "", shown[PATH_SHOW], *path = NULL, *pattern = NULL;
    long depth = 0;
    glob_t g;

    close_section(P);
    if (!P->skip && P->kind != S_TOP) {
        const char *name = section_name(P);
        snprintf(ended, sizeof ended, "[%s%s%s]", kind_name(P->kind), name ? " " : "",
                 name ? name : "");
    }
    no_section(P);
    /* One line, never JSON: a glob may start with '['. */
    n = trim_len(v, scan(v, n, &depth));
    if (!n) {
        perr(P, line, "include needs a file name or a glob");
        goto done;
    }
    /* Relative to the directory of the including file. */
    size_t dirlen = *v == '/' ? 0 : P->files[P->cur].dirlen;
    if (!(path = join(dir, dirlen, v, n, 0))) {
        oom(P);
        goto done;
    }
    if (!memchr(v, '*', n) && !memchr(v, '?', n) && !memchr(v, '[', n)) {
        /* A plain path: it must exist. */
        include_file(P, path, line);
        goto done;
    }
    if (!(pattern = join(dir, dirlen, v, n, 1))) {
        oom(P);
        goto done;
    }
    memset(&g, 0, sizeof g);
    /* No GLOB_ERR: an unreadable directory matches nothing, like a missing
     * one; no GLOB_NOCHECK: a glob matching nothing reads nothing. Sorted. */
    int rc = glob(pattern, 0, NULL, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc && !P->stop; i++)
        include_file(P, g.gl_pathv[i], line);
    if (rc == GLOB_NOSPACE)
        oom(P);
    else if (rc != 0 && rc != GLOB_NOMATCH)
        perr(P, line, "cannot read the files of '%s'",
             jsond_config_show(shown, sizeof shown, path, strlen(path)));
    if (g.gl_pathv)
        globfree(&g);
done:
    P->include_line = line;
    memcpy(P->ended, ended, sizeof ended);
    free(pattern);
    free(path);
}

static void key_value(parser *P, const char *s, size_t n)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? trim_len(s, (size_t)(eq - s)) : 0;
    int line = P->lineno;
    char shown[JSOND_SHOW_BUF];

    if (!klen) {
        perr(P, line, "syntax error: expected 'key = value' or '[section]'");
        return;
    }
    const char *v = skip_blanks(eq + 1, s + n);
    if (klen == 7 && memcmp(s, "include", 7) == 0) {
        include(P, v, (size_t)(s + n - v), line);
        return;
    }
    /* Read the whole value first: a JSON value's lines must be consumed
     * whatever becomes of the key. */
    int ok = read_value(P, v, (size_t)(s + n - v), line) == 0;
    if (P->skip)
        return;
    const key_def *k = find_key(P->kind, s, klen);
    if (!k) {
        jsond_config_show(shown, sizeof shown, s, klen);
        if (P->kind == S_TOP && P->include_line && P->ended[0])
            perr(P, line, "key '%s' outside any section (the include at line %d ended %s)", shown,
                 P->include_line, P->ended);
        else if (P->kind == S_TOP && P->include_line)
            perr(P, line, "key '%s' outside any section (after the include at line %d)", shown,
                 P->include_line);
        else if (P->kind == S_TOP)
            perr(P, line, "key '%s' outside any section", shown);
        else
            perr(P, line, "unknown key '%s' in [%s]", shown, kind_name(P->kind));
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

/* Reads the lines of src `file` from `text`, then goes back to the file
 * being read (an include is parsed recursively, at most MAX_DEPTH deep). */
static void parse_file(parser *P, size_t file, const char *text, size_t len)
{
    size_t cur = P->cur;
    const char *p = P->p, *end = P->end;
    int lineno = P->lineno;
    const char *s;
    size_t n;

    P->cur = file;
    P->p = text;
    P->end = text + len;
    P->lineno = 0;
    no_section(P);
    while (next_line(P, &s, &n)) {
        if (has_nul(P, s, n))
            continue;
        const char *e = s + n;
        s = skip_blanks(s, e);
        if (s == e || *s == ';' || *s == '#')
            continue;
        if (*s == '[')
            section(P, s, (size_t)(e - s));
        else
            key_value(P, s, (size_t)(e - s));
    }
    if (!P->stop)
        close_section(P);
    P->cur = cur;
    P->p = p;
    P->end = end;
    P->lineno = lineno;
    no_section(P);
}

/* ---- the public interface ---------------------------------------------- */

static void config_free(jsond_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nlistens; i++)
        free_values(S_LISTEN, &cfg->listens[i]);
    for (size_t i = 0; i < cfg->npools; i++)
        free_values(S_POOL, &cfg->pools[i]);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (cfg->routes[i].impl)
            cfg->resolver->release(cfg->routes[i].impl);
        free_values(S_ROUTE, &cfg->routes[i]);
    }
    for (size_t i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg->listens);
    free(cfg->pools);
    free(cfg->routes);
    free(cfg->route_index);
    free(cfg->source);
    free(cfg);
}

/* FNV-1a: route names are short, and a request looks one up. */
static size_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Builds cfg->route_index, at least twice the routes in slots. Without
 * memory there is none, and lookups scan: slower, never wrong. */
static void index_routes(jsond_config *cfg)
{
    size_t n = 8;
    while (n < 2 * cfg->nroutes)
        n *= 2;
    uint32_t *idx = calloc(n, sizeof *idx);
    if (!idx)
        return;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        size_t h = name_hash(cfg->routes[i].name) & (n - 1);
        while (idx[h])
            h = (h + 1) & (n - 1);
        idx[h] = (uint32_t)(i + 1);
    }
    cfg->route_index = idx;
    cfg->route_mask = n - 1;
}

/* The default pool always exists: when the config declares none, one with
 * the table's defaults comes first, so `pool = default` needs no section
 * and a route that names no pool has one to run on. */
static void add_default_pool(parser *P)
{
    jsond_config *cfg = P->cfg;
    if (P->stop || jsond_config_pool(cfg, JSOND_POOL_DEFAULT))
        return;
    cfg_pool *np = grow(cfg->pools, &P->pool_cap, cfg->npools + 1, sizeof *np);
    if (!np) {
        oom(P);
        return;
    }
    cfg->pools = np;
    memmove(&np[1], &np[0], cfg->npools * sizeof *np);
    cfg->npools++;
    memset(&np[0], 0, sizeof np[0]);
    memcpy(np[0].name, JSOND_POOL_DEFAULT, sizeof JSOND_POOL_DEFAULT);
    apply_defaults(S_POOL, &np[0]);
}

/* The src of a listener (its header's file, a name in cfg->files). */
static size_t listen_src(const parser *P, const cfg_listen *l)
{
    for (size_t i = 0; i < P->nfiles; i++)
        if (P->cfg->files[i] == l->file)
            return i;
    return 0;
}

/* A config must serve something: an empty or truncated file (a reload
 * while an editor writes it) would otherwise close every listener without
 * a word. No [listen] section at all is an error at the top file, line 0
 * (it belongs to no line). And two listeners on one address could never
 * both bind: an error at the second's address line, naming the first;
 * except port 0, which gives each listener a port of its own. */
static void check_serves(parser *P)
{
    const jsond_config *cfg = P->cfg;
    char at[PATH_SHOW + 32], text[160];
    if (P->stop)
        return;
    if (!P->listen_seen)
        perr_at(P, 0, 0, "no [listen] section: this config would serve nothing");
    for (size_t i = 0; i < cfg->nlistens; i++) {
        const cfg_listen *b = &cfg->listens[i];
        const struct sockaddr_in *in = (const struct sockaddr_in *)&b->address.ss;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&b->address.ss;
        if (!b->has_address || (in->sin_family == AF_INET && in->sin_port == 0) ||
            (in6->sin6_family == AF_INET6 && in6->sin6_port == 0))
            continue;
        for (size_t j = 0; j < i; j++) {
            const cfg_listen *a = &cfg->listens[j];
            if (!a->has_address || !jsond_addr_equal(&a->address, &b->address))
                continue;
            size_t f = listen_src(P, b);
            if (a->file == b->file)
                snprintf(at, sizeof at, "line %d", a->address_line);
            else
                snprintf(at, sizeof at, "%s:%d", a->file, a->address_line);
            perr_at(P, f, b->address_line, "listener %s: address %s is also listener %s's (%s)",
                    b->name, jsond_addr_format(&b->address, text, sizeof text), a->name, at);
            break;
        }
    }
}

/* The src of a route (its header's file; its keys are in the same file). */
static size_t route_src(const parser *P, const cfg_route *r)
{
    for (size_t i = 0; i < P->nfiles; i++)
        if (P->cfg->files[i] == r->file)
            return i;
    return 0;
}

/* Asks the resolver about every route read with a handler, even when other
 * lines failed: -t lists every problem at once. */
static void resolve_handlers(parser *P, const jsond_config_resolver *res)
{
    char why[256];
    jsond_config *cfg = P->cfg;
    cfg->resolver = res;
    for (size_t i = 0; res && i < cfg->nroutes && !P->stop; i++) {
        cfg_route *r = &cfg->routes[i];
        if (!r->handler)
            continue;
        why[0] = '\0';
        if (!(r->impl = res->resolve(cfg, r, why, sizeof why)))
            perr_at(P, route_src(P, r), r->handler_line, "%s", why[0] ? why : "out of memory");
    }
}

/* Parses the top file `name`: `real` is its realpath() (taken; NULL for
 * text from memory), and with `relative` its includes are relative to its
 * directory, else to the current directory. Handlers are resolved by `res`
 * (NULL: not resolved). */
static jsond_config *parse_top(const char *name, char *real, int relative, const char *text,
                               size_t len, const jsond_config_resolver *res, jsond_errors *errs)
{
    parser P = {0};
    size_t top = SIZE_MAX;
    P.top = name;
    P.total = len;
    P.errs = jsond_errors_new();
    P.cfg = calloc(1, sizeof *P.cfg);
    if (P.errs && P.cfg && (P.cfg->source = dupn(name, strlen(name))))
        top = add_file(&P, name, real, 0, relative); /* takes real */
    else
        free(real);
    if (top == SIZE_MAX) {
        P.failed = 1;
        if (errs)
            jsond_errors_add(errs, name, 0, "out of memory");
        goto done;
    }
    atomic_init(&P.cfg->refs, 1);
    apply_defaults(S_SERVER, &P.cfg->server);
    parse_file(&P, 0, text, len);
    add_default_pool(&P); /* before the resolver and the references look */
    resolve_handlers(&P, res);
    for (size_t i = 0; i < P.nrefs && !P.stop; i++) {
        const name_ref *r = &P.refs[i];
        if (r->kind == S_POOL ? !jsond_config_pool(P.cfg, r->name)
                              : !jsond_config_route(P.cfg, r->name))
            perr_at(&P, r->file, r->line, "%s '%s' is not defined", kind_name(r->kind), r->name);
    }
    check_serves(&P);
    flush_errors(&P, errs);
    if (!P.failed)
        index_routes(P.cfg);
done:
    if (P.failed) {
        config_free(P.cfg);
        P.cfg = NULL;
    }
    for (size_t i = 0; i < P.nfiles; i++)
        free(P.files[i].real);
    free(P.files);
    free(P.err_file);
    free(P.refs);
    free(P.buf);
    jsond_errors_free(P.errs);
    return P.cfg;
}

jsond_config *jsond_config_read_text(const char *name, const char *text, size_t len,
                                     const jsond_config_resolver *res, jsond_errors *errs)
{
    return parse_top(name ? name : "(string)", NULL, 0, text ? text : "", text ? len : 0, res,
                     errs);
}

jsond_config *jsond_config_read(const char *path, const jsond_config_resolver *res,
                                jsond_errors *errs)
{
    const char *what;
    char why[128];
    size_t len;
    char *text = read_all(path, MAX_TOTAL, &len, &what, why, sizeof why);
    if (!text) {
        if (errs)
            jsond_errors_add(errs, path, 0, "%s: %s", what, why);
        return NULL;
    }
    /* Without it (realpath() failed), a cycle through the top file is
     * caught one round later. */
    char *real = realpath(path, NULL);
    jsond_config *cfg = parse_top(path, real, 1, text, len, res, errs);
    free(text);
    return cfg;
}

const char *jsond_config_default_text(void)
{
    return default_text;
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

int jsond_config_route_equal(const cfg_route *a, const cfg_route *b)
{
    return values_equal(S_ROUTE, a, b);
}

int jsond_config_equal(const jsond_config *a, const jsond_config *b)
{
    if (!values_equal(S_SERVER, &a->server, &b->server) || a->nlistens != b->nlistens ||
        a->npools != b->npools || a->nroutes != b->nroutes)
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
    for (size_t i = 0; i < a->npools; i++) {
        const cfg_pool *pb = jsond_config_pool(b, a->pools[i].name);
        if (!pb || !values_equal(S_POOL, &a->pools[i], pb))
            return 0;
    }
    for (size_t i = 0; i < a->nroutes; i++) {
        const cfg_route *rb = jsond_config_route(b, a->routes[i].name);
        if (!rb || !values_equal(S_ROUTE, &a->routes[i], rb))
            return 0;
    }
    return 1;
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
        if (k->type == T_DURATION && load_number(k, field) == JSOND_TIMEOUT_INHERIT) {
            continue; /* not given: nothing of its own to show */
        } else if (k->type == T_UINT || k->type == T_SIZE || k->type == T_DURATION) {
            line_add(lb, " %s=%s", k->name,
                     format_number(num, sizeof num, types[k->type].units, load_number(k, field)));
        } else if (k->type == T_BOOL) {
            line_add(lb, " %s=%s", k->name, load_number(k, field) ? "yes" : "no");
        } else if (k->type == T_LEVEL) {
            line_add(lb, " %s=%s", k->name,
                     jsond_log_level_name((jsond_log_level)load_number(k, field)));
        } else if (k->type == T_PROTOCOL) {
            line_add(lb, " %s=%s", k->name, protocol_names[load_number(k, field)]);
        } else if (k->type == T_POLICY) {
            if (load_number(k, field) != JSOND_POLICY_INHERIT) /* a route's own only */
                line_add(lb, " %s=%s", k->name, policy_names[load_number(k, field)]);
        } else if (k->type == T_ROUTES) {
            const cfg_listen *l = base;
            line_add(lb, " %s=%s", k->name, l->all_routes ? "*" : "");
            for (size_t j = 0; j < l->nroutes; j++)
                line_add(lb, "%s%s", j ? "," : "", l->routes[j]);
        } else if (k->type == T_ADDR && ((const jsond_addr *)field)->len) {
            line_add(lb, " %s=%s", k->name, jsond_addr_format(field, addr, sizeof addr));
        } else if ((k->type == T_ROUTE || k->type == T_POOL || k->type == T_HANDLER) &&
                   *(char *const *)field) {
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
    for (size_t i = 0; i < cfg->npools; i++) {
        lb.n = 0;
        line_add(&lb, "[pool %s]", cfg->pools[i].name);
        log_values(&lb, S_POOL, &cfg->pools[i]);
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
    if (cfg->route_index) {
        for (size_t h = name_hash(name) & cfg->route_mask;; h = (h + 1) & cfg->route_mask) {
            uint32_t k = cfg->route_index[h];
            if (!k)
                return NULL;
            if (strcmp(cfg->routes[k - 1].name, name) == 0)
                return &cfg->routes[k - 1];
        }
    }
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (strcmp(cfg->routes[i].name, name) == 0)
            return &cfg->routes[i];
    return NULL;
}

const cfg_pool *jsond_config_pool(const jsond_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

unsigned jsond_route_timeout(const jsond_config *cfg, const cfg_route *route)
{
    return route->timeout_ms == JSOND_TIMEOUT_INHERIT ? cfg->server.request_timeout_ms
                                                      : route->timeout_ms;
}

int jsond_route_policy(const jsond_config *cfg, const cfg_route *route)
{
    return route->policy == JSOND_POLICY_INHERIT ? cfg->server.policy : route->policy;
}

int jsond_listen_allows(const cfg_listen *lst, const char *name)
{
    return lst->all_routes || listed(lst, name, strlen(name));
}
