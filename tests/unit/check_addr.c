/* check_addr.c: listener addresses as the config writes them.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, symlink */

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"

/* Parses TEXT, which must be valid, and checks it prints back as WANT. */
static jsond_addr parse_ok(const char *text, const char *want)
{
    jsond_addr a;
    const char *why = NULL;
    char buf[256];
    ck_assert_msg(jsond_addr_parse(text, &a, &why) == 0, "%s: %s", text, why);
    ck_assert_str_eq(jsond_addr_format(&a, buf, sizeof buf), want);
    return a;
}

/* Parses TEXT, which must be refused with reason WHY. */
static void parse_bad(const char *text, const char *why)
{
    jsond_addr a;
    const char *got = NULL;
    ck_assert_msg(jsond_addr_parse(text, &a, &got) == -1, "%s was accepted", text);
    ck_assert_str_eq(got, why);
}

START_TEST(test_ipv4)
{
    jsond_addr a = parse_ok("127.0.0.1:25000", "127.0.0.1:25000");
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;
    ck_assert_int_eq(in->sin_family, AF_INET);
    ck_assert_uint_eq(ntohs(in->sin_port), 25000);
    ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x7f000001);
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));

    parse_ok("0.0.0.0:0", "0.0.0.0:0"); /* port 0: any free port */
    parse_ok("255.255.255.255:65535", "255.255.255.255:65535");
    parse_ok("10.0.0.1:080", "10.0.0.1:80");
}
END_TEST

START_TEST(test_ipv6)
{
    jsond_addr a = parse_ok("[::1]:8080", "[::1]:8080");
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
    ck_assert_int_eq(in6->sin6_family, AF_INET6);
    ck_assert_uint_eq(ntohs(in6->sin6_port), 8080);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
    ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));

    parse_ok("[::]:25000", "[::]:25000");
    /* Printed in the canonical short form. */
    parse_ok("[2001:0db8:0000:0000:0000:0000:0000:0001]:1", "[2001:db8::1]:1");
    parse_ok("[::ffff:1.2.3.4]:5", "[::ffff:1.2.3.4]:5");
}
END_TEST

START_TEST(test_unix)
{
    jsond_addr a = parse_ok("unix:/run/jsond/jsond.sock", "unix:/run/jsond/jsond.sock");
    const struct sockaddr_un *un = (const struct sockaddr_un *)&a.ss;
    ck_assert_int_eq(un->sun_family, AF_UNIX);
    ck_assert_str_eq(un->sun_path, "/run/jsond/jsond.sock");

    /* The longest path that fits sun_path with its NUL, and one more. */
    char text[256] = "unix:/";
    size_t max = sizeof un->sun_path - 1;
    memset(text + 6, 'p', max - 1);
    text[5 + max] = '\0';
    parse_ok(text, text);
    strcat(text, "p");
    parse_bad(text, "unix socket path too long");
    parse_bad("unix:run/jsond.sock", "a unix socket path must be absolute");
    parse_bad("unix:", "a unix socket path must be absolute");
}
END_TEST

