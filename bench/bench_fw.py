#!/usr/bin/env python3
"""Latency of fw/post, update_sg and clean, empty host and 1,000 NICs protected.

    sudo /usr/bin/python3 bench/bench_fw.py [-n RUNS] [--nics 1000]

Runs in a throwaway network namespace. The subject is the fw NIC of the vm7
fixture (``../shared/fixtures``): 32 rules, 5 ipsets. Baselines measured in
the same run: ``python3 -c pass`` and the reference's own command trace for
that post replayed one process per command (bench/replay_trace.py).
Backends: ``restore`` on the host's iptables (nft), and ``iptc`` (python-
iptables, iptables-legacy). Scale: the same after NICS other NICs (vm7's
rules, other VM ids) are protected in the namespace.
``post, in place`` is post as it follows pre (the protection there, checked and
not rewritten: vnmlib/firewall/in_place.py), ``update_sg, unchanged`` an update
that changes nothing; ``post`` (after clean) and ``update_sg`` pay the full commit.
Budgets (issue 3): post and update_sg <= 0.15 s; at 1,000 NICs post and clean
<= 2x the empty-host figure (restore); issue 19: post in place <= 3x
python -c pass. Results: table on stdout, JSON in bench/out/.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from common import (PYTHON, REPO, check_budgets, header, in_namespace, row, save, script,
                    series, vm7_nics)

sys.path.insert(0, REPO)
from vnmlib.firewall import backend_restore, ipsets, transaction
from vnmlib.firewall.layout import FAMILIES

SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "opennebula", "vm7_vnm_reduced.b64")
TRACE = os.path.join(SHARED, "golden", "A", "02-post-fw.cmds")
LEGACY_TOOLS = ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore")


def sh(*argv, stdin=None):
    subprocess.run(argv, input=stdin, capture_output=True, check=True, text=True)


def flush_all():
    """Empty both iptables flavours and the ipsets of the namespace."""
    for tool in ("iptables", "ip6tables"):
        for flavour in ("legacy", "nft"):
            sh(f"{tool}-{flavour}", "-F")
            sh(f"{tool}-{flavour}", "-X")
    sh("ipset", "destroy")


def populate(count, legacy, vm7):
    """``count`` NICs protected as vm7's fw NIC is, written in one transaction per family."""
    installs = vm7_nics(count, vm7)
    ipset_lines = ipsets.stage_script(installs, set())[0]
    sh("ipset", "restore", "-exist", stdin="\n".join(ipset_lines) + "\n")
    for family in FAMILIES:
        snapshot = transaction.TableSnapshot(False, [], [])  # flushed: bootstrap too
        text = backend_restore.render(transaction.plan_family(family, snapshot, installs, []))
        tool = ("iptables" if family == 4 else "ip6tables") + ("-legacy" if legacy else "")
        sh(f"{tool}-restore", "-n", stdin=text)


def measure(runs, nics, workdir):
    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    legacy_bin = os.path.join(workdir, "legacy-bin")
    os.makedirs(legacy_bin)
    for tool in LEGACY_TOOLS:
        os.symlink(f"/usr/sbin/{tool.replace('tables', 'tables-legacy', 1)}",
                   os.path.join(legacy_bin, tool))
    iptc_tree = os.path.join(workdir, "remotes", "vnm")
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from support.remotes import copy_tree

    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), encoding="utf-8") as f:
        copy_tree(os.path.dirname(iptc_tree),
                  f.read().replace(":firewall_backend: restore", ":firewall_backend: iptc"))
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                   check=True)
    subprocess.run(script("fw", "pre"), input=vm7, check=True, capture_output=True)
    subprocess.run(["ip", "link", "add", "one-7-1", "type", "veth", "peer", "name", "one-7-1p"],
                   check=True)
    subprocess.run(["ip", "link", "set", "one-7-1", "master", "onebr1", "up"], check=True)

    setups = [("restore", None, False, dict(os.environ)),
              ("iptc", iptc_tree, True,
               dict(os.environ, PATH=f"{legacy_bin}:{os.environ['PATH']}"))]
    for backend, tree, legacy, env in setups:
        for count in (0, nics):
            flush_all()
            if count:
                populate(count, legacy, vm7)
            post = script("fw", "post", tree) + ["one-7", "node1"]
            clean = script("fw", "clean", tree) + ["node1"]
            update = script("fw", "update_sg", tree) + ["one-7"]

            def do(argv):
                def run():
                    done = subprocess.run(argv, input=vm7, env=env, capture_output=True)
                    if done.returncode:
                        raise SystemExit(f"bench: {argv}: {done.stderr.decode()}")
                return run

            def forget_digests():
                # what an update that changes the rules pays: the full commit
                # (in_place finds no record of this protection, so rewrites it)
                shutil.rmtree(os.path.join(os.environ["VNM_RUN_DIR"], "sg-applied"),
                              ignore_errors=True)

            label = f"{backend}, {count} NICs"
            results[f"fw/post ({label})"] = series(runs, post, vm7, do(clean), env)
            # as after pre (:protect_in_pre:): the protection is there, post checks it
            results[f"fw/post, in place ({label})"] = series(runs, post, vm7, None, env)
            results[f"fw/update_sg ({label})"] = series(runs, update, vm7, forget_digests, env)
            results[f"fw/update_sg, unchanged ({label})"] = series(runs, update, vm7, None, env)
            results[f"fw/clean ({label})"] = series(runs, clean, vm7, do(post), env)
            subprocess.run(clean, input=vm7, env=env, capture_output=True, check=True)
    flush_all()
    naive = [PYTHON, os.path.join(REPO, "bench", "replay_trace.py"), TRACE]
    results["reference trace replayed (post, process per rule)"] = series(
        runs, naive, b"", flush_all)
    return results


def report(results, nics):
    base = results["python -c pass"]["median"]
    reference = results["reference trace replayed (post, process per rule)"]["median"]
    header("x ref")
    for name, r in results.items():
        row(name, r, base, reference if name.startswith("fw/post") else None)

    def median(name):
        return results[name]["median"]

    empty, full = "restore, 0 NICs", f"restore, {nics} NICs"
    return check_budgets([
        ("fw/post <= 0.15 s", median(f"fw/post ({empty})") <= 0.15),
        ("fw/update_sg <= 0.15 s", median(f"fw/update_sg ({empty})") <= 0.15),
        (f"fw/post at {nics} NICs <= 2x empty",
         median(f"fw/post ({full})") <= 2 * median(f"fw/post ({empty})")),
        (f"fw/clean at {nics} NICs <= 2x empty",
         median(f"fw/clean ({full})") <= 2 * median(f"fw/clean ({empty})")),
        ("fw/post in place <= 3x python -c pass",
         median(f"fw/post, in place ({empty})") <= 3 * base),
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=15)
    parser.add_argument("--nics", type=int, default=1000)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        return in_namespace(["-n", str(args.runs), "--nics", str(args.nics)])
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["VNM_RUN_DIR"] = os.path.join(workdir, "run")
        results = measure(args.runs, args.nics, workdir)
    ok = report(results, args.nics)
    save("bench_fw", {"python": PYTHON, "runs": args.runs, "nics": args.nics,
                      "results": results})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
