"""jsondtest: start the real jsond and talk to it over loopback.

Every daemon a test starts listens on port 0 (or a private unix socket), so
tests never race for free ports: the harness reads the bound address from
the daemon's "listening on NAME ADDR" log line. Every wait is bounded and
scaled by SLOW (10x headroom, more under valgrind); every process started is
stopped, whatever the test's outcome.

Besides the Daemon: Client, a request-mode connection (lines out, reply
lines in); SharedDaemon, a TestCase base whose tests share one daemon;
connect (rcvbuf: SO_RCVBUF before the handshake), reset (a close with
SO_LINGER 0) and readable for raw sockets; error_of, result_of and
rpc_error_of (with RPC_CODES) for plain and JSON-RPC replies; wait_counted,
pools and wait_pool for builtin:stats; records_text for builtin:records;
started, reload (write_conf, Outcome, OUTCOME_RE) and lines_of for SIGHUP
and config line numbers; counters and counters_line for the exit log line;
figures and version for the benchmarks in tests/bench.

Environment (set by `make check`): JSOND (the daemon), JSOND_SRCDIR,
JSOND_WRAPPER (e.g. valgrind), JSOND_SANITIZERS (yes/no).
"""
import contextlib
import fcntl
import json
import os
import re
import select
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import threading
import time
import unittest

JSOND = os.environ.get("JSOND") or os.path.join(
    os.path.dirname(__file__), "..", "..", "daemon", "jsond")
# The test daemon: jsond with test-only handlers (tests/testd/handlers.c).
JSOND_TESTD = os.environ.get("JSOND_TESTD") or os.path.join(
    os.path.dirname(__file__), "..", "testd", "jsond")
