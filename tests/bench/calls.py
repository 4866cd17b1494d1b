"""Calls between routes benchmark: prints figures, asserts nothing.

The cost of one jsond_call, measured on the test daemon (tests/testd/jsond)
as the difference between a request whose handler makes one call and the
same request making none:

  inline sync -> sync     `cs {"route":"s"}`  - `cs {}`   (on the worker)
  adapted sync -> async   `cs {"route":"a"}`  - `cs {}`   (worker waits on the loop)
  adapted async -> sync   `ca {"route":"s"}`  - `ca {}`   (loop hands off to a pool)
  async -> async          `ca {"route":"a"}`  - `ca {}`   (on the loop)

each sequential (loadgen -b 1: one round trip at a time, the latency a
call adds) and pipelined (loadgen -b 100: the throughput cost), medians of
RUNS alternate runs without and with the call; wall microseconds per
request and daemon CPU microseconds per request.

Run with `make bench` (or python3 tests/bench/calls.py with JSOND_TESTD
and JSOND_BUILDDIR set). LOADGEN_SECONDS sets the length of a run
(default 3).
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import JSOND_TESTD, Client, Daemon, config, version  # noqa: E402
from pools import LOADGEN, SECONDS, loadgen  # noqa: E402  (the same runs, as pools.py times them)

RUNS = 5

CONF = config("""
    [server]
    log_level = notice
    request_timeout = 0
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route cs]
    handler = builtin:test_call_sync
    [route ca]
    handler = builtin:test_call_async
    [route s]
    handler = builtin:test_call_sync
    [route a]
    handler = builtin:test_call_async
""")

CASES = [
    ("inline sync -> sync", 'cs {"route":"s"}', "cs {}"),
    ("adapted sync -> async", 'cs {"route":"a"}', "cs {}"),
    ("adapted async -> sync", 'ca {"route":"s"}', "ca {}"),
    ("async -> async", 'ca {"route":"a"}', "ca {}"),
]


def measure(d, with_call, without, batch):
    """Median wall and daemon CPU microseconds per request, without and with
    the call, in alternate runs: this machine's speed drifts between runs."""
    figures = {with_call: ([], []), without: ([], [])}
    for _ in range(RUNS):
        for line in (without, with_call):
            rps, cpu = loadgen(d, line, batch)
            figures[line][0].append(1e6 / rps)
            figures[line][1].append(cpu * 1e6)
    return [(statistics.median(figures[line][0]), statistics.median(figures[line][1]))
            for line in (without, with_call)]


def main():
    print("jsond:", version())
    if not os.access(LOADGEN, os.X_OK):
        raise SystemExit("no %s (`make bench` builds it)" % LOADGEN)
    with Daemon(CONF, args=["-l", "notice"], binary=JSOND_TESTD) as d:
        with Client(d) as c:
            for _, with_call, without in CASES:  # each line works, and is what it says
                for line in (with_call, without):
                    reply = c.call(line)
                    if "error" in reply or "error" in reply.get("reply", {}):
                        raise SystemExit("%s: %r" % (line, reply))
        for batch, what in ((1, "sequential round trips"), (100, "pipelined, batches of 100")):
            print("%s, 1 connection, median of %d runs of %d s; one call's cost is the "
                  "difference:" % (what, RUNS, SECONDS))
            for name, with_call, without in CASES:
                (w0, c0), (w1, c1) = measure(d, with_call, without, batch)
                print("    %-22s %7.2f us wall (%7.2f -> %7.2f)   %6.2f us daemon CPU "
                      "(%6.2f -> %6.2f)" % (name, w1 - w0, w0, w1, c1 - c0, c0, c1))
        d.stop()


if __name__ == "__main__":
    main()
