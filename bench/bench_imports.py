#!/usr/bin/env python3
"""Which modules each action imports, and what they cost (``python3 -X importtime``).

    sudo /usr/bin/python3 bench/bench_imports.py [-n RUNS]

Runs the actions in a throwaway namespace with Debian's /usr/bin/python3 on
byte-compiled vnmlib: dummy/pre, bridge/pre warm and cold, fw/pre, fw/post, vxlan/pre
warm, fw/clean. For each: the total import time (sum of the modules' own
times, median over RUNS), the number of modules beyond the interpreter's
start-up, and the most expensive ones (cumulative, i.e. with what they import).
"""

import os
import re
import statistics
import subprocess
import sys

from common import PYTHON, REPO, latency_main, script

FIXTURE = os.path.join(os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO),
                                                                     "shared"),
                       "fixtures", "opennebula", "vm7_vnm_reduced.b64")
LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(argv, stdin):
    """{module: (self µs, cumulative µs, depth)} of one run."""
    done = subprocess.run([PYTHON, "-X", "importtime", *argv[1:]], input=stdin,
                          capture_output=True, text=False, check=False)
    if done.returncode:
        raise SystemExit(f"bench: {argv}: {done.stderr.decode()[-500:]}")
    found = {}
    for line in done.stderr.decode().splitlines():
        match = LINE.match(line)
        if match:
            found[match.group(4)] = (int(match.group(1)), int(match.group(2)),
                                     len(match.group(3)) // 2)
    return found


def baseline_modules():
    return set(importtime([PYTHON, "-c", "pass"], b""))


def measure(runs):
    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                   check=True)
    base = baseline_modules()

    def ensure_tap():
        if not os.path.exists("/sys/class/net/one-7-1"):
            subprocess.run(["ip", "link", "add", "one-7-1", "type", "veth", "peer", "name",
                            "one-7-1p"], check=True)
            subprocess.run(["ip", "link", "set", "one-7-1", "master", "onebr1", "up"], check=True)

    def delete(*links):
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)

    cases = [
        ("dummy/pre", script("dummy", "pre"), None),
        ("bridge/pre cold", script("bridge", "pre"), lambda: delete("br0")),
        ("bridge/pre warm", script("bridge", "pre"), None),
        ("fw/pre", script("fw", "pre"), None),
        ("fw/post", script("fw", "post") + ["one-7", "node1"], ensure_tap),
        ("vxlan/pre cold", script("vxlan", "pre"), lambda: delete("onebr.100", "uplink0.100")),
        ("vxlan/pre warm", script("vxlan", "pre"), None),
        ("fw/clean", script("fw", "clean") + ["node1"],
         lambda: subprocess.run(script("fw", "post") + ["one-7", "node1"], input=vm7,
                                capture_output=True)),
    ]
    results = {}
    for name, argv, before in cases:
        totals, modules = [], None
        for _ in range(runs):
            if before:
                before()
            modules = importtime(argv, vm7)
            totals.append(sum(own for m, (own, _, _) in modules.items() if m not in base))
        extra = {m: v for m, v in modules.items() if m not in base}
        top = sorted(((cum, m) for m, (_, cum, depth) in extra.items() if depth <= 2),
                     reverse=True)[:6]
        results[name] = {"median": statistics.median(totals) / 1e6, "modules": len(extra),
                         "vnmlib": sorted(m for m in extra if m.startswith("vnmlib")),
                         "top": [[m, cum / 1000] for cum, m in top]}
    return results


def report(results):
    print(f"{'action':<20}{'imports':>10}{'modules':>9}  most expensive (cumulative ms)")
    for name, r in results.items():
        top = ", ".join(f"{m} {ms:.1f}" for m, ms in r["top"])
        print(f"{name:<20}{r['median'] * 1000:>8.1f}ms{r['modules']:>9}  {top}")
    return True


if __name__ == "__main__":
    sys.exit(latency_main("bench_imports", __doc__, measure, report, default_runs=5))
