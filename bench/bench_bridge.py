#!/usr/bin/env python3
"""Latency of the dummy and bridge actions, against baselines measured in the same run.

    sudo /usr/bin/python3 bench/bench_bridge.py [-n RUNS]

Runs in a throwaway network namespace (re-executing itself there with
``ip netns exec``). Each figure is the median (and p10-p90 spread) of RUNS
executions of the real action script with Debian's /usr/bin/python3, as a
hypervisor runs it; ratios are to ``python3 -c pass`` and to a naive baseline
doing the same work with one ``ip`` process per step (the reference's style,\nbench/naive_bridge_pre.py).
Budgets (issue 2): dummy/pre <= 3x python; warm bridge/pre <= 5x python;
cold bridge/pre <= 0.25 s. Results: table on stdout, JSON in bench/out/.
"""

import base64
import os
import subprocess
import sys

from common import PYTHON, REPO, check_budgets, header, latency_main, row, script, series

VM = base64.b64encode(
    b"<VM><ID>7</ID><DEPLOY_ID>one-7</DEPLOY_ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID>"
    b"<BRIDGE><![CDATA[br0]]></BRIDGE><PHYDEV><![CDATA[uplink0]]></PHYDEV>"
    b"<TARGET><![CDATA[one-7-0]]></TARGET><VN_MAD><![CDATA[bridge]]></VN_MAD></NIC></TEMPLATE>"
    b"<HISTORY_RECORDS><HISTORY><VM_MAD>kvm</VM_MAD></HISTORY></HISTORY_RECORDS></VM>")


def ip(*args):
    subprocess.run(["ip", *args], capture_output=True, check=False)


def reset():
    ip("link", "del", "br0")


def measure(runs):
    ip("link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
    ip("link", "set", "uplink0", "up")
    pre, clean = script("bridge", "pre"), script("bridge", "clean")
    results = {
        "python -c pass": series(runs, [PYTHON, "-c", "pass"]),
        "dummy/pre": series(runs, script("dummy", "pre"), VM),
        "bridge/pre cold (create bridge + PHYDEV)": series(runs, pre, VM, before=reset),
    }
    subprocess.run(pre, input=VM, capture_output=True, check=True)
    results["bridge/pre warm (nothing to change)"] = series(runs, pre, VM)

    def re_create():
        subprocess.run(pre, input=VM, capture_output=True, check=True)

    results["bridge/clean (delete bridge)"] = series(runs, clean + ["h"], VM, before=re_create)
    reset()
    naive = [PYTHON, os.path.join(REPO, "bench", "naive_bridge_pre.py")]
    results["naive bridge/pre cold (ip per step)"] = series(runs, naive, VM, before=reset)
    results["naive bridge/pre warm (ip per step)"] = series(runs, naive, VM)
    return results


def report(results):
    base = results["python -c pass"]["median"]
    naive = {"cold": results["naive bridge/pre cold (ip per step)"]["median"],
             "warm": results["naive bridge/pre warm (ip per step)"]["median"]}
    header()
    for name, r in results.items():
        row(name, r, base, naive["cold"] if "pre cold" in name else
            naive["warm"] if "pre warm" in name else None)
    return check_budgets([
        ("dummy/pre <= 3x python", results["dummy/pre"]["median"] <= 3 * base),
        ("warm bridge/pre <= 5x python",
         results["bridge/pre warm (nothing to change)"]["median"] <= 5 * base),
        ("cold bridge/pre <= 0.25 s",
         results["bridge/pre cold (create bridge + PHYDEV)"]["median"] <= 0.25),
    ])


if __name__ == "__main__":
    sys.exit(latency_main("bench_bridge", __doc__, measure, report))
