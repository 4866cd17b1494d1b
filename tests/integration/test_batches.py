"""Work bounded per connection: batches, pipelines and long lines.

max_pipeline counts calls, not lines: each member of a JSON-RPC batch is a
call, and at most max_pipeline of a connection's calls run at once; the
rest of a batch waits, parsed, and reading pauses meanwhile. A batch reply
is streamed, member by member, under output_buffer, so a batch whose reply
is 35 MB neither holds 35 MB nor blocks the loop. A reply document larger
than output_buffer, alone or in a batch, is encoded as the socket takes
it: its text never exists whole. A long request line is
scanned once, not once per read.
"""
import json
import threading
import time

from jsondtest import (HELLO, JSOND_TESTD, PLAIN, SLOW, VALGRIND, Client, Daemon, SharedDaemon,
                       config, main, reset, unittest)

MB = 1024 * 1024
OUTPUT_BUFFER = 256 * 1024


def rpc(method, params=None, id=None):
    call = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        call["params"] = params
    if id is not None:
        call["id"] = id
    return call


def line(batch):
    return json.dumps(batch, separators=(",", ":")).encode() + b"\n"


def started(c, route):
    """How many requests of `route` the daemon has dispatched."""
    return c.call("stats")["requests"]["routes"].get(route, {}).get("requests", 0)


def wait_started(test, c, route, n):
    deadline = time.monotonic() + 3 * SLOW
    while started(c, route) < n:
        test.assertLess(time.monotonic(), deadline, "%s never reached %d" % (route, n))
        time.sleep(0.01)  # polling, bounded by the deadline


class Batches(SharedDaemon):
    conf = config("""
        [server]
        max_pipeline = 4
        request_timeout = 0
        output_buffer = %d
        max_request_size = 1M
        [listen main]
        address = 127.0.0.1:0
        requests = yes
        [route hello]
        handler = builtin:hello
        [route sleep]
        handler = builtin:sleep
        [route big]
        handler = builtin:big
        [route hasty]
        handler = builtin:sleep
        timeout = 50ms
        [route stats]
        handler = builtin:stats
    """ % OUTPUT_BUFFER)

    def test_members_count_against_max_pipeline(self):
        """20 sleeps of 100 ms with max_pipeline = 4 take at least 5 rounds:
        they can only have run 4 at a time (all at once took 0.1 s)."""
        c = self.client()
        t0 = time.monotonic()
        c.send(line([rpc("sleep", {"ms": 100}, i) for i in range(20)]))
        reply = c.reply()
        took = time.monotonic() - t0
        self.assertEqual(reply, [{"jsonrpc": "2.0", "result": {"slept_ms": 100}, "id": i}
                                 for i in range(20)])
        self.assertGreaterEqual(took, 0.5)

    def test_pipeline_waits_for_the_batch(self):
        """A line after a batch runs only once the batch's members have all
        started, and its reply comes after the batch's."""
        c = self.client()
        c.send(line([rpc("sleep", {"ms": 50}, i) for i in range(6)]) + b"hello\n")
        self.assertEqual([m["id"] for m in c.reply()], list(range(6)))
        self.assertEqual(c.reply(), {"msg": "Hello World", "data": "x"})

    def test_mixed_members(self):
        """Errors, notifications, a producer and a timeout, in order."""
        c = self.client()
        c.send(line([rpc("hello", None, 1), rpc("hello"), rpc("nope", None, 2),
                     rpc("big", {"size": 100000}, 3), {"bad": 1}, rpc("hasty", {"ms": 60000}, 4),
                     rpc("sleep", {"ms": 1}), rpc("sleep", {"ms": 1}, 5)]))
        reply = c.reply()
        self.assertEqual([m.get("id") for m in reply], [1, 2, 3, None, 4, 5])
        self.assertEqual(reply[0]["result"], {"msg": "Hello World", "data": "x"})
        self.assertEqual(reply[1]["error"]["code"], -32601)
        self.assertEqual(reply[2]["result"]["data"], "x" * 100000)
        self.assertEqual(reply[3]["error"]["code"], -32600)
        self.assertEqual(reply[4]["error"]["code"], -32002)
        self.assertEqual(reply[5]["result"], {"slept_ms": 1})

    def test_notifications_only(self):
        """A batch of notifications gets nothing, even when they fail."""
        c = self.client()
        c.send(line([rpc("hello"), rpc("nope"), rpc("sleep", {"ms": 10})]) + b"hello\n")
        self.assertEqual(c.reply(), {"msg": "Hello World", "data": "x"})

    def test_any_size_that_fits_a_line(self):
        """10,000 calls on one line are all served, none refused."""
        n = 10000
        c = self.client()
        c.send(line([rpc("hello", None, i) for i in range(n)]))
        reply = c.reply()
        self.assertEqual(len(reply), n)
        self.assertEqual([m["id"] for m in reply], list(range(n)))
        self.assertTrue(all(m["result"] == {"msg": "Hello World", "data": "x"} for m in reply))


