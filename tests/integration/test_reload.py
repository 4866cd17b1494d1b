"""Reload (SIGHUP): the new config is read whole and put in force, or not at
all.

  - routes added, changed (handler and args) and removed; a request already
    dispatched (a long `sleep`) completes on the config it started on even
    when the reload removes its route; requests parsed after the swap use
    the new config, on connections old and new
  - listeners added and removed (IPv4, IPv6 ::1, a unix socket): an unchanged
    address keeps its very socket (the same inode), a removed one stops
    accepting while its open connections carry on, a new one is logged as
    "listening on NAME ADDR"
  - a connection's own settings (max_request_size, idle_timeout, its
    listener's routes list) are those at its accept; a kept listener socket
    gives new connections the new keys
  - `-l` keeps overriding log_level across reloads
  - broken files (syntax, unknown key, dangling route, an address in use, a
    file that is gone): the reload fails, every problem is logged with its
    FILE:LINE, the old config serves on (same routes, same sockets, same
    descriptor count), and `jsond -t` gives the same verdict
  - `include = GLOB`: a route dropped into conf.d/, an error inside an
    included file, include cycles, globs that match nothing
  - under load: pipelining clients and connect/disconnect clients while the
    daemon is reloaded again and again; nobody sees a refused connection, a
    reset, a lost or a duplicated reply; descriptors and memory come back

Every wait is for a log line, a socket event or a /proc figure, polled
within a bound; no sleep orders events. The reload outcome is the Nth
"reloaded" / "reload failed" line, read from the log as it grows.
Valgrind cleanliness comes from `make check-valgrind` running this file too.
"""
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

from jsondtest import (HELLO, PLAIN, SCALE, SLOW, VALGRIND, Client, Daemon, SharedDaemon, config,
                       connect, error_of, figures, lines_of, main, readable, recv_all, reload, run,
                       started, unittest, wait_counted, write_conf)

# The sleep that is in flight across a reload: long enough that the reload
# (a few ms; far more under valgrind) is surely over before it ends.
SLEEP_MS = 2000 * SCALE


# ---- helpers -------------------------------------------------------------

def socket_inodes(d):
    inodes = set()
    fddir = "/proc/%d/fd" % d.proc.pid
    for fd in os.listdir(fddir):
        try:
            m = re.match(r"socket:\[(\d+)\]$", os.readlink(os.path.join(fddir, fd)))
        except OSError:
            continue  # closed meanwhile
        if m:
            inodes.add(int(m.group(1)))
    return inodes


def listen_inode(d, addr):
    """The inode of the daemon's listening socket on `addr`, or None: the
    same inode before and after a reload is the same socket."""
    mine = socket_inodes(d)
    if addr.startswith("unix:"):
        with open("/proc/net/unix") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if (len(fields) >= 8 and fields[7] == addr[5:] and int(fields[3], 16) & 0x10000
                        and int(fields[6]) in mine):
                    return int(fields[6])
        return None
    host, port = addr.rsplit(":", 1)
    with open("/proc/net/tcp6" if host.startswith("[") else "/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == int(port)
                    and int(fields[9]) in mine):
                return int(fields[9])
    return None


def listen_inodes(d):
    """listen_inode() of each of the daemon's listeners, by name."""
    return {name: listen_inode(d, addr) for name, addr in d.addrs.items()}


@contextlib.contextmanager
def squatter():
    """Holds a free 127.0.0.1 port (bound and listening); yields its
    "HOST:PORT": an address in use, for as long as the block runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield "127.0.0.1:%d" % s.getsockname()[1]


def refused(addr):
    """True when nothing listens on `addr` any more."""
    try:
        connect(addr).close()
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    return False


def check_verdict(test, d, out, path=None):
    """`jsond -t` on the file the reload read reports the very same problems.
    (An address in use is seen only by binding it: -t cannot, and is not
    asked to.)"""
    r = run(["-t", "-c", path or d.path])
    test.assertEqual(r.returncode, 1, r.stdout + r.stderr)
    test.assertEqual(r.stderr.splitlines(), out.errors)


class DaemonTest(unittest.TestCase):
    def daemon(self, conf, **kw):
        d = Daemon(conf, **kw)
        self.addCleanup(d.close)
        return started(d)

    def client(self, d, listener="main"):
        c = Client(d, listener)
        self.addCleanup(c.close)
        return c

    def stop(self, d):
        self.assertEqual(d.stop(), 0)


# ---- routes ------------------------------------------------------------

ROUTES0 = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen greet]
    address = 127.0.0.1:0
    on_connect = hello
    [route hello]
    handler = builtin:hello
    [route x]
    handler = builtin:hello
    [route gone]
    handler = builtin:sleep
    [route stats]
    handler = builtin:stats
""")

# x: another handler with args; gone: removed; added: new.
ROUTES1 = config("""
    [server]
    log_level = error        ; -l debug from the harness must still win
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen greet]
    address = 127.0.0.1:0
    on_connect = hello
    [route hello]
    handler = builtin:hello
    [route x]
    handler = builtin:echo
    args = {"a": 1}
    [route added]
    handler = builtin:echo
    fixed_args = {"added": true}
    [route stats]
    handler = builtin:stats
""")


