"""Push benchmarks: prints figures, asserts nothing.

  - time to push a 10 MB reply over loopback to a fast reader (min/median/max of 5)
  - hello connections per second, one client at a time (median of 5 rounds of 1,000)
  - syscalls per push connection: strace -c -f over 1,000 hello connections

Run with `make bench` (or python3 tests/bench/push.py with JSOND set).
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import Daemon, config, figures, recv_all, version  # noqa: E402

CONF = config("""
    [server]
    log_level = warning
    [listen hello]
    address = 127.0.0.1:0
    on_connect = hello
    [listen big]
    address = 127.0.0.1:0
    on_connect = big
    [route hello]
    handler = builtin:hello
    [route big]
    handler = builtin:big
    args = {"size": 10000000}
""")


def push_10mb(d):
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        with d.connect("big") as s:
            n = len(recv_all(s))
        times.append((time.perf_counter() - t0) * 1000)
        assert n == 10000000 + 32, n  # the object around the x's, and the newline
    print("10 MB push to a fast reader (ms):     ", figures(times, 2))


def hello_rate(d):
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(1000):
            with d.connect("hello") as s:
                recv_all(s)
        rates.append(1000 / (time.perf_counter() - t0))
    print("hello connections/s, one at a time:   ", figures(rates, 2))


def syscalls_per_connection():
    # strace attaches to the running daemon just for the connections, so
    # start-up and shutdown are not in the count.
    n = 1000
    with Daemon(CONF, args=["-l", "notice"]) as d:
        out = os.path.join(d.dir.name, "strace.txt")
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(d.proc.pid)],
                                  stderr=subprocess.PIPE, text=True)
        tracer.stderr.readline()  # "strace: Process N attached": tracing from here
        for _ in range(n):
            with d.connect("hello") as s:
                recv_all(s)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        d.stop()
        with open(out) as f:
            text = f.read()
    calls = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit():
            calls[f[-1]] = int(f[3])
    print("syscalls per push connection:          %.2f" % (calls.pop("total") / n))
    print("   ", ", ".join("%s %.2f" % (k, c / n) for k, c in
                           sorted(calls.items(), key=lambda kv: -kv[1]) if c / n >= 0.01))


def main():
    print("jsond:", version())
    with Daemon(CONF, args=["-l", "notice"]) as d:
        push_10mb(d)
        hello_rate(d)
        d.stop()
    syscalls_per_connection()


if __name__ == "__main__":
    main()
