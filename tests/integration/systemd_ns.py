"""systemd_ns: a throwaway systemd, PID 1 of a private PID and mount namespace.

For tests that must start a unit with the real `systemctl` on a machine
whose own init is not systemd (a container, a CI box). Namespace(...).boot()
runs

    unshare --fork --pid --mount --mount-proc --propagation private

with the network shared. Inside, before systemd is exec'd, a shell script
makes /tmp, /var/tmp and /run fresh tmpfs (systemd's boot-time tmpfiles would
otherwise clean the host's /tmp), masks every unit enabled on the host and
the services that would act on shared state (network, consoles, sysctls,
udev), keeps the journal in the private /run (Storage=volatile: the host may
have a /var/log/journal), binds a log file over /dev/console (systemd as PID
1 writes its early messages there; the host's console is left alone),
bind-mounts the caller's directories, copies the caller's units into
/run/systemd/system and boots a minimal target that wants journald only.
Nothing on the host changes; close() powers it off (bounded, then SIGKILL of
its PID 1), and the kernel tears the namespace down with it. Should the test
itself die, unshare gets SIGKILL (PR_SET_PDEATHSIG) and its --kill-child
kills the namespace's PID 1.

systemctl and journalctl run inside through `nsenter -t PID1 -p -m`; files
under the namespace's /run are reachable from the host through
/proc/PID1/root. Python 3 stdlib only.
"""
import contextlib
import ctypes
import fcntl
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

INIT = "/usr/lib/systemd/systemd"
TARGET = "jsond-test.target"
# One namespace at a time per machine: they share the host's cgroup tree
# (no cgroup namespace), so two would both manage system.slice/UNIT.
LOCK = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                    "jsond-systemd-ns.lock")

# Masked besides the host's enabled units: what would touch the shared
# network, consoles, kernel settings or devices, or start host daemons.
RISKY = """getty.target getty@.service serial-getty@.service console-getty.service
    systemd-udev-trigger.service systemd-udevd.service systemd-sysctl.service
    systemd-modules-load.service systemd-networkd.service systemd-resolved.service
    systemd-timesyncd.service networking.service NetworkManager.service ssh.service
    cron.service postgresql.service systemd-pstore.service e2scrub_reap.service
    systemd-journal-flush.service systemd-binfmt.service systemd-random-seed.service
    systemd-hwdb-update.service systemd-firstboot.service""".split()

# Runs inside the namespace as its PID 1, then becomes systemd. Arguments
# come through the environment: MASKS, BINDS ("DEST SRC" lines: SRC, a host
# path, may hold spaces; DEST may not), UNITS (a directory whose tree is
# copied into /run/systemd/system), CONSOLE (a file).
BOOT = r"""
set -e
mount --bind "$CONSOLE" /dev/console
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/systemd/system /run/systemd/journald.conf.d /run/lock
for u in $MASKS; do ln -sf /dev/null "/run/systemd/system/$u"; done
printf '[Journal]\nStorage=volatile\n' >/run/systemd/journald.conf.d/volatile.conf
printf '[Unit]\nDescription=jsond test\nWants=systemd-journald.socket systemd-journald.service\n' \
    >/run/systemd/system/$TARGET
printf '%s\n' "$BINDS" | while read -r dest src; do
    [ -n "$dest" ] || continue
    mkdir -p "$dest"
    mount --bind "$src" "$dest"
done
[ -z "$UNITS" ] || cp -R "$UNITS"/. /run/systemd/system/
exec "$INIT" --system --unit="$TARGET" --log-target=journal --show-status=no
"""

PR_SET_PDEATHSIG = 1


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def missing():
    """Why a namespace cannot be booted here (a skip message), or None."""
    if os.geteuid() != 0:
        return "needs root: it boots systemd as PID 1 of a private namespace"
    if not os.access(INIT, os.X_OK):
        return "systemd is not installed (no %s; apt-get install systemd)" % INIT
    for tool in ("unshare", "nsenter", "systemctl", "journalctl"):
        if not shutil.which(tool):
            return "%s is not installed (util-linux, systemd)" % tool
    # systemd needs a machine whose root is a mount point it can make
    # private; a chroot (e.g. a build root) has none, and unshare says so.
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return ("no private mount namespace here (%s): systemd cannot boot as PID 1 in this "
                "root (a chroot?)" % probe.stderr.strip())
    return None


def free_port(host="127.0.0.1"):
    """A port free on `host` right now (bound, read, closed): the network is
    the host's, so a fixed port could be taken."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def host_masks():
    """The host's enabled units (they would start at boot), and RISKY."""
    out = subprocess.run(["systemctl", "list-unit-files", "--state=enabled", "--no-legend",
                          "--no-pager"], capture_output=True, text=True, timeout=30)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.split()]
    return sorted({n for n in names if "@." not in n} | set(RISKY))


