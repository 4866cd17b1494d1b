"""Thread pools: sync handlers run on bounded pools, and the loop stays free.

The behaviour contract is issue 10 (bridge 1): `[pool NAME]` sections
(threads, queue_limit), a route's `pool` key, handler colours in `routes`,
`pools` in `stats`, and what pools do under load, deadlines, SIGTERM and
SIGHUP:

  - a pool saturated by blocking (sync) sleeps leaves the loop prompt:
    1,000 `hello` round trips on another connection, p99 well under 500 ms
  - every thread busy and queue_limit jobs waiting: `busy` at once
    ("pool NAME is full"), counted as rejected; queue_limit 0 = run now or
    busy; each JSON-RPC batch member is submitted, and refused, on its own
  - a deadline while queued: `timeout` "still queued in pool NAME after N
    ms", and the job never runs; while running: "no reply within N ms",
    and the worker's result is discarded and counted as late
  - routes shows color / runs_on / pool; stats shows pools.NAME
  - SIGTERM: queued and running jobs finish and are answered, new
    connections are refused, exit 0; workers still running past
    shutdown_timeout or a second SIGTERM are abandoned (one warning line
    each) and jsond exits 0
  - a reload adds pools, resizes them live (2 -> 8 -> 1 threads under load,
    a queue_limit lowered below what is queued: all kept, 0 lost) and
    removes them (their queued jobs still finish and are answered); a route
    still naming a removed pool fails the reload at its FILE:LINE
  - a one-thread pool with pipelined jobs whose replies wait behind each
    other does not deadlock

The builtin `sleep` is dual: on the loop (a timer) unless its route names a
pool, then its sync half (nanosleep, uninterruptible, like a blocking legacy
call) runs on a worker. Every order a test needs is forced through `stats`
(busy, queued, queue_peak), never hoped for; every wait is bounded.
"""
import json
import math
import re
import signal
import socket
import sys
import time

from jsondtest import (HELLO, SCALE, SLOW, VALGRIND, Client, Daemon, config, error_of, lines_of,
                       main, pools, readable, records_text, reload, result_of, rpc_error_of, run,
                       started, unittest, wait_pool)

HELLO_REPLY = json.loads(HELLO)
POOL_KEYS = {"threads", "live", "busy", "queued", "queue_peak", "rejected", "timed_out", "late",
             "queue_wait_ms", "run_ms"}
COUNTERS = POOL_KEYS - {"queue_wait_ms", "run_ms"}
ABANDON_RE = r"\[warning\] abandoning a worker of pool %s running route %s$"


# ---- helpers -------------------------------------------------------------

def refused(addr):
    """True when a new connection to `addr` is refused, or accepted and then
    closed or reset without an answer to `hello`."""
    host, port = addr.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=3 * SLOW)
    except ConnectionError:  # refused, or reset as the listener closed
        return True
    with s:
        try:
            s.sendall(b"hello\n")
            return s.recv(1 << 16) == b""
        except ConnectionError:  # reset, or a broken pipe
            return True


def wait_refused(test, addr, timeout=None):
    """Waits (bounded) until new connections to `addr` are refused: the
    daemon took the SIGTERM it was sent. Connections accepted before then
    are answered and closed."""
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    while not refused(addr):
        test.assertLess(time.monotonic(), deadline, "still accepting after SIGTERM")
        time.sleep(0.01)  # polling, bounded by the deadline


def percentile(sorted_values, q):
    """The nearest-rank percentile q (0..100) of sorted values."""
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def route_map(c):
    return {r["name"]: r for r in c.call("routes")["routes"]}


SERVER = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
    [route stats]
    handler = builtin:stats