SRCDIR = os.environ.get("JSOND_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
WRAPPER = shlex.split(os.environ.get("JSOND_WRAPPER", ""))
VALGRIND = any("valgrind" in w for w in WRAPPER)
SANITIZED = os.environ.get("JSOND_SANITIZERS", "no") == "yes"
# Memory figures mean something only in a plain build.
PLAIN = not VALGRIND and not SANITIZED
# Waits are inputs times this: generous on a shared, noisy machine, and
# more so when valgrind runs the daemon 20-50x slower.
SLOW = 10 * (5 if VALGRIND else 1)
# Timeouts of the tests' own configs: small, and scaled where valgrind makes
# the daemon too slow for the figure to mean anything.
SCALE = SLOW // 10
HELLO = b'{"msg":"Hello World","data":"x"}\n'

LISTEN_RE = re.compile(r"listening on (\S+) (\S+)")


def config(text):
    """A config from an indented triple-quoted string."""
    return textwrap.dedent(text).lstrip()


class Daemon:
    """One jsond process on its own config; a context manager."""

    def __init__(self, conf, args=(), start=True, wait_listeners=True, env=None, preexec=None,
                 wrapper=None, binary=JSOND, pass_fds=()):
        self.dir = tempfile.TemporaryDirectory(prefix="jsond-test-")
        self.path = os.path.join(self.dir.name, "jsond.conf")
        with open(self.path, "w") as f:
            f.write(conf.replace("@DIR@", self.dir.name))
        self.args = list(args)
        self.proc = None
        self.addrs = {}
        self.logpath = os.path.join(self.dir.name, "jsond.log")
        self.env = env
        self.preexec = preexec
        self.pass_fds = pass_fds
        self.wrapper = WRAPPER if wrapper is None else wrapper
        self.binary = binary
        if start:
            try:
                self.start(wait_listeners)
            except BaseException:
                self.dump_log()
                self.close()  # no `with` owns us yet: stop the process here
                raise

    def start(self, wait_listeners=True):
        self.logf = open(self.logpath, "wb")
        cmd = self.wrapper + [self.binary, "-c", self.path, "-l", "debug"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=self.preexec, pass_fds=self.pass_fds)
        if wait_listeners:
            with open(self.path) as f:
                want = len(re.findall(r"^\s*address\s*=", f.read(), re.M))
            # Up to "started": the listeners are logged before the watchdog
            # starts (which opens and closes libgcc for backtrace()), so a
            # descriptor count taken earlier could include a passing one.
            self.wait_log(lambda log: len(LISTEN_RE.findall(log)) >= want
                          and re.search(r"jsond \S+ started \(pid", log), 3 * SLOW)
            for name, addr in LISTEN_RE.findall(self.log()):
                self.addrs[name] = addr

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pred, timeout):
        """Waits until pred(log text) holds; fails the test after timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if pred(log):
                return log
            if self.proc.poll() is not None:
                raise AssertionError("jsond exited (%s) early" % self.proc.returncode)
            time.sleep(0.02)
        raise AssertionError("timed out waiting on the log")

    def connect(self, name, timeout=None, rcvbuf=None):
        """A connected socket to the listener `name` (see connect())."""
        return connect(self.addrs[name], timeout, rcvbuf)

    def status(self, field):
        """A /proc/PID/status figure in kB (VmRSS, VmHWM)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def wait_fds(self, want, timeout=None):
        """Polls until the daemon holds `want` descriptors (closes land
        after the client's side is gone) or the timeout passes; returns
        the count then, for the caller to check."""
        deadline = time.monotonic() + (timeout or 3 * SLOW)
        while self.fds() != want and time.monotonic() < deadline:
            time.sleep(0.01)  # polling /proc, bounded by the deadline
        return self.fds()

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stopped(self):
        """1 when every thread of the daemon is stopped (SIGSTOP)."""
        tasks = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(tasks):
            try:
                with open("%s/%s/stat" % (tasks, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
            if state not in ("T", "t"):
                return False
        return True

    @contextlib.contextmanager
    def frozen(self):
        """Stops the daemon (SIGSTOP) for the body, and lets it go on after
        (SIGCONT). A barrier: what the body does to the daemon's sockets
        (connect, send, see the bytes acknowledged by its kernel) is
        provably done before the daemon runs another instruction, so the
        daemon's next decision sees it."""
        self.proc.send_signal(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 3 * SLOW
            while not self.stopped():  # SIGSTOP lands asynchronously
                if time.monotonic() > deadline:
                    raise AssertionError("jsond did not stop within %ds" % (3 * SLOW))
                time.sleep(0.001)
            yield self
        finally:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signals the daemon and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout or 3 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("jsond did not exit after signal %d" % sig)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc:
            self.logf.close()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def dump_log(self):
        """The log's tail on stderr, for a failing test's output."""
        if self.proc:
            tail = "\n".join(self.log().splitlines()[-80:])
            sys.stderr.write("---- jsond log (tail) ----\n%s\n-------------------\n" % tail)

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_log()
        self.close()


def connect(addr, timeout=None, rcvbuf=None):
    """A connected socket to "HOST:PORT", "[V6]:PORT" or "unix:PATH". A
    `rcvbuf` is set (SO_RCVBUF) before the handshake, so the window the
    daemon sees is that small from the start (no autotuning)."""
    if addr.startswith("unix:"):
        fam, to = socket.AF_UNIX, addr[5:]
    else:
        host, port = addr.rsplit(":", 1)
        host = host.strip("[]")
        fam, to = socket.AF_INET6 if ":" in host else socket.AF_INET, (host, int(port))
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout or 3 * SLOW)
        s.connect(to)
    except BaseException:
        s.close()
        raise
    return s


def reset(sock):
    """Closes `sock` with SO_LINGER 0: a reset, the client gone."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def readable(sock):
    """True when a reply (or the end) is waiting on `sock`."""
    return bool(select.select([sock], [], [], 0)[0])


def unacked(sock):
    """Bytes written on `sock` that the peer's kernel has not acknowledged
    yet (SIOCOUTQ, which equals TIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]


def wait_acked(sock, timeout=None):
    """Waits until the peer's kernel has acknowledged every byte written on
    TCP socket `sock`: they are then in its receive queue, where the peer's
    next look (a read, a peek) finds them. Bounded by `timeout`."""
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    while unacked(sock):
        if time.monotonic() > deadline:
            raise AssertionError("%d bytes still unacknowledged after %ss"
                                 % (unacked(sock), timeout or 3 * SLOW))
        time.sleep(0.001)  # polling the socket, bounded by the deadline


def recv_all(sock, limit=None, timeout=None):
    """Reads until end-of-stream; returns the bytes."""
    sock.settimeout(timeout or 3 * SLOW)
    chunks, total = [], 0
    while True:
        b = sock.recv(1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        total += len(b)
        if limit is not None and total > limit:
            raise AssertionError("more than %d bytes" % limit)


def kernel_buffers():
    """The most a loopback connection's socket buffers can hold: the
    client's receive buffer and the daemon's send buffer at their maxima."""
    def high(path):
        with open(path) as f:
            return int(f.read().split()[2])
    return high("/proc/sys/net/ipv4/tcp_rmem") + high("/proc/sys/net/ipv4/tcp_wmem")


def run(args, **kw):
    """Runs jsond to completion (for -t, -V, -h); returns CompletedProcess."""
    return subprocess.run(WRAPPER + [JSOND] + list(args), capture_output=True, text=True,
                          timeout=3 * SLOW, **kw)


def built_with_systemd():
    """jsond was built with libsystemd (notify, passed sockets): -V says so."""
    return ", systemd" in run(["-V"]).stdout


class Closed(AssertionError):
    """The daemon closed the connection where a reply was expected."""


class Client:
    """A request connection: writes lines, reads reply lines. Every read is
    bounded by `timeout` (3 * SLOW unless told)."""

    def __init__(self, d, listener="main", timeout=None):
        self.sock = d.connect(listener)
        self.timeout = timeout or 3 * SLOW
        self.buf = bytearray()
        self.writer = None

    def close(self):
        if self.writer:
            self.writer.join(self.timeout)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_in_background(self, data):
        """Writes `data` from a thread, so a write that meets back-pressure
        cannot deadlock the test against its own reads. close() joins it."""
        def run():
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the daemon closed first: the reads say what happened
        self.writer = threading.Thread(target=run, daemon=True)
        self.writer.start()

    def raw(self, bufsize=1 << 16):
        """The next reply line, without its newline."""
        deadline = time.monotonic() + self.timeout
        start = 0  # where to look for the newline: bytes before have none
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply within %ss (have %r)" % (self.timeout,
                                                                       bytes(self.buf[:200])))
            self.sock.settimeout(left)
            b = self.sock.recv(bufsize)
            if not b:
                raise Closed("connection closed before a reply (have %r)" % bytes(self.buf[:200]))
            self.buf += b

    def reply(self):
        """The next reply, parsed. It must be one valid UTF-8 JSON text."""
        line = self.raw()
        return json.loads(line.decode("utf-8"))

    def call(self, line):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\n")
        return self.reply()

    def expect_eof(self):
        """The daemon closes the connection cleanly (no reset) with no
        reply left unread."""
        self.sock.settimeout(self.timeout)
        rest = bytes(self.buf)
        for _ in range(1000):
            try:
                b = self.sock.recv(1 << 16)
            except ConnectionResetError:
                raise AssertionError("connection reset (had %r)" % rest[:200])
            if not b:
                break
            rest += b
        else:
            raise AssertionError("no end-of-stream")
        if rest:
            raise AssertionError("unexpected bytes before the close: %r" % rest[:200])


def error_of(reply, code, id=..., test=None):
    """Checks a plain error reply: its code, a message, and `id` (... means
    the reply must have no id member)."""
    assert set(reply) == ({"error"} if id is ... else {"error", "id"}), reply
    assert reply["error"]["code"] == code, reply
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"], reply
    if id is not ...:
        assert reply["id"] == id and type(reply["id"]) is type(id), (reply, id)
    return reply


def wait_counted(c, route, timeout=None, at_least=1):
    """Polls builtin:stats (the route "stats") over Client c until `route`
    has counted `at_least` requests: a request is counted when it is
    dispatched (a push of a fixed reply: when its first send() is done)."""
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    while True:
        routes = c.call("stats")["requests"]["routes"]
        if routes.get(route, {}).get("requests", 0) >= at_least:
            return
        if time.monotonic() > deadline:
            raise AssertionError("no request on %s was ever counted" % route)
        time.sleep(0.01)  # polling, bounded by the deadline


def pools(c):
    """stats' pools object, over Client c (the route "stats")."""
    return c.call("stats")["pools"]


def wait_pool(c, name, pred, what, timeout=None):
    """Polls stats until pred(pools[name]) holds; returns that pool's stats.
    Fails the test after `timeout` (3 * SLOW unless told)."""
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    while True:
        p = pools(c).get(name)
        if p is not None and pred(p):
            return p
        if time.monotonic() > deadline:
            raise AssertionError("pool %s never %s: %r" % (name, what, p))
        time.sleep(0.01)  # polling, bounded by the deadline


def records_text(count, size):
    """The exact reply of `records {"count": count, "size": size}`, without
    its newline (for small counts: it is made whole)."""
    item = b'{"i":%d,"data":"' + b"x" * size + b'"}'
    return b"[" + b",".join(item % i for i in range(count)) + b"]"


# ---- JSON-RPC replies ------------------------------------------------------

RPC_CODES = {
    "bad_request": -32600,
    "not_found": -32601,
    "too_large": -32000,
    "busy": -32001,
    "timeout": -32002,
    "handler_failed": -32003,
    "wrong_color": -32004,
    "shutting_down": -32005,
    "internal": -32603,
}


def result_of(reply, id, result=...):
    """A JSON-RPC success response with `id` (and `result` unless ...)."""
    assert set(reply) == {"jsonrpc", "result", "id"}, reply
    assert reply["jsonrpc"] == "2.0", reply
    assert reply["id"] == id and type(reply["id"]) is type(id), (reply, id)
    if result is not ...:
        assert reply["result"] == result, (reply, result)
    return reply["result"]


def rpc_error_of(reply, code, id, name=None):
    """A JSON-RPC error response: `code`, `id`, a message, and jsond's code
    name in error.data.code (`name`, or the one `code` maps from)."""
    assert set(reply) == {"jsonrpc", "error", "id"}, reply
    assert reply["jsonrpc"] == "2.0", reply
    assert reply["id"] == id and type(reply["id"]) is type(id), (reply, id)
    err = reply["error"]
    assert set(err) == {"code", "message", "data"}, reply
    assert err["code"] == code and type(err["code"]) is int, (reply, code)
    assert isinstance(err["message"], str) and err["message"], reply
    if name is None:
        name = {-32700: "bad_request", -32602: "bad_request"}.get(code)
        name = name or [k for k, v in RPC_CODES.items() if v == code][0]
    assert err["data"] == {"code": name}, reply
    return reply


# ---- reload (SIGHUP) and config lines ------------------------------------

OUTCOME_RE = re.compile(
    r"\] (?:reloaded (?P<file>\S+): routes (?P<added>\d+) added, (?P<removed>\d+) removed, "
    r"(?P<changed>\d+) changed; listeners (?P<opened>\d+) opened, (?P<closed>\d+) closed, "
    r"(?P<kept>\d+) kept; pools (?P<pools_added>\d+) added, (?P<pools_resized>\d+) resized, "
    r"(?P<pools_removed>\d+) removed \((?P<ms>[0-9.]+) ms\)"
    r"|reload failed with (?P<problems>\d+) problems: the old config stays in force)$", re.M)
ERROR_RE = re.compile(r"\[error\] (?!reload failed)(.*)$", re.M)
UNLISTENED_RE = re.compile(r"\] stopped listening on (\S+) (\S+)$", re.M)
# LISTEN_RE would match the line above too.
OPENED_RE = re.compile(r"\] listening on (\S+) (\S+)$", re.M)


def write_conf(d, text, path=None):
    """Replaces a config file whole (rename), so the daemon never reads a
    half-written one. @DIR@ is the daemon's directory, as in Daemon."""
    path = path or d.path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text.replace("@DIR@", d.dir.name))
    os.replace(tmp, path)
    return path


