"""jsond against its peers, side by side in one run: prints one table of ratios.

Every row is a ratio measured in the same run against a peer doing the same
work for the same client (tests/bench/loadgen, C and libevent): these shared
2-core machines swing 2x between runs, so only figures taken back to back
compare. The peers, each started here on loopback with a private config and
data directory, one worker, and always stopped:

  - redis-server (Debian's, 7.0) answering inline `PING` with `+PONG`
  - nginx (Debian's, with libnginx-mod-stream): a stream server whose
    `return` sends the hello line and closes
  - tests/bench/lineserver: one libevent loop answering every line with the
    hello line, parsing nothing (one loop's ceiling)
  - tests/bench/bareserver: accept, write, close (three system calls)
  - tests/bench/rawsend: blocking write()s of the same bytes as a `big` reply

Rows (jsond's figure, the peer's, the ratio, and the target ratio of the
performance issue): pipelined `hello` in batches of 100 on 50 and on 1
connections; JSON-RPC `echo` with small params on 50 connections; push
`hello` (connect, read to the end, close; 50 clients): server CPU per
connection, and system calls per connection (`strace -c -f` over a fixed
number of connections, one at a time); a 1 GB `big` reply to a fast reader
(MB/s); the serializer on its two documents (tests/bench/encode, when it is
built); a 64 MB request line; `records` streamed to a fast reader; `hello`
latency one at a time while a pool is saturated with sleeping sync
handlers. Each row also gives each server's peak RSS (VmHWM, reset before
the row through /proc/PID/clear_refs where allowed). Server CPU is utime +
stime of /proc/PID/stat over the run (loadgen -S): on 2 cores the client
saturates first at push, so connections per second alone cannot tell the
servers apart.

A peer that is not installed makes its rows say "not installed"; a peer
that fails makes them say "failed" (and the reason goes to stderr). Only a
failure of jsond or of our own programs makes the exit status non-zero: the
figures never do.

    python3 tests/bench/peers.py [--smoke] [--out DIR]

JSOND, JSOND_SRCDIR and JSOND_BUILDDIR as `make bench` sets them. A full run
(5 alternating runs of 2 s per figure, medians) takes about 2 minutes and
writes DIR/bench.md (the table and the machine) and, with gnuplot, the
chart DIR/bench.png (default DIR: docs/ in the source tree). --smoke, or
BENCH_QUICK=1, runs every row once, short and small (well under a minute),
and writes its files only where --out says: CI runs it so that it cannot
rot.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import JSOND, Client, Daemon, config, version  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("JSOND_SRCDIR") or os.path.join(HERE, "..", "..")
BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(HERE, "..", "..")
BENCH = os.path.join(BUILDDIR, "tests", "bench")
LOADGEN = os.environ.get("LOADGEN") or os.path.join(BENCH, "loadgen")
NGINX_STREAM = ["/usr/lib/nginx/modules/ngx_stream_module.so"]

HELLO = '{"msg":"Hello World","data":"x"}\n'
RPC_ECHO = '{"jsonrpc":"2.0","method":"echo","params":{"a":1,"b":"xy"},"id":1}'
BATCH = 100
CONNS = 50

CONF = config("""
    [server]
    log_level = notice
    max_request_size = 128M
    request_timeout = 0
    shutdown_timeout = 1s
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen push]
    address = 127.0.0.1:0
    on_connect = hello
    [pool legacy]
    threads = 4
    queue_limit = 256
    [route hello]
    handler = builtin:hello
    [route echo]
    handler = builtin:echo
    [route big]
    handler = builtin:big
    [route records]
    handler = builtin:records
    [route stats]
    handler = builtin:stats
    [route slow]
    handler = builtin:sleep
    pool = legacy