class Routes(DaemonTest):
    def test_add_change_remove_routes(self):
        d = self.daemon(ROUTES0)
        old = self.client(d)  # opened before the reload, used after it
        self.assertEqual(old.call("x"), json.loads(HELLO))
        error_of(old.call("added"), "not_found")
        # A long sleep on the route the reload removes, dispatched first.
        sleeper = self.client(d)
        sleeper.send(b'gone {"ms": %d}\n' % SLEEP_MS)
        wait_counted(old, "gone")

        out = reload(d, ROUTES1)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (1, 1, 1))
        self.assertEqual(out.listeners(), (0, 0, 2))
        self.assertEqual(out.opened, {})
        self.assertFalse(readable(sleeper.sock),
                         "the sleep ended before the reload: it was not in flight across it")
        # Parsed after the swap: no route; but the sleep in flight finishes.
        sleeper.send(b'gone {"ms": 1}\n')
        self.assertEqual(sleeper.reply(), {"slept_ms": SLEEP_MS})
        error_of(sleeper.reply(), "not_found")

        for c in (old, self.client(d)):
            self.assertEqual(c.call('x {"b": 2}'), {"a": 1, "b": 2})
            self.assertEqual(c.call('added {"added": false, "k": 1}'), {"added": True, "k": 1})
            error_of(c.call('{"route": "gone", "args": {"ms": 1}, "id": 3}'), "not_found", 3)
            self.assertEqual(c.call("hello"), json.loads(HELLO))
        with d.connect("greet") as s:
            self.assertEqual(recv_all(s), HELLO)

        # And back: what was added goes, what was removed comes back.
        out = reload(d, ROUTES0)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (1, 1, 1))
        self.assertEqual(old.call("x"), json.loads(HELLO))
        error_of(old.call("added"), "not_found")
        self.assertEqual(old.call('gone {"ms": 1}'), {"slept_ms": 1})
        self.stop(d)

    def test_log_level_pinned_by_l(self):
        """The harness runs jsond with -l debug; a config that says
        log_level = error must not silence it after a reload."""
        d = self.daemon(ROUTES0)
        out = reload(d, ROUTES1)  # its "reloaded" notice is itself the first proof
        self.assertTrue(out.ok, out.log)
        pos = len(d.log())
        with Client(d) as c:
            c.call("hello")
        d.wait_log(lambda log: "[debug] connection from" in log[pos:], 3 * SLOW)
        self.stop(d)


# ---- a connection's own settings ----------------------------------------

SETTINGS = config("""
    [server]
    idle_timeout = {idle}
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    routes = {routes}
    [route hello]
    handler = builtin:hello
    [route x]
    handler = builtin:echo
    [route y]
    handler = builtin:echo
""")


class ConnectionSettings(DaemonTest):
    def test_settings_are_those_at_accept(self):
        """idle_timeout and the listener's routes list come from the config
        in force at accept; the routes themselves from the one in force when
        the line is parsed."""
        d = self.daemon(SETTINGS.format(idle="10m", routes="hello, x"))
        old = self.client(d)
        self.assertEqual(old.call("x"), {})
        idle_ms = 300 * SCALE
        out = reload(d, SETTINGS.format(idle="%dms" % idle_ms, routes="hello, y"))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.listeners(), (0, 0, 1))
        # Its list (hello, x) and the routes now in force.
        self.assertEqual(old.call('x {"k": 1}'), {"k": 1})
        error_of(old.call("y"), "not_found")
        new = self.client(d)
        self.assertEqual(new.call('y {"k": 2}'), {"k": 2})
        t0 = time.monotonic()  # before its last request: its idle time starts after
        error_of(new.call("x"), "not_found")
        # The new connection has the short idle_timeout...
        new.expect_eof()
        self.assertGreaterEqual(time.monotonic() - t0, idle_ms / 1000)
        # ...the old one, idle for longer still, the long one.
        self.assertEqual(old.call("hello"), json.loads(HELLO))
        self.stop(d)


# ---- listeners ---------------------------------------------------------

def listeners_conf(**addrs):
    """Request listeners NAME = ADDRESS, in the order given, and a hello
    route."""
    return "".join("[listen %s]\naddress = %s\nrequests = yes\n" % kv for kv in addrs.items()) \
        + "[route hello]\nhandler = builtin:hello\n"


LISTENERS0 = listeners_conf(main="127.0.0.1:0", other="127.0.0.1:0")

# main names the port it got, other still says 0: both keep their sockets.
# Three new ones, one of them a third 127.0.0.1:0.
LISTENERS1 = listeners_conf(main="127.0.0.1:{main_port}", other="127.0.0.1:0", v6="[::1]:0",
                            local="unix:@DIR@/jsond.sock", more="127.0.0.1:0")

LISTENERS2 = listeners_conf(main="127.0.0.1:{main_port}")


