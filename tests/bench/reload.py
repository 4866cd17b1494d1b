"""Reload benchmark: prints figures, asserts nothing.

  - reload time (SIGHUP to the swap: the "(T ms)" of the daemon's
    "reloaded" line) with 200 routes and 10 listeners: min/median/max of 20
    reloads, alternating two configs so that every reload changes something
    (10 routes added, 10 removed, 50 changed; the 10 listeners kept)
  - a shorter run of the under-load scenario of
    tests/integration/test_reload.py: pipelining and connecting clients
    while the daemon is reloaded (valid, valid, broken in turn); requests,
    connections, reloads and problems (refused, reset, lost, duplicated)

Run with `make bench` (or python3 tests/bench/reload.py with JSOND set).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from jsondtest import Daemon, figures, reload, started, version  # noqa: E402
from test_reload import load_daemon, report, under_load  # noqa: E402

ROUTES = 200
LISTENERS = 10
RELOADS = 20


def make_conf(ports, variant):
    """200 routes on 10 listeners. Variants 0 and 1 differ in the args of
    50 routes and in 10 routes' names."""
    out = ["[server]", "log_level = warning"]
    for i, port in enumerate(ports):
        out += ["[listen l%d]" % i, "address = 127.0.0.1:%s" % port, "requests = yes"]
    for i in range(ROUTES):
        name = "r%d" % i if i >= 10 else "r%d_v%d" % (i, variant)
        out += ["[route %s]" % name, "handler = builtin:echo",
                'args = {"i": %d, "v": %d}' % (i, variant if i < 60 else 0)]
    return "\n".join(out) + "\n"


def reload_time():
    with Daemon(make_conf([0] * LISTENERS, 0), args=["-l", "notice"]) as d:
        started(d)
        ports = [d.addrs["l%d" % i].rsplit(":", 1)[1] for i in range(LISTENERS)]
        confs = [make_conf(ports, 0), make_conf(ports, 1)]
        times, summary = [], None
        for i in range(RELOADS + 1):
            out = reload(d, confs[(i + 1) % 2])
            if not out.ok:
                raise SystemExit("reload failed:\n" + out.log)
            if i == 0:
                continue  # port 0 to the bound ports: not the case measured
            times.append(out.ms)
            summary = out
        d.stop()
    print("reload, %d routes and %d listeners (ms): %s" % (ROUTES, LISTENERS, figures(times)))
    print("    each: routes %d added, %d removed, %d changed; listeners %d opened, %d closed, "
          "%d kept" % (summary.routes() + summary.listeners()))


def reload_under_load():
    d = load_daemon()
    try:
        tally, outcomes = under_load(d, reloads=15, pipeliners=50, connectors=10, seconds=60)
        report(tally, outcomes, 50, 10, out=sys.stdout)
        d.stop()
    finally:
        d.close()


def main():
    print("jsond:", version())
    reload_time()
    reload_under_load()


if __name__ == "__main__":
    main()
