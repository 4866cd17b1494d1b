"""Request-mode benchmark: prints figures, asserts nothing.

  - requests/s with 1 and with 50 connections, each pipelining batches of
    100 `hello` requests (tests/bench/loadgen): median of 5 runs
  - the daemon's CPU time per request (utime + stime from /proc/PID/stat,
    over each run): median of the same 5 runs
  - long lines: the daemon's CPU time to take one request line of 1, 16 and
    64 MB (a `hello` with a padding arg), per MB: flat when the line is
    scanned once, growing with the length when it is rescanned per read

Run with `make bench` (or python3 tests/bench/requests.py with JSOND and
JSOND_BUILDDIR set). LOADGEN_SECONDS sets the length of a run (default 3).
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import Client, Daemon, config, version  # noqa: E402

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
LOADGEN = os.environ.get("LOADGEN") or os.path.join(BUILDDIR, "tests", "bench", "loadgen")
SECONDS = int(os.environ.get("LOADGEN_SECONDS", "3"))
RUNS = 5
BATCH = 100

CONF = config("""
    [server]
    log_level = notice
    max_request_size = 128M
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
""")


def loadgen(d, conns):
    host, port = d.addrs["main"].rsplit(":", 1)
    cpu0 = d.cpu_seconds()
    out = subprocess.run([LOADGEN, "-c", str(conns), "-b", str(BATCH), "-d", str(SECONDS),
                          host, port], capture_output=True, text=True, timeout=SECONDS + 60)
    cpu1 = d.cpu_seconds()
    if out.returncode != 0:
        raise SystemExit("loadgen failed (%d): %s" % (out.returncode, out.stderr.strip()))
    fields = dict(kv.split("=") for kv in out.stdout.split())
    requests = int(fields["requests"])
    return float(fields["rps"]), (cpu1 - cpu0) / requests


def long_line(d, mb):
    """The daemon's CPU seconds to read, parse and answer one line of `mb` MB."""
    size = mb * 1024 * 1024
    line = b'hello {"pad": "' + b"x" * (size - 17) + b'"}\n'
    with Client(d) as c:
        cpu0 = d.cpu_seconds()
        c.send_in_background(line)
        c.reply()
        return d.cpu_seconds() - cpu0


def main():
    if not os.access(LOADGEN, os.X_OK):
        raise SystemExit("no %s: run `make bench` (it builds it)" % LOADGEN)
    print("jsond:", version())
    print("%d runs of %d s per figure, batches of %d pipelined `hello` requests; median "
          "(min..max)" % (RUNS, SECONDS, BATCH))
    with Daemon(CONF, args=["-l", "notice"]) as d:
        for conns in (1, 50):
            rates, cpus = [], []
            for _ in range(RUNS):
                rps, cpu = loadgen(d, conns)
                rates.append(rps)
                cpus.append(cpu * 1e6)
            print("%2d connection%s: %8.0f requests/s (%.0f..%.0f), daemon CPU %.2f us/request "
                  "(%.2f..%.2f)" % (conns, " " if conns == 1 else "s", statistics.median(rates),
                                    min(rates), max(rates), statistics.median(cpus), min(cpus),
                                    max(cpus)))
        for mb in (1, 16, 64):
            cpus = [long_line(d, mb) for _ in range(3)]
            print("a %2d MB request line: daemon CPU %.3f s (%.3f..%.3f), %.1f ms per MB" %
                  (mb, statistics.median(cpus), min(cpus), max(cpus),
                   statistics.median(cpus) * 1e3 / mb))
        d.stop()


if __name__ == "__main__":
    main()
