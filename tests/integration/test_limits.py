"""Connection limits: max_connections, and running out of descriptors.

Clients hold a connection open by not reading a `big` reply, larger than
the kernel buffers can take. Events are ordered by what the sockets and the
daemon's log show; the one sleep measures CPU time over a window.
"""
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import time

from jsondtest import (HELLO, SLOW, VALGRIND, Client, Daemon, config, counters, counters_line,
                       main, recv_all, started, unittest)

HEAD = b'{"msg":"Hello World","data":"'
TAIL = b'"}\n'
# Comfortably more than the kernel buffers hold for a client that reads
# nothing (its receive buffer is shrunk to RCVBUF), so its reply stays in
# progress and its connection open.
SIZE = 32000000
RCVBUF = 64 * 1024
REPLY_LEN = len(HEAD) + SIZE + len(TAIL)

BUSY = b'{"error":{"code":"busy","message":"too many connections"}}\n'
BUSY_RPC = (b'{"jsonrpc":"2.0","error":{"code":-32001,"message":"too many connections",'
            b'"data":{"code":"busy"}},"id":null}\n')


def read_reply(test, sock):
    """Reads a whole `big` reply and checks it without keeping it."""
    sock.settimeout(3 * SLOW)
    buf = bytearray(1 << 20)
    total = xs = 0
    head = tail = b""
    for _ in range(REPLY_LEN + 1):  # each pass reads at least one byte
        n = sock.recv_into(buf)
        if n == 0:
            break
        test.assertLessEqual(total + n, REPLY_LEN)
        if not head:
            head = bytes(buf[:len(HEAD)])
        tail = (tail + bytes(buf[max(0, n - len(TAIL)):n]))[-len(TAIL):]
        xs += buf.count(b"x", 0, n)
        total += n
    test.assertEqual((total, xs, head, tail), (REPLY_LEN, SIZE, HEAD, TAIL))


def wait_served(socks):
    """Waits until the daemon has begun a reply on every one of `socks`."""
    pending = list(socks)
    deadline = time.monotonic() + 3 * SLOW
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("%d connections not served within %ds" % (len(pending), 3 * SLOW))
        r, _, _ = select.select(pending, [], [], left)
        pending = [s for s in pending if s not in r]


