"""jsondtest: start the real jsond and talk to it over loopback.

Every daemon a test starts listens on port 0 (or a private unix socket), so
tests never race for free ports: the harness reads the bound address from
the daemon's "listening on NAME ADDR" log line. Every wait is bounded and
scaled by SLOW (10x headroom, more under valgrind); every process started is
stopped, whatever the test's outcome.

Environment (set by `make check`): JSOND (the daemon), JSOND_SRCDIR,
JSOND_WRAPPER (e.g. valgrind), JSOND_SANITIZERS (yes/no).
"""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

JSOND = os.environ.get("JSOND") or os.path.join(
    os.path.dirname(__file__), "..", "..", "daemon", "jsond")
SRCDIR = os.environ.get("JSOND_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
WRAPPER = shlex.split(os.environ.get("JSOND_WRAPPER", ""))
VALGRIND = any("valgrind" in w for w in WRAPPER)
SANITIZED = os.environ.get("JSOND_SANITIZERS", "no") == "yes"
# Memory figures mean something only in a plain build.
PLAIN = not VALGRIND and not SANITIZED
# Waits are inputs times this: generous on a shared, noisy machine, and
# more so when valgrind runs the daemon 20-50x slower.
SLOW = 10 * (5 if VALGRIND else 1)
HELLO = b'{"msg":"Hello World","data":"x"}\n'

LISTEN_RE = re.compile(r"listening on (\S+) (\S+)")


def config(text):
    """A config from an indented triple-quoted string."""
    return textwrap.dedent(text).lstrip()


class Daemon:
    """One jsond process on its own config; a context manager."""

    def __init__(self, conf, args=(), start=True, wait_listeners=True, env=None, preexec=None,
                 wrapper=None):
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
        self.wrapper = WRAPPER if wrapper is None else wrapper
        if start:
            self.start(wait_listeners)

    def start(self, wait_listeners=True):
        self.logf = open(self.logpath, "wb")
        cmd = self.wrapper + [JSOND, "-c", self.path, "-l", "debug"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=self.preexec)
        if wait_listeners:
            with open(self.path) as f:
                want = len(re.findall(r"^\s*address\s*=", f.read(), re.M))
            self.wait_log(lambda log: len(LISTEN_RE.findall(log)) >= want, 3 * SLOW)
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

    def connect(self, name, timeout=None):
        addr = self.addrs[name]
        if addr.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout or 3 * SLOW)
            s.connect(addr[5:])
            return s
        host, port = addr.rsplit(":", 1)
        host = host.strip("[]")
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout or 3 * SLOW)
        s.connect((host, int(port)))
        return s

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

    def send_signal(self, sig):
        self.proc.send_signal(sig)

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

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc:
            tail = "\n".join(self.log().splitlines()[-80:])
            sys.stderr.write("---- jsond log (tail) ----\n%s\n-------------------\n" % tail)
        self.close()


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


def run(args, **kw):
    """Runs jsond to completion (for -t, -V, -h); returns CompletedProcess."""
    return subprocess.run(WRAPPER + [JSOND] + list(args), capture_output=True, text=True,
                          timeout=3 * SLOW, **kw)


def main():
    unittest.main(verbosity=2)
