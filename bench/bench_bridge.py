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

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.environ.get("VNM_BENCH_PYTHON", "/usr/bin/python3")
VM = base64.b64encode(
    b"<VM><ID>7</ID><DEPLOY_ID>one-7</DEPLOY_ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID>"
    b"<BRIDGE><![CDATA[br0]]></BRIDGE><PHYDEV><![CDATA[uplink0]]></PHYDEV>"
    b"<TARGET><![CDATA[one-7-0]]></TARGET><VN_MAD><![CDATA[bridge]]></VN_MAD></NIC></TEMPLATE>"
    b"<HISTORY_RECORDS><HISTORY><VM_MAD>kvm</VM_MAD></HISTORY></HISTORY_RECORDS></VM>")


def timed(argv, stdin=b"", before=None):
    if before:
        before()
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {argv} failed: {done.stderr.decode()}")
    return elapsed


def series(runs, argv, stdin=b"", before=None):
    samples = sorted(timed(argv, stdin, before) for _ in range(runs))
    q = statistics.quantiles(samples, n=10)
    return {"median": statistics.median(samples), "p10": q[0], "p90": q[-1]}


def script(driver, action):
    return [PYTHON, os.path.join(REPO, "vnm", driver, action)]


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
    print(f"{'case':<48}{'median':>10}{'p10-p90':>18}{'x python':>10}{'x naive':>9}")
    for name, r in results.items():
        vs = (naive["cold"] if "pre cold" in name else
              naive["warm"] if "pre warm" in name else None)
        print(f"{name:<48}{r['median'] * 1000:>8.1f}ms"
              f"{r['p10'] * 1000:>9.1f}-{r['p90'] * 1000:<6.1f}ms"
              f"{r['median'] / base:>9.2f}x" + (f"{r['median'] / vs:>8.2f}x" if vs else ""))
    budgets = [
        ("dummy/pre <= 3x python", results["dummy/pre"]["median"] <= 3 * base),
        ("warm bridge/pre <= 5x python",
         results["bridge/pre warm (nothing to change)"]["median"] <= 5 * base),
        ("cold bridge/pre <= 0.25 s",
         results["bridge/pre cold (create bridge + PHYDEV)"]["median"] <= 0.25),
    ]
    for name, ok in budgets:
        print(f"budget {name}: {'met' if ok else 'MISSED'}")
    return all(ok for _, ok in budgets)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        ns = f"vnm-bench-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            return subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__,
                                   "--inside", "-n", str(args.runs)]).returncode
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    with tempfile.TemporaryDirectory() as run_dir:
        os.environ["VNM_RUN_DIR"] = run_dir
        results = measure(args.runs)
    ok = report(results)
    out = os.path.join(REPO, "bench", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "bench_bridge.json"), "w", encoding="utf-8") as handle:
        json.dump({"python": PYTHON, "runs": args.runs, "results": results}, handle, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