class Listeners(DaemonTest):
    def test_add_and_remove_listeners(self):
        d = self.daemon(LISTENERS0)
        port = d.addrs["main"].rsplit(":", 1)[1]
        before = listen_inodes(d)
        self.assertNotIn(None, before.values(), d.addrs)
        fds = d.fds()

        out = reload(d, LISTENERS1.format(main_port=port))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.listeners(), (3, 0, 2))
        self.assertEqual(sorted(out.opened), ["local", "more", "v6"])
        self.assertEqual(out.opened["local"], "unix:%s/jsond.sock" % d.dir.name)
        self.assertTrue(out.opened["v6"].startswith("[::1]:"), out.opened)
        self.assertEqual(out.stopped, {})
        for name in ("main", "other"):
            self.assertEqual(listen_inode(d, d.addrs[name]), before[name], name)
        self.assertEqual(d.fds(), fds + 3)
        clients = {name: self.client(d, name) for name in d.addrs}
        for name, c in clients.items():
            self.assertEqual(c.call("hello"), json.loads(HELLO), name)

        addrs = dict(d.addrs)
        out = reload(d, LISTENERS2.format(main_port=port))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.listeners(), (0, 4, 1))
        self.assertEqual(out.opened, {})
        gone = ("other", "v6", "local", "more")
        # Logged with the address they had, the port port 0 got included.
        self.assertEqual(out.stopped, {name: addrs[name] for name in gone})
        self.assertEqual(list(d.addrs), ["main"])
        self.assertEqual(listen_inode(d, d.addrs["main"]), before["main"])
        for name in gone:
            self.assertTrue(refused(addrs[name]), name)
        self.assertFalse(os.path.exists(os.path.join(d.dir.name, "jsond.sock")))
        # Connections accepted by a listener that is gone carry on.
        for name, c in clients.items():
            self.assertEqual(c.call("hello"), json.loads(HELLO), name)
        for c in clients.values():
            c.close()
        with Client(d) as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
        self.stop(d)

    def test_same_config_again_keeps_everything(self):
        """Several listeners on 127.0.0.1:0: each keeps its own socket."""
        d = self.daemon(LISTENERS0)
        before = listen_inodes(d)
        for _ in range(3):
            out = reload(d)
            self.assertTrue(out.ok, out.log)
            self.assertEqual(out.routes(), (0, 0, 0))
            self.assertEqual(out.listeners(), (0, 0, 2))
        self.assertEqual(listen_inodes(d), before)
        self.stop(d)


# ---- max_request_size --------------------------------------------------

SIZE_CONF = config("""
    [server]
    max_request_size = {size}
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route echo]
    handler = builtin:echo
""")


def echo_line(length):
    """An echo request line of exactly `length` bytes, and its reply."""
    pad = length - len('echo {"s": ""}')
    return b'echo {"s": "%s"}' % (b"x" * pad), {"s": "x" * pad}


PUSH = config("""
    [listen main]
    address = 127.0.0.1:0
    {keys}
    [route hello]
    handler = builtin:hello
""")


class ListenerKeys(DaemonTest):
    def test_kept_socket_takes_new_keys(self):
        """A push listener turned into a request listener on the same
        address: the same socket, the new behaviour for new connections."""
        d = self.daemon(PUSH.format(keys="on_connect = hello"))
        inode = listen_inode(d, d.addrs["main"])
        with d.connect("main") as s:
            self.assertEqual(recv_all(s), HELLO)
        out = reload(d, PUSH.format(keys="requests = yes"))
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.listeners(), (0, 0, 1))
        self.assertEqual(listen_inode(d, d.addrs["main"]), inode)
        with Client(d) as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
            self.assertEqual(c.call("hello"), json.loads(HELLO))
        self.stop(d)


class RequestSize(DaemonTest):
    def test_new_connections_get_the_new_limit(self):
        d = self.daemon(SIZE_CONF.format(size="1K"))
        old = self.client(d)
        mid, mid_reply = echo_line(1500)
        out = reload(d, SIZE_CONF.format(size="2K"))
        self.assertTrue(out.ok, out.log)
        new = self.client(d)
        self.assertEqual(new.call(mid), mid_reply)
        error_of(new.call(echo_line(2049)[0]), "too_large")
        new.expect_eof()
        # The connection accepted under 1K keeps 1K.
        line, reply = echo_line(1024)
        self.assertEqual(old.call(line), reply)
        error_of(old.call(mid), "too_large")
        old.expect_eof()
        # And down again.
        out = reload(d, SIZE_CONF.format(size="1K"))
        self.assertTrue(out.ok, out.log)
        with Client(d) as c:
            error_of(c.call(mid), "too_large")
        self.stop(d)


# ---- broken files ------------------------------------------------------

GOOD = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen greet]
    address = 127.0.0.1:0
    on_connect = hello
    [route hello]
    handler = builtin:hello
    [route x]
    handler = builtin:hello