class Bounded(unittest.TestCase):
    def test_large_document_never_whole(self):
        """A 24 MB reply document (test_tree, built from small args), alone
        and as a batch member between two hellos: the right bytes, and the
        peak RSS grows by the tree and the output buffer (23.4 MB measured),
        not by its text as well (46.3 MB when the text was made whole)."""
        n, size = 3000, 8000
        conf = config("""
            [server]
            output_buffer = %d
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route tree]
            handler = builtin:test_tree
            [route hello]
            handler = builtin:hello
        """ % OUTPUT_BUFFER)
        tree = ["x" * size] * n
        hello = json.loads(HELLO)
        single = line(rpc("tree", {"n": n, "len": size}, 1))
        batch = line([rpc("hello", None, 1), rpc("tree", {"n": n, "len": size}, 2),
                      rpc("hello", None, 3)])
        for form, request, want in (
                ("alone", single, {"jsonrpc": "2.0", "result": tree, "id": 1}),
                ("in a batch", batch, [{"jsonrpc": "2.0", "result": hello, "id": 1},
                                       {"jsonrpc": "2.0", "result": tree, "id": 2},
                                       {"jsonrpc": "2.0", "result": hello, "id": 3}])):
            with self.subTest(form), Daemon(conf, binary=JSOND_TESTD) as d, Client(d) as c:
                hwm0 = d.status("VmHWM")
                c.send(request)
                self.assertEqual(json.loads(c.raw(bufsize=1 << 20)), want)
                grew = d.status("VmHWM") - hwm0
                print("a %.0f MB reply document %s: peak RSS +%.1f MB"
                      % (n * size / 1e6, form, grew / 1024))
                if PLAIN:
                    self.assertLess(grew, (n * (size + 200) + 4 * OUTPUT_BUFFER) // 1024)

    def test_notification_flood(self):
        """One connection floods batches of hour-long sleep notifications:
        max_pipeline of them run, the rest wait unread (today's fix: 140,000
        of them ran, 150 MB). The client that leaves takes them with it."""
        members = 1000
        lines = 60
        conf = config("""
            [server]
            max_pipeline = 128
            request_timeout = 0
            output_buffer = %d
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route sleep]
            handler = builtin:sleep
            [route stats]
            handler = builtin:stats
        """ % OUTPUT_BUFFER)
        batch = line([rpc("sleep", {"ms": 3600000}) for _ in range(members)])
        with Daemon(conf) as d:
            base_fds = d.fds()
            rss0 = d.status("VmRSS")
            flood = d.connect("main")
            with Client(d) as c:
                # Written without blocking, as far as the kernel takes it:
                # the daemon reads none of what follows the first line.
                flood.setblocking(False)
                data, sent = batch * lines, 0
                try:
                    while sent < len(data):
                        sent += flood.send(data[sent:sent + 65536])
                except BlockingIOError:
                    pass
                wait_started(self, c, "sleep", 128)
                # A window to watch in, not an order hoped for: any wait only
                # makes the check stronger.
                time.sleep(1.0)
                self.assertEqual(started(c, "sleep"), 128)
                grew = d.status("VmRSS") - rss0
                print("flood of %d x %d sleep notifications (%.1f MB sent): %d running, "
                      "RSS +%.1f MB" % (lines, members, sent / MB, started(c, "sleep"),
                                        grew / 1024))
                if PLAIN:
                    # 128 sleepers and one parsed line of 1,000 calls: 1.2 MB
                    # measured. 131 MB when every call ran.
                    self.assertLess(grew, 4 * 1024)
            # The client resets: everything it had running goes at once.
            reset(flood)
            self.assertEqual(d.wait_fds(base_fds), base_fds)

    def test_big_batch_streamed(self):
        """1,500 `routes` calls with 200 routes defined: a 35 MB reply, made
        member by member under output_buffer. It once took 340 MB and held
        the loop for 2.4 s; another client's hello must stay prompt."""
        nroutes, calls = 200, 1500
        routes = "".join("[route r%03d]\nhandler = builtin:hello\n" % i for i in range(nroutes - 3))
        conf = config("""
            [server]
            output_buffer = %d
            max_request_size = 1M
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route routes]
            handler = builtin:routes
            [route hello]
            handler = builtin:hello
            [route stats]
            handler = builtin:stats
        """ % OUTPUT_BUFFER) + routes
        with Daemon(conf) as d:
            hwm0 = d.status("VmHWM")
            worst = [0.0]
            failed = []
            stop = threading.Event()

            def ping():
                try:
                    with Client(d) as p:
                        while not stop.is_set():
                            t0 = time.monotonic()
                            if p.call("hello") != json.loads(HELLO):
                                failed.append("a wrong hello")
                            worst[0] = max(worst[0], time.monotonic() - t0)
                            time.sleep(0.005)  # a steady probe, not an ordering
                except Exception as e:  # reported by the test's own thread
                    failed.append(repr(e))

            pinger = threading.Thread(target=ping, daemon=True)
            pinger.start()
            try:
                with Client(d) as c:
                    t0 = time.monotonic()
                    c.send(line([rpc("routes", None, i) for i in range(calls)]))
                    raw = c.raw(bufsize=1 << 20)
                    took = time.monotonic() - t0
            finally:
                stop.set()
                pinger.join(3 * SLOW)
            self.assertEqual(failed, [])
            reply = json.loads(raw)
            self.assertEqual([m["id"] for m in reply], list(range(calls)))
            self.assertTrue(all(len(m["result"]["routes"]) == nroutes for m in reply))
            grew = d.status("VmHWM") - hwm0
            print("batch of %d routes calls (%d routes): %.1f MB reply in %.2f s, "
                  "peak RSS +%.1f MB, worst hello %.1f ms" %
                  (calls, nroutes, len(raw) / MB, took, grew / 1024, worst[0] * 1e3))
            if PLAIN:
                # The output buffer and the members in flight, max_pipeline
                # of them, each held as its ~17 KB of text: 3.8 MB measured.
                # Building the whole reply took 303 MB.
                self.assertLess(grew, 4 * OUTPUT_BUFFER // 1024 + 5 * 1024)
                # A hello is answered while the batch streams, not after
                # it: 80-160 ms worst here against a 1.1 s batch. On a
                # loaded machine both stretch alike (1.5 s against 10 s),
                # so the bound follows the batch's own time.
                self.assertLess(worst[0], max(1.0, took / 3))

    def test_long_line_is_scanned_once(self):
        """A 64 MB line (allowed with max_request_size = 128M) costs the
        daemon a linear scan: it once cost 25 s of CPU, rescanning the
        whole line after every read."""
        size = (8 if VALGRIND else 64) * MB
        conf = config("""
            [server]
            max_request_size = 128M
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route hello]
            handler = builtin:hello
        """)
        with Daemon(conf) as d, Client(d) as c:
            cpu0 = d.cpu_seconds()
            c.send_in_background(b'hello {"pad": "' + b"x" * (size - 17) + b'"}\n')
            self.assertEqual(c.reply(), json.loads(HELLO))
            cpu = d.cpu_seconds() - cpu0
            print("a %d MB line cost the daemon %.2f s of CPU" % (size // MB, cpu))
            if PLAIN:
                self.assertLess(cpu, 3.0)


if __name__ == "__main__":
    main()
