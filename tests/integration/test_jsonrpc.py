"""JSON-RPC 2.0 over request lines: the specification's own examples
(https://www.jsonrpc.org/specification#examples) on a `protocol = jsonrpc`
listener, every error code of DESIGN.md's table that this version can
produce, ids, batches, notifications, and how an `auto` connection switches
to JSON-RPC.

The spec's methods are config routes (subtract, sum, update, notify_hello,
get_data: builtin:echo; foobar is not defined), so envelopes, ids and error
codes are compared, not arithmetic. A request that must get no reply is
followed by a probe request: the next reply must be the probe's, since
replies come in request order.

Of the server error codes, too_large (-32000) and shutting_down (-32005) can
be provoked here; busy, timeout, handler_failed, wrong_color and internal
(-32001..-32004, -32603) need pools, exec handlers, a policy or a failing
allocation, so their mapping is checked in tests/unit/check_proto.c.
"""
import json
import signal

from jsondtest import (SLOW, Client, Closed, Daemon, SharedDaemon, config, kernel_buffers, main,
                       result_of, rpc_error_of, unittest, wait_counted)

ECHOES = ["subtract", "sum", "update", "notify_hello", "get_data", "echo"]

CONF = config("""
    [server]
    max_request_size = 4K
    [listen rpc]
    address = 127.0.0.1:0
    requests = yes
    protocol = jsonrpc
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [route hello]
    handler = builtin:hello
    [route big]
    handler = builtin:big
    [route sleep]
    handler = builtin:sleep
    [route stats]
    handler = builtin:stats
    [pool workers]
    threads = 2
    [route pooled]
    handler = builtin:sleep
    pool = workers
""") + "".join("[route %s]\nhandler = builtin:echo\n" % name for name in ECHOES)


class RpcClient(Client):
    probes = 0

    def probe(self):
        """Sends a request and checks that the next reply is its own: no
        reply was pending before it."""
        RpcClient.probes += 1
        tag = "probe-%d" % RpcClient.probes
        self.send(b'{"jsonrpc": "2.0", "method": "echo", "params": {"tag": "%s"}, "id": "%s"}\n'
                  % (tag.encode(), tag.encode()))
        reply = self.reply()
        assert reply == {"jsonrpc": "2.0", "result": {"tag": tag}, "id": tag}, reply

    def no_reply(self, line):
        """`line` gets no reply at all."""
        self.send(line.encode() + b"\n")
        self.probe()