class Limits(unittest.TestCase):
    def clients(self, d, n):
        """`n` clients of the big listener with a small receive buffer,
        closed when the test ends."""
        socks = []
        for _ in range(n):
            s = d.connect("big", rcvbuf=RCVBUF)
            self.addCleanup(s.close)
            socks.append(s)
        return socks

    def test_max_connections(self):
        conf = config("""
            [server]
            max_connections = 3
            write_timeout = %ds
            [listen big]
            address = 127.0.0.1:0
            on_connect = big
            [route big]
            handler = builtin:big
            args = {"size": %d}
        """) % (10 * SLOW, SIZE)
        with Daemon(conf) as d:
            held = self.clients(d, 3)
            wait_served(held)
            # The fourth gets the busy line, then end-of-stream, and not a
            # byte of a reply.
            for extra in self.clients(d, 1):
                self.assertEqual(recv_all(extra), BUSY)
            # The three others are served in full once they read.
            ports = [s.getsockname()[1] for s in held]
            for s in held:
                read_reply(self, s)
                s.close()
            # Their slots are free again once the daemon has closed them (it
            # may linger for our FIN): then a new client is served.
            d.wait_log(lambda log: all(":%d closed (" % p in log for p in ports), 3 * SLOW)
            for s in self.clients(d, 1):
                read_reply(self, s)
            self.assertEqual(d.stop(), 0)
            log = d.log()
            self.assertIn(" 1 refused,", counters_line(log))
            c = counters(log)
            self.assertEqual((c["accepted"], c["refused"], c["dropped"], c["reset"], c["cut"]),
                             (4, 1, 0, 0, 0))

    def test_out_of_descriptors(self):
        # How EMFILE is reached. jsond raises its soft limit to the hard one
        # and keeps 32 descriptors back from max_connections (daemon/jsond.c,
        # RESERVED_FDS) for what it opens besides connections. A daemon
        # with a few listeners never uses that many, so with a lowered limit
        # the connection cap, not EMFILE, bites. This one has 30 listeners:
        # with its loop's and stdio's own descriptors that is more than the
        # 32 kept back, so accept() runs out of descriptors while the number
        # of connections is still below the lowered max_connections.
        limit, pads = 40, 28
        # valgrind keeps some descriptors above the limit for itself and
        # shows the program a limit that much lower: leave it room above.
        hard = limit + 64 if VALGRIND else limit

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        pad_listeners = "".join("""
            [listen pad%d]
            address = 127.0.0.1:0
            on_connect = hello
        """ % i for i in range(pads))
        conf = config("""
            [server]
            max_connections = 1000
            write_timeout = 0
            [listen big]
            address = 127.0.0.1:0
            on_connect = big
            [listen main]
            address = 127.0.0.1:0
            on_connect = hello
        """ + pad_listeners + """
            [route hello]
            handler = builtin:hello
            [route big]
            handler = builtin:big
            args = {"size": %d}
        """) % SIZE
        with Daemon(conf, preexec=low_limit) as d:
            # Counted once it is up: starting the watchdog loads libgcc
            # (for backtrace), an open file for a moment after the
            # listeners are announced.
            started(d)
            m = re.search(r"max_connections lowered from 1000 to (\d+): "
                          r"the descriptor limit is (\d+)", d.log())
            self.assertIsNotNone(m, "max_connections was not lowered")
            max_conns, fd_limit = int(m.group(1)), int(m.group(2))
            self.assertEqual(fd_limit, limit)
            used = [int(fd) for fd in os.listdir("/proc/%d/fd" % d.proc.pid)]
            free = fd_limit - len([fd for fd in used if fd < fd_limit])
            # The premise: descriptors run out before the connection cap.
            self.assertGreaterEqual(free, 1)
            self.assertLess(free, max_conns)

            served = self.clients(d, free)
            wait_served(served)
            waiting = self.clients(d, 3)
            d.wait_log(lambda log: "pausing accepts" in log, 3 * SLOW)
            self.assertIn("Too many open files", d.log())

            # Paused, not spinning: the listening socket stays readable, so
            # a daemon that retried at once would burn a CPU.
            cpu0, t0 = d.cpu_seconds(), time.monotonic()
            time.sleep(2)
            cpu = d.cpu_seconds() - cpu0
            window = time.monotonic() - t0
            sys.stderr.write("out of descriptors: %.3f s of CPU in a %.1f s window "
                             "(%d connections fit, max_connections %d)\n"
                             % (cpu, window, free, max_conns))
            self.assertLess(cpu, 0.5)
            self.assertIsNone(d.proc.poll(), "jsond died")
            log = d.log()
            self.assertEqual(log.count("pausing accepts"), 1)
            self.assertNotIn("accepting again", log)
            # No connection past what fits got a byte of a reply: they wait
            # in the listen queue. (Under valgrind, whose accept() wrapper
            # closes a descriptor past the limit it shows the program, they
            # see end-of-stream instead.)
            r, _, _ = select.select(waiting, [], [], 0)
            for s in r:
                try:
                    data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "a connection past the limit was served")
            if not VALGRIND:
                self.assertEqual(r, [], "a connection past the limit was closed")

            # Descriptors free up: it accepts and serves again.
            for s in served + waiting:
                s.close()
            with d.connect("main") as s:
                self.assertEqual(recv_all(s), HELLO)
            self.assertIn("accepting again", d.wait_log(lambda log: "accepting again" in log,
                                                        3 * SLOW))
            self.assertEqual(d.stop(), 0)
            c = counters(d.log())
            self.assertEqual(c["refused"], 0)

    def reload(self, d, text):
        """Rewrites the config and reloads; waits for the reload's outcome."""
        n = d.log().count("] reloaded ")
        tmp = d.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, d.path)
        d.send_signal(signal.SIGHUP)
        return d.wait_log(lambda log: log.count("] reloaded ") > n or "reload failed" in log,
                          3 * SLOW)

    def test_reload_raises_max_connections(self):
        # The first config's max_connections used to become a permanent
        # cap: started at 2 and reloaded to 10, the third client was
        # still refused.
        conf = config("""
            [server]
            max_connections = %d
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route hello]
            handler = builtin:hello
        """)
        with Daemon(conf % 2) as d:
            d.wait_log(lambda log: "started (pid" in log, 3 * SLOW)
            log = self.reload(d, (conf % 10).replace("127.0.0.1:0", d.addrs["main"]))
            self.assertNotIn("reload failed", log)
            self.assertNotIn("lowered", log)
            clients = [Client(d) for _ in range(10)]
            try:
                for c in clients:  # all ten open at once
                    self.assertEqual(c.call("hello"), json.loads(HELLO))
            finally:
                for c in clients:
                    c.close()
            self.assertEqual(d.stop(), 0)
            self.assertEqual(counters(d.log())["refused"], 0)

    def test_reload_logs_lowering(self):
        # With a low descriptor limit, a reload that asks for more than fits
        # is lowered to what fits, and says so, as a start does.
        hard = 64 + 64 if VALGRIND else 64

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        conf = config("""
            [server]
            max_connections = %d
            [listen main]
            address = 127.0.0.1:0
            on_connect = hello
            [route hello]
            handler = builtin:hello
        """)
        with Daemon(conf % 2, preexec=low_limit) as d:
            d.wait_log(lambda log: "started (pid" in log, 3 * SLOW)
            self.assertNotIn("lowered", d.log())
            log = self.reload(d, (conf % 1000).replace("127.0.0.1:0", d.addrs["main"]))
            m = re.search(r"max_connections lowered from 1000 to (\d+): "
                          r"the descriptor limit is (\d+)", log)
            self.assertIsNotNone(m, log)
            self.assertEqual(int(m.group(1)), int(m.group(2)) - 32)
            self.assertLess(log.index("lowered"), log.index("] reloaded "))
            self.assertEqual(d.stop(), 0)