class Outcome:
    """What one reload logged: its summary or its failure, and its errors."""

    def __init__(self, seg):
        self.log = seg
        m = OUTCOME_RE.search(seg)
        self.ok = m.group("problems") is None
        self.problems = None if self.ok else int(m.group("problems"))
        self.counts = {k: int(m.group(k)) for k in (
            "added", "removed", "changed", "opened", "closed", "kept", "pools_added",
            "pools_resized", "pools_removed")} if self.ok else None
        self.ms = float(m.group("ms")) if self.ok else None
        self.errors = ERROR_RE.findall(seg[:m.start()])
        self.opened = dict(OPENED_RE.findall(seg))
        self.stopped = dict(UNLISTENED_RE.findall(seg))

    def routes(self):
        return tuple(self.counts[k] for k in ("added", "removed", "changed"))

    def listeners(self):
        return tuple(self.counts[k] for k in ("opened", "closed", "kept"))

    def pools(self):
        return tuple(self.counts[k] for k in ("pools_added", "pools_resized", "pools_removed"))

    def where(self):
        """The FILE:LINE of every error, in the order logged."""
        out = []
        for e in self.errors:
            m = re.match(r"(.+?):(\d+): ", e)
            assert m, "error without a line: %r" % e
            out.append((m.group(1), int(m.group(2))))
        return out