START_TEST(test_bad_ports)
{
    static const char *const bad[] = {
        "127.0.0.1:65536", "127.0.0.1:-1",
        "127.0.0.1:abc",   "127.0.0.1:",
        "127.0.0.1:+80",   "127.0.0.1:80 ",
        "127.0.0.1: 80",   "[::1]:65536",
        "[::1]:",          "1.2.3.4:99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        parse_bad(bad[i], "port must be a number from 0 to 65535");
}
END_TEST

START_TEST(test_missing_port)
{
    parse_bad("127.0.0.1", "expected IPv4:PORT, [IPv6]:PORT or unix:/PATH");
    parse_bad("", "expected IPv4:PORT, [IPv6]:PORT or unix:/PATH");
    parse_bad("[::1]", "expected [IPv6]:PORT");
    parse_bad("[::1]80", "expected [IPv6]:PORT");
    parse_bad("[::1", "expected [IPv6]:PORT");
}
END_TEST

START_TEST(test_names_refused)
{
    /* Numeric only: names would bind to whatever DNS said that day. */
    parse_bad("localhost:25000", "bad IPv4 address (names are not resolved)");
    parse_bad("example.com:80", "bad IPv4 address (names are not resolved)");
    parse_bad("[localhost]:80", "bad IPv6 address");
    parse_bad(":80", "bad IPv4 address (names are not resolved)");
    parse_bad("::1:80", "bad IPv4 address (names are not resolved)");
    parse_bad("1.2.3:80", "bad IPv4 address (names are not resolved)");
    parse_bad("[1.2.3.4]:80", "bad IPv6 address");
    parse_bad("[::1::2]:80", "bad IPv6 address");
    /* Longer than any address: refused without overflowing anything. */
    char text[300];
    memset(text, '1', sizeof text);
    strcpy(text + sizeof text - 4, ":80");
    parse_bad(text, "expected IPv4:PORT, [IPv6]:PORT or unix:/PATH");
    text[0] = '[';
    strcpy(text + sizeof text - 5, "]:80");
    parse_bad(text, "bad IPv6 address");
}
END_TEST

START_TEST(test_equal)
{
    jsond_addr a = parse_ok("127.0.0.1:1", "127.0.0.1:1");
    jsond_addr b = parse_ok("127.0.0.1:01", "127.0.0.1:1");
    ck_assert(jsond_addr_equal(&a, &b));
    b = parse_ok("127.0.0.1:2", "127.0.0.1:2");
    ck_assert(!jsond_addr_equal(&a, &b));
    b = parse_ok("127.0.0.2:1", "127.0.0.2:1");
    ck_assert(!jsond_addr_equal(&a, &b));

    a = parse_ok("[::1]:1", "[::1]:1");
    b = parse_ok("[0:0:0:0:0:0:0:1]:1", "[::1]:1");
    ck_assert(jsond_addr_equal(&a, &b));
    b = parse_ok("[::]:1", "[::]:1");
    ck_assert(!jsond_addr_equal(&a, &b));

    /* Same port, other family: different sockets. */
    a = parse_ok("0.0.0.0:25000", "0.0.0.0:25000");
    b = parse_ok("[::]:25000", "[::]:25000");
    ck_assert(!jsond_addr_equal(&a, &b));

    a = parse_ok("unix:/a", "unix:/a");
    b = parse_ok("unix:/a", "unix:/a");
    ck_assert(jsond_addr_equal(&a, &b));
    b = parse_ok("unix:/ab", "unix:/ab");
    ck_assert(!jsond_addr_equal(&a, &b));
}
END_TEST

START_TEST(test_format_truncates)
{
    jsond_addr a = parse_ok("[2001:db8::1]:65535", "[2001:db8::1]:65535");
    char buf[8];
    memset(buf, 'z', sizeof buf);
    ck_assert_str_eq(jsond_addr_format(&a, buf, sizeof buf), "[2001:d");
    a = parse_ok("192.168.100.200:65535", "192.168.100.200:65535");
    ck_assert_str_eq(jsond_addr_format(&a, buf, sizeof buf), "192.168");
    ck_assert_str_eq(jsond_addr_format(&a, buf, 1), "");
}
END_TEST

START_TEST(test_unix_check)
{
    /* What may be replaced by a listening socket: nothing, or a socket.
     * Anything else at the path is reported, so it is never removed. */
    char dir[] = "/tmp/check_addr.XXXXXX", text[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    static const char *const names[] = {"none", "file", "dir", "link", "fifo", "sock"};
    static const char *const want[] = {
        NULL, "a regular file", "a directory", "a symbolic link", "a FIFO", NULL};
    char paths[6][64];
    for (size_t i = 0; i < 6; i++)
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
    FILE *f = fopen(paths[1], "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_eq(mkdir(paths[2], 0700), 0);
    ck_assert_int_eq(symlink(paths[5], paths[3]), 0); /* to a socket: still a link */
    ck_assert_int_eq(mkfifo(paths[4], 0600), 0);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(text, sizeof text, "unix:%s", paths[5]);
    jsond_addr a = parse_ok(text, text);
    ck_assert_int_eq(bind(fd, (const struct sockaddr *)&a.ss, a.len), 0);
    for (size_t i = 0; i < 6; i++) {
        const char *what = NULL;
        snprintf(text, sizeof text, "unix:%s", paths[i]);
        a = parse_ok(text, text);
        ck_assert_str_eq(jsond_addr_unix_path(&a), paths[i]);
        ck_assert_int_eq(jsond_addr_unix_check(&a, &what), want[i] ? -1 : 0);
        if (want[i])
            ck_assert_str_eq(what, want[i]);
    }
    a = parse_ok("127.0.0.1:1", "127.0.0.1:1");
    ck_assert_ptr_null(jsond_addr_unix_path(&a));
    ck_assert_int_eq(jsond_addr_unix_check(&a, NULL), 0);
    close(fd);
    unlink(paths[5]);
    unlink(paths[4]);
    unlink(paths[3]);
    rmdir(paths[2]);
    unlink(paths[1]);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static Suite *addr_suite(void)
{
    Suite *s = suite_create("addr");
    TCase *tc = tcase_create("addr");
    tcase_add_test(tc, test_ipv4);
    tcase_add_test(tc, test_ipv6);
    tcase_add_test(tc, test_unix);
    tcase_add_test(tc, test_bad_ports);
    tcase_add_test(tc, test_missing_port);
    tcase_add_test(tc, test_names_refused);
    tcase_add_test(tc, test_equal);
    tcase_add_test(tc, test_format_truncates);
    tcase_add_test(tc, test_unix_check);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(addr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