""")


# ---- 1. a saturated pool leaves the loop prompt --------------------------

class Saturation(unittest.TestCase):
    def test_hello_prompt_while_pool_saturated(self):
        """4 sleeping workers and 15 queued jobs on pool legacy; 1,000 hello
        round trips on another connection all answered, p99 < 500 ms (the
        target is 50 ms); the sleeps all finish afterwards."""
        ms = 1000 * SCALE
        running, queued = 4, 15
        n = 200 if VALGRIND else 1000
        conf = config("""
            [server]
            request_timeout = 0
            [pool legacy]
            threads = 4
            queue_limit = 16
            [route slow]
            handler = builtin:sleep
            pool = legacy
        """) + SERVER
        with Daemon(conf) as d, Client(d) as slow, Client(d) as c:
            slow.send(b'slow {"ms": %d}\n' % ms * (running + queued))
            # queue_peak only grows: seen even if the machine is slow to look.
            p = wait_pool(c, "legacy", lambda p: p["busy"] == running and
                          p["queue_peak"] == queued, "saturated")
            lat = []
            for _ in range(n):
                t0 = time.perf_counter()
                reply = c.call("hello")
                lat.append(time.perf_counter() - t0)
                self.assertEqual(reply, HELLO_REPLY)
            after = pools(c)["legacy"]
            lat.sort()
            p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
            sys.stderr.write("hello with pool legacy saturated (%d busy, %d queued at the start; "
                             "%d busy, %d queued at the end): %d round trips, p50 %.2f ms, "
                             "p99 %.2f ms, max %.2f ms\n"
                             % (p["busy"], p["queued"], after["busy"], after["queued"], n, p50,
                                p99, lat[-1] * 1e3))
            self.assertLess(p99, 50 * SLOW)
            for i in range(running + queued):
                self.assertEqual(slow.reply(), {"slept_ms": ms}, "sleep %d" % i)
            self.assertEqual(d.stop(), 0)


# ---- 2, 3. a full pool refuses at once -----------------------------------

SMALL = config("""
    [server]
    request_timeout = 0
    [listen rpc]
    address = 127.0.0.1:0
    requests = yes
    protocol = jsonrpc
    [pool tiny]
    threads = 1
    queue_limit = 1
    [pool now]
    threads = 1
    queue_limit = 0
    [route tiny]
    handler = builtin:sleep
    pool = tiny
    [route now]
    handler = builtin:sleep
    pool = now
