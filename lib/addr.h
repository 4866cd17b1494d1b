/* addr.h: listener addresses as written in the config.
 *
 * "IPv4:port", "[IPv6]:port" or "unix:/path". Pure functions, no I/O,
 * except jsond_addr_unix_check(), which looks at the file system.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef JSOND_ADDR_H
#define JSOND_ADDR_H

#include <sys/socket.h>
#include <sys/un.h>

typedef struct jsond_addr {
    struct sockaddr_storage ss; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t len;
} jsond_addr;

/* Parses TEXT into `out`. Returns 0, or -1 with a reason in `why` (a static
 * string). Ports 0..65535 (0: any free port); unix paths must be absolute
 * and fit sun_path. */
int jsond_addr_parse(const char *text, jsond_addr *out, const char **why);

/* Writes the address as jsond_addr_parse() reads it ("127.0.0.1:25000",
 * "[::1]:25000", "unix:/run/x.sock") into buf; returns buf. */
char *jsond_addr_format(const jsond_addr *a, char *buf, size_t size);

/* 1 when both name the same socket address. */
int jsond_addr_equal(const jsond_addr *a, const jsond_addr *b);

/* The path of a unix address, or NULL for an IP one. */
const char *jsond_addr_unix_path(const jsond_addr *a);

/* For a unix address: what is at its path may be replaced by a socket,
 * that is, nothing is there, or a socket is (lstat: a symbolic link is not a
 * socket). Returns 0 (also for IP addresses and when lstat fails otherwise:
 * bind() then says why), or -1 with what is there in `what` ("a regular
 * file", "a directory", ...). jsond never removes anything but a socket. */
int jsond_addr_unix_check(const jsond_addr *a, const char **what);

#endif /* JSOND_ADDR_H */
