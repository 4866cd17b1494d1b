"""Thread pool benchmark: prints figures, asserts nothing.

  (a) hello latency, p50 and p99 of 5,000 sequential round trips, on an idle
      daemon and with pool legacy saturated by sleeping sync handlers (4
      threads asleep, 16 jobs queued)
  (b) records throughput to a fast reader: 2,000,000 items of size 64
      (min/median/max of 3, in MB/s); and the daemon's peak RSS (VmHWM)
      before and after streaming 10,000,000 items of size 0 to a fast
      reader, on a fresh daemon
  (c) the cost of one pool round trip: sync `sleep {"ms": 0}` on a pool,
      async `sleep {"ms": 0}` on the loop, and `hello`, each as sequential
      round trips on one connection (loadgen -b 1) and pipelined in batches
      of 100 (loadgen -b 100): requests/s, microseconds per request (wall
      and daemon CPU), median of 5 runs, and the ratios to the loop
  (d) a live resize from 8 threads to 1 under load: from SIGHUP to `live`
      1 in stats, with pool legacy saturated by short sleeps (2 connections
      keeping 128 each in flight), for sleeps of 1 and 10 ms; min/median/max
      of 7 resizes (each after a resize back to 8 that has settled)

Run with `make bench` (or python3 tests/bench/pools.py with JSOND and
JSOND_BUILDDIR set; (c) needs tests/bench/loadgen, which `make bench`
builds). LOADGEN_SECONDS sets the length of a loadgen run (default 3).
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import (OUTCOME_RE, Client, Daemon, Outcome, config, figures,  # noqa: E402
                       reload, started, version, write_conf)

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
LOADGEN = os.environ.get("LOADGEN") or os.path.join(BUILDDIR, "tests", "bench", "loadgen")
SECONDS = int(os.environ.get("LOADGEN_SECONDS", "3"))
RUNS = 5
MB = 1024 * 1024

CONF = config("""
    [server]
    log_level = notice
    request_timeout = 0
    shutdown_timeout = 1s
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [pool legacy]
    threads = 4
    queue_limit = 256
    [route hello]
    handler = builtin:hello
    [route stats]
    handler = builtin:stats
    [route slow]
    handler = builtin:sleep
    pool = legacy
    [route psleep]
    handler = builtin:sleep
    pool = legacy
    [route lsleep]
    handler = builtin:sleep
    [route records]
    handler = builtin:records
