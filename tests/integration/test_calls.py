"""Calls between routes (jsond_call) and the strict and adaptive policies.

The behaviour contract is issue 11 (bridge 2). The test daemon
(tests/testd/jsond) adds test-only builtins (tests/testd/handlers.c):
test_call_sync (sync, the blocking form), test_call_async (async, the
callback form) and test_call_dual (both). Each calls {"route": R, "args":
A} and replies {"reply": R's reply}; without "route" it is a target that
says which half ran and where: {"ran", "route", "context"}.

  - the four caller/target combinations and a dual target, under both
    policies: the result or wrong_color, and the counters (calls per
    target, adapted and refused_wrong_color per caller)
  - a sync route calling itself on a pool of one thread does not deadlock
  - the blocking form on the loop is refused (logged with the caller);
    the callback form off the loop is refused
  - 8 nested calls work, the 9th gets internal
  - a producer or stream target (big, records) gives handler_failed
  - args and fixed_args merge; a listener's routes limit clients only
  - a sync target's busy and timeout reach a loop caller; a call from a
    worker gets the earlier of the two deadlines
"""
import json
import re
import time

from jsondtest import (JSOND_TESTD, SCALE, Client, Daemon, SharedDaemon, config, error_of, main,
                       reset, unittest, wait_counted, wait_pool)

# Clients may call only the callers and stats; every target is reached
# through a handler, which the listener's list does not limit.
CONF = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    routes = cs ca cd scs sca self self2 stats
    [pool one]
    threads = 1
    queue_limit = 8
    [route cs]
    handler = builtin:test_call_sync
    [route ca]
    handler = builtin:test_call_async
    [route cd]
    handler = builtin:test_call_dual
    [route scs]
    handler = builtin:test_call_sync
    policy = strict
    [route sca]
    handler = builtin:test_call_async
    policy = strict
    [route s]
    handler = builtin:test_call_sync
    [route a]
    handler = builtin:test_call_async
    [route d]
    handler = builtin:test_call_dual
    [route self]
    handler = builtin:test_call_sync
    pool = one
    [route self2]
    handler = builtin:test_call_dual
    pool = one
    [route e]
    handler = builtin:echo
    args = {"x": "default", "y": "default"}
    fixed_args = {"f": "fixed"}
    [route big]
    handler = builtin:big
    [route records]
    handler = builtin:records
    [route stats]
    handler = builtin:stats
