/* file.c: handler = file:PATH.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dump.h"
#include "file.h"
#include "producer.h"
#include "req.h"

/* A route's file, as loaded. Shared by the config and by every reply whose
 * bytes are still in an output: a reload may free the config while a slow
 * client has not read them yet, so the last of them frees it, on whatever
 * thread lets go of the config. */
typedef struct file {
    atomic_size_t refs;
    json_t *doc;  /* for calls from other handlers, which take JSON values */
    size_t len;   /* of bytes: compact, without the newline that follows */
    char bytes[]; /* what clients get, and '\n' (see jsond_handler.fixed) */
} file;

static void file_unref(void *self)
{
    file *f = self;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        json_decref(f->doc);
        free(f);
    }
}

static void file_ref(file *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

/* evbuffer_add_reference's cleanup: the output has sent (or dropped) the
 * bytes. */
static void bytes_sent_cb(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    file_unref(arg);
}

/* The producer is the file itself, one reference per reply: the whole text
 * at once, referenced rather than copied, however large. */
static jsond_produce file_proceed(void *self, struct evbuffer *out, size_t want)
{
    (void)want;
    file *f = self;
    file_ref(f);
    if (evbuffer_add_reference(out, f->bytes, f->len, bytes_sent_cb, f) < 0) {
        file_unref(f);
        return JSOND_PRODUCE_ERROR;
    }
    return JSOND_PRODUCE_DONE;
}

static const jsond_producer_ops file_ops = {.proceed = file_proceed, .stop = file_unref};

static void file_run(jsond_req *req, json_t *args)
{
    (void)args;
    file *f = (file *)jsond_req_handler_data(req);
    if (req->depth > 0) {
        /* A call takes a JSON value, and its caller owns what it gets and
         * may change it: a copy, as the shared one is read by every thread
         * that serves this config. */
        json_t *copy = json_deep_copy(f->doc);
        if (copy)
            jsond_reply(req, copy);
        else
            jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return;
    }
    file_ref(f);
    jsond_reply_producer(req, &file_ops, f);
}

/* ARG as a path: absolute, or relative to the directory of `conf` (the
 * current directory when it names none). NULL when out of memory. */
static char *resolve_path(const char *conf, const char *arg)
{
    const char *slash = strrchr(conf, '/');
    size_t dir = arg[0] != '/' && slash ? (size_t)(slash - conf) + 1 : 0, n = strlen(arg);
    char *p = malloc(dir + n + 1);
    if (p) {
        memcpy(p, conf, dir);
        memcpy(p + dir, arg, n + 1);
    }
    return p;
}

/* The file's text, or NULL with the reason in `why`. O_NONBLOCK: a FIFO
 * must not hang the load before fstat() can refuse it. */
static char *read_text(const char *path, const char *shown, size_t *len, char *why, size_t size)
{
    char *text = NULL;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, size, "cannot open file '%s': %s", shown, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, size, "file '%s' is not a regular file", shown);
        goto out;
    }
    if (st.st_size > JSOND_FILE_MAX) {
        snprintf(why, size, "file '%s' is larger than 16M, the limit for file:", shown);
        goto out;
    }
    /* One byte more than it said: a file that grew since is refused, not
     * cut short. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    if (!(text = malloc(cap)))
        goto out; /* `why` empty: out of memory */
    for (ssize_t r; n < cap; n += (size_t)r) {
        if ((r = read(fd, text + n, cap - n)) == 0)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, size, "cannot read file '%s': %s", shown, strerror(errno));
            free(text);
            text = NULL;
            goto out;
        }
        if (r < 0)
            r = 0;
    }
    if (n == cap) {
        snprintf(why, size, "file '%s' changed while it was read", shown);
        free(text);
        text = NULL;
        goto out;
    }
    *len = n;
out:
    if (fd >= 0)
        close(fd);
    return text;
}

/* Its bytes, serialized once; NULL when out of memory. */
static file *file_new(json_t *doc)
{
    jsond_dumper d;
    jsond_dumper_init(&d, NULL);
    if (jsond_dump(&d, doc) < 0) {
        if (d.spill)
            evbuffer_free(d.spill);
        return NULL;
    }
    size_t head = d.spill ? evbuffer_get_length(d.spill) : 0;
    file *f = malloc(sizeof *f + head + d.n + 1);
    if (f) {
        atomic_init(&f->refs, 1);
        f->doc = doc;
        f->len = head + d.n;
        if (head)
            evbuffer_remove(d.spill, f->bytes, head);
        memcpy(f->bytes + head, d.buf, d.n);
        f->bytes[f->len] = '\n';
    }
    if (d.spill)
        evbuffer_free(d.spill);
    return f;
}

int jsond_file_resolve(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                       const char *arg, char *why, size_t size)
{
    (void)cfg;
    char shown[JSOND_SHOW_BUF];
    char *path = resolve_path(route->file, arg), *text = NULL;
    size_t len = 0;
    json_t *doc = NULL;
    file *f = NULL;
    if (!path)
        goto out;
    jsond_config_show(shown, sizeof shown, path, strlen(path));
    if (!(text = read_text(path, shown, &len, why, size)))
        goto out;
    /* Any JSON value, as a reply may be; a duplicate key would make the
     * served object depend on which one jansson kept. */
    json_error_t err;
    doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!doc) {
        snprintf(why, size, "file '%s': invalid JSON at line %d, column %d: %s", shown, err.line,
                 err.column, err.text);
        goto out;
    }
    if (!(f = file_new(doc)))
        goto out;
    doc = NULL; /* the file's now */
    h->color = JSOND_COLOR_ASYNC;
    h->async_fn = file_run;
    h->data = f;
    h->data_free = file_unref;
    if (f->len <= JSOND_FIXED_MAX) {
        h->fixed = f->bytes;
        h->fixed_len = f->len;
    }
out:
    json_decref(doc);
    free(text);
    free(path);
    return f ? 0 : -1;
}
