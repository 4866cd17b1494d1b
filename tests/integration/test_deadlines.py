"""Request deadlines, and clients that leave.

request_timeout (and a route's timeout) bounds the time from a request's
start to its reply or its first produced byte: past it the request gets
`timeout` (-32002) and its handler is cancelled. Streaming a reply does not
count. A client that half-closes (FIN) still gets every reply it is owed,
each within its deadline; one that resets is gone, and its requests are
cancelled at once.
"""
import json
import socket
import time

from jsondtest import (SCALE, SLOW, Client, Daemon, SharedDaemon, config, error_of, kernel_buffers,
                       main, recv_all, reset, unittest, wait_counted)

CONF = config("""
    [server]
    request_timeout = %dms
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen rpc]
    address = 127.0.0.1:0
    requests = yes
    protocol = jsonrpc
    [route sleep]
    handler = builtin:sleep
    [route patient]
    handler = builtin:sleep
    timeout = 0
    [route hasty]
    handler = builtin:sleep
    timeout = %dms
    [route big]
    handler = builtin:big
    [route hello]
    handler = builtin:hello
    [route stats]
    handler = builtin:stats
""")

DEADLINE_MS = 200 * SCALE
HASTY_MS = 100 * SCALE


def timed_call(c, line):
    t0 = time.monotonic()
    reply = c.call(line)
    return reply, time.monotonic() - t0


class Deadlines(SharedDaemon):
    conf = CONF % (DEADLINE_MS, HASTY_MS)

    def test_request_timeout(self):
        c = self.client()
        reply, took = timed_call(c, '{"route": "sleep", "args": {"ms": 3600000}, "id": 9}')
        error_of(reply, "timeout", id=9)
        self.assertEqual(reply["error"]["message"], "no reply within %d ms" % DEADLINE_MS)
        # A timer never fires early; the upper bound has 10x headroom.
        self.assertGreaterEqual(took, DEADLINE_MS / 1000)
        self.assertLess(took, DEADLINE_MS / 1000 + 3 * SLOW)
        # The connection goes on: the cancelled sleep left nothing behind.
        self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})

    def test_jsonrpc_timeout(self):
        c = self.client("rpc")
        reply = c.call('{"jsonrpc": "2.0", "method": "sleep", "params": {"ms": 3600000}, "id": 1}')
        self.assertEqual(reply["id"], 1)
        self.assertEqual(reply["error"]["code"], -32002)
        self.assertEqual(reply["error"]["data"], {"code": "timeout"})

    def test_route_timeout_overrides(self):
        c = self.client()
        # timeout = 0: no deadline, though request_timeout is shorter.
        ms = 2 * DEADLINE_MS
        self.assertEqual(c.call('patient {"ms": %d}' % ms), {"slept_ms": ms})
        # A shorter timeout of the route's own.
        reply, took = timed_call(c, 'hasty {"ms": 3600000}')
        error_of(reply, "timeout")
        self.assertEqual(reply["error"]["message"], "no reply within %d ms" % HASTY_MS)
        self.assertGreaterEqual(took, HASTY_MS / 1000)

    def test_counted(self):
        c = self.client()
        before = c.call("stats")["requests"]["routes"].get("hasty", {})
        error_of(c.call('hasty {"ms": 3600000}'), "timeout")
        after = c.call("stats")["requests"]["routes"]["hasty"]
        self.assertEqual(after["errors"].get("timeout", 0),
                         before.get("errors", {}).get("timeout", 0) + 1)

    def test_order_kept(self):
        """A timed-out request keeps its place among pipelined replies."""
        c = self.client()
        c.send(b'hasty {"ms": 3600000}\nhello\nhasty {"ms": 1}\n')
        error_of(c.reply(), "timeout")
        self.assertEqual(c.reply(), {"msg": "Hello World", "data": "x"})
        self.assertEqual(c.reply(), {"slept_ms": 1})

    def test_streaming_does_not_count(self):
        """The deadline stops at the first produced byte: a reply that takes
        longer than it to stream, to a reader that waits, arrives whole."""
        # More than the kernel's buffers on both sides can hold, so the
        # daemon is still producing when the reader starts.
        size = 2 * kernel_buffers()
        s = self.d.connect("main")
        self.addCleanup(s.close)
        s.sendall(b'{"route": "big", "args": {"size": %d}}\n' % size)
        # Reading nothing for twice the deadline: the daemon's output fills
        # and waits on us, far past request_timeout.
        time.sleep(2 * DEADLINE_MS / 1000)
        s.shutdown(socket.SHUT_WR)
        data = recv_all(s)
        self.assertEqual(len(data), size + len(b'{"msg":"Hello World","data":""}\n'))
        self.assertEqual(json.loads(data)["data"], "x" * size)


class ClientsThatLeave(unittest.TestCase):
    def test_half_close_gets_its_replies(self):
        """A FIN is a legitimate half-close (echo hello | nc -N): every reply
        owed is still sent, then the connection closes."""
        with Daemon(CONF % (10000, HASTY_MS)) as d, Client(d) as c:
            c.send(b'sleep {"ms": %d}\nhello\n' % (50 * SCALE))
            c.sock.shutdown(socket.SHUT_WR)
            self.assertEqual(c.reply(), {"slept_ms": 50 * SCALE})
            self.assertEqual(c.reply(), {"msg": "Hello World", "data": "x"})
            c.expect_eof()

    def test_half_close_bounded_by_the_deadline(self):
        """An hour's sleep after a FIN does not hold the socket an hour: the
        deadline answers it, then the connection closes."""
        with Daemon(CONF % (DEADLINE_MS, HASTY_MS)) as d, Client(d) as c:
            c.send(b'sleep {"ms": 3600000}\n')
            c.sock.shutdown(socket.SHUT_WR)
            error_of(c.reply(), "timeout")
            c.expect_eof()

    def test_orphaned_requests_release_their_descriptors(self):
        """200 clients send an hour's sleep and close: with a 1 s deadline
        the daemon holds none of their sockets past it (the issue's figure:
        it held them an hour in CLOSE-WAIT)."""
        n = 200
        with Daemon(CONF % (1000 * SCALE, HASTY_MS)) as d:
            base = d.fds()
            socks = []
            try:
                for _ in range(n):
                    s = d.connect("main")
                    socks.append(s)
                    s.sendall(b'sleep {"ms": 3600000}\n')
                # Every request is running before anyone leaves.
                with Client(d) as c:
                    deadline = time.monotonic() + 3 * SLOW
                    while c.call("stats")["requests"]["routes"].get("sleep", {}).get(
                            "requests", 0) < n:
                        self.assertLess(time.monotonic(), deadline, "sleeps never all started")
                        time.sleep(0.01)  # polling, bounded by the deadline
                    t0 = time.monotonic()
            finally:
                for s in socks:
                    s.close()
            self.assertEqual(d.wait_fds(base, 1.0 * SCALE + 3 * SLOW), base)
            took = time.monotonic() - t0
            print("200 orphaned sleeps: descriptors released %.2f s after the clients left" % took)

    def test_reset_cancels_at_once(self):
        """A reset is a client gone: its requests are cancelled at once, with
        no deadline to wait for (request_timeout = 0 here)."""
        with Daemon(CONF % (0, HASTY_MS)) as d:
            base = d.fds()
            s = d.connect("main")
            s.sendall(b'sleep {"ms": 3600000}\n')
            with Client(d) as c:
                wait_counted(c, "sleep")
            reset(s)
            self.assertEqual(d.wait_fds(base), base)
            d.wait_log(lambda log: "closed (reset" in log, 3 * SLOW)


if __name__ == "__main__":
    main()
