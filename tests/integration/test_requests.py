"""Request mode (requests = yes): the request forms, error replies and their
ids, pipelining, too_large, idle_timeout, per-listener routes, args and
fixed_args, line endings, and garbage that must never crash or hang the
daemon.

Every daemon listens on port 0. Replies are read line by line with bounded
waits; events are ordered by what the sockets show (or stats), never by
sleeps. JSON-RPC has its own file (test_jsonrpc.py), back-pressure too
(test_flood.py). TCP_NODELAY is not tested: a client cannot read the
daemon's socket option, and reply latency is too noisy to tell.
"""
import json
import random
import select
import signal
import socket
import subprocess
import time

from jsondtest import (HELLO, SCALE, SLOW, Client, Closed, Daemon, SharedDaemon, config, error_of,
                       kernel_buffers, main, reset, unittest, wait_acked, wait_counted)

KB = 1024
IDLE = 0.3 * SCALE


def over_limit(data, limit):
    """Where to cut `data` so that it ends limit + 2 bytes into its first
    line over `limit` (the line ending not counted): the first point at
    which the daemon can tell that the line is too long."""
    pos = 0
    for line in data.split(b"\n"):
        if len(line) > limit and not (len(line) == limit + 1 and line.endswith(b"\r")):
            return pos + limit + 2
        pos += len(line) + 1
    raise AssertionError("no line over %d bytes" % limit)


def big_reply(size):
    return b'{"msg":"Hello World","data":"' + b"x" * size + b'"}'


CONF = config("""
    [server]
    max_request_size = 1K
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen limited]
    address = 127.0.0.1:0
    requests = yes
    routes = hello, echo
    [listen greet]
    address = 127.0.0.1:0
    on_connect = hello
    requests = yes
    [route hello]
    handler = builtin:hello
    [route echo]
    handler = builtin:echo
    [route big]
    handler = builtin:big
    fixed_args = {"max_size": 1000}
    [route big1m]
    handler = builtin:big
    args = {"size": 1000000}
    [route defaults]
    handler = builtin:echo
    args = {"a": 1, "b": {"c": 2}}
    [route fixed]
    handler = builtin:echo
    args = {"f": "default", "g": 1}
    fixed_args = {"f": "fixed"}
    [route sleep]
    handler = builtin:sleep
""")

# A reply that cannot fit in the kernels' buffers: it streams until read.
HUGE = kernel_buffers() + 1024 * KB

# Every JSON type a plain id can be: echoed as it is.
IDS = ["s", "", 7, -1, 1.5, None, True, False, {"a": [1, None]}, [1, "x"], {}]


