"""handler = file:PATH: a JSON file, validated at load, served as its bytes.

  - served byte-exact (the compact serialization any reply of that value
    gets: compared with builtin:echo's), in plain and JSON-RPC mode, in a
    batch, and pipelined many times on one connection
  - served to another handler's call as a JSON value (a file is not a
    stream), from the loop and from a worker
  - a relative PATH is relative to the directory of the config file that
    names it; with a relative config name, to the current directory
  - a file edited to invalid JSON, then SIGHUP: the reload fails at the
    handler's FILE:LINE with the JSON error's line and column, and the old
    content is served on; fixed, it reloads
  - replies still unread when a reload replaces the file come out whole
    and old (the bytes outlive their config)
  - as a push listener's on_connect: a small file (a fixed reply, sent
    from the accept callback) and one over 16 KB (sent by a connection),
    byte-exact and counted
  - `jsond -t`: a missing file, a duplicate key, a directory and a file
    over the 16M cap fail at the handler's line
"""
import json
import os
import select
import socket
import tempfile

from jsondtest import (JSOND_TESTD, SLOW, Client, Daemon, SharedDaemon, config, counters,
                       lines_of, main, recv_all, reload, run, started, unittest)

# Over 4 KB once compact (the serializer's stack buffer spills), with
# non-ASCII text, escapes, a real and nesting.
DOC = {"name": "jsond", "snowman": "\u2603 caf\u00e9", "esc": "tab\t\"q\"\\",
       "pi": 3.25, "n": None, "ok": True,
       "items": [{"i": i, "sq": i * i, "tag": "item-%d" % i} for i in range(200)]}

CONF = config("""
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route f]
    handler = file:data/doc.json
    [route e]
    handler = builtin:echo
    [route ca]
    handler = builtin:test_call_async
    [route cs]
    handler = builtin:test_call_sync
    """)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def daemon(conf=CONF, doc=DOC):
    """A daemon whose data/doc.json (beside its config) holds `doc`."""
    d = Daemon(conf, start=False, binary=JSOND_TESTD)
    write(os.path.join(d.dir.name, "data", "doc.json"), json.dumps(doc, indent=2))
    try:
        d.start()
    except BaseException:
        d.dump_log()
        d.close()
        raise
    return d


def compact(c, doc):
    """The bytes jsond sends for `doc`: echo's reply of it."""
    c.send(b"e " + json.dumps(doc).encode() + b"\n")
    return c.raw()


class Served(SharedDaemon):
    @classmethod
    def start_daemon(cls):
        return daemon()

    def setUp(self):
        super().setUp()
        self.c = Client(self.d)
        self.addCleanup(self.c.close)
        self.want = compact(self.c, DOC)
        self.assertEqual(json.loads(self.want), DOC)

    def test_plain_byte_exact(self):
        self.c.send(b"f\n")
        self.assertEqual(self.c.raw(), self.want)
        self.c.send(b'{"route": "f", "id": 7}\n')
        self.assertEqual(self.c.raw(), self.want)

    def test_jsonrpc_byte_exact(self):
        self.c.send(b'{"jsonrpc": "2.0", "method": "f", "id": 1}\n')
        self.assertEqual(self.c.raw(), b'{"jsonrpc":"2.0","result":' + self.want + b',"id":1}')
        self.c.send(b'[{"jsonrpc": "2.0", "method": "f", "id": 1},'
                    b' {"jsonrpc": "2.0", "method": "f", "id": "b"}]\n')
        got = self.c.raw()
        self.assertEqual(got, b'[{"jsonrpc":"2.0","result":' + self.want + b',"id":1},'
                         b'{"jsonrpc":"2.0","result":' + self.want + b',"id":"b"}]')

    def test_pipelined(self):
        n = 2000
        self.c.send_in_background(b"f\n" * n)
        for i in range(n):
            self.assertEqual(self.c.raw(), self.want, "reply %d" % i)

    def test_called(self):
        # From the loop (async caller) and from a worker (sync caller): the
        # value, not a stream refusal.
        for caller in ("ca", "cs"):
            self.c.send(caller.encode() + b' {"route": "f"}\n')
            self.assertEqual(self.c.reply(), {"reply": DOC}, caller)
        # Twice: a caller's copy is its own.
        self.c.send(b'ca {"route": "f"}\n')
        self.assertEqual(self.c.reply(), {"reply": DOC})
        self.c.send(b"f\n")
        self.assertEqual(self.c.raw(), self.want)


class Pushed(unittest.TestCase):
    """A push of a fixed reply starts in the accept callback with one
    send(); what it does not take, the connection writes."""

    CONF = CONF + config("""
        [listen push]
        address = 127.0.0.1:0
        on_connect = f
        [route stats]
        handler = builtin:stats
        """)

    def pushes(self, doc, n, want=None):
        clients = n + 1  # and the stats client
        with daemon(self.CONF, doc) as d:
            if want is None:
                clients += 1
                with Client(d) as c:
                    want = compact(c, doc)
            want += b"\n"
            with Client(d) as stats:
                for i in range(n):
                    with d.connect("push") as s:
                        self.assertEqual(recv_all(s), want, "push %d" % i)
                st = stats.call("stats")
            self.assertEqual(st["requests"]["routes"]["f"]["requests"], n)
            self.assertEqual(st["connections"]["total"], clients)
            self.assertGreaterEqual(st["bytes"]["out"], n * len(want))
            self.assertEqual(d.stop(), 0)
            c = counters(d.log())
            self.assertEqual((c["accepted"], c["reset"], c["cut"]), (clients, 0, 0))

    def test_small_file_sent_whole(self):
        self.pushes(DOC, 20)

    def test_file_over_the_fixed_size_sent_by_the_connection(self):
        # Over 16 KB (JSOND_FIXED_MAX): not a fixed reply, so not sent from
        # the accept callback. (test_sockets.py has a fixed reply that the
        # first send() cannot take whole.)
        doc = {"rows": ["%099d" % i for i in range(1000)]}
        want = json.dumps(doc, separators=(",", ":")).encode()  # ASCII: as jansson writes it
        self.pushes(doc, 2, want)


