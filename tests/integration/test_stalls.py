"""The loop's watch: stalls logged, counted and caught by the watchdog.

The behaviour contract is issue 12 ("A loop that watches itself"). The test
daemon's builtin:test_block (tests/testd/handlers.c) blocks the loop on
purpose: {"ms": N, "how": "spin"} busy-waits, "sleep" sleeps in nanosleep.

  - a 200 ms spin (stall_warning 50ms) is logged once with its route and
    counted: stats.stalls and the route's stalls
  - a 3 s sleep gets a watchdog log naming the route, a stack that names
    the handler's C function, and "still stalled" logs while it lasts
  - an idle daemon, for 20 x stall_warning, logs no stall
"""
import re
import time

from jsondtest import JSOND_TESTD, SCALE, SLOW, Client, Daemon, config, main, unittest

STALL_MS = 50 * SCALE  # valgrind runs ordinary callbacks slower too

CONF = config("""
    [server]
    stall_warning = %dms
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route slow]
    handler = builtin:test_block
    [route stats]
    handler = builtin:stats
""" % STALL_MS)

SLOW_RE = re.compile(r"slow callback: ([0-9.]+) ms in (\S+), route (\S+)")


def tsan_build():
    """ThreadSanitizer delivers a signal to a thread only at its next
    intercepted call, so the stack may come late there."""
    with open(JSOND_TESTD, "rb") as f:
        return b"__tsan_init" in f.read()


class Stalls(unittest.TestCase):
    def daemon(self):
        return Daemon(CONF, binary=JSOND_TESTD)

    def test_spin_logged_once_and_counted(self):
        with self.daemon() as d, Client(d) as c:
            spin = 4 * STALL_MS
            self.assertEqual(c.call('slow {"ms": %d, "how": "spin"}' % spin), {"blocked_ms": spin})
            log = d.wait_log(lambda log: SLOW_RE.search(log), 3 * SLOW)
            slow = [m for m in SLOW_RE.finditer(log) if m.group(3) == "slow"]
            self.assertEqual(len(slow), 1, log)
            self.assertGreaterEqual(float(slow[0].group(1)), spin)
            self.assertEqual(slow[0].group(2), "read")
            st = c.call("stats")
            self.assertGreaterEqual(st["stalls"]["count"], 1)
            self.assertGreaterEqual(st["stalls"]["worst_ms"], spin)
            self.assertEqual(st["stalls"]["worst_route"], "slow")
            self.assertEqual(st["requests"]["routes"]["slow"]["stalls"], 1)
            self.assertEqual(st["requests"]["routes"]["stats"]["stalls"], 0)

    def test_watchdog_names_route_and_function(self):
        with self.daemon() as d, Client(d, timeout=3 * SLOW + 3) as c:
            t0 = time.monotonic()
            self.assertEqual(c.call('slow {"ms": 3000, "how": "sleep"}'), {"blocked_ms": 3000})
            self.assertGreaterEqual(time.monotonic() - t0, 3)
            log = d.wait_log(lambda log: SLOW_RE.search(log), 3 * SLOW)
            first = re.findall(r"watchdog: the loop is stalled: (\d+) ms in one callback "
                               r"\(handler, route slow\); its stack:", log)
            self.assertEqual(len(first), 1, log)
            self.assertGreaterEqual(int(first[0]), STALL_MS)  # over it, in whole ms
            still = re.findall(r"watchdog: the loop is still stalled: (\d+) ms "
                               r"\(handler, route slow\)", log)
            self.assertGreaterEqual(len(still), 1, log)
            self.assertTrue(all(int(ms) < 3000 + 3 * SLOW * 1000 for ms in still), still)
            frames = re.findall(r"watchdog:   #\d+ (.*)", log)
            if not tsan_build():
                self.assertTrue(any("jsond_test_block+" in f for f in frames), log)
                self.assertTrue(any("jsond_req_run+" in f for f in frames), log)

    def test_idle_is_not_a_stall(self):
        with self.daemon() as d, Client(d) as c:
            self.assertEqual(c.call("stats")["stalls"]["count"], 0)
            time.sleep(20 * STALL_MS / 1000)
            st = c.call("stats")
            self.assertEqual(st["stalls"], {"count": 0, "worst_ms": 0.0, "worst_route": None})
            self.assertNotIn("stall", d.log().replace("stall_warning", ""))


if __name__ == "__main__":
    main()
