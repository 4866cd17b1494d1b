"""Streaming from a worker: builtin:records, a sync generator of unbounded
output, on a pool thread.

records {"count": N, "size": S} replies one JSON array of N items
{"i":K,"data":"xx..."} (S x's), compact, then "\\n". The worker blocks
while the connection's output is above output_buffer (back-pressure on
legacy code), so a slow reader costs neither memory nor CPU:

  - 10,000,000 items to a reader that takes 16 KB every 20 ms: the pool
    shows the worker busy, the daemon's CPU time barely grows (it blocks,
    it does not spin), its RSS stays under 64 MB; read fast afterwards,
    the text is exactly the expected one, byte for byte
  - a client that resets mid-stream stops the generator, within what the
    buffers can hold of what it had read, and the worker comes free
  - a half-closed client gets the whole array, then the end
  - caps: max_count and max_size from the route's config only, defaults
    100000000 and 1048576; over them, bad_request
  - JSON-RPC wraps the array in a response; count 0 is []
  - a client that asks for a huge array and never reads: write_timeout
    after the buffers fill, the daemon gives up: the stream stops (logged
    once), the worker comes free, the connection is closed

The expected text is made a block of items at a time and compared as the
bytes arrive: 10 M items are never held or parsed whole.
"""
import json
import re
import socket
import sys
import time

from jsondtest import (PLAIN, SCALE, SLOW, VALGRIND, Client, Daemon, SharedDaemon, config,
                       counters, error_of, kernel_buffers, main, pools, records_text, recv_all,
                       reset, result_of, rpc_error_of, unittest, wait_pool)

MB = 1024 * 1024
OUTPUT_BUFFER = 64 * 1024
MAX_COUNT = 100000000
MAX_SIZE = 1048576
STOPPED_RE = re.compile(r"route (\S+): stream stopped after (\d+) bytes: the client is gone$",
                        re.M)

CONF = config("""
    [server]
    request_timeout = 0
    output_buffer = %d
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [listen rpc]
    address = 127.0.0.1:0
    requests = yes
    protocol = jsonrpc
    [route records]
    handler = builtin:records
    [route capped]
    handler = builtin:records
    fixed_args = {"max_count": 10}
    [route argcap]
    handler = builtin:records
    args = {"max_count": 10, "max_size": 16}
    [route hello]
    handler = builtin:hello
    [route stats]
    handler = builtin:stats
""" % OUTPUT_BUFFER)


# ---- the expected text ---------------------------------------------------

def item_format(size):
    return b'{"i":%d,"data":"' + b"x" * size + b'"}'


def records_items(count, size):
    return [{"i": i, "data": "x" * size} for i in range(count)]


def digits_below(n):
    """The number of decimal digits in 0, 1, ..., n - 1."""
    total, low, d = 0, 0, 1
    while low < n:
        high = min(n, 10 ** d)
        total += (high - low) * d
        low, d = high, d + 1
    return total


class Expected:
    """The text of `records {"count": count, "size": size}`, newline
    included, made `block` items at a time."""

    def __init__(self, count, size, block=100000):
        self.count, self.size, self.block = count, size, block
        item = len(item_format(size)) - 2  # without the %d
        self.length = 1 + count * item + digits_below(count) + max(0, count - 1) + 2

    def chunks(self):
        fmt = item_format(self.size)
        yield b"["
        for start in range(0, self.count, self.block):
            part = b",".join([fmt % i for i in range(start, min(self.count, start + self.block))])
            yield b"," + part if start else part
        yield b"]\n"


class Checker:
    """Compares bytes, as they arrive, with an Expected text, without
    keeping them."""

    def __init__(self, expected):
        self.length = expected.length
        self.chunks = expected.chunks()
        self.cur = b""
        self.off = 0
        self.total = 0

    def feed(self, data):
        view = memoryview(data)
        while len(view):
            if self.off == len(self.cur):
                self.cur = next(self.chunks, None)
                self.off = 0
                if self.cur is None:
                    raise AssertionError("bytes after the end of the reply: %r"
                                         % bytes(view[:80]))
            n = min(len(view), len(self.cur) - self.off)
            want = self.cur[self.off:self.off + n]
            if view[:n] != want:
                got = bytes(view[:n])
                at = next(i for i in range(n) if got[i] != want[i])
                raise AssertionError("byte %d of the reply differs: got %r, want %r" % (
                    self.total + at, got[at:at + 60], want[at:at + 60]))
            self.off += n
            self.total += n
            view = view[n:]

    def done(self):
        return self.total == self.length