class Rpc(SharedDaemon):
    conf = CONF
    listener = "rpc"
    client_class = RpcClient

    # ---- the specification's examples, in its order -----------------------

    def test_spec_positional_parameters(self):
        c = self.client()
        result_of(c.call('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}'),
                  1, [42, 23])
        result_of(c.call('{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}'),
                  2, [23, 42])

    def test_spec_named_parameters(self):
        c = self.client()
        result_of(c.call('{"jsonrpc": "2.0", "method": "subtract", '
                         '"params": {"subtrahend": 23, "minuend": 42}, "id": 3}'),
                  3, {"subtrahend": 23, "minuend": 42})
        result_of(c.call('{"jsonrpc": "2.0", "method": "subtract", '
                         '"params": {"minuend": 42, "subtrahend": 23}, "id": 4}'),
                  4, {"minuend": 42, "subtrahend": 23})

    def test_spec_notification(self):
        c = self.client()
        c.no_reply('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}')
        c.no_reply('{"jsonrpc": "2.0", "method": "foobar"}')

    def test_spec_non_existent_method(self):
        c = self.client()
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}'), -32601, "1")

    def test_spec_invalid_json(self):
        c = self.client()
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]'),
                     -32700, None)

    def test_spec_invalid_request_object(self):
        c = self.client()
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": 1, "params": "bar"}'), -32600, None)

    def test_spec_batch_invalid_json(self):
        c = self.client()
        rpc_error_of(c.call('[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
                            '{"jsonrpc": "2.0", "method"]'), -32700, None)

    def test_spec_empty_array(self):
        c = self.client()
        rpc_error_of(c.call("[]"), -32600, None)

    def test_spec_invalid_batch_not_empty(self):
        c = self.client()
        reply = c.call("[1]")
        self.assertIsInstance(reply, list)
        self.assertEqual(len(reply), 1)
        rpc_error_of(reply[0], -32600, None)

    def test_spec_invalid_batch(self):
        c = self.client()
        reply = c.call("[1,2,3]")
        self.assertIsInstance(reply, list)
        self.assertEqual(len(reply), 3)
        for r in reply:
            rpc_error_of(r, -32600, None)

    def test_spec_batch(self):
        c = self.client()
        reply = c.call(
            '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            ' {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
            ' {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
            ' {"foo": "boo"},'
            ' {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
            ' {"jsonrpc": "2.0", "method": "get_data", "id": "9"}]')
        self.assertIsInstance(reply, list)
        self.assertEqual(len(reply), 5, reply)
        result_of(reply[0], "1", [1, 2, 4])
        result_of(reply[1], "2", [42, 23])
        rpc_error_of(reply[2], -32600, None)
        rpc_error_of(reply[3], -32601, "5")
        result_of(reply[4], "9", {})
        c.probe()

    def test_spec_batch_all_notifications(self):
        c = self.client()
        c.no_reply('[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
                   ' {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]')

    # ---- error codes -----------------------------------------------------

    def test_invalid_params(self):
        """-32602: params the handler rejects."""
        c = self.client()
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "sleep", "params": {"ms": "x"}, '
                            '"id": 1}'), -32602, 1)
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "big", "params": {"size": -1}, '
                            '"id": "b"}'), -32602, "b")
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "big", "params": {"size": "x"}, '
                            '"id": null}'), -32602, None)
        # params that are not an object or an array: an invalid request
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "echo", "params": 5, "id": 2}'),
                     -32600, 2)
        # a notification that fails says nothing
        c.no_reply('{"jsonrpc": "2.0", "method": "sleep", "params": {"ms": "x"}}')

    def test_invalid_requests(self):
        c = self.client()
        cases = [
            ('{"jsonrpc": "1.0", "method": "echo", "id": 1}', 1),
            ('{"jsonrpc": 2.0, "method": "echo", "id": 1}', 1),
            ('{"jsonrpc": "2.0", "id": "m"}', "m"),
            ('{"jsonrpc": "2.0", "method": null, "id": 3}', 3),
            ('{"jsonrpc": "2.0", "method": "echo", "params": "x", "id": 4}', 4),
            # ids that are not a string, a number or null: id null
            ('{"jsonrpc": "2.0", "method": "echo", "id": {"a": 1}}', None),
            ('{"jsonrpc": "2.0", "method": "echo", "id": [1]}', None),
            ('{"jsonrpc": "2.0", "method": "echo", "id": true}', None),
            # not JSON-RPC at all, on a jsonrpc listener
            ('{"route": "hello", "id": 5}', None),
            ("{}", None),
        ]
        for line, id in cases:
            with self.subTest(line=line):
                rpc_error_of(c.call(line), -32600, id)

    def test_not_json(self):
        """-32700 for every line that is not JSON, id null."""
        c = self.client()
        for line in [b"{", b"[", b"{} x", b"hello", b'echo {"a": 1}', b"!!!", b"h\xffllo",
                     b'{"jsonrpc": "2.0", "method": "echo\xff", "id": 1}', b"hel\0lo",
                     b"[" * 3000]:
            with self.subTest(line=line[:40]):
                c.send(line + b"\n")
                rpc_error_of(json.loads(c.raw().decode("utf-8")), -32700, None)

    def test_method_not_found(self):
        c = self.client()
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "nosuch", "params": [1], "id": 9}'),
                     -32601, 9)
        rpc_error_of(c.call('{"jsonrpc": "2.0", "method": "rpc.discover", "id": 10}'), -32601, 10)
        # long names with multibyte characters
        for name in ["a" + "\u00e9" * 40, "\u00e9" * 40, "ab" + "\u4e2d" * 30]:
            with self.subTest(name=name[:8]):
                line = json.dumps({"jsonrpc": "2.0", "method": name, "id": 11})
                rpc_error_of(c.call(line), -32601, 11)
        c.no_reply('{"jsonrpc": "2.0", "method": "nosuch", "params": {"a": 1}}')
        c.no_reply('{"jsonrpc": "2.0", "method": "rpc.discover"}')

    def test_too_large(self):
        """-32000, id null (the line was never read as a request), then a
        clean close."""
        c = self.client()
        result_of(c.call('{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}'), 1, [1])
        c.send(b'{"jsonrpc": "2.0", "method": "echo", "params": ["%s"], "id": 2}\n'
               % (b"x" * 5000) + b'{"jsonrpc": "2.0", "method": "echo", "id": 3}\n')
        rpc_error_of(c.reply(), -32000, None)
        c.expect_eof()

    # ---- ids, results, batches -------------------------------------------

    def test_ids(self):
        c = self.client()
        for id in ["s", "", "\u00e9\u4e2d", 0, -7, 2 ** 53, 1.5, -0.25, None]:
            with self.subTest(id=id):
                line = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": {"v": 1},
                                   "id": id})
                result_of(c.call(line), id, {"v": 1})
                line = json.dumps({"jsonrpc": "2.0", "method": "nosuch", "id": id})
                rpc_error_of(c.call(line), -32601, id)

    def test_id_bytes(self):
        """An id comes back as json_dumps writes it, whether the server keeps
        the client's text (integers, strings without escapes, up to 40
        bytes) or a value; on the loop and from a pool, where the reply is
        made after the line is gone; alone, pipelined and in a batch."""
        c = self.client()
        long = '"%s"' % ("i" * 38)
        ids = [("7", "7"), ("-7", "-7"), ("-0", "0"), ("1.5", "1.5"), ("1E2", "100.0"),
               ("-0.0", "-0.0"), ('"s"', '"s"'), ('""', '""'),
               ('"\u00e9\u4e2d/"', '"\u00e9\u4e2d/"'), (r'"a\"b"', r'"a\"b"'),
               (r'"a\u00e9\/"', '"a\u00e9/"'), (long, long), (long[:-1] + 'x"', long[:-1] + 'x"'),
               ("null", "null"),
               ("9223372036854775807", "9223372036854775807")]
        for id, want in ids:
            with self.subTest(id=id):
                want = want.encode()
                c.send(b'{"jsonrpc":"2.0","method":"echo","params":{"v":1},"id":%s}\n'
                       % id.encode())
                self.assertEqual(c.raw(), b'{"jsonrpc":"2.0","result":{"v":1},"id":%s}' % want)
                c.send(b'{"jsonrpc":"2.0","method":"nosuch","id":%s}\n' % id.encode())
                self.assertIn(b'"id":%s}' % want, c.raw())
                c.send(b'{"jsonrpc":"2.0","method":"hello","id":%s}\n' % id.encode())
                self.assertTrue(c.raw().endswith(b'},"id":%s}' % want))
                c.send(b'[{"jsonrpc":"2.0","method":"echo","params":[2],"id":%s}]\n'
                       % id.encode())
                self.assertEqual(c.raw(), b'[{"jsonrpc":"2.0","result":[2],"id":%s}]' % want)
        # pipelined to a pool, and an error made there
        c.send(b"".join(b'{"jsonrpc":"2.0","method":"pooled","params":{"ms":1},"id":%s}\n'
                        % id.encode() for id, _ in ids)
               + b'{"jsonrpc":"2.0","method":"pooled","params":{"ms":"x"},"id":"bad"}\n')
        for _, want in ids:
            self.assertEqual(c.raw(), b'{"jsonrpc":"2.0","result":{"slept_ms":1},"id":%s}'
                             % want.encode())
        rpc_error_of(c.reply(), -32602, "bad")

    def test_results_of_every_shape(self):
        c = self.client()
        result_of(c.call('{"jsonrpc": "2.0", "method": "hello", "id": 1}'), 1,
                  {"msg": "Hello World", "data": "x"})
        result_of(c.call('{"jsonrpc": "2.0", "method": "echo", "id": 2}'), 2, {})
        result_of(c.call('{"jsonrpc": "2.0", "method": "echo", "params": [], "id": 3}'), 3, [])
        # a reply made by a producer, in an envelope
        size = 1000000
        c.send(b'{"jsonrpc": "2.0", "method": "big", "params": {"size": %d}, "id": "big"}\n'
               % size)
        self.assertEqual(c.raw(), b'{"jsonrpc":"2.0","result":{"msg":"Hello World","data":"'
                         + b"x" * size + b'"},"id":"big"}')

    def test_batches(self):
        c = self.client()
        reply = c.call('[{"jsonrpc": "2.0", "method": "big", "params": {"size": 100000}, "id": 1},'
                       ' {"jsonrpc": "2.0", "method": "nosuch"},'
                       ' {"jsonrpc": "2.0", "method": "sleep", "params": {"ms": 50}, "id": 2},'
                       ' {"jsonrpc": "2.0", "method": "echo", "params": [3], "id": 3},'
                       ' {"jsonrpc": "2.0", "method": "echo", "params": 1, "id": 4},'
                       ' {"jsonrpc": "2.0", "method": "sleep", "params": {"ms": "x"}, "id": 5},'
                       ' [], {"jsonrpc": "2.0", "method": "echo", "params": [6]}]')
        self.assertEqual(len(reply), 6, reply)
        result_of(reply[0], 1, {"msg": "Hello World", "data": "x" * 100000})
        result_of(reply[1], 2, {"slept_ms": 50})
        result_of(reply[2], 3, [3])
        rpc_error_of(reply[3], -32600, 4)
        rpc_error_of(reply[4], -32602, 5)
        rpc_error_of(reply[5], -32600, None)
        # batches and single requests, pipelined: in order
        lines = []
        for i in range(100):
            if i % 3 == 0:
                lines.append('[{"jsonrpc": "2.0", "method": "echo", "params": [%d], "id": %d},'
                             ' {"jsonrpc": "2.0", "method": "echo", "params": [%d]},'
                             ' {"jsonrpc": "2.0", "method": "echo", "params": [%d], "id": "%d"}]'
                             % (i, i, i, i, i))
            else:
                lines.append('{"jsonrpc": "2.0", "method": "echo", "params": [%d], "id": %d}'
                             % (i, i))
        c.send_in_background(("\n".join(lines) + "\n").encode())
        for i in range(100):
            reply = c.reply()
            if i % 3 == 0:
                self.assertEqual(len(reply), 2)
                result_of(reply[0], i, [i])
                result_of(reply[1], str(i), [i])
            else:
                result_of(reply, i, [i])
        c.probe()

    # ---- an auto listener ------------------------------------------------

    def test_auto_connection_switches(self):
        c = self.client("main")
        # plain until the first JSON-RPC request
        self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})
        self.assertEqual(c.call("{")["error"]["code"], "bad_request")
        self.assertEqual(c.call("[]")["error"]["code"], "bad_request")
        self.assertNotIn("jsonrpc", c.call("!!!"))
        result_of(c.call('{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}'), 1, [1])
        # from now on a line that is not JSON is a parse error...
        rpc_error_of(c.call("{"), -32700, None)
        rpc_error_of(c.call("!!!"), -32700, None)
        # ... and any array a batch
        rpc_error_of(c.call("[]"), -32600, None)
        self.assertEqual(len(c.call("[1,2]")), 2)
        # plain requests still work, with plain replies
        self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})
        self.assertEqual(c.call('{"route": "nosuch", "id": 2}')["error"]["code"], "not_found")

    def test_auto_batch_on_fresh_connection(self):
        c = self.client("main")
        reply = c.call('[{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}, 5]')
        self.assertEqual(len(reply), 2)
        result_of(reply[0], 1, [1])
        rpc_error_of(reply[1], -32600, None)
        rpc_error_of(c.call("{"), -32700, None)

    def test_auto_notification_first(self):
        """A notification is a JSON-RPC request too: it switches the
        connection, and gets no reply."""
        c = self.client("main")
        c.send(b'{"jsonrpc": "2.0", "method": "nosuch"}\n')
        rpc_error_of(c.call("{"), -32700, None)
        c.probe()

    def test_auto_too_large(self):
        c = self.client("main")
        result_of(c.call('{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": 1}'), 1, [1])
        c.send(b"x" * 5000 + b"\n")
        rpc_error_of(c.reply(), -32000, None)
        c.expect_eof()
        c = self.client("main")
        c.send(b"x" * 5000 + b"\n")
        self.assertEqual(c.reply()["error"]["code"], "too_large")
        c.expect_eof()


