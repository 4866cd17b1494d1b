"""jsond under systemd for real: the shipped jsond.service and jsond.socket.

The harness (systemd_ns.py) boots a throwaway systemd as PID 1 of a private
PID and mount namespace, network shared, once for the class. The real unit
templates, filled as the Makefile fills them (@sbindir@, @sysconfdir@), go
into that namespace's private /run/systemd/system, so nothing on the host
changes. The service runs the test daemon from a work directory in the
build tree, bind-mounted onto /run/jsond-test inside: the unit's
DynamicUser cannot traverse /root or /home, ProtectHome hides them, and the
namespace's /tmp is not the host's. Its listeners are on loopback ports
found free at the start. Checked, each from a stopped service:

  - systemctl start: active, the hello pushed; the time to READY=1 printed
  - an exec: handler runs inside the unit's sandbox
  - systemctl reload with a new route: served, "reloaded" in the journal
  - a broken reload: still active, the old routes served, FILE:LINE and
    "reload failed" in the journal
  - a loop blocked in a handler: the systemd watchdog kills and restarts
    jsond (a new MainPID serving hello); the stall, its stack and systemd's
    watchdog timeout in the journal
  - jsond.socket: the first connection starts jsond, which adopts both
    passed sockets (v4 and v6 loopback) by address
  - systemctl stop: a clean exit 0, "Deactivated successfully"

and, without a namespace, that `systemd-analyze security --offline=true`
rates the filled jsond.service at most 1.2.

Skipped only where not root, or where systemd or util-linux is missing.
Under valgrind (JSOND_WRAPPER) the service runs the binary plainly: the
unit's sandbox (MemoryDenyWriteExecute, the system call filter) leaves
valgrind no room; SLOW still scales the waits.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from jsondtest import (HELLO, JSOND_TESTD, SANITIZED, SLOW, SRCDIR, Client, config, connect,
                       main, recv_all, unittest)
import systemd_ns

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(os.path.dirname(JSOND_TESTD),
                                                             "..", "..")
INSIDE = "/run/jsond-test"  # the work directory, as the service sees it
CONF_PATH = "etc/jsond/jsond.conf"  # under the work directory: @sysconfdir@/jsond/jsond.conf
UNIT = "jsond.service"


def unit_text(name, sbindir, sysconfdir):
    """systemd/NAME.in filled like the Makefile's edit_unit (sed of
    @sbindir@ and @sysconfdir@)."""
    with open(os.path.join(SRCDIR, "systemd", name + ".in")) as f:
        return f.read().replace("@sbindir@", sbindir).replace("@sysconfdir@", sysconfdir)


def write(path, text, mode=0o644):
    """Writes whole (rename), readable by the service's dynamic user."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Listeners:
    """Stands in for a Daemon where Client wants one: addresses by name."""

    def __init__(self, addrs):
        self.addrs = addrs

    def connect(self, name, timeout=None, rcvbuf=None):
        return connect(self.addrs[name], timeout, rcvbuf)


