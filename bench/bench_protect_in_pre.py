#!/usr/bin/env python3
"""What protecting in pre costs: fw/pre and fw/post with ``:protect_in_pre:`` true and false.

    sudo /usr/bin/python3 bench/bench_protect_in_pre.py [-n RUNS]

Runs in a throwaway network namespace. The subject is the vm7 fixture's fw NIC
(``../shared/fixtures``: 32 rules, 5 ipsets), the host's iptables (nft) with the
``restore`` backend. Each pre starts from a host without the bridge and the NIC's
rules (clean before it), each post follows its pre. Baselines measured in the same
run: ``python3 -c pass`` and the same actions with the reference's timing
(``:protect_in_pre: false``: pre makes the bridge only, post protects).
Budget (issue 21): pre + post with protection <= 1.5x pre + post without; the
protection moves from post to pre, it is not paid twice.
"""

import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, check_budgets, header, latency_main, row, script, series

SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "opennebula", "vm7_vnm_reduced.b64")


def _trees(workdir):
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from support.remotes import copy_tree

    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), encoding="utf-8") as f:
        conf = f.read()
    return {timing: copy_tree(os.path.join(workdir, timing),
                              conf + f":protect_in_pre: {value}\n")
            for timing, value in (("in pre", "true"), ("reference", "false"))}


def measure(runs):
    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                   check=True)
    with tempfile.TemporaryDirectory() as workdir:
        for timing, tree in _trees(workdir).items():
            pre = script("fw", "pre", tree)
            post = script("fw", "post", tree) + ["one-7", "node1"]
            clean = script("fw", "clean", tree) + ["node1"]

            def run(argv):
                subprocess.run(argv, input=vm7, capture_output=True, check=True)

            def fresh():  # no bridge, no rules of the NIC: clean (without the tap) first
                subprocess.run(["ip", "link", "del", "one-7-1"], capture_output=True)
                run(clean)

            def after_pre():
                fresh()
                run(pre)
                subprocess.run(["ip", "link", "add", "one-7-1", "type", "veth", "peer", "name",
                                "one-7-1p"], check=True)
                subprocess.run(["ip", "link", "set", "one-7-1", "master", "onebr1", "up"],
                               check=True)

            results[f"fw/pre ({timing})"] = series(runs, pre, vm7, fresh)
            results[f"fw/post ({timing})"] = series(runs, post, vm7, after_pre)
            fresh()
    return results


def report(results):
    base = results["python -c pass"]["median"]
    header("x ref")

    def median(name):
        return results[name]["median"]

    for name, r in results.items():
        versus = None
        if name.endswith("(in pre)"):
            versus = results[name.replace("(in pre)", "(reference)")]["median"]
        row(name, r, base, versus)
    protected = median("fw/pre (in pre)") + median("fw/post (in pre)")
    reference = median("fw/pre (reference)") + median("fw/post (reference)")
    print(f"pre + post: {protected * 1000:.1f} ms in pre, {reference * 1000:.1f} ms reference "
          f"({protected / reference:.2f}x)")
    return check_budgets([("pre + post in pre <= 1.5x reference timing",
                           protected <= 1.5 * reference)])


if __name__ == "__main__":
    sys.exit(latency_main("bench_protect_in_pre", __doc__, measure, report, default_runs=10))
