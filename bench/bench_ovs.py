#!/usr/bin/env python3
"""Latency of the ovswitch driver's pre, post and clean against a private Open vSwitch.

    sudo /usr/bin/python3 bench/bench_ovs.py [-n RUNS]

Runs in a throwaway network namespace with its own ovsdb-server and
ovs-vswitchd (userspace datapath, as the tests: tests/support/ovs.py). Medians
(p10-p90) of RUNS executions of the real scripts with Debian's /usr/bin/python3,
for vm9 of the fixtures (golden trace C): NIC 0 with MAC/IP anti-spoofing and
an alias (19 flows), NIC 1 with QinQ. Ratios to ``python3 -c pass`` and, for
post, to the reference's own commands of trace C replayed one process each
(bench/replay_trace.py). Also: the same OVSDB read through ovs-vsctl and
through the socket (vnmlib.ovs.ovsdb), each in a fresh interpreter: the choice
the actions make. (The OVSDB Python IDL, python3-openvswitch, is not measured:
it is not among a hypervisor's packages, and it replicates whole tables
before answering.)
Budgets (issue 4): post <= 0.2 s; clean <= 0.2 s; warm pre <= 5x python.
Results: table on stdout, JSON in bench/out/.
"""

import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, check_budgets, header, latency_main, row, script, series

sys.path.insert(0, os.path.join(REPO, "tests"))
from support.ovs import Ovs  # noqa: E402
from support.paths import SHARED  # noqa: E402
from support.remotes import copy_tree  # noqa: E402

VM9 = open(os.path.join(SHARED, "fixtures", "opennebula", "vm9_vnm_reduced.b64"), "rb").read()
TRACE = os.path.join(SHARED, "golden", "C", "02-post-ovswitch.cmds")
READ = ["ovs-vsctl", "--format=json", "--data=json", "--", "--columns=name,ports", "list",
        "Bridge", "--", "--columns=_uuid,name,tag", "list", "Port", "--",
        "--columns=name,ofport", "list", "Interface"]
# the same read two ways, each in a fresh interpreter as an action would do it
VIA_VSCTL = ("import json, subprocess\n"
             f"out = subprocess.run({READ!r}, capture_output=True, text=True, check=True)\n"
             "[json.loads(line) for line in out.stdout.splitlines()]")
VIA_SOCKET = ("import sys; sys.path.insert(0, {repo!r}); from vnmlib.ovs import ovsdb\n"
              "with ovsdb.Connection(10) as db: db.select({{'Bridge': ['name', 'ports'], "
              "'Port': ['_uuid', 'name', 'tag'], 'Interface': ['name', 'ofport']}})")


def sh(*argv):
    subprocess.run(argv, capture_output=True, check=False)


def measure(runs):
    work = tempfile.mkdtemp(prefix="vnm-bench-ovs-")
    netns = os.environ["VNM_BENCH_NETNS"]
    ovs = Ovs(netns, work).start()
    os.environ.update(ovs.env)
    try:
        return _measure(runs, work, ovs)
    finally:
        ovs.stop()


def _measure(runs, work, ovs):
    tree = copy_tree(os.path.join(work, "remotes"),
                     ":ovs_bridge_conf:\n    :datapath_type: netdev\n")
    subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(tree, "vnmlib")], check=True)
    sh("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
    sh("ip", "link", "set", "uplink0", "up")
    for tap in ("one-9-0", "one-9-1"):
        sh("ip", "link", "add", tap, "type", "veth", "peer", "name", f"{tap}p")
        sh("ip", "link", "set", tap, "up")
    pre, post, clean = (script("ovswitch", a, tree) for a in ("pre", "post", "clean"))

    def plugged():
        for tap in ("one-9-0", "one-9-1"):
            ovs.vsctl("--may-exist", "add-port", "ovsbr0", tap)

    def deployed():
        subprocess.run(pre, input=VM9, capture_output=True, check=True)
        plugged()
        subprocess.run(post + ["one-9", "h"], input=VM9, capture_output=True, check=True)

    def no_bridge():
        sh("ovs-vsctl", "--if-exists", "del-br", "ovsbr0")

    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    results["OVSDB read via ovs-vsctl (python -c)"] = series(runs, [PYTHON, "-c", VIA_VSCTL])
    results["OVSDB read via the socket (python -c)"] = series(
        runs, [PYTHON, "-c", VIA_SOCKET.format(repo=REPO)])
    deployed()
    results["ovswitch/pre warm (nothing to change)"] = series(runs, pre, VM9)
    results["ovswitch/pre cold (bridge + PHYDEV port)"] = series(runs, pre, VM9, before=no_bridge)
    plugged()
    results["ovswitch/post (2 ports, 22 flows, QinQ)"] = series(runs, post + ["one-9", "h"], VM9)
    results["reference trace C replayed (post)"] = series(runs, [
        PYTHON, os.path.join(REPO, "bench", "replay_trace.py"), TRACE])
    results["ovswitch/clean (flows, ports, bridge)"] = series(runs, clean + ["h"], VM9,
                                                             before=deployed)

    def deployed_with_neighbour():
        deployed()
        sh("ip", "link", "add", "one-3-0", "type", "veth", "peer", "name", "one-3-0p")
        ovs.vsctl("--may-exist", "add-port", "ovsbr0", "one-3-0")

    results["ovswitch/clean (bridge stays: flows by cookie)"] = series(
        runs, clean + ["h"], VM9, before=deployed_with_neighbour)
    return results


def report(results):
    base = results["python -c pass"]["median"]
    reference = results["reference trace C replayed (post)"]["median"]
    header("x ref")
    for name, r in results.items():
        row(name, r, base, reference if name.startswith("ovswitch/post") else None)
    clean = max(results["ovswitch/clean (flows, ports, bridge)"]["median"],
                results["ovswitch/clean (bridge stays: flows by cookie)"]["median"])
    return check_budgets([
        ("ovswitch/post <= 0.2 s", results["ovswitch/post (2 ports, 22 flows, QinQ)"]["median"] <= 0.2),
        ("ovswitch/clean <= 0.2 s", clean <= 0.2),
        ("warm ovswitch/pre <= 5x python",
         results["ovswitch/pre warm (nothing to change)"]["median"] <= 5 * base),
    ])


if __name__ == "__main__":
    sys.exit(latency_main("bench_ovs", __doc__, measure, report, default_runs=15))