class Unit(unittest.TestCase):
    ns = None

    @classmethod
    def setUpClass(cls):
        why = systemd_ns.missing()
        if why:
            raise unittest.SkipTest(why)
        # In the build tree, not /tmp: the namespace's /tmp is its own.
        cls.work = tempfile.mkdtemp(prefix="systemd-test-", dir=BUILDDIR)
        try:
            cls.prepare()
            cls.ns = systemd_ns.Namespace(binds=[(cls.work, INSIDE)],
                                          units=os.path.join(cls.work, "units"), slow=SLOW)
            t0 = time.monotonic()
            cls.ns.boot()
            sys.stderr.write("systemd booted in %.2f s (after %.2f s waiting for another run)\n"
                             % (time.monotonic() - t0 - cls.ns.waited, cls.ns.waited))
        except BaseException:
            shutil.rmtree(cls.work, ignore_errors=True)
            raise

    @classmethod
    def prepare(cls):
        os.chmod(cls.work, 0o755)
        # A real ELF (libjsond is linked in statically), so it runs from here.
        shutil.copy(JSOND_TESTD, os.path.join(cls.work, "jsond"))
        os.chmod(os.path.join(cls.work, "jsond"), 0o755)
        cls.ports = {n: systemd_ns.free_port() for n in ("plain", "main", "sock4")}
        cls.ports["sock6"] = systemd_ns.free_port("::1")
        units = os.path.join(cls.work, "units")
        for name in (UNIT, "jsond.socket"):
            write(os.path.join(units, name), unit_text(name, INSIDE, INSIDE + "/etc"))
        # The shipped ports (25000) may be taken on a shared machine: the
        # same two sockets, one per family, on free loopback ports.
        write(os.path.join(units, "jsond.socket.d", "ports.conf"), config("""
            [Socket]
            ListenStream=
            ListenStream=127.0.0.1:%(sock4)d
            ListenStream=[::1]:%(sock6)d
        """ % cls.ports))
        if SANITIZED:
            # LeakSanitizer's exit-time check needs ptrace, which the unit's
            # SystemCallFilter forbids: it would fail every clean stop. A
            # service does not inherit the suite's TSAN_OPTIONS (a race
            # ends the daemon): passed on.
            write(os.path.join(units, UNIT + ".d", "sanitizers.conf"), config("""
                [Service]
                Environment=ASAN_OPTIONS=detect_leaks=0
                Environment="TSAN_OPTIONS=%s"
            """ % os.environ.get("TSAN_OPTIONS", "")))

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.ns:
                cls.ns.close()
        finally:
            shutil.rmtree(cls.work, ignore_errors=True)

    def run(self, result=None):
        # A failing test shows jsond's journal: the service's output is there.
        failures = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > failures and self.ns:
            try:
                sys.stderr.write("---- journal of %s ----\n%s-------------------\n"
                                 % (UNIT, self.journal()[-6000:]))
            except Exception as e:  # the namespace may be gone: say so, keep the failure
                sys.stderr.write("(no journal: %s)\n" % e)
        return out

    def setUp(self):
        self.stop_all()
        self.set_conf(self.conf())
        self.cursor = self.ns.cursor()
        self.addCleanup(self.no_sanitizer_reports)
        self.addCleanup(self.stop_all)  # first: a report may come at exit

    def no_sanitizer_reports(self):
        self.assertNotRegex(self.journal(), r"Sanitizer: |runtime error: ")

    def stop_all(self):
        self.ns.systemctl("stop", "jsond.socket", UNIT)
        self.ns.systemctl("reset-failed", "jsond.socket", UNIT, check=False)

    # ---- helpers ------------------------------------------------------------

    def conf(self, extra=""):
        """A plain listener pushing hello, and a request listener."""
        return config("""
            [server]
            log_level = debug
            [listen plain]
            address = 127.0.0.1:%(plain)d
            on_connect = hello
            [listen main]
            address = 127.0.0.1:%(main)d
            requests = yes
            [route hello]
            handler = builtin:hello
        """ % self.ports) + extra

    def set_conf(self, text):
        write(os.path.join(self.work, CONF_PATH), text)

    def drop_in(self, name, text):
        """A drop-in for jsond.service in the namespace's /run, for this
        test only (removed after it, with a daemon-reload)."""
        path = self.ns.path("/run/systemd/system/%s.d/%s" % (UNIT, name))
        write(path, text)
        self.ns.systemctl("daemon-reload")

        def remove():
            os.unlink(path)
            self.ns.systemctl("daemon-reload")
        self.addCleanup(remove)

    def start(self):
        """systemctl start; returns its time: for Type=notify it returns
        once jsond has sent READY=1."""
        t0 = time.monotonic()
        self.ns.systemctl("start", UNIT)
        return time.monotonic() - t0

    def state(self, unit=UNIT):
        return self.ns.systemctl("is-active", unit, check=False).stdout.strip()

    def wait_active(self, unit=UNIT):
        """systemd handles READY=1 after jsond sent it, and may be between
        RELOADING=1 and READY=1 when asked: poll, bounded."""
        self.ns.wait(lambda: self.state(unit) == "active", 3 * SLOW, "%s to be active" % unit)

    def main_pid(self):
        return int(self.ns.show(UNIT, "MainPID")["MainPID"])

    def journal(self):
        """jsond's journal since the test began."""
        return self.ns.journal(UNIT, after=self.cursor)

    def wait_journal(self, pattern, count=1):
        """Waits (bounded) until `pattern` occurs `count` times."""
        rx = re.compile(pattern, re.M)

        def found():
            log = self.journal()
            return len(rx.findall(log)) >= count and log
        return self.ns.wait(found, 3 * SLOW, "%r in the journal" % pattern)

    def hello(self, port, host="127.0.0.1"):
        """What a listener pushing hello sends, to its close."""
        with connect("%s:%d" % (host, port)) as s:
            return recv_all(s)

    def client(self):
        """A request connection to the listener `main`."""
        c = Client(Listeners({"main": "127.0.0.1:%d" % self.ports["main"]}))
        self.addCleanup(c.close)
        return c

    def call(self, line):
        return self.client().call(line)

    # ---- tests --------------------------------------------------------------

    def test_start(self):
        took = self.start()
        self.assertEqual(self.state(), "active")
        self.assertEqual(self.hello(self.ports["plain"]), HELLO)
        p = self.ns.show(UNIT, "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
        ready = (int(p["ActiveEnterTimestampMonotonic"])
                 - int(p["ExecMainStartTimestampMonotonic"])) / 1e6
        sys.stderr.write("systemctl start: %.3f s; exec to READY=1 (active): %.3f s\n"
                         % (took, ready))
        self.wait_journal(r"jsond \S+ started \(pid")

    def test_reload(self):
        self.start()
        self.set_conf(self.conf(config("""
            [route hello2]
            handler = builtin:hello
        """)))
        self.ns.systemctl("reload", UNIT)
        log = self.wait_journal(r"^reloaded \S+: routes 1 added")
        self.assertIn("signal 1: reloading", log)
        self.assertEqual(self.call("hello2"), {"msg": "Hello World", "data": "x"})
        self.wait_active()

    def test_exec_in_the_sandbox(self):
        # The sandbox leaves programs runnable: an exec: handler (a shell
        # script, so /bin/sh and its libraries too) runs as the dynamic
        # user and replies.
        prog = os.path.join(self.work, "reply.sh")
        shutil.copy(os.path.join(SRCDIR, "tests", "integration", "progs", "reply.sh"), prog)
        os.chmod(prog, 0o755)
        self.set_conf(self.conf(config("""
            [route got]
            handler = exec:%s/reply.sh
        """ % INSIDE)))
        self.start()
        self.assertEqual(self.call('got {"a": [1, "b"]}'), {"got": {"a": [1, "b"]}})

    def test_reload_broken(self):
        self.start()
        pid = self.main_pid()
        self.set_conf(self.conf("[route\n"))
        self.ns.systemctl("reload", UNIT)
        log = self.wait_journal(r"^reload failed with \d+ problems: the old config stays in force")
        line = len(self.conf().splitlines()) + 1
        self.assertIn("%s/%s:%d: " % (INSIDE, CONF_PATH, line), log)
        self.wait_active()
        self.assertEqual(self.main_pid(), pid)
        self.assertEqual(self.hello(self.ports["plain"]), HELLO)
        self.assertEqual(self.call("hello"), {"msg": "Hello World", "data": "x"})

    def test_stop(self):
        self.start()
        self.ns.systemctl("stop", UNIT)
        self.assertEqual(self.state(), "inactive")
        p = self.ns.show(UNIT, "ExecMainStatus", "ExecMainCode", "Result")
        self.assertEqual(p["ExecMainStatus"], "0", p)
        self.assertEqual(p["Result"], "success", p)
        log = self.wait_journal(r"Deactivated successfully")
        self.assertIn("signal 15: shutting down", log)
        self.assertRegex(log, r"connections: \d+ accepted")
        self.assertNotRegex(log, r"Failed with result|status=\d+/")

    def test_watchdog(self):
        # Watchdog timeout seconds: jsond pings every half of it while its
        # loop is fresh. Small, so the test takes seconds.
        self.drop_in("watchdog.conf", config("""
            [Service]
            WatchdogSec=2s
            # The watchdog's SIGABRT would dump a core.
            LimitCORE=0
        """))
        self.set_conf(self.conf(config("""
            [route block]
            handler = builtin:test_block
        """)))
        self.start()
        pid = self.main_pid()
        self.client().send(b'block {"ms": 60000, "how": "sleep"}\n')
        self.ns.wait(lambda: self.main_pid() not in (0, pid) and self.state() == "active",
                     3 * SLOW, "jsond restarted with a new MainPID")
        self.assertEqual(self.hello(self.ports["plain"]), HELLO)
        log = self.wait_journal(r"jsond \S+ started \(pid", 2)
        self.assertIn("watchdog: the loop is stalled", log)
        self.assertRegex(log, r"watchdog:   #0 ")
        self.assertRegex(log, r"Watchdog timeout")

    def test_socket_activation(self):
        self.set_conf(config("""
            [listen v4]
            address = 127.0.0.1:%(sock4)d
            on_connect = hello
            [listen v6]
            address = [::1]:%(sock6)d
            on_connect = hello
            [route hello]
            handler = builtin:hello
        """ % self.ports))
        self.ns.systemctl("start", "jsond.socket")
        self.assertEqual(self.state("jsond.socket"), "active")
        self.assertEqual(self.state(), "inactive")  # nothing has connected yet
        # The first connection waits in the backlog while jsond starts.
        self.assertEqual(self.hello(self.ports["sock4"]), HELLO)
        self.assertEqual(self.hello(self.ports["sock6"], "::1"), HELLO)
        self.wait_active()
        log = self.wait_journal(r"listening on v6 ")
        self.assertRegex(log, r"listening on v4 127\.0\.0\.1:%d \(passed in" % self.ports["sock4"])
        self.assertRegex(log, r"listening on v6 \[::1\]:%d \(passed in" % self.ports["sock6"])


class Security(unittest.TestCase):
    def test_exposure(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            raise unittest.SkipTest("systemd is not installed (no systemd-analyze)")
        with tempfile.TemporaryDirectory(prefix="jsond-unit-") as d:
            path = os.path.join(d, UNIT)
            write(path, unit_text(UNIT, "/usr/sbin", "/etc"))
            out = subprocess.run([analyze, "security", "--offline=true", "--no-pager", path],
                                 capture_output=True, text=True, timeout=3 * SLOW)
        m = re.search(r"Overall exposure level for jsond\.service: ([0-9.]+)", out.stdout)
        self.assertTrue(m, out.stdout + out.stderr)
        sys.stderr.write("systemd-analyze security: %s\n" % m.group(1))
        self.assertLessEqual(float(m.group(1)), 1.2, out.stdout)


if __name__ == "__main__":
    main()