""") + SERVER

# How long the sleep that holds a pool's only thread lasts: far longer than
# the few requests and stats polls made while it runs.
HOLD_MS = 2000 * SCALE


class Full(unittest.TestCase):
    def test_queue_full_is_busy_at_once(self):
        """threads 1, queue_limit 1: one sleep runs, one waits, the third
        gets busy while the first still sleeps, and it is counted."""
        with Daemon(SMALL) as d, Client(d) as watch, Client(d) as c1, Client(d) as c2, \
                Client(d) as c3:
            c1.send(b'tiny {"ms": %d}\n' % HOLD_MS)
            wait_pool(watch, "tiny", lambda p: p["busy"] == 1, "busy")
            c2.send(b'tiny {"ms": 1}\n')
            wait_pool(watch, "tiny", lambda p: p["queued"] == 1, "queued 1")
            t0 = time.monotonic()
            reply = c3.call('{"route": "tiny", "args": {"ms": 1}, "id": 3}')
            took = time.monotonic() - t0
            error_of(reply, "busy", id=3)
            self.assertEqual(reply["error"]["message"], "pool tiny is full")
            # At once: not after a thread came free. The first sleep has
            # not even ended.
            self.assertFalse(readable(c1.sock), "the first sleep ended before the busy reply")
            self.assertLess(took, HOLD_MS / 1000 / 2)
            p = pools(watch)["tiny"]
            self.assertEqual((p["rejected"], p["busy"], p["queued"], p["queue_peak"]),
                             (1, 1, 1, 1), p)
            self.assertEqual(c1.reply(), {"slept_ms": HOLD_MS})
            self.assertEqual(c2.reply(), {"slept_ms": 1})
            # The pool takes work again once it has room.
            wait_pool(watch, "tiny", lambda p: p["busy"] == 0 and p["queued"] == 0, "idle")
            self.assertEqual(c3.call('tiny {"ms": 1}'), {"slept_ms": 1})
            self.assertEqual(pools(watch)["tiny"]["rejected"], 1)
            self.assertEqual(d.stop(), 0)

    def test_queue_limit_zero_runs_now_or_busy(self):
        """queue_limit 0: an idle thread takes the job, none is waiting."""
        with Daemon(SMALL) as d, Client(d) as watch, Client(d) as c1, Client(d) as c2:
            c1.send(b'now {"ms": %d}\n' % HOLD_MS)
            wait_pool(watch, "now", lambda p: p["busy"] == 1, "busy")
            t0 = time.monotonic()
            reply = error_of(c2.call("now"), "busy")
            took = time.monotonic() - t0
            self.assertEqual(reply["error"]["message"], "pool now is full")
            self.assertFalse(readable(c1.sock), "the first sleep ended before the busy reply")
            self.assertLess(took, HOLD_MS / 1000 / 2)
            p = pools(watch)["now"]
            self.assertEqual((p["rejected"], p["queued"], p["queue_peak"]), (1, 0, 0), p)
            self.assertEqual(c1.reply(), {"slept_ms": HOLD_MS})
            # Idle again: the job is run now, not refused.
            wait_pool(watch, "now", lambda p: p["busy"] == 0, "idle")
            self.assertEqual(c2.call('now {"ms": 1}'), {"slept_ms": 1})
            p = pools(watch)["now"]
            self.assertEqual((p["rejected"], p["queue_peak"]), (1, 0), p)
            self.assertEqual(d.stop(), 0)

    def test_batch_members_refused_on_their_own(self):
        """A JSON-RPC batch of three sync sleeps on a pool of 1 thread and 1
        queue slot, and a hello: the first runs, the second waits, the third
        finds the pool full and alone gets busy (-32001, data.code busy)."""
        ms = 500 * SCALE  # far longer than submitting four members
        batch = [{"jsonrpc": "2.0", "method": "tiny", "params": {"ms": ms}, "id": i}
                 for i in (1, 2, 3)] + [{"jsonrpc": "2.0", "method": "hello", "id": 4}]
        with Daemon(SMALL) as d, Client(d, "rpc") as c, Client(d) as watch:
            reply = c.call(json.dumps(batch))
            self.assertIsInstance(reply, list)
            self.assertEqual([m["id"] for m in reply], [1, 2, 3, 4], reply)
            result_of(reply[0], 1, {"slept_ms": ms})
            result_of(reply[1], 2, {"slept_ms": ms})
            rpc_error_of(reply[2], -32001, 3, "busy")
            self.assertEqual(reply[2]["error"]["message"], "pool tiny is full")
            result_of(reply[3], 4, HELLO_REPLY)
            p = pools(watch)["tiny"]
            self.assertEqual((p["rejected"], p["queue_peak"]), (1, 1), p)
            self.assertEqual(d.stop(), 0)


# ---- 4. deadlines ------------------------------------------------------

DEADLINE_MS = 200 * SCALE

DEADLINES = config("""
    [server]
    request_timeout = 0
    [pool p]
    threads = 1
    [route pin]
    handler = builtin:sleep
    pool = p
    [route hasty]
    handler = builtin:sleep
    pool = p
    timeout = %dms