# ---- helpers -------------------------------------------------------------

def stats(c):
    return c.call("stats")


def wait_stalled(test, c, timeout=None):
    """Waits until the daemon's bytes out stop growing (less than the stats
    replies themselves between two looks 50 ms apart): every buffer
    between the worker and a client that does not read is full."""
    deadline = time.monotonic() + (timeout or 3 * SLOW)
    last = stats(c)["bytes"]["out"]
    while True:
        time.sleep(0.05)  # the interval between the looks, bounded by the deadline
        now = stats(c)["bytes"]["out"]
        if now - last < 16 * 1024:
            return now
        test.assertLess(time.monotonic(), deadline, "the stream never stalled")
        last = now


RCVBUF = 256 * 1024


def send_buffer_max():
    """The most a TCP send buffer can grow to (tcp_wmem's maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def small_window(d, listener="main"):
    """A connection to `listener` whose receive buffer is fixed at RCVBUF
    before the connect (no autotuning): what a slow reader lets pile up
    is then its daemon's send buffer and output, and a few MB of stream
    is enough to keep the worker blocked."""
    return d.connect(listener, rcvbuf=RCVBUF)


# ---- 1. a slow reader ------------------------------------------------------

# The figure: 10 M items of size 0, some 240 MB. Under valgrind or
# sanitizers the generator is far slower: fewer, larger items, still twice
# what the buffers on the way can hold (the daemon's send buffer at its
# largest, the client's fixed one, the output buffer) plus what the slow
# reader takes, so the worker still blocks.
if PLAIN:
    SLOW_COUNT, SLOW_SIZE = 10000000, 0
else:
    SLOW_COUNT = 100000 if VALGRIND else 200000
    SLOW_SIZE = max(0, (2 * (send_buffer_max() + 2 * RCVBUF + 2 * OUTPUT_BUFFER) + 2 * MB)
                    // SLOW_COUNT - 20)
SLOW_READS = 100   # of 16 KB, every 20 ms: 2 s
RSS_LIMIT_KB = 64 * 1024


class SlowReader(unittest.TestCase):
    def test_slow_reader_blocks_the_worker(self):
        exp = Expected(SLOW_COUNT, SLOW_SIZE)
        check = Checker(exp)
        with Daemon(CONF) as d, Client(d) as watch:
            s = small_window(d)
            self.addCleanup(s.close)
            s.sendall(b'records {"count": %d, "size": %d}\n' % (SLOW_COUNT, SLOW_SIZE))
            wait_pool(watch, "default", lambda p: p["busy"] == 1, "busy")
            wait_stalled(self, watch)

            # Slowly: 16 KB every 20 ms. The pace is the behaviour under
            # test, not a way to order anything.
            cpu0, out0, t0 = d.cpu_seconds(), stats(watch)["bytes"]["out"], time.monotonic()
            busy, rss = [], 0
            s.settimeout(3 * SLOW)
            for k in range(SLOW_READS):
                data = s.recv(16 * 1024)
                self.assertTrue(data, "closed after %d bytes" % check.total)
                check.feed(data)
                if k % 25 == 0:
                    busy.append(pools(watch)["default"]["busy"])
                    rss = max(rss, d.status("VmRSS"))
                time.sleep(0.02)
            window = time.monotonic() - t0
            cpu_slow = d.cpu_seconds() - cpu0
            out_slow = stats(watch)["bytes"]["out"] - out0
            busy.append(pools(watch)["default"]["busy"])
            slow_total = check.total

            # Fast: the rest, compared as it comes.
            cpu1, t1 = d.cpu_seconds(), time.monotonic()
            # 16 MB/s measured on an idle 2-core machine: 1 MB/s is 10x
            # headroom over a loaded one.
            deadline = t1 + 3 * SLOW + exp.length / MB
            buf = bytearray(MB)
            while not check.done():
                self.assertLess(time.monotonic(), deadline,
                                "%d of %d bytes read" % (check.total, exp.length))
                n = s.recv_into(buf)
                self.assertGreater(n, 0, "closed after %d of %d bytes" % (check.total, exp.length))
                check.feed(memoryview(buf)[:n])
                if check.total % (16 * MB) < n:
                    rss = max(rss, d.status("VmRSS"))
            took = time.monotonic() - t1
            cpu_fast = d.cpu_seconds() - cpu1
            hwm = d.status("VmHWM")
            # Nothing after the array: the next reply is the next request's.
            s.sendall(b'records {"count": 0}\n')
            rest = b""
            while not rest.endswith(b"\n") and len(rest) < 16:
                more = s.recv(16)
                self.assertTrue(more, "closed after %r" % rest)
                rest += more
            self.assertEqual(rest, b"[]\n")
            wait_pool(watch, "default", lambda p: p["busy"] == 0, "idle")

            # A blocked worker costs what it makes; a spinning one a core.
            per_byte = cpu_fast / max(1, exp.length - slow_total)
            limit = 0.1 * window + 3 * per_byte * out_slow
            sys.stderr.write(
                "records %d x %d (%.1f MB): slow reader %d bytes in %.2f s, daemon wrote %d "
                "bytes and used %.3f s of CPU (limit %.3f s), pool busy %s; fast reader %.1f MB "
                "in %.2f s (%.0f MB/s), daemon CPU %.2f s; RSS at most %.1f MB, VmHWM %.1f MB"
                "%s\n" % (SLOW_COUNT, SLOW_SIZE, exp.length / MB, slow_total, window, out_slow,
                          cpu_slow, limit, busy, (exp.length - slow_total) / MB, took,
                          (exp.length - slow_total) / MB / took, cpu_fast, rss / 1024, hwm / 1024,
                          "" if PLAIN else " (not asserted in this build)"))
            self.assertEqual(busy, [1] * len(busy))
            if not VALGRIND:
                self.assertLess(cpu_slow, limit)
            if PLAIN:
                self.assertLess(rss, RSS_LIMIT_KB)
                self.assertLess(hwm, RSS_LIMIT_KB)
            s.close()
            self.assertEqual(d.stop(), 0)


# ---- 2, 3. clients that leave -----------------------------------------------

# Under valgrind every item costs some 50 times more: less is read first.
READ_BEFORE_RESET = 256 * 1024 if VALGRIND else MB


class Leaving(unittest.TestCase):
    def test_reset_stops_the_generator(self):
        """The client reads 1 MB of a 240 MB stream, stops reading until the
        worker blocks, and resets: the generator stops, having made no more than the buffers on the way
        can hold past what the client read (the bound is the harness's,
        kernel_buffers(), though this client's own buffer is small), and
        its worker comes free."""
        with Daemon(CONF) as d, Client(d) as watch:
            s = small_window(d)
            s.sendall(b'records {"count": 10000000, "size": 0}\n')
            received = 0
            try:
                while received < READ_BEFORE_RESET:
                    data = s.recv(64 * 1024)
                    self.assertTrue(data, "closed after %d bytes" % received)
                    received += len(data)
                wait_pool(watch, "default", lambda p: p["busy"] == 1, "busy")
                # Reading stops: the buffers fill and the worker blocks. The
                # reset must wake it, not leave it waiting on output.
                wait_stalled(self, watch)
            finally:
                reset(s)
            t0 = time.monotonic()
            log = d.wait_log(lambda log: STOPPED_RE.search(log), 3 * SLOW)
            took = time.monotonic() - t0
            (route, made), = STOPPED_RE.findall(log)
            made = int(made)
            bound = 2 * OUTPUT_BUFFER + kernel_buffers()
            sys.stderr.write("reset after %d bytes read: the generator stopped after %d bytes "
                             "(%d more; at most %d allowed), logged %.0f ms after the reset\n"
                             % (received, made, made - received, bound, took * 1e3))
            self.assertEqual(route, "records")
            self.assertGreaterEqual(made, received)
            self.assertLessEqual(made - received, bound)
            self.assertRegex(log, r"\[info\] route records: stream stopped after %d bytes" % made)
            wait_pool(watch, "default", lambda p: p["busy"] == 0, "idle")
            # The daemon serves on.
            self.assertEqual(watch.call('records {"count": 2, "size": 1}'), records_items(2, 1))
            self.assertEqual(d.stop(), 0)

    def test_half_close_gets_the_whole_array(self):
        with Daemon(CONF) as d:
            s = d.connect("main")
            self.addCleanup(s.close)
            s.sendall(b'records {"count": 1000}\n')
            s.shutdown(socket.SHUT_WR)
            data = recv_all(s)
            self.assertTrue(data.endswith(b"]\n"), data[-80:])
            self.assertEqual(data.count(b"\n"), 1)
            self.assertEqual(json.loads(data), records_items(1000, 64))
            self.assertEqual(d.stop(), 0)


# ---- 4, 5, 6. caps, JSON-RPC, empty -----------------------------------------

def bad_request(test, reply, message):
    error_of(reply, "bad_request")
    test.assertEqual(reply["error"]["message"], message)


class Records(SharedDaemon):
    conf = CONF

    def test_defaults(self):
        """count 1000 and size 64 when not given."""
        c = self.client()
        c.send(b"records\n")
        self.assertEqual(c.raw(), records_text(1000, 64))

    def test_default_caps(self):
        c = self.client()
        bad_request(self, c.call('records {"count": %d}' % (MAX_COUNT + 1)),
                    "count %d exceeds max_count %d" % (MAX_COUNT + 1, MAX_COUNT))
        bad_request(self, c.call('records {"count": 1, "size": %d}' % (MAX_SIZE + 1)),
                    "size %d exceeds max_size %d" % (MAX_SIZE + 1, MAX_SIZE))
        # At the cap: served.
        c.send(b'records {"count": 2, "size": %d}\n' % MAX_SIZE)
        self.assertTrue(c.raw(bufsize=1 << 20) == records_text(2, MAX_SIZE))

    def test_fixed_args_cap(self):
        c = self.client()
        msg = "count 11 exceeds max_count 10"
        bad_request(self, c.call('capped {"count": 11}'), msg)
        bad_request(self, c.call('capped {"count": 11, "max_count": 1000}'), msg)
        self.assertEqual(c.call('capped {"count": 10}'), records_items(10, 64))

    def test_args_cap(self):
        """A cap in the route's args is a cap too: the client's own
        max_count or max_size, merged over args, does not raise it."""
        c = self.client()
        bad_request(self, c.call('argcap {"count": 11, "max_count": 1000}'),
                    "count 11 exceeds max_count 10")
        bad_request(self, c.call('argcap {"count": 1, "size": 17, "max_size": 1000}'),
                    "size 17 exceeds max_size 16")
        self.assertEqual(c.call('argcap {"count": 10, "size": 16}'), records_items(10, 16))

    def test_bad_args(self):
        c = self.client()
        for args in ('{"count": -1}', '{"count": "3"}', '{"size": 1.5}', '{"size": -2}'):
            error_of(c.call("records " + args), "bad_request")
        self.assertEqual(c.call('records {"count": 1, "size": 0}'), [{"i": 0, "data": ""}])

    def test_empty(self):
        c = self.client()
        c.send(b'records {"count": 0}\n{"route": "records", "args": {"count": 0}, "id": 5}\n')
        self.assertEqual(c.raw(), b"[]")
        # A plain reply carries no id: the handler's JSON as it is.
        self.assertEqual(c.raw(), b"[]")

    def test_jsonrpc(self):
        c = self.client("rpc")
        result_of(c.call('{"jsonrpc": "2.0", "method": "records", "params": {"count": 3, '
                         '"size": 2}, "id": 7}'), 7, records_items(3, 2))
        result_of(c.call('{"jsonrpc": "2.0", "method": "records", "params": {"count": 0}, '
                         '"id": "e"}'), "e", [])
        # A reply larger than output_buffer, streamed inside its envelope.
        n = 20000
        c.send(b'{"jsonrpc": "2.0", "method": "records", "params": {"count": %d}, "id": 8}\n' % n)
        raw = c.raw(bufsize=1 << 20)
        self.assertGreater(len(raw), 2 * OUTPUT_BUFFER)
        result_of(json.loads(raw), 8, records_items(n, 64))
        # In a batch, and an error over the cap: invalid params.
        reply = c.call(json.dumps([
            {"jsonrpc": "2.0", "method": "records", "params": {"count": 2, "size": 1}, "id": 1},
            {"jsonrpc": "2.0", "method": "capped", "params": {"count": 11}, "id": 2},
            {"jsonrpc": "2.0", "method": "hello", "id": 3}]))
        self.assertEqual([m["id"] for m in reply], [1, 2, 3], reply)
        result_of(reply[0], 1, records_items(2, 1))
        rpc_error_of(reply[1], -32602, 2, "bad_request")
        self.assertEqual(reply[1]["error"]["message"], "count 11 exceeds max_count 10")
        result_of(reply[2], 3, {"msg": "Hello World", "data": "x"})



# ---- 7. a client that never reads ---------------------------------------------

WRITE_TIMEOUT_MS = 500 * SCALE
# Items of 1 KB: the buffers on the way fill after a few thousand of them,
# quickly even under valgrind; MAX_COUNT of them (100 GB) never end.
STUCK_SIZE = 1024

STUCK_CONF = config("""
    [server]
    request_timeout = 0
    output_buffer = %d
    write_timeout = %dms
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route records]
    handler = builtin:records
    [route stats]
    handler = builtin:stats
