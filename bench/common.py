"""What every benchmark here shares: timing real processes, medians, the table.

Each benchmark re-executes itself inside a throwaway network namespace
(:func:`in_namespace`) and times the real action scripts with Debian's
/usr/bin/python3, as a hypervisor runs them.
"""

import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = os.environ.get("VNM_BENCH_PYTHON", "/usr/bin/python3")


def vm7_nics(count, vm7):
    """NicFirewalls of ``count`` NICs protected as vm7's fw NIC is (``vm7``: the fixture's
    base64), VMs 1000 on, each its own tap: the other NICs of a scale benchmark."""
    import copy

    sys.path.insert(0, REPO)
    from vnmlib.firewall import plan
    from vnmlib.model.template import parse_vm

    class Ctx:  # what firewall.plan reads
        def __init__(self, vm):
            self.vm = vm
            self.conf = {"ipset_maxelem": 65536}

    found = []
    for vm_id in range(1000, 1000 + count):
        vm = copy.copy(parse_vm(vm7))
        vm.id = vm_id
        nic = vm.nics[1]
        nic.attrs = dict(nic.attrs, TARGET=f"one-{vm_id}-1")
        found += plan(Ctx(vm), [nic], bridged=True)
    return found


def timed(argv, stdin=b"", before=None, env=None):
    if before:
        before()
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {argv} failed: {done.stderr.decode()}")
    return elapsed


def series(runs, argv, stdin=b"", before=None, env=None):
    """Median and p10-p90 of ``runs`` timed executions."""
    samples = sorted(timed(argv, stdin, before, env) for _ in range(runs))
    q = statistics.quantiles(samples, n=10)
    return {"median": statistics.median(samples), "p10": q[0], "p90": q[-1]}


def script(driver, action, tree=None):
    return [PYTHON, os.path.join(tree or os.path.join(REPO, "vnm"), driver, action)]


def in_namespace(argv_tail):
    """Re-run this script inside a fresh namespace with ``--inside``; its exit code.

    The namespace's name is in ``VNM_BENCH_NETNS`` (for daemons started with
    ``ip netns exec``, such as the private Open vSwitch of bench_ovs.py).

    vnmlib is byte-compiled first: a hypervisor runs each action many times and
    keeps the .pyc files after the first, so compiling is not part of any figure
    (PYTHONDONTWRITEBYTECODE, set in some shells, would otherwise make every
    run compile from source).
    """
    subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(REPO, "vnmlib")], check=True)
    ns = f"vnm-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, sys.argv[0],
                               "--inside", *argv_tail],
                              env=dict(os.environ, VNM_BENCH_NETNS=ns)).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def row(name, result, base, versus=None):
    line = (f"{name:<52}{result['median'] * 1000:>8.1f}ms"
            f"{result['p10'] * 1000:>9.1f}-{result['p90'] * 1000:<7.1f}ms"
            f"{result['median'] / base:>8.2f}x")
    if versus:
        line += f"{result['median'] / versus:>8.2f}x"
    print(line)


def header(last="x naive"):
    print(f"{'case':<52}{'median':>10}{'p10-p90':>19}{'x python':>9}{last:>9}")


def check_budgets(budgets):
    for name, ok in budgets:
        print(f"budget {name}: {'met' if ok else 'MISSED'}")
    return all(ok for _, ok in budgets)


def save(name, payload):
    out = os.path.join(REPO, "bench", "out")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)


def latency_main(name, doc, measure, report, default_runs=20):
    """The command line of a latency benchmark: ``[-n RUNS]``, run in a throwaway namespace.

    ``measure(runs)`` -> results (with VNM_RUN_DIR pointing at a temporary
    directory); ``report(results)`` prints the table and returns whether the
    budgets hold; the exit code says the same.
    """
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=default_runs)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        return in_namespace(["-n", str(args.runs)])
    with tempfile.TemporaryDirectory() as run_dir:
        os.environ["VNM_RUN_DIR"] = run_dir
        results = measure(args.runs)
    ok = report(results)
    save(name, {"python": PYTHON, "runs": args.runs, "results": results})
    return 0 if ok else 1