""")


class Failed(Exception):
    """A row's figure could not be taken; `ours` when jsond or one of our
    programs failed (the exit status says so), not a peer."""

    def __init__(self, msg, ours):
        super().__init__(msg)
        self.ours = ours


# ---- the servers --------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("exited (%s) before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("not listening on %d after %ds" % (port, timeout))


def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Server:
    """One server process: `pid` is the one doing the work (nginx's worker),
    `port` where loadgen goes. `missing` says why it is not there."""
    name = "?"
    ours = False

    def __init__(self):
        self.proc = None
        self.pid = None
        self.port = None
        self.missing = None
        self.failed = None
        self.dir = tempfile.TemporaryDirectory(prefix="jsond-peers-")

    def start(self):
        try:
            self._start()
        except Exception as e:  # a server that cannot start fails its rows
            self.failed = "%s" % e
            sys.stderr.write("peers: %s did not start: %s\n" % (self.name, e))
            self.stop()
            if self.ours:
                raise
        return self

    def usable(self):
        if self.missing:
            raise Failed("not installed", False)
        if self.failed or not self.proc or self.proc.poll() is not None:
            raise Failed("failed", self.ours)

    def reset_peak(self):
        """Resets VmHWM (Linux 4.0+, needs the right to write there)."""
        try:
            with open("/proc/%d/clear_refs" % self.pid, "w") as f:
                f.write("5")
        except (OSError, TypeError):
            pass

    def peak_mb(self):
        kb = status_kb(self.pid, "VmHWM") if self.pid else None
        return None if kb is None else kb / 1024

    def cpu(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


class Ours(Server):
    """lineserver, bareserver, rawsend: they print `port=N` first."""
    ours = True

    def __init__(self, prog, args=()):
        super().__init__()
        self.name = prog
        self.cmd = [os.path.join(BENCH, prog)] + list(args)

    def _start(self):
        if not os.access(self.cmd[0], os.X_OK):
            raise RuntimeError("no %s: run `make bench`, which builds it" % self.cmd[0])
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"port=(\d+)", line)
        if not m:
            raise RuntimeError("printed %r, not its port" % line)
        self.port = int(m.group(1))
        self.pid = self.proc.pid


class Jsond(Server):
    name = "jsond"
    ours = True

    def _start(self):
        self.d = Daemon(CONF, args=["-l", "notice"], wrapper=[])
        self.proc = self.d.proc
        self.pid = self.proc.pid
        self.port = int(self.d.addrs["main"].rsplit(":", 1)[1])
        self.push_port = int(self.d.addrs["push"].rsplit(":", 1)[1])

    def stop(self):
        if getattr(self, "d", None):
            try:
                self.d.stop()
            finally:
                self.d.close()
        self.dir.cleanup()


class Redis(Server):
    name = "redis"

    def _start(self):
        exe = shutil.which("redis-server")
        if not exe:
            self.missing = "redis-server"
            return
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir.name,
             "--logfile", os.path.join(self.dir.name, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=self.dir.name)
        self.pid = self.proc.pid
        wait_port(self.port, self.proc)


class Nginx(Server):
    """nginx with one worker; its worker's pid is the one measured."""
    name = "nginx"

    def _start(self):
        exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                        else None)
        module = next((m for m in NGINX_STREAM if os.path.exists(m)), None)
        if not exe or not module:
            self.missing = "nginx" if not exe else "libnginx-mod-stream"
            return
        self.port = free_port()
        d = self.dir.name
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("load_module %s;\nworker_processes 1;\ndaemon off;\npid %s/nginx.pid;\n"
                    "error_log %s/error.log;\nevents { worker_connections 4096; }\n"
                    "stream { server { listen 127.0.0.1:%d; return '%s\\n'; } }\n"
                    % (module, d, d, self.port, HELLO.strip()))
        self.proc = subprocess.Popen([exe, "-p", d, "-e", os.path.join(d, "error.log"), "-c", conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        children = "/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)
        deadline = time.monotonic() + 10
        while not self.pid:
            with open(children) as f:
                kids = f.read().split()
            if kids:
                self.pid = int(kids[0])
            elif time.monotonic() > deadline:
                raise RuntimeError("no worker process")
            else:
                time.sleep(0.02)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: the worker goes first
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.dir.cleanup()


# ---- the client -----------------------------------------------------------

def loadgen(server, args, port=None, timeout=120):
    """Runs loadgen against `server` (-S its pid); returns its fields."""
    server.usable()
    cmd = [LOADGEN] + list(args) + ["-S", str(server.pid), "127.0.0.1",
                                    str(port or server.port)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0 or server.proc.poll() is not None:
        sys.stderr.write("peers: %s failed against %s (%d): %s\n"
                         % (" ".join(cmd), server.name, out.returncode, out.stderr.strip()))
        raise Failed("failed", server.ours)
    return {k: float(v) for k, v in (kv.split("=") for kv in out.stdout.split())}


def medians(runs, servers, fn):
    """Runs fn(server) `runs` times for each server, alternating; returns
    {server: {field: median}} or {server: Failed}."""
    got = {s: [] for s in servers}
    for _ in range(runs):
        for s in servers:
            if isinstance(got[s], Failed):
                continue
            try:
                got[s].append(fn(s))
            except Failed as e:
                got[s] = e
    out = {}
    for s, vals in got.items():
        out[s] = vals if isinstance(vals, Failed) else {
            k: statistics.median(v[k] for v in vals) for k in vals[0]}
    return out


def syscalls(server, port, n):
    """System calls per connection: strace -c -f attached to the server
    for n push connections made one at a time. Returns the total per
    connection, the calls by name, and the calls every connection makes
    (each name's count per connection, rounded: a thread's periodic tick,
    such as the watchdog's futex wait, rounds to none)."""
    server.usable()
    if not shutil.which("strace"):
        raise Failed("no strace", False)
    out = os.path.join(server.dir.name, "strace.txt")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(server.pid)],
                              stderr=subprocess.PIPE, text=True)
    try:
        line = tracer.stderr.readline()  # "strace: Process N attached": tracing from here
        if "attached" not in line:
            sys.stderr.write("peers: strace: %s\n" % line.strip())
            raise Failed("strace failed", False)
        cmd = [LOADGEN, "-P", "-c", "1", "-n", str(n), "127.0.0.1", str(port)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            sys.stderr.write("peers: %s: %s\n" % (" ".join(cmd), r.stderr.strip()))
            raise Failed("failed", server.ours)
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    calls = {}
    with open(out) as f:
        for line in f:
            f = line.split()
            if len(f) >= 5 and f[0][0].isdigit():
                calls[f[-1]] = int(f[3])
    total = calls.pop("total", 0) / n
    detail = ", ".join("%s %.2g" % (k, c / n) for k, c in
                       sorted(calls.items(), key=lambda kv: -kv[1]) if c / n >= 0.01)
    return total, detail, sum(round(c / n) for c in calls.values())


# ---- the table ------------------------------------------------------------

def num(x, digits=0):
    if x >= 100 or digits == 0:
        return "{:,.0f}".format(x)
    return "%.*f" % (digits, x)


class Row:
    """One line of the table. `better` is "higher" or "lower": the way the
    ratio (jsond / peer) should go; `target` the ratio the issue asks for."""

    def __init__(self, work, peer, better="higher", target=None, chart=None):
        self.work, self.peer, self.better, self.target = work, peer, better, target
        self.jsond_fig = self.peer_fig = "-"
        self.ratio = None
        self.note = ""
        self.rss = ""
        self.chart = chart  # the chart's short label, when charted

    def cells(self):
        ratio = "-" if self.ratio is None else "%.2fx" % self.ratio
        if self.target is None:
            target = "-"
        else:
            target = "%s %.2gx" % (">=" if self.better == "higher" else "<=", self.target)
            if self.ratio is not None:
                met = (self.ratio >= self.target if self.better == "higher"
                       else self.ratio <= self.target)
                target += " (met)" if met else " (not met)"
        return [self.work, self.jsond_fig, self.peer + ": " + self.peer_fig if self.peer else
                self.peer_fig, ratio, target, "; ".join(x for x in (self.rss, self.note) if x)]


PEAKS = {}  # server: the highest VmHWM of its rows, in MB


def rss(servers):
    parts = []
    for s in servers:
        mb = s.peak_mb() if s.pid and not s.missing and not s.failed else None
        if mb is not None:
            parts.append("%s %.1f" % (s.name, mb))
            PEAKS[s] = max(mb, PEAKS.get(s, 0))
    return " / ".join(parts) + (" MB" if parts else "")


def reset_peaks(servers):
    for s in servers:
        if s.pid and not s.missing:
            s.reset_peak()


def fig(res, fmt):
    """A figure cell from medians()'s result, or why there is none."""
    if isinstance(res, Failed):
        return str(res)
    return fmt(res)


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def out(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout + r.stderr).strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    redis = re.search(r"v=(\S+)", out(["redis-server", "--version"]))
    nginx = re.search(r"nginx/(\S+)", out(["nginx", "-v"]))
    libevent = out(["pkg-config", "--modversion", "libevent"]) or "?"
    return ("%s, %d cores, Linux %s, load average %.1f at the start; %s, redis %s, nginx %s, "
            "libevent %s" % (model, os.cpu_count() or 0, os.uname().release, os.getloadavg()[0],
                             version() or "jsond ?", redis.group(1) if redis else "not installed",
                             nginx.group(1) if nginx else "not installed", libevent))


def chart(rows, path, title):
    """A bar chart of the ratios (log scale) with the targets as marks: a
    bar is green where its target is met, orange where not, blue where the
    issue set none; rows where lower is better say so in their label."""
    if not shutil.which("gnuplot"):
        print("(no gnuplot: the chart is skipped; Debian's gnuplot-nox has it)")
        return False
    data = path + ".dat"
    with open(data, "w") as f:
        for r in rows:
            if not r.chart or r.ratio is None:
                continue
            color = 0x3a7bd5
            if r.target:
                met = r.ratio >= r.target if r.better == "higher" else r.ratio <= r.target
                color = 0x2ca02c if met else 0xff7f0e
            label = r.chart + (" [lower is better]" if r.better == "lower" else "")
            f.write('"%s" %g %s %d\n' % (label, r.ratio, "%g" % r.target if r.target else "NaN",
                                          color))
    script = """
set terminal %s size 1100,600
set output '%s'
set title '%s'
set style fill solid 0.85 border -1
set boxwidth 0.6
set logscale y 10
set yrange [0.01:30]
set ylabel 'jsond / peer (log scale)'
set grid ytics
set xtics rotate by -30 left nomirror
set key top left
set bmargin 11
set xrange [-0.6:*]
plot '%s' using 0:2:4:xtic(1) with boxes lc rgb variable title 'jsond / peer (green: target met; orange: not; blue: no target)', \\
     '' using 0:3 with points pt 7 ps 1.6 lc rgb '#d62728' title 'target', \\
     1 with lines dt 2 lc rgb '#555555' notitle
"""
    try:
        for term in ("pngcairo font ',10'", "png"):  # png: gnuplot without cairo
            r = subprocess.run(["gnuplot"], input=script % (term, path, title.replace("'", ""),
                                                             data),
                               capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                return True
        sys.stderr.write("peers: gnuplot failed: %s\n" % r.stderr.strip())
        return False
    finally:
        os.unlink(data)


# ---- the rows ---------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", default=bool(os.environ.get("BENCH_QUICK")),
                    help="every row once, short and small (BENCH_QUICK=1 too)")
    ap.add_argument("--out", help="where bench.md and bench.png go (a full run: docs/ in the "
                    "source tree; a smoke run: nowhere unless told)")
    opt = ap.parse_args()
    smoke = opt.smoke
    out_dir = opt.out or (None if smoke else os.path.join(SRCDIR, "docs"))
    runs = 1 if smoke else 5
    secs = 1 if smoke else 2
    big = 20 * 10**6 if smoke else 10**9
    records = (20000 if smoke else 1000000, 64)
    line_mb = 4 if smoke else 64
    lat_n = 500 if smoke else 5000
    strace_n = 100 if smoke else 1000
    if not os.access(LOADGEN, os.X_OK):
        raise SystemExit("no %s: run `make bench` (it builds it)" % LOADGEN)

    t_start = time.monotonic()
    mach = machine()
    print("machine:", mach)
    print("%s: %d alternating run%s of %d s per figure, median; loadgen batches of %d"
          % ("smoke" if smoke else "full", runs, "" if runs == 1 else "s", secs, BATCH))
    sys.stdout.flush()

    jsond = Jsond()
    redis, nginx = Redis(), Nginx()
    line = Ours("lineserver")
    bare = Ours("bareserver")
    raw = Ours("rawsend", ["-s", str(big)])
    servers = [jsond, redis, nginx, line, bare, raw]
    rows = []
    ours_failed = []
    try:
        for s in servers:
            s.start()

        def pipelined(conns, req_for):
            def fn(s):
                f = loadgen(s, ["-c", str(conns), "-b", str(BATCH), "-d", str(secs),
                                "-r", req_for(s)])
                return {"rps": f["rps"], "us": f["server_us"]}
            return fn

        def rate(r):
            return "%s req/s, %.2f us CPU/req" % (num(r["rps"]), r["us"])

        def ratio(row, a, b, key):
            if isinstance(a, dict) and isinstance(b, dict) and b[key] > 0:
                row.ratio = a[key] / b[key]

        def cpu_note(row, a, b):
            """Server CPU per request is steadier than req/s when the client
            and other load share the cores: its ratio goes in the notes."""
            if isinstance(a, dict) and isinstance(b, dict) and b["us"] > 0:
                row.note = "CPU per request x%.1f" % (a["us"] / b["us"]) + (
                    "; " + row.note if row.note else "")

        def req(s):
            return "PING" if s is redis else "hello"

        # Pipelined hello, 50 connections: jsond, redis PING, lineserver.
        trio = [jsond, redis, line]
        reset_peaks(trio)
        res = medians(runs, trio, pipelined(CONNS, req))
        peaks = rss(trio)
        for peer, target, label in ((redis, 1.0, "hello 50c / redis"),
                                    (line, 0.8, "hello 50c / lineserver")):
            row = Row("pipelined hello, %d connections (req/s)" % CONNS,
                      "redis PING" if peer is redis else "lineserver", "higher", target, label)
            row.jsond_fig = fig(res[jsond], rate)
            row.peer_fig = "not installed" if peer.missing else fig(res[peer], rate)
            ratio(row, res[jsond], res[peer], "rps")
            cpu_note(row, res[jsond], res[peer])
            row.rss = peaks
            rows.append(row)
        hello50 = res

        # Pipelined hello, 1 connection.
        duo = [jsond, redis]
        reset_peaks(duo)
        res = medians(runs, duo, pipelined(1, req))
        row = Row("pipelined hello, 1 connection (req/s)", "redis PING", "higher", None,
                  "hello 1c / redis")
        row.jsond_fig = fig(res[jsond], rate)
        row.peer_fig = "not installed" if redis.missing else fig(res[redis], rate)
        ratio(row, res[jsond], res[redis], "rps")
        cpu_note(row, res[jsond], res[redis])
        row.rss = rss(duo)
        rows.append(row)

        # JSON-RPC echo with small params, 50 connections, vs the PING above.
        reset_peaks([jsond])
        res = medians(runs, [jsond], pipelined(CONNS, lambda s: RPC_ECHO))
        row = Row("JSON-RPC echo, small params, %d connections (req/s)" % CONNS, "redis PING",
                  "higher", 0.5, "echo 50c / redis")
        row.jsond_fig = fig(res[jsond], rate)
        row.peer_fig = "not installed" if redis.missing else fig(hello50[redis], rate)
        ratio(row, res[jsond], hello50[redis], "rps")
        row.rss = rss([jsond])
        row.note = "redis figure: the 50-connection PING run above"
        cpu_note(row, res[jsond], hello50[redis])
        rows.append(row)

        # Push hello: server CPU per connection, 50 clients.
        trio = [jsond, nginx, bare]
        reset_peaks(trio)

        def push(s):
            port = jsond.push_port if s is jsond else s.port
            f = loadgen(s, ["-P", "-c", str(CONNS), "-d", str(secs)], port=port)
            return {"cps": f["cps"], "us": f["server_us"]}

        def pfig(r):
            return "%.1f us CPU/conn (%s conn/s)" % (r["us"], num(r["cps"]))
        res = medians(runs, trio, push)
        peaks = rss(trio)
        for peer, target, label in ((nginx, 1.0, "push CPU / nginx"),
                                    (bare, None, "push CPU / bare")):
            row = Row("push hello, %d clients: server CPU per connection" % CONNS,
                      "nginx stream return" if peer is nginx else "bareserver", "lower",
                      target, label)
            row.jsond_fig = fig(res[jsond], pfig)
            row.peer_fig = "not installed" if peer.missing else fig(res[peer], pfig)
            ratio(row, res[jsond], res[peer], "us")
            row.rss = peaks
            rows.append(row)

        # System calls per push connection.
        counts = {}
        for s in trio:
            try:
                if s.missing:
                    raise Failed("not installed", False)
                counts[s] = syscalls(s, jsond.push_port if s is jsond else s.port, strace_n)
            except Failed as e:
                counts[s] = e
        for peer in (nginx, bare):
            row = Row("push hello: system calls per connection (strace, %s one at a time)"
                      % num(strace_n), "nginx stream return" if peer is nginx else "bareserver",
                      "lower", None, None)
            row.jsond_fig = fig(counts[jsond], lambda c: "%.2f (%d per connection)" % (c[0], c[2]))
            row.peer_fig = fig(counts[peer], lambda c: "%.2f" % c[0])
            if not isinstance(counts[jsond], Failed) and not isinstance(counts[peer], Failed):
                row.ratio = counts[jsond][0] / counts[peer][0]
            if peer is nginx:
                row.note = "jsond target: <= 7 calls per connection"
                if not isinstance(counts[jsond], Failed):
                    row.note += " (%s)" % ("met" if counts[jsond][2] <= 7 else "not met")
            rows.append(row)
        details = {s.name: c[1] for s, c in counts.items() if not isinstance(c, Failed)}

        # Big: one reply of `big` bytes to a fast reader.
        duo = [jsond, raw]
        reset_peaks(duo)

        def bulk(s):
            args = ["-B"] + (["-r", 'big {"size": %d}' % big] if s is jsond else [])
            f = loadgen(s, args, timeout=300)
            if f["bytes"] != big + 32:
                sys.stderr.write("peers: %s sent %d bytes, not %d\n"
                                 % (s.name, f["bytes"], big + 32))
                raise Failed("failed", s.ours)
            return {"mbps": f["mbps"], "us": f["server_us"]}
        res = medians(runs, duo, bulk)
        row = Row("big reply of %s MB to a fast reader (MB/s)" % num(big / 1e6), "rawsend",
                  "higher", 0.8, "big / rawsend")
        mbps = (lambda r: "%s MB/s, %.0f us CPU/MB" % (num(r["mbps"]), r["us"]))
        row.jsond_fig = fig(res[jsond], mbps)
        row.peer_fig = fig(res[raw], mbps)
        ratio(row, res[jsond], res[raw], "mbps")
        row.rss = rss(duo)
        row.note = "jsond's output_buffer: 1 MB (the default)"
        rows.append(row)
        raw_mbps = res[raw]

        # The serializer, when tests/bench/encode is built.
        encode = os.path.join(BENCH, "encode")
        targets = {"string10m": 10.0, "records200k": 3.0}
        enc = {}
        if os.access(encode, os.X_OK):
            try:
                r = subprocess.run([encode], capture_output=True, text=True, timeout=300,
                                   env=dict(os.environ, BENCH_QUICK="1" if smoke else ""))
                if r.returncode != 0:
                    raise Failed("failed", True)
                for ln in r.stdout.splitlines():
                    m = re.match(r"encode (.*)", ln)
                    if m:
                        f = dict(kv.split("=", 1) for kv in m.group(1).split())
                        enc[f["doc"]] = f
            except (Failed, subprocess.TimeoutExpired, ValueError, KeyError) as e:
                sys.stderr.write("peers: %s failed: %s\n" % (encode, e))
                ours_failed.append("encode")
                enc = None
        for doc, target in targets.items():
            row = Row("serializer, document %s (MB/s)" % doc, "jansson", "higher", target,
                      "encode %s / jansson" % doc)
            if enc is None:
                row.jsond_fig = row.peer_fig = "failed"
            elif not enc:
                row.jsond_fig = row.peer_fig = "not built (tests/bench/encode)"
            elif doc not in enc:
                row.jsond_fig = row.peer_fig = "no figure"
            else:
                f = enc[doc]
                row.jsond_fig = "%s MB/s" % num(float(f["jsond_mbps"]))
                row.peer_fig = "%s MB/s" % num(float(f["jansson_mbps"]))
                row.ratio = float(f["jsond_mbps"]) / float(f["jansson_mbps"])
            rows.append(row)

        # A long request line: jsond's CPU time to take it.
        reset_peaks([jsond])
        row = Row("one %d MB request line (hello with a padding arg)" % line_mb, "", "higher",
                  None, None)
        try:
            jsond.usable()
            size = line_mb * 1024 * 1024
            text = b'hello {"pad": "' + b"x" * (size - 17) + b'"}\n'
            cpus = []
            for _ in range(runs):
                with Client(jsond.d) as c:
                    cpu0 = jsond.cpu()
                    c.send_in_background(text)
                    if "error" in c.reply():
                        raise Failed("an error reply", True)
                    cpus.append(jsond.cpu() - cpu0)
            cpu = statistics.median(cpus)
            row.jsond_fig = "%.3f s CPU (%s MB/s of CPU)" % (cpu, num(line_mb * 1.048576 / cpu)
                                                             if cpu > 0 else "-")
        except (Failed, OSError, AssertionError) as e:
            row.jsond_fig = "failed"
            sys.stderr.write("peers: long line: %s\n" % e)
            ours_failed.append("long line")
        row.peer_fig = "no peer"
        row.rss = rss([jsond])
        rows.append(row)

        # Records streamed to a fast reader.
        reset_peaks([jsond])
        row = Row("records %s x %d B streamed to a fast reader (MB/s)" % (num(records[0]),
                                                                          records[1]),
                  "rawsend", "higher", None, "records / rawsend")
        res = medians(runs, [jsond], lambda s: loadgen(
            s, ["-B", "-r", 'records {"count": %d, "size": %d}' % records], timeout=300))
        row.jsond_fig = fig(res[jsond], lambda r: "%s MB/s, %.0f us CPU/MB"
                            % (num(r["mbps"]), r["server_us"]))
        row.peer_fig = fig(raw_mbps, mbps)
        ratio(row, res[jsond], raw_mbps, "mbps")
        row.rss = rss([jsond])
        row.note = "rawsend figure: the big row's"
        rows.append(row)

        # Hello latency with pool legacy saturated (4 threads asleep, 16 queued).
        row = Row("hello latency, one at a time, %s round trips: p50 / p99 (us)" % num(lat_n),
                  "redis PING", "lower", None, "p99 latency / redis")
        reset_peaks([jsond, redis])
        lat = {}
        slow = None
        for s in (redis, jsond):
            try:
                if s is jsond:
                    jsond.usable()
                    slow = Client(jsond.d)
                    slow.send(b'slow {"ms": 600000}\n' * 20)
                    with Client(jsond.d) as c:
                        deadline = time.monotonic() + 30
                        while True:
                            p = c.call("stats")["pools"]["legacy"]
                            if p["busy"] == 4 and p["queued"] == 16:
                                break
                            if time.monotonic() > deadline:
                                raise Failed("the pool never saturated", True)
                            time.sleep(0.01)
                lat[s] = loadgen(s, ["-L", "-n", str(lat_n), "-r", req(s)])
            except Failed as e:
                lat[s] = e
        if slow:
            slow.close()

        def lfig(r):
            return "%.1f / %.1f" % (r["p50_us"], r["p99_us"])
        row.jsond_fig = fig(lat[jsond], lfig) + " (pool saturated)"
        row.peer_fig = "not installed" if redis.missing else fig(lat[redis], lfig)
        ratio(row, lat[jsond], lat[redis], "p99_us")
        row.rss = rss([jsond, redis])
        row.note = "ratio of the p99s"
        rows.append(row)

        for s in servers:
            if s.ours and s.failed:
                ours_failed.append(s.name)
        for r in rows:
            if r.jsond_fig.startswith("failed") and r.work not in ours_failed:
                ours_failed.append(r.work)
        for s in servers:
            if s.ours and s.proc and s.proc.poll() is not None:
                ours_failed.append("%s exited (%s)" % (s.name, s.proc.returncode))
        peak_line = "peak RSS (VmHWM) over the whole run, per server: " + ", ".join(
            "%s %s" % (s.name, "not installed" if s.missing else
                       ("%.1f MB" % PEAKS[s]) if s in PEAKS else "-")
            for s in servers)
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # one that will not stop must not keep the others up
                sys.stderr.write("peers: stopping %s: %s\n" % (s.name, e))
                if s.ours:
                    ours_failed.append("stopping " + s.name)

    head = ["work", "jsond", "peer", "ratio (jsond / peer)", "target", "peak RSS; notes"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    table += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    text = "\n".join(table)
    took = time.monotonic() - t_start
    print()
    print(text)
    print()
    print("system calls per push connection: " + "; ".join(
        "%s: %s" % kv for kv in details.items()))
    print("The peak RSS column is each server's VmHWM over that row (reset before it where "
          "the kernel lets us).")
    print(peak_line)
    print("machine: " + mach)
    print("took %.0f s" % took)

    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        png = os.path.join(out_dir, "bench.png")
        charted = chart(rows, png, "jsond / peer, one run (%s)" % time.strftime("%Y-%m-%d"))
        write_md(os.path.join(out_dir, "bench.md"), text, mach, details, peak_line, charted,
                 smoke, runs, secs)
        print("wrote %s%s" % (os.path.join(out_dir, "bench.md"),
                              " and " + png if charted else ""))
    if ours_failed:
        sys.stderr.write("peers: failed: %s\n" % ", ".join(ours_failed))
        return 1
    return 0


def write_md(path, table, mach, details, peak_line, charted, smoke, runs, secs):
    with open(path, "w") as f:
        f.write("""# jsond against its peers

Written by `tests/bench/peers.py` (`make bench`) on %s%s. Every ratio is
jsond's figure over the peer's, both measured in this one run with the same
client (`tests/bench/loadgen`: C, libevent) and the same connection counts
and batches: %d alternating run%s of %d s per figure, median. These shared
2-core machines swing 2x between runs, so only the ratios of one run
compare; client and server share the two cores.

""" % (time.strftime("%Y-%m-%d"), " (a smoke run: its figures mean nothing)" if smoke else "",
            runs, "" if runs == 1 else "s", secs))
        if charted:
            f.write("![jsond / peer ratios, with the targets](bench.png)\n\n")
        f.write(table + "\n\n")
        f.write("Machine: %s.\n\n" % mach)
        f.write("System calls per push connection (`strace -c -f` attached to the server "
                "process for connections made one at a time): %s.\n\n"
                % "; ".join("%s: %s" % kv for kv in details.items()))
        f.write(peak_line[0].upper() + peak_line[1:] + ".\n\n")
        f.write("""## How to run

    make bench          # builds the bench programs, runs tests/bench/peers.py: this table
    make bench-smoke    # every row once, short and small (what CI runs; no files written)
    make bench-all      # peers.py, then the older figure scripts (push.py, requests.py, ...)

The peers are Debian packages: `apt-get install nginx-core libnginx-mod-stream
redis-server gnuplot-nox strace` (`.ci/quickstart test` installs them). A
peer that is not installed makes its rows say so; nothing is started as a
service: peers.py starts its own instances on loopback ports with private
configs and data directories, one worker each, and stops them.

How each figure is taken:

- req/s: `loadgen -c CONNS -b 100 -d SECONDS -r LINE`, pipelining batches
  of 100 request lines per write; redis gets inline `PING`, lineserver
  (`tests/bench/lineserver.c`: one libevent loop that answers every line
  with the hello line and parses nothing) and jsond get `hello`.
- CPU per request or connection: the server's utime + stime
  (`/proc/PID/stat`, every thread; nginx's worker) over the run, divided by
  the requests or connections (`loadgen -S PID`). On 2 cores the client
  saturates first at push, so connections per second alone cannot tell the
  servers apart; their CPU per connection can.
- push: `loadgen -P -c 50`: each client connects, reads to the end, closes,
  and again. nginx: `stream { server { return '...hello...\\n'; } }`, one
  worker; bareserver (`tests/bench/bareserver.c`): blocking accept, write,
  close.
- big and records: `loadgen -B`: one connection, 1 MB reads to the end;
  rawsend (`tests/bench/rawsend.c`) writes the same bytes as the `big` reply
  with blocking 1 MB write()s.
- the serializer: `tests/bench/encode`, when it is built.
- latency: `loadgen -L`, one request at a time; jsond's pool `legacy` is
  saturated first (4 threads in 600 s sleeps, 16 queued).
""")


if __name__ == "__main__":
    sys.exit(main())