""" % DEADLINE_MS) + SERVER


class Deadlines(unittest.TestCase):
    def test_deadline_while_queued_then_while_running(self):
        with Daemon(DEADLINES) as d, Client(d) as watch, Client(d) as c1, Client(d) as c2:
            # Queued: the only thread sleeps far past the deadline.
            c1.send(b'pin {"ms": %d}\n' % HOLD_MS)
            wait_pool(watch, "p", lambda p: p["busy"] == 1, "busy")
            t0 = time.monotonic()
            reply = c2.call('{"route": "hasty", "args": {"ms": %d}, "id": "q"}' % HOLD_MS)
            took = time.monotonic() - t0
            error_of(reply, "timeout", id="q")
            self.assertEqual(reply["error"]["message"],
                             "still queued in pool p after %d ms" % DEADLINE_MS)
            self.assertGreaterEqual(took, DEADLINE_MS / 1000)
            self.assertFalse(readable(c1.sock), "the thread came free: the job was not queued")
            p = pools(watch)["p"]
            self.assertEqual((p["timed_out"], p["queued"]), (1, 0), p)
            self.assertEqual(c1.reply(), {"slept_ms": HOLD_MS})
            # The queue is FIFO: once a job submitted after the cancelled one
            # has replied, the cancelled one would have run (and been late).
            self.assertEqual(c1.call('pin {"ms": 1}'), {"slept_ms": 1})
            p = pools(watch)["p"]
            self.assertEqual((p["late"], p["timed_out"], p["busy"]), (0, 1, 0), p)

            # Running: the worker sleeps three deadlines; the request is
            # answered at one, the worker's result is discarded later.
            t0 = time.monotonic()
            reply = c2.call('hasty {"ms": %d}' % (3 * DEADLINE_MS))
            took = time.monotonic() - t0
            error_of(reply, "timeout")
            self.assertEqual(reply["error"]["message"], "no reply within %d ms" % DEADLINE_MS)
            self.assertGreaterEqual(took, DEADLINE_MS / 1000)
            p = wait_pool(watch, "p", lambda p: p["late"] == 1, "late 1")
            self.assertEqual(p["timed_out"], 2, p)
            wait_pool(watch, "p", lambda p: p["busy"] == 0, "idle")
            # Nothing of it is left on the connection.
            self.assertEqual(c2.call("hello"), HELLO_REPLY)
            self.assertEqual(c2.call('hasty {"ms": 1}'), {"slept_ms": 1})
            self.assertEqual(pools(watch)["p"]["late"], 1)
            self.assertEqual(d.stop(), 0)


# ---- 5, 6. routes and stats ---------------------------------------------

class RoutesAndStats(unittest.TestCase):
    conf = config("""
        [pool legacy]
        threads = 3
        [route routes]
        handler = builtin:routes
        [route echo]
        handler = builtin:echo
        [route big]
        handler = builtin:big
        [route health]
        handler = builtin:health
        [route sleep]
        handler = builtin:sleep
        [route sleepy]
        handler = builtin:sleep
        pool = legacy
        [route records]
        handler = builtin:records
        [route legacy_records]
        handler = builtin:records
        pool = legacy
    """) + SERVER

    def test_routes_colors(self):
        want = {
            # name: (color, runs_on, pool)
            "hello": ("async", "loop", None),
            "stats": ("async", "loop", None),
            "routes": ("async", "loop", None),
            "echo": ("async", "loop", None),
            "big": ("async", "loop", None),
            "health": ("async", "loop", None),
            "sleep": ("dual", "loop", None),
            "sleepy": ("dual", "legacy", "legacy"),
            "records": ("sync", "default", None),
            "legacy_records": ("sync", "legacy", "legacy"),
        }
        with Daemon(self.conf) as d, Client(d) as c:
            routes = route_map(c)
            self.assertEqual(set(routes), set(want))
            for name, (color, runs_on, pool) in want.items():
                r = routes[name]
                self.assertEqual((r["color"], r["runs_on"], r["pool"]), (color, runs_on, pool), r)
            self.assertEqual(d.stop(), 0)

    def check_pool(self, p):
        self.assertTrue(POOL_KEYS <= set(p), "missing %s" % (POOL_KEYS - set(p)))
        for k in COUNTERS:
            self.assertIs(type(p[k]), int, (k, p))
            self.assertGreaterEqual(p[k], 0, (k, p))
        for k in ("queue_wait_ms", "run_ms"):
            self.assertEqual(set(p[k]), {"p50", "p99"}, (k, p))
            for q in ("p50", "p99"):
                self.assertIs(type(p[k][q]), float, (k, q, p))
                self.assertGreaterEqual(p[k][q], 0.0, (k, q, p))
            self.assertLessEqual(p[k]["p50"], p[k]["p99"], (k, p))

    def test_stats_pools(self):
        ms = 100 * SCALE
        with Daemon(self.conf) as d, Client(d) as c:
            ps = pools(c)
            self.assertEqual(set(ps), {"default", "legacy"})
            for name, threads in (("default", 4), ("legacy", 3)):
                p = ps[name]
                self.check_pool(p)
                self.assertEqual((p["threads"], p["live"]), (threads, threads), p)
                self.assertEqual({k: p[k] for k in COUNTERS - {"threads", "live"}},
                                 dict.fromkeys(COUNTERS - {"threads", "live"}, 0), p)
            # A job run: its time is in run_ms.
            self.assertEqual(c.call('sleepy {"ms": %d}' % ms), {"slept_ms": ms})
            self.assertEqual(c.call('records {"count": 1, "size": 1}'), [{"i": 0, "data": "x"}])
            p = wait_pool(c, "legacy", lambda p: p["busy"] == 0, "idle")
            self.check_pool(p)
            # Percentiles may come from buckets: within a factor of two.
            self.assertGreaterEqual(p["run_ms"]["p99"], ms / 2, p)
            self.assertLess(p["run_ms"]["p99"], ms * 2 + 3 * SLOW * 1000, p)
            self.check_pool(pools(c)["default"])
            self.assertEqual(d.stop(), 0)

    def test_declared_default_pool(self):
        conf = config("""
            [pool default]
            threads = 2
            queue_limit = 0
        """) + SERVER
        with Daemon(conf) as d, Client(d) as c:
            ps = pools(c)
            self.assertEqual(set(ps), {"default"})
            self.check_pool(ps["default"])
            self.assertEqual(ps["default"]["threads"], 2)
            self.assertEqual(d.stop(), 0)

    def test_undefined_pool(self):
        conf = config("""
            [route x]
            handler = builtin:sleep
            pool = nope
        """) + SERVER
        d = Daemon(conf, start=False)
        try:
            r = run(["-t", "-c", d.path])
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            line = lines_of(conf, "pool = nope")[0]
            self.assertIn("%s:%d: pool 'nope' is not defined" % (d.path, line),
                          r.stderr.splitlines())
        finally:
            d.close()


# ---- 7, 8. SIGTERM --------------------------------------------------------

class Shutdown(unittest.TestCase):
    def test_sigterm_drains_the_pool(self):
        """One sleep running and two queued on a one-thread pool, and one
        more line that max_pipeline keeps unparsed: SIGTERM; new
        connections are refused; the three sleeps are answered, the line
        gets shutting_down, and jsond exits 0."""
        ms = 300 * SCALE
        # The first sleep holds the thread until well after the signal: the
        # unparsed line must still be unparsed when it lands.
        first = 1000 * SCALE
        conf = config("""
            [server]
            request_timeout = 0
            max_pipeline = 3
            shutdown_timeout = %ds
            [pool one]
            threads = 1
            [route sleep]
            handler = builtin:sleep
            pool = one
        """ % (3 * SLOW)) + SERVER
        with Daemon(conf) as d, Client(d) as c:
            addr = d.addrs["main"]
            c.send(b'sleep {"ms": %d}\n' % first + b'sleep {"ms": %d}\n' % ms * 2 +
                   b'{"route": "sleep", "args": {"ms": 1}, "id": "late"}\n')
            with Client(d) as watch:
                # queue_peak only grows: seen even if the machine is slow to look.
                wait_pool(watch, "one", lambda p: p["busy"] == 1 and p["queue_peak"] == 2,
                          "1 busy and 2 queued")
            d.send_signal(signal.SIGTERM)
            wait_refused(self, addr)
            # Refused while the pool drains: the sleeps hold jsond for well
            # over a second after the signal.
            self.assertIsNone(d.proc.poll(), "jsond exited before its sleeps were answered")
            self.assertEqual(c.reply(), {"slept_ms": first})
            for i in range(2):
                self.assertEqual(c.reply(), {"slept_ms": ms}, "queued sleep %d" % i)
            error_of(c.reply(), "shutting_down", id="late")
            c.expect_eof()
            c.close()
            self.assertEqual(d.proc.wait(3 * SLOW), 0)
            self.assertNotRegex(d.log(), r"abandoning a worker")

    def abandon_conf(self, shutdown_timeout):
        return config("""
            [server]
            request_timeout = 0
            shutdown_timeout = %s
            [pool p]
            threads = 1
            [route forever]
            handler = builtin:sleep
            pool = p
            timeout = 0
        """ % shutdown_timeout) + SERVER

    def start_forever(self, d):
        c = Client(d)
        self.addCleanup(c.close)
        c.send(b'forever {"ms": 3600000}\n')
        with Client(d) as watch:
            wait_pool(watch, "p", lambda p: p["busy"] == 1, "busy")
        return c

    def test_second_sigterm_abandons(self):
        with Daemon(self.abandon_conf("60s")) as d:
            self.start_forever(d)
            addr = d.addrs["main"]
            d.send_signal(signal.SIGTERM)
            wait_refused(self, addr)
            # A window to watch in: the worker sleeps an hour and
            # shutdown_timeout is a minute, so jsond must still be waiting.
            time.sleep(0.5 * SCALE)
            self.assertIsNone(d.proc.poll(), "jsond did not wait for its worker")
            self.assertNotRegex(d.log(), r"abandoning a worker")
            d.send_signal(signal.SIGTERM)
            self.assertEqual(d.proc.wait(3 * SLOW), 0)
            self.assertEqual(len(re.findall(ABANDON_RE % ("p", "forever"), d.log(), re.M)), 1,
                             d.log())

    def test_shutdown_timeout_abandons(self):
        timeout_ms = 300 * SCALE
        with Daemon(self.abandon_conf("%dms" % timeout_ms)) as d:
            self.start_forever(d)
            t0 = time.monotonic()
            d.send_signal(signal.SIGTERM)
            self.assertEqual(d.proc.wait(timeout_ms / 1000 + 3 * SLOW), 0)
            took = time.monotonic() - t0
            sys.stderr.write("exited %.0f ms after SIGTERM (shutdown_timeout %d ms)\n"
                             % (took * 1e3, timeout_ms))
            self.assertGreaterEqual(took, timeout_ms / 1000)
            self.assertEqual(len(re.findall(ABANDON_RE % ("p", "forever"), d.log(), re.M)), 1,
                             d.log())


# ---- 9. reload -----------------------------------------------------------

POOLS0 = config("""
    [server]
    request_timeout = 0
    [pool legacy]
    threads = 2
    queue_limit = 16
    [route slow]
    handler = builtin:sleep
    pool = legacy
    [route routes]
    handler = builtin:routes