""")


def line(_route, **args):
    return "%s %s" % (_route, json.dumps(args))


def ran(half, route, context):
    return {"ran": half, "route": route, "context": context}


def nested(route, depth, leaf_args=None):
    """Args that make `route` call itself `depth` times."""
    args = leaf_args or {}
    for _ in range(depth):
        args = {"route": route, "args": args}
    return args


def route_stats(c):
    return c.call("stats")["requests"]["routes"]


def counters(routes, name):
    r = routes.get(name, {})
    return {k: r.get(k, 0) for k in ("calls", "adapted", "refused_wrong_color")}


class Calls(unittest.TestCase):
    """One daemon per test: each checks exact counters from zero."""

    def setUp(self):
        self.d = Daemon(CONF, binary=JSOND_TESTD)
        self.addCleanup(self.stop)
        self.c = Client(self.d)
        self.addCleanup(self.c.close)

    def stop(self):
        try:
            self.assertEqual(self.d.stop(), 0)
        finally:
            self.d.close()

    def call(self, _route, **args):
        return self.c.call(line(_route, **args))

    def test_four_combinations_adaptive(self):
        # sync -> sync: inline, on the caller's own worker
        self.assertEqual(self.call("cs", route="s"), {"reply": ran("sync", "s", "worker")})
        # sync -> async: adapted, the target runs on the loop
        self.assertEqual(self.call("cs", route="a"), {"reply": ran("async", "a", "loop")})
        # async -> async: on the loop
        self.assertEqual(self.call("ca", route="a"), {"reply": ran("async", "a", "loop")})
        # async -> sync: adapted, the target runs on its pool
        self.assertEqual(self.call("ca", route="s"), {"reply": ran("sync", "s", "worker")})
        routes = route_stats(self.c)
        self.assertEqual(counters(routes, "s"), {"calls": 2, "adapted": 0,
                                                 "refused_wrong_color": 0})
        self.assertEqual(counters(routes, "a"), {"calls": 2, "adapted": 0,
                                                 "refused_wrong_color": 0})
        self.assertEqual(counters(routes, "cs"), {"calls": 0, "adapted": 1,
                                                  "refused_wrong_color": 0})
        self.assertEqual(counters(routes, "ca"), {"calls": 0, "adapted": 1,
                                                  "refused_wrong_color": 0})
        # Targets called only by handlers have their bucket, requests 0.
        self.assertEqual(routes["s"]["requests"], 0)

    def test_four_combinations_strict(self):
        self.assertEqual(self.call("scs", route="s"), {"reply": ran("sync", "s", "worker")})
        self.assertEqual(self.call("sca", route="a"), {"reply": ran("async", "a", "loop")})
        r = error_of(self.call("scs", route="a")["reply"], "wrong_color")
        self.assertRegex(r["error"]["message"], r"\bscs\b.*\basync route a\b.*strict")
        r = error_of(self.call("sca", route="s")["reply"], "wrong_color")
        self.assertRegex(r["error"]["message"], r"\bsca\b.*\bsync route s\b.*strict")
        routes = route_stats(self.c)
        self.assertEqual(counters(routes, "scs"), {"calls": 0, "adapted": 0,
                                                   "refused_wrong_color": 1})
        self.assertEqual(counters(routes, "sca"), {"calls": 0, "adapted": 0,
                                                   "refused_wrong_color": 1})
        # Refused calls never reached their targets.
        self.assertEqual(counters(routes, "s")["calls"], 1)
        self.assertEqual(counters(routes, "a")["calls"], 1)
        log = self.d.log()
        self.assertRegex(log, r"\[warning\] route scs: call to a refused: a is async, the caller "
                              r"runs on a worker \(policy strict\)")
        self.assertRegex(log, r"\[warning\] route sca: call to s refused: s is sync, the caller "
                              r"runs on the loop \(policy strict\)")

    def test_dual_target_never_refused(self):
        for caller in ("cs", "scs"):
            self.assertEqual(self.call(caller, route="d"), {"reply": ran("sync", "d", "worker")})
        for caller in ("ca", "sca"):
            self.assertEqual(self.call(caller, route="d"), {"reply": ran("async", "d", "loop")})
        routes = route_stats(self.c)
        self.assertEqual(counters(routes, "d")["calls"], 4)
        for caller in ("cs", "scs", "ca", "sca"):
            self.assertEqual(counters(routes, caller), {"calls": 0, "adapted": 0,
                                                        "refused_wrong_color": 0}, caller)

    def test_dual_caller_context_picks_the_half(self):
        # A client's request runs where its route says: cd has no pool (its
        # async half, on the loop); self2 names one (its sync half).
        self.assertEqual(self.call("cd", route="s"), {"reply": ran("sync", "s", "worker")})
        self.assertEqual(self.call("self2", route="a"), {"reply": ran("async", "a", "loop")})
        routes = route_stats(self.c)
        self.assertEqual(counters(routes, "cd")["adapted"], 1)  # loop -> sync
        self.assertEqual(counters(routes, "self2")["adapted"], 1)  # worker -> async

    def test_routes_show_policy(self):
        with Daemon(CONF.replace("[listen main]", "[route routes]\nhandler = builtin:routes\n"
                                 "[listen main]").replace("self2 stats", "self2 stats routes"),
                    binary=JSOND_TESTD) as d, Client(d) as c:
            policies = {r["name"]: r["policy"] for r in c.call("routes")["routes"]}
            self.assertEqual(d.stop(), 0)
        self.assertEqual((policies["scs"], policies["sca"], policies["cs"]),
                         ("strict", "strict", "adaptive"))

    def test_client_requests_ignore_policy(self):
        # Policies govern calls only: a strict sync route is a sync request.
        self.assertEqual(self.call("scs"), ran("sync", "scs", "worker"))
        self.assertEqual(self.call("sca"), ran("async", "sca", "loop"))

    def test_self_call_on_one_thread_pool(self):
        # Each level runs inline on the pool's only thread: a hand-off to
        # the pool would wait for itself forever.
        reply = self.call("self", **nested("self", 5))
        for _ in range(5):
            reply = reply["reply"]
        self.assertEqual(reply, ran("sync", "self", "worker"))
        # Several at once queue on the one thread, each finishing in turn.
        for _ in range(4):
            self.c.send(line("self", **nested("self", 3)).encode() + b"\n")
        for _ in range(4):
            self.assertIn("reply", self.c.reply())
        self.assertEqual(counters(route_stats(self.c), "self")["calls"], 5 + 4 * 3)

    def test_blocking_form_on_the_loop_refused(self):
        for caller in ("ca", "sca"):
            r = self.call(caller, route="a", form="blocking")
            error_of(r["reply"], "wrong_color")
            self.assertIn("blocking form on the loop thread", r["reply"]["error"]["message"])
            self.assertRegex(self.d.log(), r"\[error\] route %s: blocking call to a on the loop "
                                           r"thread refused" % caller)
        self.assertEqual(counters(route_stats(self.c), "a")["calls"], 0)

    def test_callback_form_off_the_loop_refused(self):
        self.assertEqual(self.call("cs", route="a", form="callback"), {"call_async": -1})
        self.assertRegex(self.d.log(), r"\[error\] route cs: jsond_call_async to a off the loop "
                                       r"thread refused")

    def test_depth(self):
        for caller in ("cs", "ca"):
            reply = self.call(caller, **nested(caller, 8))
            for _ in range(8):
                reply = reply["reply"]
            self.assertEqual(reply["route"], caller)
            reply = self.call(caller, **nested(caller, 9))
            for _ in range(8):
                reply = reply["reply"]
            error_of(reply["reply"], "internal")
            self.assertIn("deeper than 8", reply["reply"]["error"]["message"])

    def test_producer_targets_fail(self):
        for caller in ("cs", "ca"):
            for target, args in (("big", {"size": 100000}), ("records", {"count": 10})):
                r = self.call(caller, route=target, args=args)
                error_of(r["reply"], "handler_failed")
                self.assertEqual(r["reply"]["error"]["message"],
                                 "route %s streams; cannot be returned" % target)
        # The daemon is intact: a plain call still works.
        self.assertEqual(self.call("ca", route="a"), {"reply": ran("async", "a", "loop")})

    def test_args_merge(self):
        for caller in ("cs", "ca"):
            r = self.call(caller, route="e", args={"x": "given", "f": "mine"})
            self.assertEqual(r, {"reply": {"x": "given", "y": "default", "f": "fixed"}})

    def test_listener_routes_limit_clients_only(self):
        error_of(self.call("s"), "not_found")
        self.assertEqual(self.call("ca", route="s"), {"reply": ran("sync", "s", "worker")})
        error_of(self.call("ca", route="nope")["reply"], "not_found")
        error_of(self.call("cs", route="nope")["reply"], "not_found")


# ---- busy and timeouts reach the caller -----------------------------------

MS = 100 * SCALE
DEADLINES = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [pool tiny]
    threads = 1
    queue_limit = 0
    [route ca]
    handler = builtin:test_call_async
    [route cs]
    handler = builtin:test_call_sync
    [route cs_short]
    handler = builtin:test_call_sync
    timeout = %(short)dms
    [route hold]
    handler = builtin:sleep
    pool = tiny
    [route on_tiny]
    handler = builtin:test_call_sync
    pool = tiny
    [route slow_pool]
    handler = builtin:sleep
    timeout = %(short)dms
    [route slow_inline]
    handler = builtin:test_call_sync
    timeout = %(short)dms
    [route loop_sleep]
    handler = builtin:sleep
    [route ca_short]
    handler = builtin:test_call_async
    timeout = %(short)dms
    [route stats]
    handler = builtin:stats
""" % {"short": MS})


