"""exec:COMMAND: a legacy program as a handler (issue 12).

Each request starts the program with posix_spawn on its route's pool: the
args go to its stdin as one JSON text and a newline, its stdout is the
reply. Covered here, against the real daemon:

  - success; a non-zero exit, a signal, invalid JSON and stdout over
    max_output each give handler_failed with the reason
  - a child that never reads stdin, sent args larger than a pipe buffer
  - at the deadline the program and its grandchild are killed (process
    group) and reaped: neither pid lives on, the daemon has no zombie
  - the child holds descriptors 0, 1 and 2 only
  - its stderr lines are logged, tagged with the route
  - the loop stays free: hello round trips stay fast on another
    connection while every worker waits on a sleeping program
  - a relative program path resolves against the config file's directory;
    a missing program fails `jsond -t` at the handler's FILE:LINE

The programs are small scripts in progs/. Every wait is bounded.
"""
import os
import shutil
import time

from jsondtest import (SCALE, SLOW, Client, Daemon, SharedDaemon, config, error_of, main, run,
                       unittest, wait_pool)

PROGS = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "progs"))

CONF = config("""
    [server]
    max_request_size = 1M
    [listen main]
    address = 127.0.0.1:0
    requests = yes
    [pool slow]
    threads = 4
    queue_limit = 0
    [route hello]
    handler = builtin:hello
    [route stats]
    handler = builtin:stats
    [route reply]
    handler = exec:{p}/reply.sh
    [route fail]
    handler = exec:{p}/fail.sh 3
    [route signal]
    handler = exec:/bin/sh -c 'kill -TERM $$'
    [route notjson]
    handler = exec:{p}/say.sh "not json"
    [route spaced]
    handler = exec:{p}/say.sh '  [1, 2]  '
    [route flood]
    handler = exec:{p}/flood.sh
    max_output = 1M
    [route noread]
    handler = exec:{p}/noread.sh
    [route fds]
    handler = exec:{p}/fds.py
    [route chatter]
    handler = exec:{p}/chatter.sh
    [route sleepy]
    handler = exec:{p}/sleepy.sh {sleep}
    pool = slow
    [route tree]
    handler = exec:{p}/tree.sh @DIR@/pids
    timeout = {timeout}ms
""".format(p=PROGS, sleep=3 * SCALE, timeout=500 * SCALE))


def state_of(pid):
    """The state letter and ppid of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def zombies_of(ppid):
    """Pids of the zombie children of `ppid`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = state_of(int(name))
            if s and s[0] == "Z" and s[1] == ppid:
                found.append(int(name))
    return found


class ExecTest(SharedDaemon):
    conf = CONF

    def test_success(self):
        c = self.client()
        self.assertEqual(c.call('reply {"a": [1, "é"]}'), {"got": {"a": [1, "é"]}})
        self.assertEqual(c.call('{"route": "reply", "id": 4}'), {"got": {}})
        # Whitespace around the one JSON value is fine.
        self.assertEqual(c.call("spaced"), [1, 2])

    def test_exit_status(self):
        r = error_of(self.client().call("fail"), "handler_failed")
        self.assertEqual(r["error"]["message"], "exit status 3")

    def test_signal(self):
        r = error_of(self.client().call("signal"), "handler_failed")
        self.assertEqual(r["error"]["message"], "killed by signal 15 (SIGTERM)")

    def test_invalid_json(self):
        r = error_of(self.client().call("notjson"), "handler_failed")
        self.assertEqual(r["error"]["message"],
                         "invalid JSON on stdout: invalid token near 'not' (line 1, column 3)")

    def test_oversized_output(self):
        c = self.client()
        r = error_of(c.call("flood"), "handler_failed")
        self.assertEqual(r["error"]["message"],
                         "stdout over max_output (1048576 bytes): the program was killed")
        self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})

    def test_child_ignores_stdin(self):
        # More than a pipe buffer (64K) of args, to a program that closes its
        # stdin and writes 100K before it replies: no deadlock, no error.
        args = '{"pad": "%s"}' % ("x" * 300000)
        self.assertEqual(self.client().call("noread " + args), {"ignored": "stdin"})

    def test_no_leaked_descriptors(self):
        self.assertEqual(self.client().call("fds"), {"fds": [0, 1, 2]})

    def test_stderr_logged_with_route(self):
        self.assertEqual(self.client().call("chatter"), {"ok": True})
        self.d.wait_log(lambda log: "route chatter: stderr: first line" in log
                        and "route chatter: stderr: second line" in log, 3 * SLOW)

    def test_timeout_kills_the_group(self):
        pids = os.path.join(self.d.dir.name, "pids")
        c = self.client()
        # The loop's deadline or the worker's kill, whichever is seen first.
        error_of(c.call("tree"), "timeout")
        with open(pids) as f:  # written before the deadline: the reply came after
            child, grandchild = map(int, f.read().split())
        deadline = time.monotonic() + 3 * SLOW
        # Gone, or a zombie waiting for whoever adopted it (not jsond). Each
        # state is read once: a process may end between two reads.
        def alive(pid):
            st = state_of(pid)
            return st is not None and st[0] != "Z"

        while any(alive(p) for p in (child, grandchild)):
            self.assertLess(time.monotonic(), deadline, "a program outlived its deadline")
            time.sleep(0.01)  # polling, bounded by the deadline
        while zombies_of(self.d.proc.pid):
            self.assertLess(time.monotonic(), deadline,
                            "zombies of jsond: %r" % zombies_of(self.d.proc.pid))
            time.sleep(0.01)  # the worker reaps just after the reply went out
        self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})

    def test_loop_free_while_programs_run(self):
        sleepers = [self.client() for _ in range(4)]
        for s in sleepers:
            s.send(b"sleepy\n")
        c = self.client()
        start = time.monotonic()
        wait_pool(c, "slow", lambda p: p["busy"] == 4, "busy with 4 programs")
        worst = 0
        for _ in range(200):
            t = time.monotonic()
            self.assertEqual(c.call("hello"), {"msg": "Hello World", "data": "x"})
            worst = max(worst, time.monotonic() - t)
        # Every round trip happened while the four programs slept.
        self.assertLess(time.monotonic() - start, 3 * SCALE)
        self.assertLess(worst, 0.5 * SCALE)
        for s in sleepers:
            self.assertEqual(s.reply(), {"slept": True})


class ExecConfigTest(unittest.TestCase):
    def test_relative_path(self):
        conf = config("""
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route r]
            handler = exec:bin/reply.sh
        """)
        with Daemon(conf, start=False) as d:
            os.mkdir(os.path.join(d.dir.name, "bin"))
            shutil.copy(os.path.join(PROGS, "reply.sh"), os.path.join(d.dir.name, "bin"))
            d.start()
            with Client(d) as c:
                self.assertEqual(c.call('r {"x": 1}'), {"got": {"x": 1}})

    def test_missing_program_fails_check(self):
        conf = config("""
            [listen main]
            address = 127.0.0.1:0
            requests = yes
            [route r]
            handler = exec:bin/nope.sh -x
        """)
        d = Daemon(conf, start=False)
        try:
            r = run(["-t", "-c", d.path])
            self.assertEqual(r.returncode, 1)
            self.assertIn("%s:5: exec: cannot run '" % d.path, r.stderr)
            self.assertIn("No such file or directory", r.stderr)
        finally:
            d.close()


if __name__ == "__main__":
    main()