class Namespace:
    """One booted systemd. `binds`: (host dir, path inside) pairs mounted
    before boot; `units`: a host directory copied into /run/systemd/system
    before boot (units, drop-in directories). `slow` scales every wait."""

    def __init__(self, binds=(), units=None, slow=10):
        self.binds = list(binds)
        self.units = units
        self.slow = slow
        self.proc = None
        self.pid1 = None
        self.lock = None
        self.waited = 0.0
        self.console = tempfile.NamedTemporaryFile(prefix="systemd-ns-console-", suffix=".log")

    # ---- life ---------------------------------------------------------------

    def boot(self):
        """Starts systemd and waits (bounded) until it has booted."""
        t0 = time.monotonic()
        self._take_lock(60 * self.slow)
        self.waited = time.monotonic() - t0  # for another run's namespace
        env = dict(os.environ, INIT=INIT, TARGET=TARGET, MASKS=" ".join(host_masks()),
                   BINDS="\n".join("%s %s" % (dest, src) for src, dest in self.binds),
                   UNITS=self.units or "",
                   CONSOLE=self.console.name)
        self.proc = subprocess.Popen(
            ["unshare", "--fork", "--pid", "--mount", "--mount-proc", "--propagation", "private",
             "--kill-child=SIGKILL", "sh", "-c", BOOT],
            env=env, stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self.pid1 = self._find_pid1(self.slow)
            self.wait(lambda: self.systemctl("is-system-running", check=False).stdout.strip()
                      in ("running", "degraded"), 3 * self.slow, "systemd to finish booting")
        except BaseException:
            self.close()
            raise
        return self

    def _take_lock(self, timeout):
        """Waits (bounded) for another run's namespace to be gone."""
        self.lock = open(LOCK, "a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.lock.close()
                    self.lock = None
                    raise AssertionError("another systemd namespace held %s for %ss"
                                         % (LOCK, timeout))
                time.sleep(0.1)  # polling the lock, bounded by the deadline

    def _find_pid1(self, timeout):
        """unshare's child, once it has exec'd systemd."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("the namespace ended during boot (%d):\n%s"
                                     % (self.proc.returncode, self.console_log()))
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open("/proc/%s/stat" % pid) as f:
                        comm, rest = f.read().rsplit(")", 1)
                except (FileNotFoundError, ProcessLookupError):
                    continue  # not a process, or one that ended meanwhile
                if int(rest.split()[1]) == self.proc.pid and comm.endswith("(systemd"):
                    return int(pid)
            time.sleep(0.02)  # polling /proc, bounded by the deadline
        raise AssertionError("systemd did not start within %ss:\n%s" % (timeout,
                                                                      self.console_log()))

    def close(self):
        """Powers systemd off; SIGKILL to its PID 1 if it takes too long.
        Either way every process of the namespace is gone after."""
        if self.proc is None:
            if self.lock:
                self.lock.close()
                self.lock = None
            return
        try:
            if self.proc.poll() is None and self.pid1:
                try:
                    self.run(["systemctl", "poweroff", "--no-block"], check=False,
                             timeout=self.slow)
                    self.proc.wait(3 * self.slow)
                except subprocess.TimeoutExpired:
                    pass  # SIGKILL below
        finally:
            if self.proc.poll() is None:
                # Killing a namespace's init kills every process in it.
                with contextlib.suppress(ProcessLookupError):
                    if self.pid1:
                        os.kill(self.pid1, signal.SIGKILL)
                    self.proc.kill()
            self.proc.wait(3 * self.slow)
            self.proc = None
            self.console.close()
            self.lock.close()  # releases the flock
            self.lock = None

    def __enter__(self):
        return self.boot()

    def __exit__(self, *exc):
        self.close()

    def console_log(self):
        with open(self.console.name, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-40:])

    # ---- inside -------------------------------------------------------------

    def run(self, cmd, check=True, timeout=None, input=None):
        """Runs cmd inside the namespace; returns the CompletedProcess."""
        full = ["nsenter", "-t", str(self.pid1), "-p", "-m", "--"] + list(cmd)
        out = subprocess.run(full, capture_output=True, text=True, input=input,
                             timeout=timeout or 3 * self.slow)
        if check and out.returncode != 0:
            raise AssertionError("%s failed (%d): %s%s" % (shlex.join(cmd), out.returncode,
                                                          out.stdout, out.stderr))
        return out

    def systemctl(self, *args, check=True):
        return self.run(["systemctl", "--no-pager"] + list(args), check=check)

    def show(self, unit, *props):
        """Unit properties, by name (values as strings)."""
        out = self.systemctl("show", unit, *("-p" + p for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def cursor(self):
        """The journal's position now, for journal(after=)."""
        out = self.run(["journalctl", "-q", "-n", "0", "--show-cursor"], check=False).stdout
        for line in out.splitlines():
            if line.startswith("-- cursor: "):
                return line[len("-- cursor: "):]
        return None  # an empty journal: everything is after

    def journal(self, unit, after=None):
        """The messages of `unit` (its own and systemd's about it)."""
        cmd = ["journalctl", "--no-pager", "-q", "-o", "cat", "-u", unit]
        if after:
            cmd.append("--after-cursor=" + after)
        return self.run(cmd).stdout

    def path(self, inside):
        """The host's path to a file of the namespace (its /run is private)."""
        return "/proc/%d/root%s" % (self.pid1, inside)

    def wait(self, pred, timeout, what):
        """Polls pred() until true; fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            got = pred()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
            if self.proc.poll() is not None:
                raise AssertionError("the namespace ended while waiting for %s:\n%s"
                                     % (what, self.console_log()))
            time.sleep(0.05)  # polling systemd, bounded by the deadline