class Deadlines(SharedDaemon):
    conf = DEADLINES
    binary = JSOND_TESTD

    def test_busy_reaches_a_loop_caller(self):
        with self.client() as holder, self.client() as c:
            holder.send(b'hold {"ms": %d}\n' % (30 * MS))
            wait_pool(c, "tiny", lambda p: p["busy"] == 1, "busy")
            r = c.call(line("ca", route="on_tiny"))
            error_of(r["reply"], "busy")
            self.assertIn("pool tiny is full", r["reply"]["error"]["message"])
            self.assertEqual(holder.reply(), {"slept_ms": 30 * MS})

    def test_timeout_reaches_a_loop_caller(self):
        # slow_pool is dual without a pool, so from the loop its async half
        # runs: a timer past the route's deadline.
        with self.client() as c:
            r = c.call(line("ca", route="slow_pool", args={"ms": 20 * MS}))
            error_of(r["reply"], "timeout")
            self.assertEqual(r["reply"]["error"]["message"], "no reply within %d ms" % MS)

    def test_inline_call_gets_the_targets_deadline(self):
        # From a worker, slow_pool's sync half runs inline: it sleeps past
        # the route's deadline, and the late reply becomes timeout.
        with self.client() as c:
            r = c.call(line("cs", route="slow_pool", args={"ms": 3 * MS}))
            error_of(r["reply"], "timeout")

    def test_worker_call_gets_the_callers_deadline(self):
        # cs_short (deadline MS) calls the async caller `ca`, adapted onto
        # the loop, which calls a 30 x MS timer. The call's deadline is the
        # earlier one, the caller's: the worker is free after about MS, not
        # after the 30 x MS timer, and nothing is left running.
        with self.client() as c:
            t0 = time.monotonic()
            r = c.call(line("cs_short", route="ca",
                            args={"route": "loop_sleep", "args": {"ms": 30 * MS}}))
            error_of(r, "timeout")
            wait_pool(c, "default", lambda p: p["busy"] == 0, "idle", timeout=15 * MS / 1000)
            self.assertLess(time.monotonic() - t0, 15 * MS / 1000)

    def test_cancelled_caller_cancels_its_calls(self):
        # ca_short's deadline ends its call to a long timer on the loop at
        # once: its callback hears it (the test handler logs what it heard).
        heard = ('test: route %s heard {"error":{"code":"timeout","message":'
                 '"route loop_sleep: its caller was cancelled"}}')
        with self.client() as c:
            error_of(c.call(line("ca_short", route="loop_sleep", args={"ms": 30 * MS})),
                     "timeout")
            self.d.wait_log(lambda log: heard % "ca_short" in log, 10 * MS / 1000)
        # A client that goes away (a reset: after a plain end-of-stream its
        # requests still run to their deadlines) cancels its request, and
        # the call with it.
        with self.client() as c, self.client() as watcher:
            c.send(line("ca", route="loop_sleep", args={"ms": 30 * MS}).encode() + b"\n")
            wait_counted(watcher, "ca")
            reset(c.sock)
        self.d.wait_log(lambda log: heard % "ca" in log, 10 * MS / 1000)


if __name__ == "__main__":
    main()