""") + SERVER

EXTRA = config("""
    [pool extra]
    threads = 1
    [route fresh]
    handler = builtin:sleep
    pool = extra
""")

POOLS1 = POOLS0 + EXTRA

# Each broken config also adds a route: had it been put in force, even in
# part, the route would answer.
PROBE = "[route probe]\nhandler = builtin:hello\n"


class Reload(unittest.TestCase):
    def check_old(self, c, pools_want):
        """The config in force is still POOLS1."""
        error_of(c.call("probe"), "not_found")
        ps = pools(c)
        self.assertEqual({k: ps[k]["threads"] for k in ps}, pools_want)
        self.assertEqual(route_map(c)["fresh"]["runs_on"], "extra")
        self.assertEqual(c.call('fresh {"ms": 1}'), {"slept_ms": 1})
        self.assertEqual(c.call('slow {"ms": 1}'), {"slept_ms": 1})

    def test_add_pool_then_resize_under_load(self):
        """Add a pool; then 2 -> 8 -> 1 threads with 18 sleeps in flight and
        queue_limit lowered below what is queued: every sleep is answered,
        stats follow, surplus threads retire only as their sleeps end, and
        new work is refused until the queue is below the new limit.

        Eight long sleeps (hold) come first, then ten short ones: the order
        each step needs is held by the long ones, never hoped for."""
        d = Daemon(POOLS0)
        self.addCleanup(d.close)
        started(d)
        c = Client(d)
        self.addCleanup(c.close)
        error_of(c.call('fresh {"ms": 1}'), "not_found")

        out = reload(d, POOLS1)
        self.assertTrue(out.ok, out.log)
        self.assertEqual((out.routes(), out.pools()), ((1, 0, 0), (1, 0, 0)))
        self.assertEqual(c.call('fresh {"ms": 1}'), {"slept_ms": 1})
        r = route_map(c)["fresh"]
        self.assertEqual((r["color"], r["runs_on"], r["pool"]), ("dual", "extra", "extra"))
        self.assertEqual({k: v["threads"] for k, v in pools(c).items()},
                         {"default": 4, "legacy": 2, "extra": 1})

        hold, nhold, short, nshort = 3000 * SCALE, 8, 50 * SCALE, 10
        conf = POOLS1.replace("queue_limit = 16", "queue_limit = 32")
        out = reload(d, conf)
        self.assertEqual(out.pools(), (0, 1, 0), out.log)
        longs, shorts = Client(d), Client(d)
        self.addCleanup(longs.close)
        self.addCleanup(shorts.close)
        longs.send(b'slow {"ms": %d}\n' % hold * nhold)
        wait_pool(c, "legacy", lambda p: p["busy"] == 2 and p["queued"] == nhold - 2, "holding")
        shorts.send(b'slow {"ms": %d}\n' % short * nshort)
        wait_pool(c, "legacy", lambda p: p["queued"] == nhold - 2 + nshort, "queued")

        # 2 -> 8: six threads at once, on the six queued long sleeps.
        out = reload(d, conf.replace("threads = 2", "threads = 8"))
        self.assertTrue(out.ok, out.log)
        self.assertEqual((out.routes(), out.pools()), ((0, 0, 0), (0, 1, 0)))
        p = pools(c)["legacy"]
        self.assertEqual((p["threads"], p["live"], p["queue_limit"]), (8, 8, 32), p)
        wait_pool(c, "legacy", lambda p: p["busy"] == 8 and p["queued"] == nshort, "8 busy")

        # 8 -> 1 and queue_limit 32 -> 2: no sleep is cut, none queued is
        # dropped; with 8 + 10 in for room for 1 + 2, new work is busy.
        out = reload(d, conf.replace("threads = 2", "threads = 1")
                     .replace("queue_limit = 32", "queue_limit = 2"))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.pools(), (0, 1, 0))
        p = pools(c)["legacy"]
        self.assertEqual((p["threads"], p["queue_limit"], p["live"], p["busy"], p["queued"]),
                         (1, 2, 8, 8, nshort), p)
        reply = c.call('{"route": "slow", "args": {"ms": 1}, "id": 1}')
        error_of(reply, "busy", id=1)
        self.assertEqual(reply["error"]["message"], "pool legacy is full")
        # The surplus threads retire as their long sleeps end; then the short
        # ones run one at a time, and below the new limit work is taken again.
        wait = 3 * SLOW + (hold + nshort * short) / 1000
        p = wait_pool(c, "legacy", lambda p: p["live"] == 1, "down to 1 live thread", wait)
        self.assertLessEqual(p["busy"], 1, p)
        wait_pool(c, "legacy", lambda p: p["busy"] + p["queued"] < 3, "below its limit", wait)
        self.assertEqual(c.call('slow {"ms": 1}'), {"slept_ms": 1})
        for i in range(nhold):
            self.assertEqual(longs.reply(), {"slept_ms": hold}, "long sleep %d" % i)
        for i in range(nshort):
            self.assertEqual(shorts.reply(), {"slept_ms": short}, "short sleep %d" % i)
        p = wait_pool(c, "legacy", lambda p: p["busy"] == 0, "idle")
        self.assertEqual((p["threads"], p["live"], p["rejected"], p["queued"]), (1, 1, 1, 0), p)
        self.assertEqual(d.stop(), 0)

    def test_remove_pool_with_queued_jobs(self):
        """A removed pool takes no more work but finishes its queue, and
        those requests get their real replies; a pool added again under the
        same name is a new pool, not the one still draining."""
        ms, n = 300 * SCALE, 5
        conf1 = POOLS1.replace("threads = 1\n", "threads = 1\nqueue_limit = 8\n")
        d = Daemon(conf1)
        self.addCleanup(d.close)
        started(d)
        c, held = Client(d), Client(d)
        self.addCleanup(c.close)
        self.addCleanup(held.close)
        held.send(b'fresh {"ms": %d}\n' % ms * n)
        # queue_peak only grows: seen even if the machine is slow to look.
        wait_pool(c, "extra", lambda p: p["busy"] == 1 and p["queue_peak"] == n - 1, "holding")

        out = reload(d, POOLS0)
        self.assertTrue(out.ok, out.log)
        self.assertEqual((out.routes(), out.pools()), ((0, 1, 0), (0, 0, 1)))
        self.assertNotIn("extra", pools(c))
        error_of(c.call('fresh {"ms": 1}'), "not_found")

        # Back under the same name while the old one still works through
        # its queue (n sleeps of ms, one at a time): a fresh, idle pool.
        out = reload(d, POOLS0 + EXTRA.replace("threads = 1", "threads = 2"))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.pools(), (1, 0, 0))
        p = pools(c)["extra"]
        self.assertEqual((p["threads"], p["live"], p["busy"], p["queued"]), (2, 2, 0, 0), p)
        self.assertEqual(c.call('fresh {"ms": 1}'), {"slept_ms": 1})

        for i in range(n):
            self.assertEqual(held.reply(), {"slept_ms": ms}, "sleep %d" % i)
        d.wait_log(lambda log: re.search(r"\] pool extra \(removed\) has finished its queue$",
                                         log, re.M), 3 * SLOW)
        self.assertEqual(d.stop(), 0)

    def test_route_on_removed_pool_fails(self):
        """Removing a pool that a route still names fails the reload at the
        route's line, and nothing changes."""
        d = Daemon(POOLS1)
        self.addCleanup(d.close)
        started(d)
        c = Client(d)
        self.addCleanup(c.close)
        want = {"default": 4, "legacy": 2, "extra": 1}
        self.check_old(c, want)
        text = POOLS1.replace("[pool extra]\nthreads = 1\n", "") + PROBE
        self.assertNotIn("[pool extra]", text)
        out = reload(d, text)
        self.assertFalse(out.ok, out.log)
        self.check_old(c, want)
        self.assertEqual(out.where(), [(d.path, lines_of(text, "pool = extra")[0])], out.log)
        self.assertIn("pool 'extra' is not defined", out.errors[0])

        # The same file again is fine: nothing changed.
        out = reload(d, POOLS1)
        self.assertTrue(out.ok, out.log)
        self.assertEqual((out.routes(), out.pools()), ((0, 0, 0), (0, 0, 0)))
        self.check_old(c, want)
        self.assertEqual(d.stop(), 0)


