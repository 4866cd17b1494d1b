/* bareserver.c: the least a push server can do, a peer for tests/bench/peers.py.
 *
 *     bareserver [-p PORT]
 *
 * Listens on 127.0.0.1:PORT (default 0: any free port), prints `port=N`,
 * then for ever: a blocking accept, one write of the hello line
 * {"msg":"Hello World","data":"x"}, close. Three system calls per
 * connection, no event loop, no check that the client got the bytes: the
 * floor under the push rows, not a server anyone should run.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* accept4 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"

#define HELLO "{\"msg\":\"Hello World\",\"data\":\"x\"}\n"

int main(int argc, char **argv)
{
    unsigned port = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:")) != -1) {
        if (opt != 'p') {
            fprintf(stderr, "usage: bareserver [-p PORT]\n");
            return 2;
        }
        port = (unsigned)strtoul(optarg, NULL, 10);
    }
    int l = bench_listen(port, 1024, "bareserver");
    if (l < 0)
        return 1;
    for (;;) {
        int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            fprintf(stderr, "bareserver: accept: %s\n", strerror(errno));
            return 1;
        }
        if (write(fd, HELLO, sizeof HELLO - 1) < 0) {
            /* the client left first: nothing to do but close */
        }
        close(fd);
    }
}