class Requests(SharedDaemon):
    """Tests that share one daemon: none of them changes its state."""

    conf = CONF

    # ---- the request forms ---------------------------------------------

    def test_shorthand(self):
        c = self.client()
        c.send(b"hello\n")
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        c.send(b'echo {"a": [1, "x"], "b": {"c": null}}\n')
        self.assertEqual(c.raw(), b'{"a":[1,"x"],"b":{"c":null}}')
        c.send(b'big {"size": 10}\n')
        self.assertEqual(c.raw(), big_reply(10))
        c.send(b"big\t {\"size\": 3}  \n")
        self.assertEqual(c.raw(), big_reply(3))
        c.send(b"echo\n")
        self.assertEqual(c.raw(), b"{}")

    def test_route_object(self):
        c = self.client()
        # A plain reply is the handler's JSON as it is: no id.
        c.send(b'{"route": "big", "args": {"size": 10}, "id": 7}\n')
        self.assertEqual(c.raw(), big_reply(10))
        c.send(b'{"route": "hello"}\n')
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        self.assertEqual(c.call('{"id": "x", "args": {"k": [1]}, "route": "echo"}'), {"k": [1]})

    def test_on_connect_then_requests(self):
        c = self.client("greet")
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        self.assertEqual(c.call('echo {"a": 1}'), {"a": 1})

    # ---- errors and their ids ------------------------------------------

    def test_not_found(self):
        c = self.client()
        error_of(c.call("nosuch"), "not_found")
        error_of(c.call('nosuch {"a": 1}'), "not_found")
        error_of(c.call('{"route": "nosuch", "id": 5}'), "not_found", 5)
        error_of(c.call('{"route": "rpc.discover", "id": 6}'), "not_found", 6)
        error_of(c.call('{"route": "h\\u00e9llo", "id": 7}'), "not_found", 7)
        # Long names with multibyte characters: a message never cuts one in
        # two (the reply would not be UTF-8, or not be sent at all).
        for name in ["a" + "\u00e9" * 40, "\u00e9" * 40, "ab" + "\u4e2d" * 30, "x" * 100]:
            with self.subTest(name=name[:8]):
                error_of(c.call(json.dumps({"route": name, "id": 8})), "not_found", 8)
        # The connection goes on after errors.
        self.assertEqual(c.call("hello"), json.loads(HELLO))

    def test_bad_request(self):
        c = self.client()
        cases = [
            ("!!!", ...),
            ("hel/lo", ...),
            ('"hello"', ...),
            ("echo [1]", ...),
            ("echo {", ...),
            ("echo {} {}", ...),
            ("{", ...),
            ("{} x", ...),
            ("[]", ...),            # an array is a batch only for JSON-RPC
            ("[1,2,3]", ...),
            ('[{"route": "hello"}]', ...),
            ("{}", ...),
            ('{"id": 1}', 1),
            ('{"route": 5, "id": "r"}', "r"),
            ('{"route": "echo", "args": [1], "id": null}', None),
            ('{"route": "echo", "args": "x", "id": [2]}', [2]),
            # rejected by the handler, not by the protocol
            ('{"route": "big", "args": {"size": "x"}, "id": 3}', 3),
            ('big {"size": -1}', ...),
            ('{"route": "sleep", "args": {"ms": "x"}, "id": 4}', 4),
        ]
        for line, id in cases:
            with self.subTest(line=line):
                error_of(c.call(line), "bad_request", id)

    def test_ids_of_every_type(self):
        c = self.client()
        for id in IDS:
            with self.subTest(id=id):
                enc = json.dumps(id)
                error_of(c.call('{"route": "nosuch", "id": %s}' % enc), "not_found", id)
                error_of(c.call('{"id": %s, "route": "echo", "args": 1}' % enc), "bad_request", id)
                error_of(c.call('{"id": %s, "route": "big", "args": {"size": 1001}}' % enc),
                         "bad_request", id)
                # a plain reply carries no id
                self.assertEqual(c.call('{"id": %s, "route": "echo", "args": {"v": 1}}' % enc),
                                 {"v": 1})

    # ---- pipelining ------------------------------------------------------

    def test_pipeline_1000_in_order(self):
        n = 1000
        c = self.client()
        c.send_in_background(b"hello\n" * n)
        for i in range(n):
            self.assertEqual(c.raw(), HELLO.rstrip(b"\n"), "reply %d" % i)
        c.writer.join(3 * SLOW)
        lines = b"".join(b'{"route": "echo", "args": {"n": %d}, "id": %d}\n' % (i, i)
                         for i in range(n))
        c.send_in_background(lines)
        for i in range(n):
            self.assertEqual(c.reply(), {"n": i})
        self.assertEqual(c.call("hello"), json.loads(HELLO))

    def test_pipeline_slow_first(self):
        c = self.client()
        t0 = time.monotonic()
        c.send(b'sleep {"ms": 300}\nhello\n{"route": "sleep", "args": {"ms": 100}, "id": 1}\n'
               b'echo {"last": 1}\n')
        self.assertEqual(c.reply(), {"slept_ms": 300})
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        self.assertEqual(c.reply(), {"slept_ms": 100})
        self.assertEqual(c.reply(), {"last": 1})

    def test_split_writes_and_reads(self):
        c = self.client()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # One request, one byte per write.
        for b in b'{"route": "echo", "args": {"k": "v"}, "id": 1}\n':
            c.send(bytes([b]))
        self.assertEqual(c.reply(), {"k": "v"})
        # Two requests cut in the middle of each, one reply read a byte at
        # a time.
        c.send(b'big {"si')
        c.send(b'ze": 999}\nhel')
        c.send(b"lo\n")
        got = bytearray()
        c.sock.settimeout(3 * SLOW)
        for _ in range(5000):
            b = c.sock.recv(1)
            self.assertTrue(b, "closed")
            got += b
            if got.count(b"\n") == 2:
                break
        self.assertEqual(bytes(got), big_reply(999) + b"\n" + HELLO)
        # A 1 MB reply read in small pieces.
        c.send(b"big1m\nhello\n")
        self.assertEqual(c.raw(bufsize=1000), big_reply(1000000))
        self.assertEqual(c.raw(bufsize=7), HELLO.rstrip(b"\n"))

    def test_half_close(self):
        """A client that shuts down its side after its requests still gets
        every reply, then end-of-stream; a last line without a newline is a
        request too."""
        c = self.client()
        c.send(b'sleep {"ms": 300}\nhello\necho {"last": 1}')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.reply(), {"slept_ms": 300})
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        self.assertEqual(c.reply(), {"last": 1})
        c.expect_eof()

    def test_client_goes_away(self):
        """Clients that leave with requests in flight, replies half written
        or requests unread: the daemon frees what they held and goes on."""
        # a request in flight
        with self.client() as c:
            c.send(b'sleep {"ms": 200}\nhello\n')
        # a big reply in progress
        c = self.client()
        c.send(b"big1m\n" * 20)
        c.sock.recv(1)
        c.close()
        # a reset, with requests not yet read
        c = self.client()
        c.send(b'sleep {"ms": 200}\n' + b"hello\n" * 500)
        reset(c.sock)
        # a notification whose reply would be made by a producer
        with self.client() as c:
            c.send(b'{"jsonrpc": "2.0", "method": "big1m"}\n'
                   b'[{"jsonrpc": "2.0", "method": "big1m"}, {"jsonrpc": "2.0", "method": "x"}]\n')
            self.assertEqual(c.call('{"route": "echo", "args": {"after": 1}}'), {"after": 1})
        with self.client() as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))

    # ---- routes, args and fixed_args ---------------------------------------

    def test_listener_routes(self):
        lim = self.client("limited")
        self.assertEqual(lim.call("hello"), json.loads(HELLO))
        self.assertEqual(lim.call('echo {"a": 1}'), {"a": 1})
        error_of(lim.call('big {"size": 1}'), "not_found")
        error_of(lim.call('{"route": "big", "id": 1}'), "not_found", 1)
        error_of(lim.call("sleep"), "not_found")
        error_of(lim.call("nosuch"), "not_found")
        # The same route works on a listener without the restriction.
        c = self.client()
        self.assertEqual(c.call('big {"size": 1}'), {"msg": "Hello World", "data": "x"})

    def test_fixed_args_win(self):
        c = self.client()
        error_of(c.call('big {"size": 5000, "max_size": 999999}'), "bad_request")
        error_of(c.call('{"route": "big", "args": {"size": 1001, "max_size": 2000}, "id": 2}'),
                 "bad_request", 2)
        # ... also when the client asks for less
        self.assertEqual(c.call('big {"size": 1000, "max_size": 1}')["data"], "x" * 1000)
        self.assertEqual(c.call('fixed {"f": "client", "h": 2}'), {"f": "fixed", "g": 1, "h": 2})
        self.assertEqual(c.call("fixed"), {"f": "fixed", "g": 1})

    def test_args_defaults_merged_under(self):
        c = self.client()
        self.assertEqual(c.call("defaults"), {"a": 1, "b": {"c": 2}})
        self.assertEqual(c.call('defaults {"b": 3, "z": [4]}'), {"a": 1, "b": 3, "z": [4]})
        self.assertEqual(c.call('{"route": "defaults", "args": {"a": null}}'),
                         {"a": None, "b": {"c": 2}})

    # ---- line endings --------------------------------------------------

    def test_crlf_and_blank_lines(self):
        c = self.client()
        c.send(b"\n\r\n\nhello\r\n\r\necho {\"a\": 1}\r\n\n\n   \n\t\r\n"
               b'{"route": "echo", "args": {"b": 2}}\r\necho {"last": 1}\n')
        self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        self.assertEqual(c.reply(), {"a": 1})
        # blank lines got no reply: the next one is the next request's
        self.assertEqual(c.reply(), {"b": 2})
        self.assertEqual(c.reply(), {"last": 1})

    # ---- garbage: an error reply, never a crash --------------------------

    def test_nul_bytes(self):
        c = self.client()
        for line in [b"hel\0lo", b"\0\0\0", b"hello\0", b"\0hello", b'{"route": "hello\0"}',
                     b'{"route": "hello"}\0', b'echo {"a": "\0"}', b'{"route": "echo\\u0000"}']:
            with self.subTest(line=line):
                error_of(c.call(line), "bad_request")
        self.assertEqual(c.call("hello"), json.loads(HELLO))

    def test_invalid_utf8(self):
        c = self.client()
        for line in [b"h\xffllo", b"\xc3\x28", b'{"route": "\xff\xfe"}',
                     b'{"route": "hello", "id": "\xff"}', b'echo {"a": "\xc3\x28"}',
                     b'{"route": "echo", "args": {"\xed\xa0\x80": 1}}', b"\xf8\x88\x80\x80\x80"]:
            with self.subTest(line=line):
                c.send(line + b"\n")
                raw = c.raw()
                self.assertNotIn(b"\xff", raw)
                error_of(json.loads(raw.decode("utf-8")), "bad_request")
        self.assertEqual(c.call("hello"), json.loads(HELLO))

    def test_random_lines(self):
        """Seeded random bytes, cut into lines shorter than the limit: one
        reply per line, each valid UTF-8 JSON, and the connection goes on."""
        rng = random.Random(5)
        lines = []
        while len(lines) < 300:
            line = rng.randbytes(rng.randrange(1, 400))
            line = line.replace(b"\n", b"").removesuffix(b"\r")
            if line.strip(b" \t\r"):  # not blank: answered
                lines.append(line)
        c = self.client()
        c.send_in_background(b"".join(line + b"\n" for line in lines) + b'echo {"probe": 1}\n')
        for i, line in enumerate(lines):
            raw = c.raw()
            reply = json.loads(raw.decode("utf-8"))
            self.assertIn("error", reply, (i, line, raw))
            self.assertIn(reply["error"]["code"], ("bad_request", "not_found"), (i, line, raw))
            self.assertNotIn("id", reply)
        self.assertEqual(c.reply(), {"probe": 1})

    def test_random_bytes(self):
        """Seeded random bytes, as they come (some lines over the limit):
        error replies, then a too_large and a clean close.

        The bytes end where the first line over the limit is surely over it
        (limit + 2 bytes of it): the daemon cannot decide before it has them
        all, so nothing arrives after its closing rule looked. (Bytes that
        did could meet a socket closed at once, and a reset, as the closing
        rule allows.)"""
        rng = random.Random(6)
        data = rng.randbytes(256 * KB)
        data = data[:over_limit(data, 1024)]
        self.assertGreater(data.count(b"\n"), 10)  # replies before the too_large
        c = self.client()
        c.send_in_background(data)
        for _ in range(data.count(b"\n") + 1):
            try:
                raw = c.raw()
            except Closed:
                break
            reply = json.loads(raw.decode("utf-8"))
            self.assertIn("error", reply)
            if reply["error"]["code"] == "too_large":
                c.expect_eof()
                break
        else:
            raise AssertionError("no too_large")
        with self.client() as other:
            self.assertEqual(other.call("hello"), json.loads(HELLO))