""" % (OUTPUT_BUFFER, WRITE_TIMEOUT_MS))

# Which side gives up first is the daemon's race: the worker's wait for room
# or the output's own write_timeout (which closes the connection, and the
# worker then finds the client gone).
GAVE_UP_RE = re.compile(r"\[info\] route records: stream stopped after (\d+) bytes: "
                        r"(no room for write_timeout|the client is gone)$", re.M)


class NeverReads(unittest.TestCase):
    def test_write_timeout_stops_the_stream(self):
        """A client with a small receive buffer asks for MAX_COUNT items of
        1 KB and reads nothing: the buffers fill, the worker blocks, and
        write_timeout later the daemon gives up: one "stream stopped" line,
        the pool's busy back to 0, and the connection closed (what the
        client then reads is a prefix of the array, then EOF or a reset)."""
        with Daemon(STUCK_CONF) as d, Client(d) as watch:
            # A first job, so whatever the pool opens on first use is in
            # the descriptor count the test compares with at the end.
            self.assertEqual(watch.call('records {"count": 1, "size": 1}'), records_items(1, 1))
            # While a stream is pending the connection stops reading and
            # watches for a reset on a duplicate descriptor, closed just
            # after the reply's last write: the client can see the reply
            # first. The daemon reads the next line only after closing it,
            # so once this plain reply is back the count is settled.
            watch.call("stats")
            base = d.fds()
            s = small_window(d)
            self.addCleanup(s.close)
            t_sent = time.monotonic()
            s.sendall(b'records {"count": %d, "size": %d}\n' % (MAX_COUNT, STUCK_SIZE))
            # Nothing is read on s until the daemon has given up. Bytes out
            # stop growing once every buffer on the way is full (or, on a
            # slow machine, once the daemon has already given up).
            stalled_at = wait_stalled(self, watch)
            t_stalled = time.monotonic()
            # The daemon's writes to s stopped (but for a trickle as the
            # windows open) about when the stall was seen: write_timeout
            # later, the first of its two clocks runs out. 10x that bounds it.
            log = d.wait_log(lambda log: GAVE_UP_RE.search(log), WRITE_TIMEOUT_MS / 1000 * SLOW)
            t_gave_up = time.monotonic()
            (made, why), = GAVE_UP_RE.findall(log)
            made = int(made)
            # Not before write_timeout: the daemon waited for the client.
            self.assertGreaterEqual(t_gave_up - t_sent, WRITE_TIMEOUT_MS / 1000)
            wait_pool(watch, "default", lambda p: p["busy"] == 0, "idle")
            t_idle = time.monotonic()

            # Now the client reads: what the buffers held, a prefix of the
            # array, then the end.
            check = Checker(Expected(MAX_COUNT, STUCK_SIZE, block=1000))
            buf = bytearray(1 << 20)
            s.settimeout(3 * SLOW)
            deadline = time.monotonic() + 3 * SLOW
            while True:
                self.assertLess(time.monotonic(), deadline,
                                "no end after %d bytes" % check.total)
                try:
                    n = s.recv_into(buf)
                except ConnectionResetError:
                    end = "a reset"
                    break
                if n == 0:
                    end = "EOF"
                    break
                check.feed(memoryview(buf)[:n])
                self.assertLessEqual(check.total, made)
            s.close()
            self.assertEqual(d.wait_fds(base), base)
            # The stream stopped once, and the daemon serves on.
            self.assertEqual(len(re.findall(r"stream stopped after", d.log())), 1, d.log())
            self.assertEqual(watch.call('records {"count": 2, "size": 1}'), records_items(2, 1))
            watch.close()
            self.assertEqual(d.stop(), 0)
            sys.stderr.write(
                "write_timeout %d ms, a client that never reads: bytes out stalled at %d "
                "%.0f ms after the request; stream stopped after %d bytes (%s) %.0f ms after "
                "the stall was seen, %.0f ms after the request; pool idle %.0f ms later; the "
                "client then read %d bytes and %s; at exit %s\n"
                % (WRITE_TIMEOUT_MS, stalled_at, (t_stalled - t_sent) * 1e3, made, why,
                   (t_gave_up - t_stalled) * 1e3, (t_gave_up - t_sent) * 1e3,
                   (t_idle - t_gave_up) * 1e3, check.total, end, counters(d.log())))


if __name__ == "__main__":
    main()
