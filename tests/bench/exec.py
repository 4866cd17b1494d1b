"""exec: benchmark: prints figures, asserts nothing.

The overhead of an exec: call, from spawn to reply: `exec:/bin/cat` (the
program echoes its stdin, the args, back as its reply) against
`builtin:echo` (the same reply, no program) with the same args:

  sequential: the median of N round trips, one at a time, on one
              connection, and their difference: what running a program
              adds to a request's latency;
  pipelined:  loadgen -b 100 on one connection for LOADGEN_SECONDS (default
              3), requests per second and daemon CPU per request: what a
              program costs the server when the pool (4 threads) is full.

Run with `make bench` (or python3 tests/bench/exec.py with JSOND and
JSOND_BUILDDIR set).
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import Client, Daemon, config, version  # noqa: E402

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
LOADGEN = os.environ.get("LOADGEN") or os.path.join(BUILDDIR, "tests", "bench", "loadgen")
SECONDS = int(os.environ.get("LOADGEN_SECONDS", "3"))
N = 1000
ARGS = '{"user": "alice", "items": [1, 2, 3], "note": "%s"}' % ("x" * 100)

CONF = config("""
    [server]
    log_level = notice
    request_timeout = 0
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route cat]
    handler = exec:/bin/cat
    [route echo]
    handler = builtin:echo
""")


def sequential(c, route):
    line = ("%s %s" % (route, ARGS)).encode()
    times = []
    for _ in range(N):
        t = time.perf_counter()
        c.call(line)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def pipelined(d, route):
    host, port = d.addrs["main"].rsplit(":", 1)
    cpu0 = d.cpu_seconds()
    out = subprocess.run([LOADGEN, "-c", "1", "-b", "100", "-d", str(SECONDS), "-r",
                          "%s %s" % (route, ARGS), host, port], capture_output=True, text=True,
                         timeout=SECONDS + 60)
    cpu1 = d.cpu_seconds()
    if out.returncode != 0:
        raise SystemExit("loadgen failed (%d): %s" % (out.returncode, out.stderr.strip()))
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return float(fields["rps"]), (cpu1 - cpu0) / int(fields["requests"]) * 1e6


def main():
    print("jsond:", version())
    with Daemon(CONF, args=["-l", "notice"]) as d:
        with Client(d) as c:
            for route in ("cat", "echo"):  # both work, and give the same reply
                if c.call("%s %s" % (route, ARGS)) != c.call("echo " + ARGS):
                    raise SystemExit("%s does not echo its args" % route)
            echo, cat = sequential(c, "echo"), sequential(c, "cat")
        print("sequential round trips, median of %d, args of %d bytes:" % (N, len(ARGS)))
        print("    builtin:echo %8.1f us   exec:/bin/cat %8.1f us   exec overhead %8.1f us"
              % (echo, cat, cat - echo))
        if not os.access(LOADGEN, os.X_OK):
            print("pipelined: no %s (`make bench` builds it)" % LOADGEN)
            return
        print("pipelined, batches of 100, 1 connection, %d s:" % SECONDS)
        for route in ("echo", "cat"):
            rps, cpu = pipelined(d, route)
            print("    %-14s %9.0f requests/s   %8.1f us daemon CPU per request"
                  % ({"echo": "builtin:echo", "cat": "exec:/bin/cat"}[route], rps, cpu))
        d.stop()


if __name__ == "__main__":
    main()