""")

# GOOD with x changed and a route added. Each broken file is made from it, so
# serving on would show if any part of a broken file had been taken.
CHANGED = (GOOD.replace("[route x]\nhandler = builtin:hello", "[route x]\nhandler = builtin:echo")
           + "[route newroute]\nhandler = builtin:echo\n")

SYNTAX = CHANGED.replace("[route x]", "not ini at all\n[route x]") + "[route unclosed\n"
UNKNOWN_KEY = (CHANGED.replace("[listen greet]\n", "[listen greet]\nspeed = 11\n")
               + "colour = blue\n")
DANGLING = (CHANGED.replace("on_connect = hello", "on_connect = nowhere")
            .replace("requests = yes", "requests = yes\nroutes = hello, nosuch"))
ALL_AT_ONCE = SYNTAX.replace("[listen greet]\n", "[listen greet]\nspeed = 11\n").replace(
    "on_connect = hello", "on_connect = nowhere")
IN_USE = CHANGED + config("""
    [listen fresh]
    address = 127.0.0.1:0
    requests = yes
    [listen taken]
    requests = yes
    address = {addr}
""")


class Broken(SharedDaemon):
    """One daemon on GOOD; every test feeds it a broken file."""

    conf = GOOD

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        started(cls.d)
        cls.inodes = listen_inodes(cls.d)

    def setUp(self):
        super().setUp()
        self.fds = self.d.fds()

    def tearDown(self):
        write_conf(self.d, GOOD)

    def reject(self, text, where, verdict=True):
        """Reloads `text`: it must fail with exactly the problems on the
        lines `where` (1-based line numbers of the main file), each named;
        then GOOD still serves."""
        out = reload(self.d, text)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.problems, len(out.errors), out.log)
        self.assertEqual(sorted(out.where()), [(self.d.path, n) for n in sorted(where)], out.log)
        if verdict:
            check_verdict(self, self.d, out)
        self.still_good(out)
        return out

    def still_good(self, out):
        d = self.d
        self.assertEqual(out.stopped, {}, out.log)
        self.assertEqual(listen_inodes(d), self.inodes)
        with Client(d) as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
            self.assertEqual(c.call("x"), json.loads(HELLO))
            error_of(c.call("newroute"), "not_found")
        with d.connect("greet") as s:
            self.assertEqual(recv_all(s), HELLO)
        # Nothing the failed reload opened is left open (the connections
        # above are closed by the time the count settles).
        self.assertEqual(d.wait_fds(self.fds), self.fds)

    def test_syntax_error(self):
        self.reject(SYNTAX, lines_of(SYNTAX, "not ini", "[route unclosed"))

    def test_unknown_key(self):
        self.reject(UNKNOWN_KEY, lines_of(UNKNOWN_KEY, "speed", "colour"))

    def test_dangling_route(self):
        self.reject(DANGLING, lines_of(DANGLING, "nowhere", "nosuch"))

    def test_every_problem_at_once(self):
        out = self.reject(ALL_AT_ONCE, lines_of(ALL_AT_ONCE, "not ini", "[route unclosed",
                                                "speed", "nowhere"))
        self.assertEqual(out.problems, 4)

    def test_address_in_use(self):
        """One listener that cannot bind fails the whole reload: the one that
        could bind is released again. (jsond -t does not bind, so it cannot
        see this problem: no verdict is compared.)"""
        with squatter() as addr:
            text = IN_USE.format(addr=addr)
            taken = lines_of(text, "[listen taken]", addr)
            out = reload(self.d, text)
            self.assertFalse(out.ok, out.log)
            self.assertEqual(out.problems, 1)
            self.assertEqual(len(out.errors), 1, out.log)
            self.assertIn(addr, out.errors[0])
            # The listener's own line: its section or its address.
            (path, line), = out.where()
            self.assertEqual(path, self.d.path)
            self.assertIn(line, taken)
            # fresh was bound (and logged) before taken failed: it is gone.
            self.assertEqual(list(out.opened), ["fresh"])
            self.assertTrue(refused(out.opened["fresh"]))
            self.assertIn("stopped listening on fresh %s (another listener failed)"
                          % out.opened["fresh"], out.log)
            self.still_good(out)

    def test_file_gone(self):
        os.rename(self.d.path, self.d.path + ".away")
        try:
            out = reload(self.d)
        finally:
            os.rename(self.d.path + ".away", self.d.path)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.problems, 1)
        self.assertIn(self.d.path, out.errors[0])
        self.still_good(out)

    def test_unix_path_is_a_file(self):
        """A unix listener whose path is a regular file: the reload fails at
        the address line (so -t says the same) and the file stays, byte for
        byte: jsond removes nothing but a socket."""
        data = os.path.join(self.d.dir.name, "precious.db")
        content = b"precious data\n\x00\xff" * 100
        with open(data, "wb") as f:
            f.write(content)
        text = CHANGED + "[listen sock]\nrequests = yes\naddress = unix:%s\n" % data
        out = self.reject(text, lines_of(text, "unix:"))
        self.assertIn("'unix:%s' is a regular file, not a socket" % data, out.errors[0])
        with open(data, "rb") as f:
            self.assertEqual(f.read(), content)

    def test_nothing_to_serve(self):
        """An empty file, one cut short before its first listener, one with
        only comments: no [listen] section, an error at the file (line 0),
        and the old config serves on. Without this, a SIGHUP on a
        half-written file closed every listener without a word."""
        for text in ("", "; nothing yet\n", GOOD[GOOD.index("[route hello]"):],
                     "[route hello]\nhandler = builtin:hel"):
            out = reload(self.d, text)
            self.assertFalse(out.ok, out.log)
            self.assertIn("%s: no [listen] section: this config would serve nothing"
                          % self.d.path, out.errors, out.log)
            check_verdict(self, self.d, out)
            self.still_good(out)

    def test_every_listener_closed(self):
        """Only address-less [listen] sections: valid to -t (systemd may pass
        them sockets), but a reload that would close every listener is
        refused, with its reason, and changes nothing."""
        text = CHANGED.replace("address = 127.0.0.1:0\n", "")
        self.assertEqual(run(["-t", "-c", write_conf(self.d, text)]).returncode, 0)
        out = reload(self.d, text)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.errors, ["%s: no listener has an address: this config would serve "
                                      "nothing" % self.d.path], out.log)
        self.still_good(out)

    def test_two_listeners_one_address(self):
        text = CHANGED + config("""
            [listen d1]
            address = 127.0.0.1:1
            requests = yes
            [listen d2]
            requests = yes
            address = 127.0.0.1:1
        """)
        first, second = lines_of(text, "address = 127.0.0.1:1")[0], len(text.splitlines())
        out = self.reject(text, [second])
        self.assertIn("listener d2: address 127.0.0.1:1 is also listener d1's (line %d)" % first,
                      out.errors[0])

    def test_good_again_after_failures(self):
        self.reject(SYNTAX, lines_of(SYNTAX, "not ini", "[route unclosed"), verdict=False)
        out = reload(self.d, CHANGED)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (1, 0, 1))
        with Client(self.d) as c:
            self.assertEqual(c.call('x {"k": 1}'), {"k": 1})
            self.assertEqual(c.call("newroute"), {})
        out = reload(self.d, GOOD)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (0, 1, 1))


# ---- the config source -------------------------------------------------

SOURCE_CONF = config("""
    [listen main]
    address = unix:@DIR@/main.sock
    requests = yes
    [route hello]
    handler = builtin:hello
