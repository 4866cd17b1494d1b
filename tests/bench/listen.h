/* listen.h: the loopback listener of the bench's blocking peers
 * (bareserver, rawsend): bound on 127.0.0.1:PORT (0: any free port), its
 * port printed as `port=N` for peers.py to read.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef BENCH_LISTEN_H
#define BENCH_LISTEN_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The listening socket, or -1 after saying why on stderr as `who`. */
static inline int bench_listen(unsigned port, int backlog, const char *who)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t sl = sizeof sin;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(l, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(l, backlog) < 0 ||
        getsockname(l, (struct sockaddr *)&sin, &sl) < 0) {
        fprintf(stderr, "%s: cannot listen: %s\n", who, strerror(errno));
        return -1;
    }
    printf("port=%u\n", (unsigned)ntohs(sin.sin_port));
    fflush(stdout);
    return l;
}

#endif /* BENCH_LISTEN_H */
