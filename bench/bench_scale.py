#!/usr/bin/env python3
"""How cost grows with the host: fw/post and clean with 0, 100, 1,000 NICs already
protected; bridge/pre (warm and cold) with 0, 100, 1,000 bridges present.

    sudo /usr/bin/python3 bench/bench_scale.py [-n RUNS]

Runs in a throwaway namespace with Debian's /usr/bin/python3 (restore backend).
The fw subject is vm7's fw NIC (32 rules, 5 ipsets); the other NICs are vm7's
rules under other VM ids, loaded in one transaction (bench_fw.populate). The
bridges are plain ``ip link add`` bridges. Results: table, JSON in bench/out/,
and bench/out/scale.png when matplotlib is importable.
"""

import base64
import os
import subprocess
import sys

from common import PYTHON, REPO, header, latency_main, row, script, series

from bench_fw import FIXTURE, flush_all, populate

SIZES = (0, 100, 1000)
BRIDGE_VM = base64.b64encode(
    b"<VM><ID>8</ID><TEMPLATE><NIC><NIC_ID>0</NIC_ID><BRIDGE>scbr</BRIDGE>"
    b"<VN_MAD>bridge</VN_MAD></NIC></TEMPLATE></VM>")


def sh(*argv, stdin=None):
    subprocess.run(argv, input=stdin, capture_output=True, check=True, text=stdin is not None)


def bridges(count):
    """Exactly ``count`` filler bridges present (ip -batch: one process)."""
    current = [n for n in os.listdir("/sys/class/net") if n.startswith("fill")]
    lines = [f"link del {n}" for n in current] + [f"link add fill{i} type bridge"
                                                  for i in range(count)]
    if lines:
        sh("ip", "-batch", "-", stdin="\n".join(lines) + "\n")


def measure(runs):
    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    sh("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
    subprocess.run(script("fw", "pre"), input=vm7, check=True, capture_output=True)
    sh("ip", "link", "add", "one-7-1", "type", "veth", "peer", "name", "one-7-1p")
    sh("ip", "link", "set", "one-7-1", "master", "onebr1", "up")
    post = script("fw", "post") + ["one-7", "node1"]
    clean = script("fw", "clean") + ["node1"]

    def run(argv):
        return lambda: subprocess.run(argv, input=vm7, capture_output=True, check=True)

    for count in SIZES:
        flush_all()
        if count:
            populate(count, False, vm7)
        results[f"fw/post, {count} NICs protected"] = series(runs, post, vm7, run(clean))
        results[f"fw/clean, {count} NICs protected"] = series(runs, clean, vm7, run(post))
    flush_all()
    pre = script("bridge", "pre")
    for count in SIZES:
        bridges(count)
        results[f"bridge/pre cold, {count} bridges present"] = series(
            runs, pre, BRIDGE_VM, lambda: subprocess.run(["ip", "link", "del", "scbr"],
                                                         capture_output=True))
        results[f"bridge/pre warm, {count} bridges present"] = series(runs, pre, BRIDGE_VM)
    bridges(0)
    return results


def plot(results):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for label in ("fw/post, {} NICs protected", "fw/clean, {} NICs protected",
                  "bridge/pre cold, {} bridges present", "bridge/pre warm, {} bridges present"):
        axes.plot(SIZES, [results[label.format(n)]["median"] * 1000 for n in SIZES], marker="o",
                  label=label.format("N"))
    axes.set_xlabel("N (NICs protected / bridges present)")
    axes.set_ylabel("median ms")
    axes.set_xscale("symlog", linthresh=100)
    axes.legend()
    out = os.path.join(REPO, "bench", "out", "scale.png")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    return out


def report(results):
    base = results["python -c pass"]["median"]
    header("x at 0")
    for name, r in results.items():
        zero = next((results[n]["median"] for n in results
                     if n.rsplit(",", 1)[0] == name.rsplit(",", 1)[0] and " 0 " in n), None)
        row(name, r, base, zero if "," in name else None)
    saved = plot(results)
    print(f"plot: {saved}" if saved else "plot: matplotlib not installed (table and JSON only)")
    return True


if __name__ == "__main__":
    sys.exit(latency_main("bench_scale", __doc__, measure, report, default_runs=10))