def queued_in_daemon(port, client):
    """Bytes in the receive queue of the daemon's end of `client`'s
    connection to `port` (accepted or still in the listen queue), from
    /proc/net/tcp; None when the kernel shows no such socket."""
    cport = client.getsockname()[1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if int(local, 16) == port and int(remote, 16) == cport:
                return int(fields[4].split(":")[1], 16)
    return None


class Refusals(unittest.TestCase):
    """Over max_connections a client gets one line and then end-of-stream,
    never a reset, even when its request is already there."""

    CONF = config("""
        [server]
        max_connections = 1
        linger_timeout = %ds
        [listen main]
        address = 127.0.0.1:0
        requests = yes
        [listen rpc]
        address = 127.0.0.1:0
        requests = yes
        protocol = jsonrpc
        [route hello]
        handler = builtin:hello
    """) % (10 * SLOW)

    def daemon(self):
        d = Daemon(self.CONF)
        self.addCleanup(d.close)
        d.wait_log(lambda log: "started (pid" in log, 3 * SLOW)
        held = Client(d)  # the one slot, taken and proven taken
        self.addCleanup(held.close)
        self.assertEqual(held.call("hello"), json.loads(HELLO))
        return d

    def test_request_sent_before_the_accept(self):
        # The order is forced: the daemon is stopped while the client
        # connects (the kernel completes the handshake) and sends; the
        # bytes are seen in the daemon's end of the connection; only then
        # does the daemon run, accept and refuse.
        d = self.daemon()
        port = int(d.addrs["main"].rsplit(":", 1)[1])
        d.send_signal(signal.SIGSTOP)
        try:
            s = d.connect("main")
            self.addCleanup(s.close)
            s.sendall(b"hello\nhello\n")
            deadline = time.monotonic() + 3 * SLOW
            while queued_in_daemon(port, s) != 12:
                self.assertLess(time.monotonic(), deadline, "the request never arrived")
                time.sleep(0.01)  # polling /proc, bounded by the deadline
        finally:
            d.send_signal(signal.SIGCONT)
        self.assertEqual(recv_all(s), BUSY)  # a reset would raise here
        s.close()
        self.assertEqual(d.stop(), 0)
        self.assertEqual(counters(d.log())["refused"], 1)

    def test_request_sent_after_the_refusal(self):
        # The other order: the line has arrived (so the daemon has accepted
        # and refused) before the client sends; it is read and discarded.
        d = self.daemon()
        for name, line in (("main", BUSY), ("rpc", BUSY_RPC)):
            with d.connect(name) as s:
                buf = b""
                while not buf.endswith(b"\n"):
                    b = s.recv(4096)
                    self.assertNotEqual(b, b"", buf)
                    buf += b
                self.assertEqual(buf, line)
                s.sendall(b"hello\n" * 1000)
                s.shutdown(socket.SHUT_WR)
                self.assertEqual(recv_all(s), b"")
        self.assertEqual(d.stop(), 0)
        self.assertEqual(counters(d.log())["refused"], 2)

    def test_at_most_64_linger(self):
        # 70 refused at once: each gets its line and end-of-stream; 64 of
        # them linger (reading until their client's end-of-stream), the
        # other 6 are closed at once; none hangs.
        d = self.daemon()
        base = d.fds()
        n = 70
        d.send_signal(signal.SIGSTOP)
        socks = []
        try:
            for _ in range(n):
                s = d.connect("main")
                self.addCleanup(s.close)
                socks.append(s)
        finally:
            d.send_signal(signal.SIGCONT)
        for s in socks:
            self.assertEqual(recv_all(s), BUSY)
        self.assertEqual(d.wait_fds(base + 64), base + 64)
        for s in socks:
            s.close()
        self.assertEqual(d.wait_fds(base), base)
        self.assertEqual(d.stop(), 0)
        c = counters(d.log())
        self.assertEqual((c["accepted"], c["refused"]), (1, n))


if __name__ == "__main__":
    main()
