/* exec.c: exec:COMMAND, a legacy program run as a sync handler.
 *
 * One child per request, started with posix_spawn on the worker that runs
 * the request: its args go to the child's stdin, its stdout is the reply,
 * its stderr lines go to the log. The worker never blocks on one pipe: it
 * polls all three, nonblocking, so a child that writes much before it reads
 * (or never reads) cannot deadlock it, and it wakes at least every
 * SLICE_MS to see the deadline or a client that went away. The child runs
 * in a process group of its own, so a timeout kills what it started too.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "req.h"
#include "timeout.h"

#define SLICE_MS     50    /* the longest a worker waits without looking at the deadline */
#define READ_CHUNK   65536 /* read() size for the child's stdout and stderr */
#define ERR_LINE_MAX 1024  /* a longer stderr line is logged cut */

/* What a route's exec:COMMAND resolved to; immutable once made. */
typedef struct exec_prog {
    char *path;  /* the program found at load */
    char **argv; /* as written in the config: argv[0] is the name given */
    size_t max_output;
    char route[JSOND_NAME_MAX + 1];
} exec_prog;

char **jsond_exec_split(const char *cmd, char *why, size_t size)
{
    /* Words take at most the input's bytes plus one NUL, and every word
     * but the last needs a blank after it: both fit in one block. */
    size_t len = strlen(cmd), maxw = len / 2 + 2;
    char **argv = malloc(maxw * sizeof *argv + len + 1);
    if (!argv) {
        why[0] = '\0';
        return NULL;
    }
    char *out = (char *)(argv + maxw);
    size_t n = 0;
    const char *p = cmd;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        argv[n++] = out;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (!end) {
                    snprintf(why, size, "exec: unterminated ' quote");
                    goto fail;
                }
                memcpy(out, p + 1, (size_t)(end - p - 1));
                out += end - p - 1;
                p = end + 1;
            } else if (*p == '"') {
                for (p++; *p != '"'; p++) {
                    if (!*p) {
                        snprintf(why, size, "exec: unterminated \" quote");
                        goto fail;
                    }
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                        p++;
                    *out++ = *p;
                }
                p++;
            } else if (*p == '\\') {
                if (!p[1]) {
                    snprintf(why, size, "exec: the command ends with a backslash");
                    goto fail;
                }
                *out++ = p[1];
                p += 2;
            } else {
                *out++ = *p++;
            }
        }
        *out++ = '\0';
    }
    if (n == 0) {
        snprintf(why, size, "exec: no program given");
        goto fail;
    }
    argv[n] = NULL;
    return argv;
fail:
    free(argv);
    return NULL;
}

/* 0 when `path` is an executable regular file, else -1 with errno set. */
static int executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EACCES;
        return -1;
    }
    return access(path, X_OK);
}

static char *join(const char *dir, size_t dlen, const char *name)
{
    size_t n = strlen(name);
    char *s = malloc(dlen + 1 + n + 1);
    if (s) {
        memcpy(s, dir, dlen);
        s[dlen] = '/';
        memcpy(s + dlen + 1, name, n + 1);
    }
    return s;
}

/* The program `name` names, or NULL with `why` set (empty: out of memory).
 * A name with a slash is a path (a relative one against `file`'s
 * directory, as the config's include lines are); a bare name is searched
 * in the daemon's PATH now, at load, so the check below covers it. */
static char *find_program(const char *name, const char *file, char *why, size_t size)
{
    char s[JSOND_SHOW_BUF];
    char *path = NULL;
    why[0] = '\0';
    if (strchr(name, '/')) {
        const char *slash = strrchr(file, '/');
        if (name[0] != '/' && slash)
            path = join(file, (size_t)(slash - file), name);
        else
            path = strdup(name);
        if (path && executable(path) < 0) {
            snprintf(why, size, "exec: cannot run '%s': %s",
                     jsond_config_show(s, sizeof s, path, strlen(path)), strerror(errno));
            free(path);
            path = NULL;
        }
        return path;
    }
    const char *dirs = getenv("PATH");
    if (!dirs)
        dirs = "/usr/local/bin:/usr/bin:/bin";
    for (const char *d = dirs;; d++) {
        const char *end = strchrnul(d, ':');
        /* An empty entry is the current directory, as for execvp. */
        path = end > d ? join(d, (size_t)(end - d), name) : join(".", 1, name);
        if (!path)
            return NULL;
        if (executable(path) == 0)
            return path;
        free(path);
        if (!*end)
            break;
        d = end;
    }
    snprintf(why, size, "exec: no executable '%s' in PATH",
             jsond_config_show(s, sizeof s, name, strlen(name)));
    return NULL;
}

static void prog_free(void *data)
{
    exec_prog *p = data;
    if (!p)
        return;
    free(p->path);
    free(p->argv);
    free(p);
}

static json_t *exec_run(jsond_req *req, json_t *args);

