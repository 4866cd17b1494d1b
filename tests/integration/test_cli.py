"""The daemon's command line: -t, -V, -h, usage errors, exit codes, signals;
what the config check refuses, and what it lets through."""
import json
import os
import re
import shutil
import signal
import socket
import tempfile

from jsondtest import HELLO, Client, Daemon, config, main, run, unittest

GOOD = config("""
    [server]
    log_level = notice
    [listen main]
    address = 127.0.0.1:0
    on_connect = hello
    [route hello]
    handler = builtin:hello
""")

# Three problems on known lines, all of which must be reported.
BAD = config("""
    [server]
    max_connections = 0
    [listen main]
    address = 127.0.0.1:0
    on_connect = nowhere
    colour = blue
""")


class Cli(unittest.TestCase):
    def write(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_check_good_config(self):
        path = self.write(GOOD)
        r = run(["-t", "-c", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(path, r.stdout)
        self.assertEqual(r.stderr, "")

    def test_check_bad_config_lists_every_problem(self):
        path = self.write(BAD)
        r = run(["-t", "-c", path])
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.strip().splitlines()
        self.assertEqual([l.split(": ", 1)[0] for l in lines],
                         ["%s:2" % path, "%s:5" % path, "%s:6" % path], r.stderr)
        self.assertIn("range", lines[0])
        self.assertIn("nowhere", lines[1])
        self.assertIn("colour", lines[2])

    def test_failed_bind_releases_the_others(self):
        # One address cannot be bound: jsond exits 1, naming its line, and
        # the listener it had bound first is released, not left behind.
        with socket.socket() as squat:
            squat.bind(("127.0.0.1", 0))
            squat.listen(1)
            path = self.write(config("""
                [listen first]
                address = 127.0.0.1:0
                on_connect = hello
                [listen taken]
                address = 127.0.0.1:%d
                on_connect = hello
                [route hello]
                handler = builtin:hello
            """) % squat.getsockname()[1])
            r = run(["-c", path, "-l", "notice"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:4: listener taken: cannot listen on" % path, r.stderr)
        self.assertIn("Address already in use", r.stderr)
        first = re.search(r"listening on first (\S+)", r.stderr).group(1)
        self.assertIn("stopped listening on first %s (another listener failed)" % first,
                      r.stderr)

    def test_only_regular_files_are_read(self):
        # A FIFO would block the read forever (no writer ever comes), and
        # /dev/zero would fill memory: each is an error at the line that
        # named it, or at the file itself (line 0: "FILE: message") for -c.
        # run() bounds every run (3 * SLOW), so a hang fails, never hangs.
        d = tempfile.mkdtemp(prefix="jsond-cli-")
        self.addCleanup(shutil.rmtree, d)
        confd = os.path.join(d, "conf.d")
        os.mkdir(confd)
        main_conf = os.path.join(d, "jsond.conf")
        with open(main_conf, "w") as f:
            f.write(GOOD + "include = conf.d/*.conf\n")
        line = GOOD.count("\n") + 1
        fifo = os.path.join(confd, "10-fifo.conf")
        os.mkfifo(fifo)
        zero = os.path.join(confd, "20-zero.conf")
        os.symlink("/dev/zero", zero)
        os.mkdir(os.path.join(confd, "30-dir.conf"))
        big = os.path.join(confd, "40-big.conf")
        with open(big, "wb") as f:
            f.truncate(16 * 1024 * 1024 + 1)
        r = run(["-t", "-c", main_conf])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.splitlines(), [
            "%s:%d: cannot read included file '%s': not a regular file (a FIFO)"
            % (main_conf, line, fifo),
            "%s:%d: cannot read included file '%s': not a regular file (a character device)"
            % (main_conf, line, zero),
            "%s:%d: cannot read included file '%s': Is a directory"
            % (main_conf, line, os.path.join(confd, "30-dir.conf")),
            "%s:%d: cannot read included file '%s': larger than 16M, the limit for one "
            "config file" % (main_conf, line, big)])
        for args in (["-t"], ["-l", "notice"]):
            for path, why in ((fifo, "a FIFO"), ("/dev/zero", "a character device"),
                              (zero, "a character device")):
                r = run(args + ["-c", path])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("%s: cannot read: not a regular file (%s)" % (path, why), r.stderr)
            r = run(args + ["-c", big])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("%s: cannot read: larger than 16M" % big, r.stderr)

    def test_unix_path_is_a_file(self):
        # A regular file at a unix listener's path is never removed: -t and
        # a start both fail at the address line, and the file is untouched.
        d = tempfile.mkdtemp(prefix="jsond-cli-")
        self.addCleanup(shutil.rmtree, d)
        data = os.path.join(d, "data")
        content = b"important\n" * 1000
        with open(data, "wb") as f:
            f.write(content)
        path = self.write(GOOD + "[listen sock]\nrequests = yes\naddress = unix:%s\n" % data)
        line = GOOD.count("\n") + 3
        for args in (["-t"], ["-l", "notice"]):
            r = run(args + ["-c", path])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("%s:%d: 'unix:%s' is a regular file, not a socket: jsond replaces only "
                          "a stale socket" % (path, line, data), r.stderr)
            with open(data, "rb") as f:
                self.assertEqual(f.read(), content)

    def test_config_must_serve(self):
        # No [listen] section: an error at the file, line 0 ("FILE: ...").
        for text in ("", "; comments only\n", "[route hello]\nhandler = builtin:hello\n"):
            path = self.write(text)
            for args in (["-t"], ["-l", "notice"]):
                r = run(args + ["-c", path])
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("%s: no [listen] section: this config would serve nothing" % path,
                              r.stderr)
        # Two listeners on one address: the second's address line, naming
        # the first's; several on port 0 are fine.
        path = self.write(GOOD + "[listen again]\naddress = 127.0.0.1:0\non_connect = hello\n"
                          "[listen a]\naddress = [::1]:1\nrequests = yes\n"
                          "[listen b]\nrequests = yes\naddress = [::1]:1\n")
        r = run(["-t", "-c", path])
        self.assertEqual(r.returncode, 1, r.stderr)
        n = GOOD.count("\n")
        self.assertEqual(r.stderr, "%s:%d: listener b: address [::1]:1 is also listener a's "
                         "(line %d)\n" % (path, n + 9, n + 5))
        # Only listeners without an address: -t cannot know what systemd
        # will pass, but a start with nothing to listen on fails.
        path = self.write(GOOD.replace("address = 127.0.0.1:0\n", ""))
        self.assertEqual(run(["-t", "-c", path]).returncode, 0)
        r = run(["-c", path, "-l", "notice"])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s: no listener has an address: this config would serve nothing" % path,
                      r.stderr)

    def test_on_connect_none(self):
        # The shipped jsond.conf says on_connect takes "a route name, or
        # none": none is no push. A push is written right after accept,
        # before any request is read, so it would be the first line.
        conf = config("""
            [listen main]
            address = 127.0.0.1:0
            on_connect = none
            requests = yes
            [route hello]
            handler = builtin:hello
            [route echo]
            handler = builtin:echo
        """)
        with Daemon(conf) as d:
            with Client(d) as c:
                self.assertEqual(c.call('echo {"first": 1}'), {"first": 1})
                self.assertEqual(c.call("hello"), json.loads(HELLO))
                c.sock.shutdown(socket.SHUT_WR)
                c.expect_eof()
            self.assertEqual(d.stop(), 0)
        path = self.write(conf.replace("[route echo]", "[route none]"))
        r = run(["-t", "-c", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:7: route name 'none' is reserved (on_connect = none means no push)"
                      % path, r.stderr)

    def test_version(self):
        r = run(["-V"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^jsond \d+\.\d+\.\d+ \(libevent [^,]+, jansson [^)]+\)\n$")

    def test_help(self):
        r = run(["-h"])
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: jsond"))
        for opt in ("-c FILE", "-t", "-l LEVEL", "-V", "-h"):
            self.assertIn(opt, r.stdout)

    def test_usage_errors_exit_2(self):
        for args in (["-x"], ["-c"], ["-l", "loud"], ["stray"]):
            r = run(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("usage: jsond", r.stderr)

    def test_missing_config_file_exits_1(self):
        r = run(["-c", "/nonexistent/jsond.conf"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/jsond.conf", r.stderr)
        self.assertIn("No such file", r.stderr)

    def test_bad_config_does_not_start(self):
        path = self.write(BAD)
        r = run(["-c", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("%s:2:" % path, r.stderr)

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with Daemon(GOOD) as d:
                self.assertEqual(d.stop(sig), 0, d.log())
                self.assertIn("shutting down", d.log())

    def test_log_level_flag_overrides_config(self):
        # The config says notice; -l debug (the harness default) must win.
        with Daemon(GOOD) as d:
            d.wait_log(lambda log: "[debug]" in log, 30)
            d.stop()

    def test_descriptor_limit_lowers_max_connections(self):
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        with Daemon(GOOD, preexec=low_limit) as d:
            log = d.wait_log(lambda log: "max_connections lowered" in log, 30)
            m = re.search(r"max_connections lowered from 10000 to (\d+): "
                          r"the descriptor limit is (\d+)", log)
            self.assertIsNotNone(m, log)
            # valgrind keeps a few descriptors of the 64 for itself.
            fit, limit = int(m.group(1)), int(m.group(2))
            self.assertLessEqual(limit, 64)
            self.assertEqual(fit, limit - 32)
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    main()