class Reload(unittest.TestCase):
    def test_invalid_file_refused_old_served(self):
        with daemon() as d:
            started(d)
            path = os.path.join(d.dir.name, "data", "doc.json")
            with Client(d) as c:
                want = compact(c, DOC)
                # Line 3, column 3 of the file: a duplicate key, then a
                # syntax error.
                for bad, text in (('{\n "a": 1,\n "a": 2\n}\n', "duplicate object key"),
                                  ('{\n "a": 1,\n }\n', "string or '}' expected")):
                    write(path, bad)
                    out = reload(d)
                    self.assertFalse(out.ok, out.log)
                    line, = lines_of(CONF, "handler = file:")
                    self.assertEqual(out.where(), [(d.path, line)], out.log)
                    self.assertIn("file '%s': invalid JSON at line 3, column " % path,
                                  out.errors[0])
                    self.assertIn(text, out.errors[0])
                    c.send(b"f\n")
                    self.assertEqual(c.raw(), want)
                write(path, '{"new": [1, 2]}')
                out = reload(d)
                self.assertTrue(out.ok, out.log)
                self.assertEqual(out.routes(), (0, 0, 0), out.log)
                c.send(b"f\n")
                self.assertEqual(c.raw(), b'{"new":[1,2]}')
            self.assertEqual(d.stop(), 0)

    def test_unread_replies_outlive_their_config(self):
        big = {"data": "x" * (1 << 20)}
        with daemon(doc=big) as d:
            started(d)
            path = os.path.join(d.dir.name, "data", "doc.json")
            n = 16
            want = json.dumps(big, separators=(",", ":")).encode()
            with Client(d) as c:
                # Unread replies fill the socket buffers; the rest wait in
                # the connection's output, referencing the old bytes.
                c.send(b"f\n" * n)
                # The first reply has begun (its request ran on the old
                # config) before the reload: forced, not hoped for.
                ready = select.select([c.sock], [], [], 3 * SLOW)[0]
                self.assertTrue(ready, "no reply began")
                write(path, '"replaced"')
                self.assertTrue(reload(d).ok)
                # Those read before the swap come out whole and old; those
                # read after it (the connection stopped reading above its
                # output_buffer) are the new file.
                got = [c.raw(bufsize=1 << 20) for _ in range(n)]
                old = got.count(want)
                self.assertGreater(old, 0)
                self.assertEqual(got, [want] * old + [b'"replaced"'] * (n - old))
                c.send(b"f\n")
                self.assertEqual(c.raw(), b'"replaced"')
            # Unread and dropped: the connection closes with bytes queued.
            s = d.connect("main", rcvbuf=4096)
            s.sendall(b"f\n" * n)
            write(path, '"again"')
            self.assertTrue(reload(d).ok)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
            with Client(d) as c:
                c.send(b"f\n")
                self.assertEqual(c.raw(), b'"again"')
            self.assertEqual(d.stop(), 0)


class Check(unittest.TestCase):
    """jsond -t on configs whose file is missing or bad."""

    def setUp(self):
        self.dir = self.enterContext(tempfile.TemporaryDirectory())

    def check(self, conf_name="jsond.conf", handler="file:doc.json", cwd=None):
        conf = config("""
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route f]
            handler = %s
            """ % handler)
        write(os.path.join(self.dir, conf_name), conf)
        r = run(["-t", "-c", conf_name if cwd else os.path.join(self.dir, conf_name)],
                cwd=cwd)
        return r, lines_of(conf, "handler =")[0]

    def test_missing(self):
        r, line = self.check()
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "%s/jsond.conf:%d: cannot open file '%s/doc.json': "
                         "No such file or directory\n" % (self.dir, line, self.dir))

    def test_relative(self):
        # Relative to the config's directory, not the current one.
        write(os.path.join(self.dir, "sub", "doc.json"), "[1]")
        r, _ = self.check(conf_name="sub/jsond.conf", cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        r, _ = self.check(conf_name="sub/jsond.conf", handler="file:sub/doc.json", cwd=self.dir)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot open file 'sub/sub/doc.json'", r.stderr)
        # A config named without a directory: the current one.
        write(os.path.join(self.dir, "doc.json"), "{}")
        r, _ = self.check(cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_bad_files(self):
        os.mkdir(os.path.join(self.dir, "dir.json"))
        with open(os.path.join(self.dir, "huge.json"), "w") as f:
            f.truncate(16 * 1024 * 1024 + 1)
        write(os.path.join(self.dir, "dup.json"), '{"a": {"b": 1, "b": 2}}')
        write(os.path.join(self.dir, "empty.json"), "")
        write(os.path.join(self.dir, "two.json"), "1 2")
        for name, text in (("dir.json", "is not a regular file"),
                           ("huge.json", "is larger than 16M"),
                           ("dup.json", "invalid JSON at line 1, column 18: duplicate object key"),
                           ("empty.json", "invalid JSON at line 1, column 0"),
                           ("two.json", "invalid JSON at line 1, column 3: end of file expected")):
            r, line = self.check(handler="file:" + name)
            self.assertEqual(r.returncode, 1, name)
            self.assertTrue(r.stderr.startswith("%s/jsond.conf:%d: " % (self.dir, line)),
                            r.stderr)
            self.assertIn(text, r.stderr, name)
            self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)


if __name__ == "__main__":
    main()
