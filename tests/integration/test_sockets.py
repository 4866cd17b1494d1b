"""Socket activation: jsond serves the listening sockets systemd passes.

The test plays systemd: it binds and listens on sockets itself, puts them at
descriptors 3, 4, ... of the daemon, and sets LISTEN_PID, LISTEN_FDS and
LISTEN_FDNAMES as sd_listen_fds(3) reads them. A passed socket goes to the
[listen] section named like it, else to the one with its address; one that
no listener takes is an error, at start and on a reload alike; a reload
hands a passed socket on without closing it. (test_systemd.py does the same
through a real systemd and jsond.socket.)
"""
import fcntl
import json
import os
import re
import socket
import tempfile

from jsondtest import (HELLO, JSOND, SLOW, WRAPPER, Client, Daemon, config, main, recv_all,
                       reload, built_with_systemd, started, unittest, wait_counted)

PASSED_RE = re.compile(r"listening on (\S+) (\S+) \(passed in as fd (\d+), named (\S*)\)")



def tcp_listener(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(16)
    return s


def text_of(sock):
    host, port = sock.getsockname()[:2]
    return "[%s]:%d" % (host, port) if sock.family == socket.AF_INET6 else "%s:%d" % (host, port)


def fetch(addr):
    """What a push listener at addr sends, to end-of-stream."""
    host, port = addr.rsplit(":", 1)
    fam = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as c:
        c.settimeout(3 * SLOW)
        c.connect((host.strip("[]"), int(port)))
        return recv_all(c)


class Passed:
    """Sockets to pass, each with a name; start() runs jsond on them as
    systemd would. The test keeps its own descriptors, as systemd does."""

    def __init__(self, test, *named):
        self.socks = [s for s, _ in named]
        self.names = [n for _, n in named]
        for s in self.socks:
            test.addCleanup(s.close)
        # Above every descriptor the child might have at 3, 4, ...: the
        # moves to 3.. in the child can then never overwrite one another.
        self.high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 64) for s in self.socks]
        for fd in self.high:
            test.addCleanup(os.close, fd)

    def preexec(self):
        for i, fd in enumerate(self.high):
            os.dup2(fd, 3 + i)  # dup2 leaves the copy inheritable

    def start(self, conf, **kw):
        conf += HELLO_ROUTE
        env = dict(os.environ, LISTEN_FDS=str(len(self.socks)),
                   LISTEN_FDNAMES=":".join(self.names))
        # LISTEN_PID is the daemon's own pid: a shell that execs it has it.
        wrapper = ["sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', "sh"] + WRAPPER
        return Daemon(conf, env=env, wrapper=wrapper, preexec=self.preexec,
                      pass_fds=tuple(range(3, 3 + len(self.socks))), wait_listeners=False,
                      **kw)


HELLO_ROUTE = config("""
    [route hello]
    handler = builtin:hello
""")


def passed_lines(d):
    return {m[0]: (m[1], int(m[2]), m[3]) for m in PASSED_RE.findall(d.log())}


class SocketActivation(unittest.TestCase):
    def setUp(self):
        if not built_with_systemd():
            self.skipTest("%s is built without libsystemd: no socket activation" % JSOND)

    def test_by_name_then_by_address(self):
        a, b = tcp_listener(), tcp_listener()
        try:
            c = tcp_listener("::1")
        except OSError:
            self.skipTest("no IPv6 loopback")
        p = Passed(self, (a, "front"), (b, "jsond.socket"), (c, "jsond.socket"))
        # front has no address; back names another one, but its socket wins;
        # v6 is found by its address; own is bound by jsond itself.
        conf = config("""
            [listen front]
            on_connect = hello
            [listen back]
            address = %s
            on_connect = hello
            [listen v6]
            address = %s
            on_connect = hello
            [listen own]
            address = 127.0.0.1:0
            on_connect = hello
        """ % (text_of(b), text_of(c)))
        with started(p.start(conf)) as d:
            got = passed_lines(d)
            self.assertEqual(got, {"front": (text_of(a), 3, "front"),
                                   "back": (text_of(b), 4, "jsond.socket"),
                                   "v6": (text_of(c), 5, "jsond.socket")})
            own = dict(re.findall(r"listening on (own) (\S+)\n", d.log()))["own"]
            for addr in (text_of(a), text_of(b), text_of(c), own):
                self.assertEqual(fetch(addr), HELLO, addr)
            self.assertIn("systemd passed 3 sockets", d.log())
            self.assertEqual(d.stop(), 0)

    def test_push_over_the_send_buffer(self):
        """A passed socket keeps its options: with a small send buffer, the
        send() the accept callback makes of a fixed reply takes only part
        of it, and the connection writes the rest, byte-exact."""
        a = tcp_listener()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the accepted inherit it
        p = Passed(self, (a, "push"))
        rows = ["%099d" % i for i in range(160)]
        want = json.dumps({"rows": rows}, separators=(",", ":")).encode()  # ASCII: as jansson
        self.assertLessEqual(len(want), 16 * 1024)  # a fixed reply: JSOND_FIXED_MAX
        tmp = tempfile.TemporaryDirectory(prefix="jsond-test-")
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, "rows.json")
        with open(path, "w") as f:
            json.dump({"rows": rows}, f)
        conf = config("""
            [listen push]
            on_connect = rows
            [listen own]
            address = 127.0.0.1:0
            requests = yes
            [route rows]
            handler = file:%s
            [route stats]
            handler = builtin:stats
        """ % path)
        with started(p.start(conf)) as d:
            d.addrs["own"] = dict(re.findall(r"listening on (own) (\S+)\n", d.log()))["own"]
            stats = Client(d, "own")
            self.addCleanup(stats.close)
            for i in range(3):
                with socket.socket() as c:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
                    c.settimeout(3 * SLOW)
                    c.connect(a.getsockname())
                    # Read once the first send() is done (it counts the
                    # push): the rest is then the connection's to write.
                    wait_counted(stats, "rows", at_least=i + 1)
                    self.assertEqual(recv_all(c), want + b"\n", "push %d" % i)
            self.assertEqual(d.stop(), 0)

    def test_address_in_config_differs(self):
        a = tcp_listener()
        p = Passed(self, (a, "main"))
        conf = config("""
            [listen main]
            address = 127.0.0.1:1
            on_connect = hello
        """)
        with started(p.start(conf)) as d:
            self.assertEqual(fetch(text_of(a)), HELLO)
            self.assertIn("listener main: serving the socket passed in on %s, not its address "
                          "127.0.0.1:1" % text_of(a), d.log())
            self.assertEqual(d.stop(), 0)

    def test_unmatched_socket_stops_the_start(self):
        a, b = tcp_listener(), tcp_listener()
        p = Passed(self, (a, "main"), (b, "stray"))
        conf = config("""
            [listen main]
            on_connect = hello
        """)
        d = p.start(conf, start=False)
        with d:
            d.start(wait_listeners=False)
            self.assertEqual(d.proc.wait(3 * SLOW), 1)
            self.assertIn("the socket passed in as fd 4 (%s, named stray) matches no listener"
                          % text_of(b), d.log())
            self.assertNotIn("started (pid", d.log())

    def test_not_a_listening_socket(self):
        a = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # bound, not listening
        a.bind(("127.0.0.1", 0))
        p = Passed(self, (a, "main"))
        d = p.start(config("""
            [listen main]
            on_connect = hello
        """), start=False)
        with d:
            d.start(wait_listeners=False)
            self.assertEqual(d.proc.wait(3 * SLOW), 1)
            self.assertIn("the socket passed in as fd 3 (named main) is not a listening stream "
                          "socket", d.log())

    def test_reload_hands_the_socket_on(self):
        a = tcp_listener()
        p = Passed(self, (a, "jsond.socket"))
        first = config("""
            [listen one]
            address = %s
            on_connect = hello
        """ % text_of(a))
        with started(p.start(first)) as d:
            self.assertEqual(fetch(text_of(a)), HELLO)
            # Renamed: the listener serving the socket is kept, under its
            # new name (found by the socket's address).
            out = reload(d, first.replace("[listen one]", "[listen two]") + HELLO_ROUTE)
            self.assertTrue(out.ok, out.log)
            self.assertEqual(out.listeners(), (0, 0, 1))
            self.assertEqual(fetch(text_of(a)), HELLO)
            # A config that leaves the socket to nobody fails; the old one serves.
            out = reload(d, config("""
                [listen other]
                address = 127.0.0.1:0
                on_connect = hello
            """) + HELLO_ROUTE)
            self.assertFalse(out.ok)
            self.assertIn("the socket passed in as fd 3 (%s, named jsond.socket) matches no "
                          "listener" % text_of(a), out.log)
            self.assertEqual(fetch(text_of(a)), HELLO)
            self.assertEqual(d.stop(), 0)

    def test_without_sockets_nothing_changes(self):
        # LISTEN_PID not ours: the variables are someone else's, and ignored.
        env = dict(os.environ, LISTEN_PID="1", LISTEN_FDS="1", LISTEN_FDNAMES="main")
        with started(Daemon(config("""
            [listen main]
            address = 127.0.0.1:0
            on_connect = hello
        """) + HELLO_ROUTE, env=env)) as d:
            self.assertEqual(fetch(d.addrs["main"]), HELLO)
            self.assertNotIn("passed in", d.log())
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