""")


def default_config_path():
    """The daemon's default config path, as its usage text gives it."""
    m = re.search(r"\(default (\S+);", run(["-h"]).stdout)
    assert m, "no default path in the usage text"
    return m.group(1)


class ConfigSource(DaemonTest):
    """Without -c, the source is chosen once, at start (DESIGN.md): a
    reload re-reads it, and a default file that has gone missing (a package
    upgrade replacing it) fails the reload; it never falls back to the
    built-in default on 0.0.0.0:25000.

    The default path is compiled in (SYSCONFDIR), so the test takes control
    of it: the daemon runs in its own user and mount namespace with a
    directory of the test bind-mounted over SYSCONFDIR, and in its own
    network namespace, so that even a daemon that did fall back binds
    0.0.0.0:25000 only there. It listens on a unix socket in the test's
    directory, which both sides see. Where unprivileged namespaces are not
    available the test is skipped, saying so."""

    def test_missing_default_file_fails_the_reload(self):
        default = default_config_path()
        etc, rel = os.path.dirname(os.path.dirname(default)), os.path.basename(
            os.path.dirname(default))
        if not os.path.isdir(etc) or subprocess.run(
                ["unshare", "--user", "--map-root-user", "--mount", "--net", "true"],
                capture_output=True, timeout=3 * SLOW).returncode != 0:
            self.skipTest("needs unshare (user, mount, net namespaces) and %s" % etc)
        d = Daemon(SOURCE_CONF, start=False, wrapper=[])
        self.addCleanup(d.close)
        mine = os.path.join(d.dir.name, "etc")
        path = write_conf(d, SOURCE_CONF, os.path.join(mine, rel, "jsond.conf"))
        # jsond without -c: the harness's "-c FILE" is dropped by the shell.
        d.wrapper = ["unshare", "--user", "--map-root-user", "--mount", "--net", "sh", "-c",
                     'mount --bind "$1" "$2" && j=$3 && shift 5 && exec "$j" "$@"', "sh",
                     mine, etc]
        d.start()
        started(d)
        d.addrs["main"] = "unix:%s/main.sock" % d.dir.name
        self.assertNotIn("built-in default", d.log())
        c = self.client(d)
        self.assertEqual(c.call("hello"), json.loads(HELLO))

        os.rename(path, path + ".away")  # the package manager at work
        out = reload(d)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.errors, ["%s: cannot open: No such file or directory" % default])
        self.assertNotIn("built-in default", out.log)
        self.assertNotIn("listening on v4", out.log)
        self.assertEqual(c.call("hello"), json.loads(HELLO))

        os.rename(path + ".away", path)
        write_conf(d, SOURCE_CONF + "[route echo]\nhandler = builtin:echo\n", path)
        out = reload(d)
        self.assertTrue(out.ok, out.log)
        self.assertIn("reloaded %s: routes 1 added" % default, out.log)
        self.assertEqual(c.call('echo {"a": 1}'), {"a": 1})
        self.stop(d)


# ---- include -----------------------------------------------------------

