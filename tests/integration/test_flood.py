"""Back-pressure on request connections: a client that floods requests and
reads nothing meets TCP back-pressure, not a growing daemon.

One client writes 50,000 `big {"size": 100000}` requests (about 1 MB of
requests asking for about 5 GB of replies) and reads nothing for 5 s. The
daemon must stop reading it (max_pipeline, output_buffer), so its memory
stays within 4 x output_buffer (1 MB; measured: +0.1 MB) of its start, and
it must go on serving everyone else.
Then the client reads: every reply, in order, byte for byte. A marker
request every 1,000 (`echo {"seq": K}`) makes the order visible.

The 5 s pause is the behaviour under test (a client that does not read),
not a way to order events; RSS is sampled during it, and the peak (VmHWM)
is asserted.
"""
import sys
import time

from jsondtest import (HELLO, PLAIN, SLOW, VALGRIND, Client, Daemon, config, kernel_buffers, main,
                       unittest)

MB = 1024 * 1024
SIZE = 100000
# The figure. Under valgrind the daemon moves bytes some 50x slower:
# 5 GB would take hours, so the count is scaled down there; every behaviour
# (the pause, the other client, the order, the exact bytes) is kept.
COUNT = 5000 if VALGRIND else 50000
MARK_EVERY = 1000
PAUSE = 5.0
OUTPUT_BUFFER = 256 * 1024
RSS_LIMIT_MB = 4 * OUTPUT_BUFFER / MB

REPLY = b'{"msg":"Hello World","data":"' + b"x" * SIZE + b'"}\n'
REQUEST = b'big {"size": %d}\n' % SIZE

CONF = config("""
    [server]
    write_timeout = %ds
    output_buffer = %d
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
    [route echo]
    handler = builtin:echo
    [route big]
    handler = builtin:big
    [route stats]
    handler = builtin:stats
""") % (3 * SLOW + PAUSE, OUTPUT_BUFFER)
MAX_PIPELINE = 128  # the default


def requests():
    out = []
    for i in range(COUNT):
        out.append(REQUEST)
        if (i + 1) % MARK_EVERY == 0:
            out.append(b'echo {"seq": %d}\n' % ((i + 1) // MARK_EVERY))
    return b"".join(out)


def expected():
    """The replies, in order, as (bytes, count) runs."""
    for i in range(COUNT):
        yield REPLY
        if (i + 1) % MARK_EVERY == 0:
            yield b'{"seq":%d}\n' % ((i + 1) // MARK_EVERY)


class Stream:
    """Checks a byte stream against the expected replies as it arrives,
    without keeping it."""

    def __init__(self, records):
        self.records = iter(records)
        self.cur = next(self.records)
        self.off = 0
        self.done = 0  # complete replies seen
        self.total = 0

    def feed(self, buf, n):
        pos = 0
        while pos < n:
            if self.cur is None:
                raise AssertionError("bytes after the last reply: %r" % bytes(buf[pos:pos + 80]))
            take = min(n - pos, len(self.cur) - self.off)
            if bytes(buf[pos:pos + take]) != self.cur[self.off:self.off + take]:
                raise AssertionError("reply %d differs at byte %d: got %r, want %r" % (
                    self.done, self.off, bytes(buf[pos:pos + min(take, 60)]),
                    self.cur[self.off:self.off + min(take, 60)]))
            pos += take
            self.off += take
            if self.off == len(self.cur):
                self.done += 1
                self.cur = next(self.records, None)
                self.off = 0
        self.total += n


class Flood(unittest.TestCase):
    def test_flood_without_reading(self):
        with Daemon(CONF) as d:
            rss0 = d.status("VmRSS")
            hwm0 = d.status("VmHWM")  # the peak, so no spike between samples is missed
            rss_max = rss0
            flood = Client(d)
            data = requests()
            flood.send_in_background(data)

            # The pause: nothing read from the flooding client. Others are
            # served meanwhile, promptly.
            t0 = time.monotonic()
            latencies = []
            for _ in range(int(PAUSE / 0.1) + 1):
                if time.monotonic() - t0 >= PAUSE:
                    break
                rss_max = max(rss_max, d.status("VmRSS"))
                t1 = time.monotonic()
                with Client(d) as other:
                    other.send(b"hello\n")
                    self.assertEqual(other.raw(), HELLO.rstrip(b"\n"))
                latencies.append(time.monotonic() - t1)
                time.sleep(0.1)  # pacing the samples, not ordering anything
            rss_pause = d.status("VmRSS")
            rss_max = max(rss_max, rss_pause)
            writer_blocked = flood.writer.is_alive()
            # The daemon stopped taking requests: no more were started than
            # max_pipeline plus the replies the kernel buffers can hold.
            with Client(d) as other:
                started = other.call("stats")["requests"]["routes"]["big"]["requests"]
            bound = MAX_PIPELINE + kernel_buffers() // len(REPLY) + 1
            self.assertLessEqual(started, bound)

            # Now the client reads everything: every reply, in order.
            t1 = time.monotonic()
            st = Stream(expected())
            buf = bytearray(4 * MB)
            want = COUNT * len(REPLY) + sum(len(b'{"seq":%d}\n' % k)
                                            for k in range(1, COUNT // MARK_EVERY + 1))
            flood.sock.settimeout(3 * SLOW)
            next_sample = 0
            deadline = t1 + 30 * SLOW
            while st.total < want:
                self.assertLess(time.monotonic(), deadline, "reading took too long")
                n = flood.sock.recv_into(buf)
                self.assertGreater(n, 0, "closed after %d of %d replies" % (st.done, COUNT))
                st.feed(buf, n)
                if st.total >= next_sample:
                    rss_max = max(rss_max, d.status("VmRSS"))
                    next_sample += 256 * MB
            took = time.monotonic() - t1
            self.assertEqual(st.done, COUNT + COUNT // MARK_EVERY)
            self.assertIsNone(st.cur)
            flood.writer.join(3 * SLOW)
            self.assertFalse(flood.writer.is_alive())
            # The connection is still good.
            flood.send(b'echo {"after": 1}\n')
            self.assertEqual(flood.reply(), {"after": 1})
            flood.close()

            growth = (d.status("VmHWM") - hwm0) / 1024.0
            sys.stderr.write(
                "flood: %d requests (%.1f MB) for %d replies (%.2f GB); writer %s after %.0f s "
                "without reading; RSS %.1f MB at start, %.1f MB at the end of the pause, "
                "%.1f MB at most; peak RSS (VmHWM) growth %.1f MB%s; %d requests started during the pause "
                "(at most %d allowed); hello on another connection in %.1f ms at most (%d "
                "tries); reading took %.1f s (%.0f MB/s)\n" % (
                    COUNT, len(data) / MB, COUNT, st.total / 1024.0 ** 3,
                    "blocked" if writer_blocked else "done", PAUSE, rss0 / 1024.0,
                    rss_pause / 1024.0, rss_max / 1024.0, growth,
                    "" if PLAIN else " (not asserted in this build)", started, bound,
                    max(latencies) * 1000,
                    len(latencies), took, st.total / MB / took))
            if PLAIN:
                self.assertLessEqual(growth, RSS_LIMIT_MB)
            # "Promptly": far below the pause, with headroom for a busy machine.
            self.assertLess(max(latencies), 0.1 * SLOW)
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
