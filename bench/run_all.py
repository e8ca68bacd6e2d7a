#!/usr/bin/env python3
"""Every benchmark, one after the other; one summary table and bench/out/summary.json.

    sudo /usr/bin/python3 bench/run_all.py [--quick]

Each bench_*.py runs in its own throwaway namespace and writes
bench/out/<name>.json; this collects their medians (and budget verdicts from
their exit codes) into one table. --quick uses fewer runs (a smoke run).
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
BENCHES = [  # (script, runs, quick runs, extra arguments)
    ("bench_bridge.py", 20, 5, []),
    ("bench_vxlan.py", 20, 5, []),
    ("bench_fw.py", 10, 3, ["--nics", "1000"]),
    ("bench_ovs.py", 15, 5, []),
    ("bench_elastic.py", 15, 5, []),
    ("bench_scale.py", 10, 3, []),
    ("bench_concurrency.py", 5, 2, ["--vms", "50"]),
    ("bench_imports.py", 5, 2, []),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    summary, verdicts = {}, {}
    for name, runs, quick, extra in BENCHES:
        print(f"\n### {name}", flush=True)
        path = os.path.join(OUT, name.replace(".py", ".json"))
        started = os.path.getmtime(path) if os.path.exists(path) else None
        done = subprocess.run([sys.executable, os.path.join(HERE, name), "-n",
                               str(quick if args.quick else runs), *extra], check=False)
        verdicts[name] = "budgets met" if done.returncode == 0 else f"exit {done.returncode}"
        if os.path.exists(path) and os.path.getmtime(path) != started:  # written by this run
            with open(path, encoding="utf-8") as handle:
                summary[name] = json.load(handle)["results"]
    print(f"\n{'benchmark':<22}{'case':<62}{'median':>10}")
    for name, results in summary.items():
        for case, figures in results.items():
            print(f"{name:<22}{case[:61]:<62}{figures['median'] * 1000:>8.1f}ms")
        print(f"{name:<22}{'-> ' + verdicts[name]:<62}")
    for name in verdicts.keys() - summary.keys():
        print(f"{name:<22}{'-> ' + verdicts[name] + ', no results':<62}")
    with open(os.path.join(OUT, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump({"verdicts": verdicts, "results": summary}, handle, indent=2)
    return 0 if all(v == "budgets met" for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