""")


def pools(c):
    return c.call("stats")["pools"]


def hello_latency(c, n=5000):
    """p50 and p99 of n sequential hello round trips, in ms."""
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.call("hello")
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[n // 2 - 1] * 1e3, lat[int(n * 0.99) - 1] * 1e3, lat[-1] * 1e3


def saturated_latency():
    with Daemon(CONF, args=["-l", "notice"]) as d, Client(d) as c:
        p50, p99, worst = hello_latency(c)
        print("(a) hello, pool idle:                p50 %.3f ms  p99 %.3f ms  max %.3f ms"
              % (p50, p99, worst))
        # Sleeps far longer than the measurement; shutdown_timeout abandons
        # them at the end.
        slow = Client(d)
        slow.send(b'slow {"ms": 600000}\n' * 20)
        deadline = time.monotonic() + 30
        while True:
            p = pools(c)["legacy"]
            if p["busy"] == 4 and p["queued"] == 16:
                break
            if time.monotonic() > deadline:
                raise SystemExit("pool legacy never saturated: %r" % p)
            time.sleep(0.01)
        p50, p99, worst = hello_latency(c)
        p = pools(c)["legacy"]
        print("(a) hello, pool legacy saturated:    p50 %.3f ms  p99 %.3f ms  max %.3f ms  "
              "(%d busy, %d queued)" % (p50, p99, worst, p["busy"], p["queued"]))
        slow.close()
        d.stop()


def read_records(d, count, size):
    """Streams `records` to a fast reader; returns (bytes, seconds)."""
    with d.connect("main") as s:
        t0 = time.perf_counter()
        s.sendall(b'records {"count": %d, "size": %d}\n' % (count, size))
        total, buf = 0, bytearray(MB)
        while True:
            n = s.recv_into(buf)
            if n == 0:
                raise SystemExit("closed after %d bytes" % total)
            total += n
            if buf[n - 1] == 10:  # the reply's newline: compact JSON has no other
                return total, time.perf_counter() - t0


def records_figures():
    with Daemon(CONF, args=["-l", "notice"]) as d:
        rates = []
        for _ in range(3):
            n, took = read_records(d, 2000000, 64)
            rates.append(n / MB / took)
        print("(b) records 2,000,000 x 64 (%.0f MB) to a fast reader (MB/s): %s"
              % (n / MB, figures(rates, 1)))
        d.stop()
    with Daemon(CONF, args=["-l", "notice"]) as d:
        hwm0 = d.status("VmHWM")
        n, took = read_records(d, 10000000, 0)
        hwm = d.status("VmHWM")
        print("(b) records 10,000,000 x 0 (%.0f MB in %.1f s, %.0f MB/s): daemon VmHWM %.1f MB "
              "before, %.1f MB after" % (n / MB, took, n / MB / took, hwm0 / 1024, hwm / 1024))
        d.stop()


def loadgen(d, line, batch):
    host, port = d.addrs["main"].rsplit(":", 1)
    cpu0 = d.cpu_seconds()
    out = subprocess.run([LOADGEN, "-c", "1", "-b", str(batch), "-d", str(SECONDS), "-r", line,
                          host, port], capture_output=True, text=True, timeout=SECONDS + 60)
    cpu1 = d.cpu_seconds()
    if out.returncode != 0:
        raise SystemExit("loadgen failed (%d): %s" % (out.returncode, out.stderr.strip()))
    fields = dict(kv.split("=") for kv in out.stdout.split())
    return float(fields["rps"]), (cpu1 - cpu0) / int(fields["requests"])


def round_trips():
    if not os.access(LOADGEN, os.X_OK):
        print("(c) skipped: no %s (`make bench` builds it)" % LOADGEN)
        return
    cases = [("pool", 'psleep {"ms":0}'), ("loop", 'lsleep {"ms":0}'), ("hello", "hello")]
    with Daemon(CONF, args=["-l", "notice"]) as d:
        with Client(d) as c:
            for name, line in cases:  # each line works, and is what it says
                reply = c.call(line)
                if "error" in reply:
                    raise SystemExit("%s: %r" % (line, reply))
        for batch, what in ((1, "sequential round trips"), (100, "pipelined, batches of 100")):
            print("(c) %s, 1 connection, median of %d runs of %d s:" % (what, RUNS, SECONDS))
            per = {}
            for name, line in cases:
                rates, cpus = [], []
                for _ in range(RUNS):
                    rps, cpu = loadgen(d, line, batch)
                    rates.append(rps)
                    cpus.append(cpu * 1e6)
                rps = statistics.median(rates)
                per[name] = (1e6 / rps, statistics.median(cpus))
                print("    %-6s %-18s %9.0f requests/s (%.0f..%.0f)  %7.2f us/request  "
                      "daemon CPU %6.2f us/request" % (name, line, rps, min(rates), max(rates),
                                                       per[name][0], per[name][1]))
            print("    pool / loop: %.2fx wall, %.2fx daemon CPU;  pool / hello: %.2fx wall, "
                  "%.2fx daemon CPU" % (per["pool"][0] / per["loop"][0],
                                        per["pool"][1] / per["loop"][1],
                                        per["pool"][0] / per["hello"][0],
                                        per["pool"][1] / per["hello"][1]))
        with Client(d) as c:
            p = pools(c)["legacy"]
        if p["rejected"]:
            print("    (pool legacy rejected %d requests: the figures include busy replies)"
                  % p["rejected"])
        d.stop()


def resize_conf(threads):
    return CONF.replace("threads = 4", "threads = %d" % threads)


class Flood:
    """One connection that keeps `psleep {"ms": ms}` requests in flight (up
    to max_pipeline): a thread writes them without end, another reads and
    drops the replies, until stop()."""

    def __init__(self, d, ms):
        self.sock = d.connect("main")
        self.line = b'psleep {"ms":%d}\n' % ms
        self.done = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.write, self.read)]
        for t in self.threads:
            t.start()

    def write(self):
        chunk = self.line * 64
        try:
            while not self.done.is_set():
                self.sock.sendall(chunk)
        except OSError:
            pass

    def read(self):
        try:
            while not self.done.is_set() and self.sock.recv(1 << 16):
                pass
        except OSError:
            pass

    def stop(self):
        self.done.set()
        self.sock.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(10)
        self.sock.close()


def wait_legacy(c, pred, what, timeout=30):
    """Polls stats as fast as it answers; returns (pool, when)."""
    deadline = time.monotonic() + timeout
    while True:
        p = pools(c)["legacy"]
        now = time.monotonic()
        if pred(p):
            return p, now
        if now > deadline:
            raise SystemExit("pool legacy never %s: %r" % (what, p))


def resize_settle():
    for ms in (1, 10):
        with Daemon(resize_conf(8), args=["-l", "notice"]) as d, Client(d) as c:
            started(d)
            floods = [Flood(d, ms) for _ in range(2)]
            settle, backlog = [], []
            for _ in range(7):
                wait_legacy(c, lambda p: p["live"] == 8 and p["busy"] == 8 and p["queued"] > 0,
                            "saturated on 8 threads")
                # Stats are polled from the signal on: reload() would wait
                # for the log line first.
                write_conf(d, resize_conf(1))
                pos = os.path.getsize(d.logpath)
                t0 = time.monotonic()
                d.send_signal(signal.SIGHUP)
                p, t1 = wait_legacy(c, lambda p: p["live"] == 1, "settled on 1 thread")
                settle.append((t1 - t0) * 1e3)
                backlog.append(p["queued"])
                with open(d.logpath, "rb") as f:
                    f.seek(pos)
                    seg = f.read().decode("utf-8", "replace")
                if not OUTCOME_RE.search(seg) or Outcome(seg).pools() != (0, 1, 0):
                    raise SystemExit("resize to 1 failed: %s" % seg)
                if reload(d, resize_conf(8)).pools() != (0, 1, 0):
                    raise SystemExit("resize to 8 failed")
            for f in floods:
                f.stop()
            print("(d) resize 8 -> 1 threads under load (sleeps of %2d ms, %d..%d queued at the "
                  "end): SIGHUP to live == 1 in ms: %s" % (ms, min(backlog), max(backlog),
                                                          figures(settle, 2)))
            d.stop()


def main():
    print("jsond:", version())
    saturated_latency()
    records_figures()
    round_trips()
    resize_settle()


if __name__ == "__main__":
    if sys.argv[1:] == ["resize"]:
        resize_settle()
    else:
        main()