class Limits(unittest.TestCase):
    """Tests with configs of their own."""

    def test_too_large(self):
        conf = CONF + "[route huge]\nhandler = builtin:big\nargs = {\"size\": %d}\n" % HUGE
        with Daemon(conf) as d:
            c = Client(d)
            # exactly the limit is fine, the line ending is not counted
            pad = 1024 - len(b'echo {"a": ""}')
            exact = b'echo {"a": "%s"}' % (b"x" * pad)
            self.assertEqual(len(exact), 1024)
            c.send(exact + b"\n" + exact + b"\r\n")
            self.assertEqual(c.reply(), {"a": "x" * pad})
            self.assertEqual(c.reply(), {"a": "x" * pad})
            # Pipelined replies before the long line come first, then its
            # error, then a clean close: what follows is never answered.
            c.send(b"hello\n" * 3 + b'{"route": "echo", "id": 1, "args": {"a": "%s"}}\n'
                   % (b"x" * 2000) + b"hello\n" * 3)
            for _ in range(3):
                self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
            error_of(c.reply(), "too_large")
            c.expect_eof()
            c.close()
            # ... also after a slow one
            c = Client(d)
            c.send(b'sleep {"ms": 300}\nhello\n' + b"x" * 2000 + b"\nhello\n")
            self.assertEqual(c.reply(), {"slept_ms": 300})
            self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
            error_of(c.reply(), "too_large")
            c.expect_eof()
            c.close()
            # 1025 bytes
            c = Client(d)
            c.send(exact + b"x\n")
            error_of(c.reply(), "too_large")
            c.expect_eof()
            c.close()
            # No newline at all: the daemon does not wait for one.
            c = Client(d)
            c.send(b"x" * (4 * KB))
            error_of(c.reply(), "too_large")
            c.expect_eof()
            c.close()
            # A client that keeps writing a long line meanwhile is not reset,
            # when its bytes are pending as the daemon decides. To make
            # sure they are: the line starts in the same write as a request
            # for a reply bigger than the kernels can hold, and the daemon
            # reads nothing while a big reply streams (DESIGN.md). So the
            # next bytes of the line, sent once the reply has begun, wait
            # in its socket, acknowledged, until we have read the reply and
            # the daemon decides on what it holds.
            c = Client(d)
            c.send(b"huge\n" + b"y" * 2000)
            r, _, _ = select.select([c.sock], [], [], 3 * SLOW)
            self.assertTrue(r, "the huge reply did not begin")
            c.send(b"y" * (16 * KB))
            wait_acked(c.sock)
            c.send_in_background(b"y" * (2 * 1024 * KB) + b"\nhello\n")
            self.assertEqual(len(c.raw(bufsize=1 << 20)), len(big_reply(HUGE)))
            error_of(c.reply(), "too_large")
            c.expect_eof()
            c.close()
            with Client(d) as other:
                self.assertEqual(other.call("hello"), json.loads(HELLO))
            self.assertEqual(d.stop(), 0)

    def test_idle_timeout(self):
        conf = CONF.replace("[server]", "[server]\nidle_timeout = %dms" % (IDLE * 1000))
        with Daemon(conf) as d:
            # Nothing sent at all.
            t0 = time.monotonic()
            c = Client(d)
            c.expect_eof()
            self.assertGreaterEqual(time.monotonic() - t0, IDLE)
            c.close()
            # After a reply: idle from then on. (Times are taken before the
            # request is sent, so the daemon's timer surely starts after
            # them: bounds with no allowance for how late we see a reply.)
            c = Client(d)
            t0 = time.monotonic()
            self.assertEqual(c.call("hello"), json.loads(HELLO))
            c.expect_eof()
            self.assertGreaterEqual(time.monotonic() - t0, IDLE)
            c.close()
            # A request in flight for longer than the timeout is not
            # idleness, and the timeout counts afresh from its reply.
            c = Client(d)
            ms = int(2.5 * IDLE * 1000)
            t0 = time.monotonic()
            self.assertEqual(c.call('sleep {"ms": %d}' % ms), {"slept_ms": ms})
            c.expect_eof()
            self.assertGreaterEqual(time.monotonic() - t0, ms / 1000 + IDLE)
            c.close()
            # Requests more often than the timeout keep it open past it.
            c = Client(d)
            t0 = time.monotonic()
            for _ in range(6):
                self.assertEqual(c.call('sleep {"ms": %d}' % (ms // 6)), {"slept_ms": ms // 6})
            self.assertGreater(time.monotonic() - t0, IDLE)
            c.expect_eof()
            c.close()
            self.assertEqual(d.stop(), 0)

    def test_idle_close_of_a_drained_client_is_immediate(self):
        """The closing rule tells input it read from input unread: after
        requests read in full, an idle close is immediate while the client
        keeps its side open. Taking their bytes for unread input would make
        it linger until linger_timeout."""
        conf = CONF.replace("[server]", "[server]\nidle_timeout = %dms\nlinger_timeout = 60s"
                            % (IDLE * 1000))
        with Daemon(conf) as d:
            base = d.fds()
            with Client(d) as c:
                for _ in range(3):
                    self.assertEqual(c.call("hello"), json.loads(HELLO))
                c.expect_eof()
                self.assertEqual(d.wait_fds(base), base)
            self.assertEqual(d.stop(), 0)


class Shutdown(unittest.TestCase):
    def test_shutting_down(self):
        """SIGTERM: the request in flight finishes; lines received but not
        yet parsed get shutting_down, with their ids; then a clean close.
        The request in flight is a reply larger than the kernel's buffers
        that the client has not read yet: it cannot finish before the
        signal, whatever the machine's load."""
        conf = CONF.replace("[server]", "[server]\nmax_pipeline = 1\nshutdown_timeout = %ds"
                            % (3 * SLOW)) + ("[route stats]\nhandler = builtin:stats\n"
                                             "[route huge]\nhandler = builtin:big\n")
        size = 2 * kernel_buffers()
        with Daemon(conf) as d:
            c = Client(d)
            c.send(b'huge {"size": %d}\n{"route": "hello", "id": "a"}\nhello\n' % size)
            # The reply is in flight once stats count it; the lines after it
            # wait, unparsed, behind it (max_pipeline = 1).
            with Client(d) as watcher:
                wait_counted(watcher, "huge")
            d.send_signal(signal.SIGTERM)
            self.assertEqual(len(json.loads(c.raw(bufsize=1 << 20))["data"]), size)
            error_of(c.reply(), "shutting_down", "a")
            error_of(c.reply(), "shutting_down")
            c.expect_eof()
            c.close()
            self.assertEqual(d.proc.wait(3 * SLOW), 0)

    def test_idle_connections_closed_at_once(self):
        """SIGTERM closes idle request connections at once: the daemon does
        not wait for clients that keep theirs open (linger_timeout is for
        input still pending, and there is none)."""
        linger = 10 * SLOW  # and shutdown_timeout: neither may be what ends it
        conf = CONF.replace("[server]", "[server]\nlinger_timeout = %ds\nshutdown_timeout = %ds"
                            % (linger, linger))
        with Daemon(conf) as d:
            fresh = Client(d)  # never sent anything
            used = Client(d)
            self.assertEqual(used.call("hello"), json.loads(HELLO))
            # both are registered before the signal: each has been served
            self.assertEqual(fresh.call("hello"), json.loads(HELLO))
            t0 = time.monotonic()
            d.send_signal(signal.SIGTERM)
            fresh.expect_eof()
            used.expect_eof()
            # Neither client closes its side until the daemon has exited.
            try:
                self.assertEqual(d.proc.wait(SLOW), 0)  # "at once", with headroom
            except subprocess.TimeoutExpired:
                self.fail("jsond still running %.0f s after SIGTERM, with only idle "
                          "connections" % (time.monotonic() - t0))
            fresh.close()
            used.close()


class Nesting(unittest.TestCase):
    """Deep nesting: an error reply or a clean close, never a crash."""

    def check(self, d, line, code):
        """`line` gets error `code`. A too_large line must be exactly the
        limit + 2 bytes, without a line ending: the daemon decides on the
        last byte, so none arrives after it closed (the close is clean)."""
        c = Client(d)
        c.send_in_background(line if code == "too_large" else line + b"\nhello\n")
        reply = c.reply()
        self.assertEqual(reply["error"]["code"], code)
        if code == "too_large":
            c.expect_eof()
        else:
            self.assertEqual(c.raw(), HELLO.rstrip(b"\n"))
        c.close()
        with Client(d) as other:
            self.assertEqual(other.call("hello"), json.loads(HELLO))

    def test_deep_nesting_large_limit(self):
        conf = CONF.replace("max_request_size = 1K", "max_request_size = 1M")
        with Daemon(conf) as d:
            n = 100000
            self.check(d, b"[" * n, "bad_request")
            self.check(d, b"[" * n + b"]" * n, "bad_request")
            self.check(d, b'{"a":' * n, "bad_request")
            self.check(d, b'echo {"a":' + b"[" * n + b"]" * n + b"}", "bad_request")
            self.check(d, b'{"route": "echo", "id": ' + b"[" * n + b"]" * n + b"}", "bad_request")
            # Deep, but within what JSON parsers take: echoed back as it came.
            with Client(d) as c:
                deep = b"[" * 400 + b"]" * 400
                self.assertEqual(c.call(b'echo {"a": %s}' % deep)["a"], json.loads(deep))
            self.assertEqual(d.stop(), 0)

    def test_deep_nesting_default_limit(self):
        conf = CONF.replace("max_request_size = 1K\n", "")
        with Daemon(conf) as d:
            self.check(d, b"[" * (64 * KB + 2), "too_large")  # the default limit + 2
            self.check(d, b"[" * 60000, "bad_request")
            self.check(d, b'{"a":' * 12000, "bad_request")
            self.assertEqual(d.stop(), 0)


class BigReplies(unittest.TestCase):
    """Replies of every size come out whole: small ones are serialized on
    the stack, larger ones on the heap."""

    def test_reply_sizes_around_the_stack_buffer(self):
        conf = CONF.replace("max_request_size = 1K", "max_request_size = 1M")
        with Daemon(conf) as d, Client(d) as c:
            # {"a":"..."} is 8 bytes around the string: cross 4096 both ways.
            for n in (4000, 4087, 4088, 4089, 5000, 200000):
                self.assertEqual(c.call(b'echo {"a": "%s"}' % (b"x" * n)), {"a": "x" * n}, n)
                rpc = c.call(b'{"jsonrpc": "2.0", "method": "echo", "params": ["%s"], "id": %d}'
                             % (b"y" * n, n))
                self.assertEqual(rpc, {"jsonrpc": "2.0", "result": ["y" * n], "id": n})
            c.close()
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
