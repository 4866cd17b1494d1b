"""systemd's notify protocol and watchdog keep-alive, without systemd.

The behaviour contract is issue 13 (Type=notify, WatchdogSec=). The test
plays systemd's part: it binds its own AF_UNIX datagram socket, starts
jsond with NOTIFY_SOCKET naming it, and reads what jsond sends:

  - READY=1, with a STATUS= line, only once every listener is bound
  - STATUS= counts open connections, requests/s and jobs queued
  - SIGHUP: RELOADING=1 (with MONOTONIC_USEC=) then READY=1, for a good
    config and for a broken one (the old config still served)
  - SIGTERM: STOPPING=1, then exit 0
  - WATCHDOG_USEC=200000: WATCHDOG=1 about every 100 ms, none while the
    loop is blocked in the test daemon's builtin:test_block, and again
    once it returns; none at all without WATCHDOG_USEC

Skipped when jsond was built without libsystemd (`jsond -V` does not
mention systemd).
"""
import os
import re
import signal
import socket
import tempfile
import threading
import time

from jsondtest import (HELLO, JSOND_TESTD, LISTEN_RE, SLOW, SRCDIR, Client, Daemon, config,
                       built_with_systemd, main, recv_all, reload, unittest, wait_pool)

CONF = config("""
    [listen plain]
    address = 127.0.0.1:0
    on_connect = hello
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
    [route slow]
    handler = builtin:test_block
""")

NEW_ROUTE = CONF + config("""
    [route stats]
    handler = builtin:stats
""")

BROKEN = CONF + "[route\n"


STATUS_RE = re.compile(r"(?P<open>\d+) connections open, (?P<rate>[\d.]+) requests/s, "
                       r"(?P<queued>\d+) jobs queued; \d+ connections accepted, \d+ refused$")



class Notifications:
    """The test's NOTIFY_SOCKET: a thread reads every datagram into
    self.got, as (monotonic time, message)."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="jsond-notify-")
        self.path = os.path.join(self.dir.name, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.got = []
        self.cond = threading.Condition()
        self.done = False
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        while not self.done:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            with self.cond:
                self.got.append((time.monotonic(), msg))
                self.cond.notify_all()

    def env(self, watchdog_usec=None):
        env = dict(os.environ, NOTIFY_SOCKET=self.path)
        for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        return env

    def messages(self, prefix=None):
        with self.cond:
            return [m for _, m in self.got if prefix is None or m.startswith(prefix)]

    def wait(self, pred, timeout=3 * SLOW):
        """Waits until pred(list of messages) holds; returns the list."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                msgs = [m for _, m in self.got]
                if pred(msgs):
                    return msgs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for notifications: %r" % msgs)
                self.cond.wait(left)

    def wait_count(self, prefix, n, timeout=3 * SLOW):
        return self.wait(lambda ms: sum(m.startswith(prefix) for m in ms) >= n, timeout)

    def times(self, prefix):
        with self.cond:
            return [t for t, m in self.got if m.startswith(prefix)]

    def close(self):
        self.done = True
        self.thread.join()
        self.sock.close()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fields(msg):
    return dict(line.split("=", 1) for line in msg.splitlines())