def started(d):
    """Waits for the daemon to have its signal handlers: the listeners are
    logged before, and a SIGHUP then would kill it."""
    d.wait_log(lambda log: re.search(r"jsond \S+ started \(pid", log), 3 * SLOW)
    return d


def reload(d, text=None, timeout=None):
    """Writes `text` as the daemon's config (when given), sends SIGHUP and
    waits for the reload's outcome line. New listeners go into d.addrs
    (the harness fills it only at start)."""
    if text is not None:
        write_conf(d, text)
    pos = os.path.getsize(d.logpath)
    d.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    with open(d.logpath, "rb") as f:
        while True:
            f.seek(pos)
            seg = f.read().decode("utf-8", "replace")
            if OUTCOME_RE.search(seg):
                break
            if d.proc.poll() is not None:
                raise AssertionError("jsond exited (%s) during a reload" % d.proc.returncode)
            if time.monotonic() > deadline:
                raise AssertionError("no reload outcome in the log")
            time.sleep(0.005)  # polling the log file, bounded by the deadline
    out = Outcome(seg)
    if out.ok:
        d.addrs.update(out.opened)
        for name in out.stopped:
            d.addrs.pop(name, None)
    return out


def lines_of(text, *needles):
    """The 1-based line number of the first line holding each needle."""
    lines = text.splitlines()
    out = []
    for n in needles:
        out.append(next(i + 1 for i, line in enumerate(lines) if n in line))
    return out