/* The thread loading the config. */
int jsond_exec_resolve(jsond_handler *h, const jsond_config *cfg, const cfg_route *route,
                       const char *arg, char *why, size_t size)
{
    (void)cfg;
    exec_prog *p = calloc(1, sizeof *p);
    if (!p) {
        why[0] = '\0';
        return -1;
    }
    if (!(p->argv = jsond_exec_split(arg, why, size)))
        goto fail;
    if (!(p->path = find_program(p->argv[0], route->file, why, size)))
        goto fail;
    p->max_output = route->max_output;
    snprintf(p->route, sizeof p->route, "%s", route->name);
    h->color = JSOND_COLOR_SYNC;
    h->sync_fn = exec_run;
    h->data = p;
    h->data_free = prog_free;
    return 0;
fail:
    prog_free(p);
    return -1;
}

/* ---- running the program: a pool worker, for one request ------------- */

enum { RUN_DONE, RUN_TIMEOUT, RUN_OVERSIZE };

typedef struct run {
    const exec_prog *prog;
    jsond_req *req;
    pid_t pid;
    int fd[3]; /* the parent's ends: child's stdin, stdout, stderr; -1: closed */
    char *in;  /* args as JSON, and a newline */
    size_t in_len, in_off;
    char *out; /* stdout so far */
    size_t out_len, out_cap;
    char line[ERR_LINE_MAX + 1]; /* the stderr line being read */
    size_t line_len;
    int line_cut; /* the current line was logged cut: skip to its end */
    int killed;   /* RUN_* */
} run;

static int expired(const run *r)
{
    return jsond_req_expired(r->req) ||
           (r->req->expires_ns && jsond_now_ns() >= r->req->expires_ns);
}

/* Kills the child and everything in its process group. */
static void kill_group(run *r, int why)
{
    kill(-r->pid, SIGKILL);
    r->killed = why;
}

static void close_fd(run *r, int i)
{
    if (r->fd[i] >= 0)
        close(r->fd[i]);
    r->fd[i] = -1;
}

static void log_line(run *r, int cut)
{
    /* Control bytes would garble the log's lines and terminals. */
    for (size_t i = 0; i < r->line_len; i++)
        if ((unsigned char)r->line[i] < 0x20 || r->line[i] == 0x7f)
            r->line[i] = '?';
    jsond_log(JSOND_LOG_WARNING, "route %s: stderr: %.*s%s", r->prog->route, (int)r->line_len,
              r->line, cut ? " [cut]" : "");
    r->line_len = 0;
}

static void take_stderr(run *r, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\n') {
            if (!r->line_cut)
                log_line(r, 0);
            r->line_cut = 0;
            r->line_len = 0;
        } else if (!r->line_cut) {
            if (r->line_len == ERR_LINE_MAX) {
                log_line(r, 1);
                r->line_cut = 1;
            } else {
                r->line[r->line_len++] = b[i];
            }
        }
    }
}

static void feed_stdin(run *r)
{
    while (r->in_off < r->in_len) {
        ssize_t k = write(r->fd[0], r->in + r->in_off, r->in_len - r->in_off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            break; /* EPIPE: the child does not read its stdin, which is fine */
        }
        r->in_off += (size_t)k;
    }
    close_fd(r, 0);
}

/* Reads what stdout has; 0 at EOF or when it would block, -1 when it went
 * over max_output. */
static int read_stdout(run *r)
{
    for (;;) {
        if (r->out_len == r->out_cap) {
            if (r->out_len > r->prog->max_output)
                return -1;
            size_t cap = r->out_cap ? 2 * r->out_cap : 4096;
            if (cap > r->prog->max_output + 1)
                cap = r->prog->max_output + 1;
            char *b = realloc(r->out, cap);
            if (!b)
                return -1;
            r->out = b;
            r->out_cap = cap;
        }
        ssize_t k = read(r->fd[1], r->out + r->out_len, r->out_cap - r->out_len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0 || errno != EAGAIN)
                close_fd(r, 1);
            return 0;
        }
        r->out_len += (size_t)k;
    }
}

static void read_stderr(run *r)
{
    char b[READ_CHUNK];
    for (;;) {
        ssize_t k = read(r->fd[2], b, sizeof b);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0 || errno != EAGAIN) {
                if (r->line_len && !r->line_cut)
                    log_line(r, 0);
                close_fd(r, 2);
            }
            return;
        }
        take_stderr(r, b, (size_t)k);
    }
}

/* The poll timeout: SLICE_MS, or less when the deadline is nearer. */
static int slice_ms(const run *r)
{
    uint64_t exp = r->req->expires_ns, now = jsond_now_ns();
    if (exp && exp > now && exp - now < (uint64_t)SLICE_MS * 1000000u)
        return (int)((exp - now) / 1000000u) + 1;
    return SLICE_MS;
}

/* Feeds stdin and drains stdout and stderr until both close, the deadline
 * passes or stdout goes over max_output. */
