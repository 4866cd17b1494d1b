/* addr.c: parse and print listener addresses.
 *
 * Numeric only: a daemon that resolves names at start binds to whatever DNS
 * said that day, so "localhost:25000" is refused and the config says what it
 * means.
 *
 * SPDX-License-Identifier: MIT
 */
#include "autoconfig.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "addr.h"

static int parse_port(const char *s, in_port_t *port)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 65535)
        return -1;
    *port = htons((in_port_t)v);
    return 0;
}

int jsond_addr_parse(const char *text, jsond_addr *out, const char **why)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        const char *path = text + 5;
        if (path[0] != '/') {
            *why = "a unix socket path must be absolute";
            return -1;
        }
        if (strlen(path) >= sizeof un->sun_path) {
            *why = "unix socket path too long";
            return -1;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
        return 0;
    }
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    int v6 = text[0] == '[';
    if (v6) {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            *why = "expected [IPv6]:PORT";
            return -1;
        }
        colon = close + 1;
        if ((size_t)(close - text - 1) >= sizeof host) {
            *why = "bad IPv6 address";
            return -1;
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
    } else {
        colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host) {
            *why = "expected IPv4:PORT, [IPv6]:PORT or unix:/PATH";
            return -1;
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
    }
    in_port_t port;
    if (parse_port(colon + 1, &port) < 0) {
        *why = "port must be a number from 0 to 65535";
        return -1;
    }
    if (v6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            *why = "bad IPv6 address";
            return -1;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = port;
        out->len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            *why = "bad IPv4 address (names are not resolved)";
            return -1;
        }
        in->sin_family = AF_INET;
        in->sin_port = port;
        out->len = sizeof *in;
    }
    return 0;
}

char *jsond_addr_format(const jsond_addr *a, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];
    switch (a->ss.ss_family) {
    case AF_UNIX:
        snprintf(buf, size, "unix:%s", ((const struct sockaddr_un *)&a->ss)->sun_path);
        break;
    case AF_INET: {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
        break;
    }
    default:
        snprintf(buf, size, "(unknown family %d)", a->ss.ss_family);
    }
    return buf;
}

int jsond_addr_equal(const jsond_addr *a, const jsond_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

const char *jsond_addr_unix_path(const jsond_addr *a)
{
    return a->ss.ss_family == AF_UNIX ? ((const struct sockaddr_un *)&a->ss)->sun_path : NULL;
}

int jsond_addr_unix_check(const jsond_addr *a, const char **what)
{
    const char *path = jsond_addr_unix_path(a);
    struct stat st;
    if (!path || lstat(path, &st) < 0 || S_ISSOCK(st.st_mode))
        return 0;
    if (S_ISREG(st.st_mode))
        *what = "a regular file";
    else if (S_ISDIR(st.st_mode))
        *what = "a directory";
    else if (S_ISLNK(st.st_mode))
        *what = "a symbolic link";
    else if (S_ISFIFO(st.st_mode))
        *what = "a FIFO";
    else
        *what = "a device";
    return -1;
}
