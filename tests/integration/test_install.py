"""make install: a runnable daemon, and an admin's jsond.conf kept.

Installs the build tree into a staging directory (DESTDIR, so nothing on
the machine changes) and checks what a packager and an admin rely on:

  - the daemon, the library, the header, the pkg-config file, both man
    pages and the config are installed, and the installed daemon (with its
    installed library) runs: -V, and -t on the installed config
  - an install over an edited jsond.conf keeps the edit; uninstall removes
    everything else, and the config only while it is the shipped one

The ldconfig that a real install by root runs (install-exec-hook) changes
the machine's loader cache, so it is not run here: with DESTDIR set it is
skipped, which is the staged case this test covers.
"""
import os
import subprocess
import tempfile

from jsondtest import JSOND, SLOW, SRCDIR, main, unittest

BUILDDIR = os.environ.get("JSOND_BUILDDIR") or os.path.join(os.path.dirname(JSOND), "..")
PREFIX = "/opt/jsond-staged"


def make(*args):
    """Runs make in the build tree; fails the test with its output."""
    out = subprocess.run(["make", "-s", "-C", BUILDDIR, "prefix=" + PREFIX] + list(args),
                         capture_output=True, text=True, timeout=60 * SLOW)
    if out.returncode != 0:
        raise AssertionError("make %s failed (%d):\n%s%s" % (" ".join(args), out.returncode,
                                                            out.stdout, out.stderr))
    return out.stdout


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


class Install(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="jsond-install-")
        self.addCleanup(self.tmp.cleanup)
        self.dest = self.tmp.name
        self.root = self.dest + PREFIX

    def install(self):
        return make("install", "DESTDIR=" + self.dest)

    def test_installed_daemon_runs(self):
        self.install()
        for f in ("sbin/jsond", "lib/libjsond.so.0", "include/jsond.h", "lib/pkgconfig/jsond.pc",
                  "share/man/man8/jsond.8", "share/man/man5/jsond.conf.5", "etc/jsond/jsond.conf"):
            self.assertTrue(os.path.exists(os.path.join(self.root, f)), f)
        self.assertTrue(os.path.isdir(os.path.join(self.root, "etc/jsond/conf.d")))
        with open(os.path.join(SRCDIR, "conf", "jsond.conf")) as a, \
                open(os.path.join(self.root, "etc/jsond/jsond.conf")) as b:
            self.assertEqual(a.read(), b.read())
        # The installed daemon with the installed library, not the build
        # tree's: the loader is pointed at the staged libdir only.
        env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(self.root, "lib"))
        daemon = os.path.join(self.root, "sbin", "jsond")
        out = subprocess.run([daemon, "-V"], capture_output=True, text=True, env=env,
                             timeout=10 * SLOW)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("jsond "), out.stdout)
        out = subprocess.run(["ldd", daemon], capture_output=True, text=True, env=env,
                             timeout=10 * SLOW)
        self.assertIn(os.path.join(self.root, "lib", "libjsond.so.0"), out.stdout)
        out = subprocess.run([daemon, "-t", "-c", os.path.join(self.root, "etc/jsond/jsond.conf")],
                             capture_output=True, text=True, env=env, timeout=10 * SLOW)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)

    def test_units_installed(self):
        # In systemd's unit directory (wherever configure put it), filled
        # with the install's paths: no placeholder left, ExecStart naming
        # the installed daemon and config.
        self.install()
        units = {os.path.basename(f): os.path.join(self.dest, f)
                 for f in files_under(self.dest) if f.endswith(("/jsond.service", "/jsond.socket"))}
        self.assertEqual(sorted(units), ["jsond.service", "jsond.socket"])
        self.assertEqual(os.path.dirname(units["jsond.service"]),
                         os.path.dirname(units["jsond.socket"]))
        with open(units["jsond.service"]) as f:
            service = f.read()
        self.assertNotRegex(service, r"@[a-z]+@")
        # The paths of this install: make install prefix=... included.
        self.assertRegex(service, r"(?m)^ExecStart=%s/sbin/jsond -c %s/etc/jsond/jsond\.conf$"
                         % (PREFIX, PREFIX))
        self.assertRegex(service, r"(?m)^Type=notify$")

    def test_admin_config_kept(self):
        self.install()
        conf = os.path.join(self.root, "etc/jsond/jsond.conf")
        with open(conf, "a") as f:
            f.write("; edited by the admin\n")
        out = self.install()
        self.assertIn("keeping the existing", out)
        with open(conf) as f:
            self.assertTrue(f.read().endswith("; edited by the admin\n"))
        make("uninstall", "DESTDIR=" + self.dest)
        self.assertEqual(files_under(self.dest), [os.path.relpath(conf, self.dest)])
        # The shipped one goes with the rest.
        os.unlink(conf)
        self.install()
        make("uninstall", "DESTDIR=" + self.dest)
        self.assertEqual(files_under(self.dest), [])


if __name__ == "__main__":
    main()