class Shutdown(unittest.TestCase):
    def test_shutting_down(self):
        """-32005 (shutting_down) for lines received but not yet parsed
        when SIGTERM comes, while the request before them finishes. The
        request in flight is a reply larger than the kernel's buffers that
        the client has not read yet: it cannot finish before the signal,
        whatever the machine's load."""
        conf = CONF.replace("[server]", "[server]\nmax_pipeline = 1\nshutdown_timeout = %ds"
                            % (3 * SLOW)) + "[route huge]\nhandler = builtin:big\n"
        size = 2 * kernel_buffers()
        with Daemon(conf) as d:
            c = RpcClient(d, "rpc")
            c.send(b'{"jsonrpc": "2.0", "method": "huge", "params": {"size": %d}, "id": 1}\n'
                   b'{"jsonrpc": "2.0", "method": "echo", "id": 2}\n'
                   b'{"jsonrpc": "2.0", "method": "echo", "id": 3}\n' % size)
            # The reply is in flight once stats count it; the two lines after
            # it wait, unparsed, behind it (max_pipeline = 1).
            with Client(d, "main") as watcher:
                wait_counted(watcher, "huge")
            d.send_signal(signal.SIGTERM)
            reply = json.loads(c.raw(bufsize=1 << 20))
            self.assertEqual((reply["id"], len(reply["result"]["data"])), (1, size))
            for id in (2, 3):
                try:
                    reply = c.reply()
                except Closed:
                    self.fail("no shutting_down reply for id %d" % id)
                rpc_error_of(reply, -32005, id)
            c.expect_eof()
            c.close()
            self.assertEqual(d.proc.wait(3 * SLOW), 0)


if __name__ == "__main__":
    main()