@unittest.skipUnless(built_with_systemd(), "jsond was built without libsystemd: no notify")
class Notify(unittest.TestCase):
    def start(self, n, watchdog_usec=None):
        return Daemon(CONF, binary=JSOND_TESTD, env=n.env(watchdog_usec))

    def test_ready_after_listeners_bound(self):
        with Notifications() as n:
            with Daemon(CONF, binary=JSOND_TESTD, env=n.env(), wait_listeners=False) as d:
                msgs = n.wait_count("READY=1", 1)
                ready = [m for m in msgs if m.startswith("READY=1")]
                self.assertEqual(len(ready), 1, msgs)
                self.assertIn("STATUS=", ready[0])
                # The listeners were logged before READY=1 was sent, and
                # they answer: a connection made now is served.
                addrs = dict(LISTEN_RE.findall(d.log()))
                self.assertEqual(set(addrs), {"plain", "main"}, d.log())
                d.addrs = addrs
                s = d.connect("plain", timeout=3 * SLOW)
                self.assertEqual(recv_all(s, len(HELLO), timeout=3 * SLOW), HELLO)
                s.close()
                self.assertEqual(d.stop(), 0)
            self.assertEqual(n.messages("WATCHDOG=1"), [])  # none asked for

    def test_reload_good_and_broken(self):
        with Notifications() as n, self.start(n) as d:
            n.wait_count("READY=1", 1)
            self.assertTrue(reload(d, NEW_ROUTE).ok)
            msgs = n.wait_count("READY=1", 2)
            seq = [m.split("\n")[0] for m in msgs if m.startswith(("READY=1", "RELOADING=1"))]
            self.assertEqual(seq, ["READY=1", "RELOADING=1", "READY=1"], msgs)
            reloading = fields(n.messages("RELOADING=1")[0])
            now_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
            self.assertLess(abs(int(reloading["MONOTONIC_USEC"]) - now_us), 3 * SLOW * 1e6)
            with Client(d) as c:
                self.assertIn("connections", c.call("stats"))  # the new route

            self.assertFalse(reload(d, BROKEN).ok)
            msgs = n.wait_count("READY=1", 3)
            seq = [m.split("\n")[0] for m in msgs if m.startswith(("READY=1", "RELOADING=1"))]
            self.assertEqual(seq, ["READY=1", "RELOADING=1", "READY=1"]
                             + ["RELOADING=1", "READY=1"], msgs)
            with Client(d) as c:  # the old config is still in force
                self.assertIn("connections", c.call("stats"))

    def test_status_counts_requests_and_queue(self):
        # One thread busy with a sleeping exec: job, two more waiting.
        progs = os.path.join(SRCDIR, "tests", "integration", "progs")
        conf = CONF + config("""
            [server]
            shutdown_timeout = 100ms
            [pool one]
            threads = 1
            [route nap]
            handler = exec:%s/sleepy.sh %d
            pool = one
            [route stats]
            handler = builtin:stats
        """ % (progs, 30 * SLOW))
        with Notifications() as n, Daemon(conf, binary=JSOND_TESTD, env=n.env()) as d:
            n.wait_count("READY=1", 1)
            with Client(d) as c, Client(d) as watch:
                c.send(b"nap\nnap\nnap\n")
                wait_pool(watch, "one", lambda p: p["busy"] == 1 and p["queued"] == 2,
                          "one busy and two queued")
                self.assertTrue(reload(d).ok)  # READY=1 comes with a fresh STATUS=
                status = fields(n.wait_count("READY=1", 2)[-1])["STATUS"]
                m = STATUS_RE.match(status)
                self.assertTrue(m, status)
                self.assertEqual(int(m.group("open")), 2, status)
                self.assertGreater(float(m.group("rate")), 0, status)
                self.assertEqual(int(m.group("queued")), 2, status)
            self.assertEqual(d.stop(), 0)

    def test_stopping_on_sigterm(self):
        with Notifications() as n, self.start(n) as d:
            n.wait_count("READY=1", 1)
            self.assertEqual(n.messages("STOPPING=1"), [])
            self.assertEqual(d.stop(signal.SIGTERM), 0)
            n.wait_count("STOPPING=1", 1)
            self.assertEqual(len(n.messages("STOPPING=1")), 1)

    def test_watchdog_pings_stop_while_loop_blocked(self):
        interval = 0.1  # WATCHDOG_USEC=200000: a ping every 100 ms
        with Notifications() as n, self.start(n, watchdog_usec=200000) as d:
            n.wait_count("READY=1", 1)
            # Regular: 10 are due in 1 s; at least 5 in 10x that time.
            first = len(n.times("WATCHDOG=1"))
            n.wait_count("WATCHDOG=1", first + 5, timeout=max(1.0, 0.5 * SLOW))
            ts = n.times("WATCHDOG=1")
            self.assertGreaterEqual(min(b - a for a, b in zip(ts, ts[1:])), interval / 3, ts)

            with Client(d, timeout=3 * SLOW + 2) as c:
                t_sent = time.monotonic()
                self.assertEqual(c.call('slow {"ms": 2000, "how": "sleep"}'), {"blocked_ms": 2000})
                t_reply = time.monotonic()
            # Pings resume once the loop is back.
            after = len([t for t in n.times("WATCHDOG=1") if t > t_reply])
            n.wait(lambda ms: len([t for t in n.times("WATCHDOG=1") if t > t_reply]) >= after + 3)
            ts = [t_sent] + [t for t in n.times("WATCHDOG=1") if t_sent < t < t_reply] + [t_reply]
            gap = max(b - a for a, b in zip(ts, ts[1:]))
            # The loop was stuck for 2 s: with max_ms = 100, no ping for at
            # least 1.5 s of it (any ping would cut that gap to 100 ms).
            self.assertGreaterEqual(gap, 1.5, ts)
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
