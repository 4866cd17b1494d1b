/* rawsend.c: a raw blocking sender, the bulk peer for tests/bench/peers.py.
 *
 *     rawsend [-p PORT] [-s SIZE]
 *
 * Listens on 127.0.0.1:PORT (default 0: any free port), prints `port=N`,
 * then for each connection it accepts, one after another: writes the same
 * bytes as jsond's `big {"size": SIZE}` reply (the hello object with SIZE
 * x's in its data, and the newline; SIZE defaults to 1,000,000,000) with
 * blocking write()s of 1 MB from a static buffer, and closes. What is read
 * from the client is ignored. The ceiling for one loopback connection and
 * one sending thread: no event loop, no buffering, no copy.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* accept4 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

#define HEAD  "{\"msg\":\"Hello World\",\"data\":\""
#define TAIL  "\"}\n"
#define CHUNK (1 << 20)

static char xs[CHUNK];

/* Writes all of buf; -1 when the client went away. */
static int put(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: rawsend [-p PORT] [-s SIZE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned port = 0;
    unsigned long long size = 1000000000ULL;
    int opt;
    char *end;
    while ((opt = getopt(argc, argv, "p:s:")) != -1) {
        switch (opt) {
        case 'p':
            port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            size = strtoull(optarg, &end, 10);
            if (end == optarg || *end)
                usage();
            break;
        default:
            usage();
        }
    }
    signal(SIGPIPE, SIG_IGN);
    memset(xs, 'x', sizeof xs);
    int l = bench_listen(port, 16, "rawsend");
    if (l < 0)
        return 1;
    for (;;) {
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "rawsend: accept: %s\n", strerror(errno));
            return 1;
        }
        int ok = put(fd, HEAD, sizeof HEAD - 1) == 0;
        for (unsigned long long left = size; ok && left;) {
            size_t n = left < CHUNK ? (size_t)left : CHUNK;
            ok = put(fd, xs, n) == 0;
            left -= n;
        }
        if (ok)
            put(fd, TAIL, sizeof TAIL - 1);
        close(fd);
    }
}