INCLUDING = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
    include = conf.d/*.conf
""")


class Includes(DaemonTest):
    def setUp(self):
        # conf.d/ exists but is empty: a glob that matches nothing is fine.
        self.d = self.daemon(INCLUDING)
        self.confd = os.path.join(self.d.dir.name, "conf.d")
        os.mkdir(self.confd)

    def drop(self, name, text):
        return write_conf(self.d, config(text), os.path.join(self.confd, name))

    def test_route_from_conf_d(self):
        d = self.d
        old = self.client(d)
        error_of(old.call("extra"), "not_found")
        self.drop("10-extra.conf", """
            [route extra]
            handler = builtin:echo
            args = {"from": "conf.d"}
        """)
        self.assertEqual(run(["-t", "-c", d.path]).returncode, 0)
        out = reload(d)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (1, 0, 0))
        self.assertEqual(old.call("extra"), {"from": "conf.d"})
        with Client(d) as c:
            self.assertEqual(c.call('extra {"k": 1}'), {"from": "conf.d", "k": 1})
        # Removing the file removes the route.
        os.unlink(os.path.join(self.confd, "10-extra.conf"))
        out = reload(d)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (0, 1, 0))
        error_of(old.call("extra"), "not_found")
        self.stop(d)

    def good_serves(self, out):
        self.assertEqual(out.stopped, {})
        with Client(self.d) as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
            error_of(c.call("bad"), "not_found")

    def test_error_in_included_file(self):
        path = self.drop("20-bad.conf", """
            [route bad]
            handler = builtin:hello
            colour = blue
        """)
        out = reload(self.d)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.problems, 1)
        (where, line), = out.where()
        self.assertTrue(os.path.samefile(where, path), where)
        self.assertEqual(line, 3)
        check_verdict(self, self.d, out)
        self.good_serves(out)
        self.stop(self.d)

    def test_include_cycles(self):
        # A file that includes itself.
        path = self.drop("30-self.conf", """
            [route bad]
            handler = builtin:hello
            include = 30-self.conf
        """)
        out = reload(self.d)
        self.assertFalse(out.ok, out.log)
        self.assertIn(3, [line for where, line in out.where() if os.path.samefile(where, path)],
                      out.log)
        check_verdict(self, self.d, out)
        self.good_serves(out)
        os.unlink(path)
        # conf.d/30-a.conf -> more/b.conf -> conf.d/30-a.conf
        a = self.drop("30-a.conf", """
            [route bad]
            handler = builtin:hello
            include = ../more/*.conf
        """)
        b = write_conf(self.d, "include = ../conf.d/30-a.conf\n",
                       os.path.join(self.d.dir.name, "more", "b.conf"))
        out = reload(self.d)
        self.assertFalse(out.ok, out.log)
        named = [(w, line) for w, line in out.where()
                 if os.path.samefile(w, a) or os.path.samefile(w, b)]
        self.assertTrue(named, out.log)
        check_verdict(self, self.d, out)
        self.good_serves(out)
        # And the main file included again from conf.d/.
        os.unlink(a)
        c = write_conf(self.d, "include = ../jsond.conf\n", os.path.join(self.confd, "40.conf"))
        out = reload(self.d)
        self.assertFalse(out.ok, out.log)
        self.assertIn(1, [line for w, line in out.where() if os.path.samefile(w, c)], out.log)
        check_verdict(self, self.d, out)
        self.good_serves(out)
        self.stop(self.d)

    def test_listener_in_included_file(self):
        """A listener from conf.d/: opened by a reload, and when its address
        is in use the error names the included file and its line."""
        path = self.drop("50-listen.conf", """
            ; a listener of its own
            [listen extra]
            address = 127.0.0.1:0
            requests = yes
        """)
        out = reload(self.d)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.listeners(), (1, 0, 1))
        with Client(self.d, "extra") as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
        with squatter() as addr:
            self.drop("50-listen.conf", """
                ; a listener of its own
                [listen extra]
                address = %s
                requests = yes
            """ % addr)
            out = reload(self.d)
        self.assertFalse(out.ok, out.log)
        (where, line), = out.where()
        self.assertTrue(os.path.samefile(where, path), out.log)
        self.assertIn(line, (2, 3), out.log)  # its section or its address
        self.good_serves(out)
        with Client(self.d, "extra") as c:
            self.assertEqual(c.call("hello"), json.loads(HELLO))
        self.stop(self.d)

    def test_only_regular_files(self):
        """A FIFO in conf.d/ (no writer ever comes), a symlink to /dev/zero,
        an oversized file: the reload fails at the include line, naming the
        file, at once; the loop never stalls on them (a client's hello is
        answered promptly right after) and memory never balloons."""
        d = self.d
        c = Client(d, timeout=SLOW)
        self.addCleanup(c.close)
        line = lines_of(INCLUDING, "include = conf.d")[0]
        rss = d.status("VmRSS")
        fifo = os.path.join(self.confd, "10-fifo.conf")
        os.mkfifo(fifo)
        zero = os.path.join(self.confd, "20-zero.conf")
        os.symlink("/dev/zero", zero)
        big = os.path.join(self.confd, "30-big.conf")
        with open(big, "wb") as f:
            f.truncate(16 * 1024 * 1024 + 1)
        for path, why in ((fifo, "not a regular file (a FIFO)"),
                          (zero, "not a regular file (a character device)"),
                          (big, "larger than 16M, the limit for one config file")):
            out = reload(d)
            self.assertFalse(out.ok, out.log)
            self.assertIn("%s:%d: cannot read included file '%s': %s" % (d.path, line, path, why),
                          out.errors, out.log)
            t0 = time.monotonic()
            self.assertEqual(c.call("hello"), json.loads(HELLO))
            self.assertLess(time.monotonic() - t0, SLOW / 2)
            check_verdict(self, d, out)
            os.unlink(path)
        if PLAIN:
            self.assertLess(d.status("VmRSS") - rss, 16 * 1024)
        out = reload(d)
        self.assertTrue(out.ok, out.log)
        self.good_serves(out)
        self.stop(d)

    def test_globs_matching_nothing(self):
        text = INCLUDING + "include = nothing/*.conf\ninclude = conf.d/*.none\n"
        out = reload(self.d, text)
        self.assertTrue(out.ok, out.log)
        self.assertEqual(out.routes(), (0, 0, 0))
        self.assertEqual(out.listeners(), (0, 0, 1))
        self.assertEqual(run(["-t", "-c", self.d.path]).returncode, 0)
        # A plain path that is missing is an error, on its own line.
        text = INCLUDING + "include = missing.conf\n"
        out = reload(self.d, text)
        self.assertFalse(out.ok, out.log)
        self.assertEqual(out.where(), [(self.d.path, lines_of(text, "missing.conf")[0])])
        check_verdict(self, self.d, out)
        self.good_serves(out)
        self.stop(self.d)


# ---- under load --------------------------------------------------------

# The figures. Under valgrind the daemon runs some 20-50x slower, so
# the counts are scaled down there; every behaviour (pipelining and
# connecting clients, valid and broken reloads, the fd check) is kept.
PIPELINERS = 10 if VALGRIND else 100
CONNECTORS = 4 if VALGRIND else 20
RELOADS = 12 if VALGRIND else 50
BATCH = 10
# Every client loop is bounded in time and in count.
LOAD_SECONDS = 40 * SCALE
MAX_BATCHES = 100000
# Each config carries a route with a 256 KB argument, so a config that a
# reload failed to free would show in RSS (some 33 of them are made).
BLOB = 256 * 1024
RSS_MARGIN_KB = 4 * 1024

LOAD_CONF = config("""
    [server]
    log_level = warning
    max_request_size = {size}
    [listen main]
    address = 127.0.0.1:{main}
    requests = yes
    [listen side]
    address = 127.0.0.1:{side}
    requests = yes
    [route echo]
    handler = builtin:echo
    [route hello]
    handler = builtin:hello
    [route blob]
    handler = builtin:echo
    args = {{"blob": "{blob}"}}
    [route {only}]
    handler = builtin:hello
""")


def load_confs(main_port, side_port):
    """Configs A and B (on the bound ports: the same listeners) and a broken
    one. A -> B adds one route, removes one and changes one."""
    a = LOAD_CONF.format(size="64K", main=main_port, side=side_port, blob="a" * BLOB, only="a_only")
    b = LOAD_CONF.format(size="32K", main=main_port, side=side_port, blob="b" * BLOB, only="b_only")
    broken = b.replace("requests = yes", "requests = yes\ncolour = blue", 1) + "not ini\n"
    return a, b, broken


class Tally:
    def __init__(self):
        self.cond = threading.Condition()
        self.requests = 0
        self.connections = 0
        self.problems = []

    def add(self, requests=0, connections=0):
        with self.cond:
            self.requests += requests
            self.connections += connections
            self.cond.notify_all()

    def problem(self, text):
        with self.cond:
            self.problems.append(text)
            self.cond.notify_all()

    def wait_progress(self, requests, connections, timeout):
        """Waits until the counts pass the given ones (or a problem)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.problems or (
                self.requests >= requests and self.connections >= connections), timeout)


def read_line(sock, buf):
    while b"\n" not in buf:
        b = sock.recv(1 << 16)
        if not b:
            raise EOFError("connection closed where a reply was due")
        buf += b
    i = buf.index(b"\n")
    line = bytes(buf[:i])
    del buf[:i + 1]
    return line


def pipeliner(addr, stop, deadline, tally):
    """Batches of BATCH echo requests with ids K, K+1, ...: every reply must
    come back once, in order."""
    k = 0
    try:
        with connect(addr) as s:
            buf = bytearray()
            for _ in range(MAX_BATCHES):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                s.sendall(b"".join(b'{"route":"echo","args":{"n":%d},"id":%d}\n' % (j, j)
                                   for j in range(k, k + BATCH)))
                for j in range(k, k + BATCH):
                    line = read_line(s, buf)
                    if line != b'{"n":%d}' % j:
                        raise AssertionError("reply %r where {\"n\":%d} was due" % (line[:80], j))
                k += BATCH
                tally.add(requests=BATCH)
            # No reply left over (a duplicate would be one): end-of-stream next.
            s.shutdown(socket.SHUT_WR)
            rest = bytes(buf) + recv_all(s)
            if rest:
                raise AssertionError("%d bytes after the last reply: %r" % (len(rest), rest[:80]))
    except Exception as e:  # noqa: BLE001 -- every failure is the test's
        tally.problem("pipeliner on %s after %d requests: %s: %s"
                      % (addr, k, type(e).__name__, e))


def connector(addrs, stop, deadline, tally):
    """Connect, hello, read the reply, close; again and again."""
    n = 0
    try:
        for n in range(MAX_BATCHES):
            if stop.is_set() or time.monotonic() > deadline:
                break
            with connect(addrs[n % len(addrs)]) as s:
                s.sendall(b"hello\n")
                line = read_line(s, bytearray())
                if line + b"\n" != HELLO:
                    raise AssertionError("reply %r" % line[:80])
            tally.add(connections=1)
    except Exception as e:  # noqa: BLE001
        tally.problem("connector after %d connections: %s: %s" % (n, type(e).__name__, e))


def under_load(d, reloads, pipeliners, connectors, seconds):
    """Runs the clients and `reloads` reloads (A, B and broken in turn) under
    them; returns (tally, outcomes). Each reload waits for every pipeliner
    to have had about one more batch answered, so reloads and traffic
    interleave."""
    main_port = d.addrs["main"].rsplit(":", 1)[1]
    side_port = d.addrs["side"].rsplit(":", 1)[1]
    a, b, broken = load_confs(main_port, side_port)
    addrs = [d.addrs["main"], d.addrs["side"]]
    tally, stop = Tally(), threading.Event()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=pipeliner, args=(addrs[i % 2], stop, deadline, tally))
               for i in range(pipeliners)]
    threads += [threading.Thread(target=connector, args=(addrs[i % 2:] + addrs[:i % 2], stop,
                                                         deadline, tally))
                for i in range(connectors)]
    outcomes = []
    try:
        for t in threads:
            t.start()
        for i in range(reloads):
            want_req = tally.requests + pipeliners * BATCH
            want_conn = tally.connections + connectors
            if not tally.wait_progress(want_req, want_conn, max(0.0, deadline - time.monotonic())):
                raise AssertionError("no progress before reload %d: %d requests, %d connections"
                                     % (i + 1, tally.requests, tally.connections))
            if tally.problems:
                break
            text = (b, broken, a)[i % 3]
            out = reload(d, text)
            outcomes.append(out)
            if text is broken:
                assert not out.ok, out.log
                assert out.problems == 2, out.log
            else:
                assert out.ok, out.log
                assert out.routes() == (1, 1, 1), out.log
                assert out.listeners() == (0, 0, 2), out.log
        # Traffic after the last reload too.
        tally.wait_progress(tally.requests + pipeliners * BATCH, tally.connections + connectors,
                            max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(max(1.0, deadline + 3 * SLOW - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    assert not alive, "%d client threads did not finish" % alive
    return tally, outcomes


def report(tally, outcomes, pipeliners, connectors, out=sys.stderr):
    oks = [o.ms for o in outcomes if o.ok]
    out.write("under load: %d requests by %d pipelining clients, %d connections by %d clients; "
              "%d reloads (%d ok, %d failed); refused, reset, lost, duplicated: %d problems; "
              "reload ms %s\n" % (tally.requests, pipeliners, tally.connections, connectors,
                                  len(outcomes), len(oks), len(outcomes) - len(oks),
                                  len(tally.problems), figures(oks)))


def load_daemon():
    """A daemon on config A with port 0. -l notice keeps the log short, and
    the "reloaded" notices must appear although log_level says warning."""
    main_port = side_port = 0
    a = load_confs(main_port, side_port)[0]
    return started(Daemon(a, args=["-l", "notice"]))


class UnderLoad(DaemonTest):
    def test_reloads_under_load(self):
        d = load_daemon()
        self.addCleanup(d.close)
        fds0 = d.fds()
        # A short warm-up, so that RSS is compared after the allocator has
        # seen this traffic once; the figures are those of the main run.
        under_load(d, 3, PIPELINERS, CONNECTORS, LOAD_SECONDS)
        self.assertEqual(d.wait_fds(fds0), fds0)
        rss0 = d.status("VmRSS")

        tally, outcomes = under_load(d, RELOADS, PIPELINERS, CONNECTORS, LOAD_SECONDS)
        report(tally, outcomes, PIPELINERS, CONNECTORS)
        self.assertEqual(tally.problems, [])
        self.assertEqual(len(outcomes), RELOADS)
        self.assertGreater(tally.requests, 0)
        # Every client closed: the daemon holds its start's descriptors again
        # (the same listeners: the configs keep their addresses).
        self.assertEqual(d.wait_fds(fds0), fds0)
        if PLAIN:
            rss = d.status("VmRSS")
            sys.stderr.write("RSS %d kB before, %d kB after\n" % (rss0, rss))
            self.assertLess(rss - rss0, RSS_MARGIN_KB)
        self.stop(d)


if __name__ == "__main__":
    main()