static void pump(run *r)
{
    while (r->fd[0] >= 0 || r->fd[1] >= 0 || r->fd[2] >= 0) {
        if (expired(r)) {
            kill_group(r, RUN_TIMEOUT);
            return;
        }
        struct pollfd p[3];
        for (int i = 0; i < 3; i++)
            p[i] = (struct pollfd){.fd = r->fd[i], .events = i ? POLLIN : POLLOUT};
        if (poll(p, 3, slice_ms(r)) < 0)
            continue; /* EINTR; nothing else can fail with valid arguments */
        if (r->fd[0] >= 0 && p[0].revents)
            feed_stdin(r);
        if (r->fd[1] >= 0 && p[1].revents && read_stdout(r) < 0) {
            kill_group(r, RUN_OVERSIZE);
            return;
        }
        if (r->fd[2] >= 0 && p[2].revents)
            read_stderr(r);
    }
}

/* Reaps the child. Its pipes may close a moment before it is a zombie, or
 * long before (a program that closes them and runs on): back off from
 * 50 us to SLICE_MS, and kill it at the deadline. */
static int reap(run *r)
{
    long wait_us = 50;
    for (;;) {
        int status;
        pid_t k = waitpid(r->pid, &status, r->killed ? 0 : WNOHANG);
        if (k == r->pid)
            return status;
        if (k < 0 && errno != EINTR)
            return -1; /* not ours to reap: cannot happen, the pid is this worker's */
        if (k == 0) {
            if (expired(r)) {
                kill_group(r, RUN_TIMEOUT);
                continue;
            }
            struct timespec t = {0, wait_us * 1000};
            nanosleep(&t, NULL);
            if (wait_us < SLICE_MS * 1000L)
                wait_us *= 2;
        }
    }
}

static int spawn(run *r)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc = 0;
    /* Every descriptor is close-on-exec, and closefrom(3) in the child: no
     * descriptor of the daemon, another worker's child's pipes included,
     * reaches the program. */
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        rc = errno;
        goto done;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&at);
    /* Its own process group, to be killed whole; and a plain signal state:
     * workers block every signal and the daemon ignores SIGPIPE, which a
     * program would otherwise inherit. */
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    rc = posix_spawn(&r->pid, r->prog->path, &fa, &at, r->prog->argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc == 0) {
        r->fd[0] = in[1], in[1] = -1;
        r->fd[1] = out[0], out[0] = -1;
        r->fd[2] = err[0], err[0] = -1;
        for (int i = 0; i < 3; i++)
            fcntl(r->fd[i], F_SETFL, O_NONBLOCK);
    }
done:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    return rc;
}

/* Jansson's error text may quote the program's bytes: keep them printable
 * ASCII, as every reply message is. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static json_t *outcome(run *r, int status)
{
    jsond_req *req = r->req;
    if (r->killed == RUN_TIMEOUT) {
        jsond_reply_error(req, JSOND_TIMEOUT, "the program was killed at the deadline");
        return NULL;
    }
    if (r->killed == RUN_OVERSIZE) {
        jsond_reply_error(req, JSOND_HANDLER_FAILED,
                          "stdout over max_output (%zu bytes): the program was killed",
                          r->prog->max_output);
        return NULL;
    }
    if (status < 0) {
        jsond_reply_error(req, JSOND_INTERNAL, "the program's status was lost");
        return NULL;
    }
    if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));
        jsond_reply_error(req, JSOND_HANDLER_FAILED, "killed by signal %d (SIG%s)",
                          WTERMSIG(status), name ? name : "?");
        return NULL;
    }
    if (WEXITSTATUS(status) != 0) {
        jsond_reply_error(req, JSOND_HANDLER_FAILED, "exit status %d", WEXITSTATUS(status));
        return NULL;
    }
    json_error_t e;
    json_t *reply = json_loadb(r->out ? r->out : "", r->out_len, JSON_DECODE_ANY, &e);
    if (!reply) {
        printable(e.text);
        jsond_reply_error(req, JSOND_HANDLER_FAILED,
                          "invalid JSON on stdout: %s (line %d, column %d)", e.text, e.line,
                          e.column);
    }
    return reply;
}

/* The sync handler: a pool worker. */
static json_t *exec_run(jsond_req *req, json_t *args)
{
    run r = {.prog = jsond_req_handler_data(req), .req = req, .fd = {-1, -1, -1}};
    json_t *reply = NULL;
    char *text = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return NULL;
    }
    r.in_len = strlen(text) + 1;
    if (!(r.in = malloc(r.in_len))) {
        free(text);
        jsond_reply_error(req, JSOND_INTERNAL, "out of memory");
        return NULL;
    }
    memcpy(r.in, text, r.in_len - 1);
    r.in[r.in_len - 1] = '\n';
    free(text);

    int rc = spawn(&r);
    if (rc != 0) {
        jsond_reply_error(req, JSOND_HANDLER_FAILED, "cannot start the program: %s", strerror(rc));
        goto out;
    }
    pump(&r);
    for (int i = 0; i < 3; i++)
        close_fd(&r, i);
    reply = outcome(&r, reap(&r));
out:
    free(r.in);
    free(r.out);
    return reply;
}
