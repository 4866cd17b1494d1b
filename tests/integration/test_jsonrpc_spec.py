"""The JSON-RPC 2.0 specification's examples (jsonrpc.org/specification,
section 7), sent to conf/examples/jsonrpc-example.conf.

Each request is the specification's text; the multi-line batches are
joined with spaces, as jsond reads one request per line. A reply is
compared on its `result`, its `error.code` and its `id`, not the message
or the data; a batch's replies without regard to order, as the
specification allows. A notification gets no reply: the request that
follows it is answered first.

The config is copied beside its exec: programs into the test's directory,
with only its address changed to 127.0.0.1:0.
"""
import json
import os
import re
import shutil

from jsondtest import SRCDIR, Client, Daemon, SharedDaemon, main

EXAMPLES = os.path.join(SRCDIR, "conf", "examples")

# (request, expected reply): a reply as (result or ("error", code), id), a
# list of them for a batch, None for no reply.
SPEC = [
    # rpc call with positional parameters
    ('{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}', (19, 1)),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}', (-19, 2)),
    # rpc call with named parameters
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, '
     '"id": 3}', (19, 3)),
    ('{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, '
     '"id": 4}', (19, 4)),
    # a Notification
    ('{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ('{"jsonrpc": "2.0", "method": "foobar"}', None),
    # rpc call of non-existent method
    ('{"jsonrpc": "2.0", "method": "foobar", "id": "1"}', (("error", -32601), "1")),
    # rpc call with invalid JSON
    ('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', (("error", -32700), None)),
    # rpc call with invalid Request object
    ('{"jsonrpc": "2.0", "method": 1, "params": "bar"}', (("error", -32600), None)),
    # rpc call Batch, invalid JSON
    ('[ {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, '
     '{"jsonrpc": "2.0", "method" ]', (("error", -32700), None)),
    # rpc call with an empty Array
    ('[]', (("error", -32600), None)),
    # rpc call with an invalid Batch (but not empty)
    ('[1]', [(("error", -32600), None)]),
    # rpc call with invalid Batch
    ('[1,2,3]', [(("error", -32600), None)] * 3),
    # rpc call Batch
    ('[ {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, '
     '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}, '
     '{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"}, '
     '{"foo": "boo"}, '
     '{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"}, '
     '{"jsonrpc": "2.0", "method": "get_data", "id": "9"} ]',
     [(7, "1"), (19, "2"), (("error", -32600), None), (("error", -32601), "5"),
      (["hello", 5], "9")]),
    # rpc call Batch (all notifications)
    ('[ {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]}, '
     '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]} ]', None),
]

# Sent after a request that gets no reply: its reply must come next.
PROBE = '{"jsonrpc": "2.0", "method": "get_data", "id": "probe"}'


def outcome(reply):
    """What the specification fixes of a response: its result or its error
    code, and its id."""
    assert reply.get("jsonrpc") == "2.0", reply
    if "error" in reply:
        assert "result" not in reply, reply
        return (("error", reply["error"]["code"]), reply["id"])
    return (reply["result"], reply["id"])


def key(o):
    return json.dumps(o, sort_keys=True)


class Spec(SharedDaemon):
    @classmethod
    def start_daemon(cls):
        with open(os.path.join(EXAMPLES, "jsonrpc-example.conf")) as f:
            conf, n = re.subn(r"(?m)^address\s*=.*$", "address = 127.0.0.1:0", f.read())
        assert n == 1, "the example config has one address"
        d = Daemon(conf, start=False)
        for name in os.listdir(EXAMPLES):
            if name != "jsonrpc-example.conf":
                shutil.copy2(os.path.join(EXAMPLES, name), d.dir.name)
        try:
            d.start()
        except BaseException:
            d.dump_log()
            d.close()
            raise
        return d

    def test_examples(self):
        with Client(self.d, "rpc") as c:
            for request, want in SPEC:
                with self.subTest(request=request):
                    if want is None:
                        c.send(request.encode() + b"\n" + PROBE.encode() + b"\n")
                        self.assertEqual(outcome(c.reply()), (["hello", 5], "probe"))
                        continue
                    c.send(request.encode() + b"\n")
                    got = c.reply()
                    if isinstance(want, list):
                        self.assertIsInstance(got, list)
                        self.assertEqual(sorted(map(key, map(outcome, got))),
                                         sorted(map(key, want)))
                    else:
                        self.assertEqual(outcome(got), want)

    def test_examples_pipelined(self):
        # All at once on one connection: the replies in request order.
        lines, want = [], []
        for request, expected in SPEC:
            lines.append(request)
            if expected is not None:
                want.append(expected)
        with Client(self.d, "rpc") as c:
            c.send(("\n".join(lines) + "\n").encode())
            for expected in want:
                got = c.reply()
                if isinstance(expected, list):
                    self.assertEqual(sorted(map(key, map(outcome, got))),
                                     sorted(map(key, expected)))
                else:
                    self.assertEqual(outcome(got), expected)


if __name__ == "__main__":
    main()