# ---- the exit log line -------------------------------------------------------

COUNTERS_RE = re.compile(r"connections: (\d+) accepted, (\d+) refused, (\d+) dropped, "
                         r"(\d+) reset, (\d+) cut")


def counters_line(log):
    """The counters line the daemon logs as it exits."""
    found = [line for line in log.splitlines() if COUNTERS_RE.search(line)]
    if not found:
        raise AssertionError("no counters line in the log")
    return found[-1]


def counters(log):
    """The counters of the daemon's last 'connections:' line, by name."""
    values = COUNTERS_RE.search(counters_line(log)).groups()
    return dict(zip(("accepted", "refused", "dropped", "reset", "cut"), map(int, values)))


class SharedDaemon(unittest.TestCase):
    """Tests that share one daemon, self.d, started on `conf` for the class
    and stopped after it (it must exit 0); none of them may change its state.
    client() opens a `client_class` on `listener`, closed after the test."""

    conf = None
    binary = JSOND
    listener = "main"
    client_class = Client

    @classmethod
    def start_daemon(cls):
        """The class's daemon; override to start it another way."""
        return Daemon(cls.conf, binary=cls.binary)

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_daemon()

    @classmethod
    def tearDownClass(cls):
        try:
            status = cls.d.stop()
        finally:
            cls.d.close()
        if status != 0:
            raise AssertionError("jsond exited %d" % status)

    def setUp(self):
        self.assertIsNone(self.d.proc.poll(), "jsond is not running")

    def client(self, listener=None):
        c = self.client_class(self.d, listener or self.listener)
        self.addCleanup(c.close)
        return c


def figures(values, digits=3):
    """min, median and max of `values` ("-" when there are none)."""
    if not values:
        return "-"
    f = "%%.%df" % digits
    return ("min %s  median %s  max %s" % (f, f, f)) % (min(values), statistics.median(values),
                                                      max(values))


def version():
    """What `jsond -V` prints, for a benchmark's first line."""
    return subprocess.run([JSOND, "-V"], capture_output=True, text=True,
                          timeout=3 * SLOW).stdout.strip()


def main():
    unittest.main(verbosity=2)