# ---- 10. no deadlock behind the pool's own replies ----------------------

class Pipelined(unittest.TestCase):
    def test_one_thread_pipelined_streams(self):
        """One thread, one write: records, two sleeps, records. Each reply
        waits behind the one before it while the thread works on the next:
        all of it arrives, in order, through a 64K output buffer."""
        count = 20000 if VALGRIND else 200000
        conf = config("""
            [server]
            request_timeout = 0
            output_buffer = 64K
            [pool one]
            threads = 1
            [route records]
            handler = builtin:records
            pool = one
            [route slow]
            handler = builtin:sleep
            pool = one
        """) + SERVER
        first = records_text(count, 100)
        second = records_text(count // 2, 10)
        with Daemon(conf) as d, Client(d) as c:
            c.send(b'records {"count": %d, "size": 100}\nslow {"ms": 50}\nslow {"ms": 50}\n'
                   b'records {"count": %d, "size": 10}\n' % (count, count // 2))
            got = c.raw(bufsize=1 << 20)
            self.assertEqual(len(got), len(first))
            self.assertTrue(got == first, "the first records reply differs")
            self.assertEqual(c.reply(), {"slept_ms": 50})
            self.assertEqual(c.reply(), {"slept_ms": 50})
            got = c.raw(bufsize=1 << 20)
            self.assertEqual(len(got), len(second))
            self.assertTrue(got == second, "the second records reply differs")
            self.assertEqual(c.call("hello"), HELLO_REPLY)
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
