#!/usr/bin/env python3
"""Latency of the elastic driver: host side (remote_post/remote_clean) and post over ssh.

    sudo /usr/bin/python3 bench/bench_elastic.py [-n RUNS]

Runs in a throwaway network namespace (the host, with a real sshd on
10.78.0.1) plus a front-end namespace behind a veth. Subject: the vm10
fixture (``../shared/fixtures``): one elastic NIC and its alias, security
groups in routed mode. Baselines measured in the same run: ``python3 -c
pass``, the reference's own remote_post commands of golden D replayed one
process per command (bench/replay_trace.py; security groups only: its route
and proxy ARP came in a second ssh session), and a bare ``ssh host true``.
Budgets (issue 5): remote_post <= 0.15 s; post end to end with the dummy
provider over ssh <= 0.5 s. Results: table on stdout, JSON in bench/out/.
"""

import json
import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, check_budgets, header, latency_main, row, series

sys.path.insert(0, os.path.join(REPO, "tests"))
from support.remotes import copy_tree  # noqa: E402
from support.sshd import Sshd  # noqa: E402

SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "opennebula", "vm10_vnm_reduced.b64")
TRACE = os.path.join(SHARED, "golden", "D", "02-remote_post-elastic.cmds")
HOST, FRONT = "10.78.0.1", "10.78.0.2"


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


def settings(tree, provider, sshd):
    path = os.path.join(os.path.dirname(tree), "etc", "vnm", "elastic.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"providers": {"p": provider}, "default": "p",
                   "transport": {"remote_dir": tree, "ssh_user": "root",
                                 "ssh_options": sshd.client_options()}}, handle)
    os.chmod(path, 0o600)


def measure(runs):
    with open(FIXTURE, "rb") as handle:
        vm10 = handle.read()
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    work = tempfile.mkdtemp(prefix="vnm-bench-elastic-")
    front = f"vnm-bench-front-{os.getpid()}"
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
    sh("ip", "netns", "add", front)
    sshd = None
    try:
        sh("ip", "link", "set", "uplink0p", "netns", front)
        sh("ip", "addr", "add", f"{HOST}/24", "dev", "uplink0")
        sh("ip", "link", "set", "uplink0", "up")
        sh("ip", "-n", front, "addr", "add", f"{FRONT}/24", "dev", "uplink0p")
        sh("ip", "-n", front, "link", "set", "uplink0p", "up")
        sshd = Sshd(os.environ["VNM_BENCH_NETNS"], HOST, work,
                    env={"VNM_RUN_DIR": os.environ["VNM_RUN_DIR"]})
        tree = copy_tree(os.path.join(work, "remotes"))
        subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(tree, "vnmlib")],
                       check=True)
        settings(tree, {"driver": "dummy"}, sshd)
        subprocess.run([PYTHON, os.path.join(tree, "elastic", "pre")], input=vm10, check=True,
                       capture_output=True)
        sh("ip", "link", "add", "one-10-0", "type", "veth", "peer", "name", "one-10-0p")
        sh("ip", "link", "set", "one-10-0", "master", "br-el", "up")

        def action(name, *args, where=None):
            argv = [PYTHON, os.path.join(tree, "elastic", name), *args]
            return (["ip", "netns", "exec", where, *argv] if where else argv)

        def run(argv):
            def go():
                done = subprocess.run(argv, input=vm10, capture_output=True)
                if done.returncode:
                    raise SystemExit(f"bench: {argv}: {done.stderr.decode()}")
            return go

        remote_post = action("remote_post", "one-10", "node1")
        remote_clean = action("remote_clean", "node1")
        results["elastic/remote_post (dummy: 2 routes, proxy ARP, routed SGs)"] = series(
            runs, remote_post, vm10, run(remote_clean))
        results["elastic/remote_clean (dummy)"] = series(runs, remote_clean, vm10,
                                                          run(remote_post))
        run(remote_clean)()
        settings(tree, {"driver": "nat", "interface": "uplink0"}, sshd)
        results["elastic/remote_post (nat: + addresses, DNAT/SNAT chains)"] = series(
            runs, remote_post, vm10, run(remote_clean))
        results["elastic/remote_clean (nat)"] = series(runs, remote_clean, vm10,
                                                        run(remote_post))
        run(remote_clean)()
        settings(tree, {"driver": "dummy"}, sshd)
        results["ssh host true (the transport alone)"] = series(
            runs, ["ip", "netns", "exec", front, "ssh", "-o", "BatchMode=yes",
                   *sshd.client_options(), f"root@{HOST}", "true"])
        results["elastic/post over ssh (dummy, front-end -> host)"] = series(
            runs, action("post", "one-10", HOST, where=front), vm10, run(remote_clean))
        run(remote_clean)()
        results["reference remote_post trace replayed (process per rule)"] = series(
            runs, [PYTHON, os.path.join(REPO, "bench", "replay_trace.py"), TRACE], b"",
            run(remote_clean))
        run(remote_clean)()
    finally:
        if sshd:
            sshd.stop()
        subprocess.run(["ip", "netns", "del", front], check=False)
    return results


def report(results):
    base = results["python -c pass"]["median"]
    reference = results["reference remote_post trace replayed (process per rule)"]["median"]
    header("x ref")
    for name, r in results.items():
        row(name, r, base, reference if name.startswith("elastic/remote_post") else None)
    post = results["elastic/remote_post (dummy: 2 routes, proxy ARP, routed SGs)"]["median"]
    over_ssh = results["elastic/post over ssh (dummy, front-end -> host)"]["median"]
    return check_budgets([("elastic/remote_post <= 0.15 s", post <= 0.15),
                          ("elastic/post over ssh <= 0.5 s", over_ssh <= 0.5)])


if __name__ == "__main__":
    sys.exit(latency_main("bench_elastic", __doc__, measure, report, default_runs=15))
