#!/usr/bin/env python3
"""fw/post, update_sg and clean with the nft backend against restore, 0 / 100 / 1,000 NICs.

    VNM_FULL_KERNEL=1 tools/qemu/run.sh -t 1800 --snapshot . \\
        "/usr/bin/python3 bench/bench_nft.py -n 9"

Needs ``ct state`` in the bridge family (nf_conntrack_bridge): run it in Debian's
kernel under QEMU as above, not on a host kernel without it. In a throwaway
namespace, the subject is vm7's fw NIC (32 rules, 5 sets), as in bench_fw.py;
the other NICs are protected the same way (other VM ids), written in one
transaction per backend before the series. Baseline in the same run:
``python3 -c pass``; ratios nft / restore per case, and issue 19's own measure:
``post`` at the most NICs as a ratio of its empty-host figure (goal <= 1.2x for
nft, and below restore's time), printed after the table and saved as
``post_growth`` (docs/benchmarks.md).

``--breakdown``: instead of the actions, the phases of the nft backend's commit for
vm7's NIC timed in-process at each count (its reads, the rendering, the transaction;
the NIC removed before each run), and beside them a read of the whole table, to show
which of them grow with the NICs protected.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, header, in_namespace, row, save, script, series, vm7_nics

sys.path.insert(0, REPO)
from vnmlib.firewall import backend_nft, backend_restore, ipsets, transaction
from vnmlib.firewall.layout import FAMILIES

SHARED = os.environ.get("VNM_SHARED") or os.path.join(os.path.dirname(REPO), "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "opennebula", "vm7_vnm_reduced.b64")
COUNTS = "0,100,1000"


def sh(*argv, stdin=None):
    subprocess.run(argv, input=stdin, capture_output=True, check=True, text=True)


def flush_all():
    """Nothing of either backend left in the namespace."""
    for tool in ("iptables", "ip6tables"):
        sh(tool, "-F")
        sh(tool, "-X")
    sh("ipset", "destroy")
    subprocess.run(["nft", "delete", "table", "bridge", "vnm"], capture_output=True, check=False)


def populate(backend, count, vm7):
    if not count:
        return
    nfs = vm7_nics(count, vm7)
    if backend == "nft":
        backend_nft.commit(backend_nft.plan(nfs, []))
        return
    sh("ipset", "restore", "-exist", stdin="\n".join(ipsets.stage_script(nfs, set())[0]) + "\n")
    for family in FAMILIES:
        text = backend_restore.render(transaction.plan_family(
            family, transaction.TableSnapshot(False, [], []), nfs, []))
        sh("iptables-restore" if family == 4 else "ip6tables-restore", "-n", stdin=text)


def measure(runs, counts, workdir):
    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from support.remotes import copy_tree

    nft_tree = os.path.join(workdir, "remotes", "vnm")
    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), encoding="utf-8") as f:
        copy_tree(os.path.dirname(nft_tree),
                  f.read().replace(":firewall_backend: restore", ":firewall_backend: nft"))
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                   check=True)
    subprocess.run(script("fw", "pre"), input=vm7, check=True, capture_output=True)
    subprocess.run(["ip", "link", "add", "one-7-1", "type", "veth", "peer", "name", "one-7-1p"],
                   check=True)
    subprocess.run(["ip", "link", "set", "one-7-1", "master", "onebr1", "up"], check=True)
    for backend, tree in (("restore", None), ("nft", nft_tree)):
        for count in counts:
            flush_all()
            populate(backend, count, vm7)
            post = script("fw", "post", tree) + ["one-7", "node1"]
            clean = script("fw", "clean", tree) + ["node1"]
            update = script("fw", "update_sg", tree) + ["one-7"]

            def do(argv):
                def run():
                    done = subprocess.run(argv, input=vm7, capture_output=True)
                    if done.returncode:
                        raise SystemExit(f"bench: {argv}: {done.stderr.decode()}")
                return run

            label = f"{backend}, {count} NICs"
            results[f"fw/post ({label})"] = series(runs, post, vm7, do(clean))
            results[f"fw/update_sg ({label})"] = series(runs, update, vm7)
            results[f"fw/clean ({label})"] = series(runs, clean, vm7, do(post))
            print(f"bench: {label}: post {results[f'fw/post ({label})']['median']:.3f} s",
                  file=sys.stderr, flush=True)  # progress: a 1,000-NIC run is long under QEMU
            subprocess.run(clean, input=vm7, capture_output=True, check=True)
    flush_all()
    return results


def breakdown(runs, counts):
    """{phase: {count: median seconds}} of the nft commit of vm7's NIC (a post after
    clean), phase by phase as ``firewall.apply`` runs them, and beside them what reading
    the whole table costs (what a table without footprints, or a clean, reads)."""
    import statistics
    import time

    with open(FIXTURE, "rb") as handle:
        vm7 = handle.read()
    subject = vm7_nics(1, vm7)[0]  # vm 1000's NIC: the others start at 1001
    found = {}
    for count in counts:
        flush_all()
        # the others and the subject (the table made): each run takes the subject out first
        backend_nft.commit(backend_nft.plan(vm7_nics(count + 1, vm7), []))
        samples = {}
        for _ in range(runs):
            backend_nft.commit(backend_nft.plan([], [subject.chain]))
            clock = [time.perf_counter()]
            backend_nft.read_state()
            clock.append(time.perf_counter())
            state = backend_nft._scoped_state([subject], routed=False)
            clock.append(time.perf_counter())
            planned = backend_nft.Plan(state, [subject], [], True)
            clock.append(time.perf_counter())
            backend_nft.commit(planned)
            clock.append(time.perf_counter())
            for phase, took in zip(("(read the whole table)", "read the footprints",
                                    "render", "commit"),
                                   (b - a for a, b in zip(clock, clock[1:]))):
                samples.setdefault(phase, []).append(took)
        for phase, values in samples.items():
            found.setdefault(phase, {})[count] = statistics.median(values)
        print(f"bench: breakdown at {count} NICs done", file=sys.stderr, flush=True)
    flush_all()
    return found


def growth(results, counts):
    """Issue 19's own measure: ``post`` with the most NICs protected as a ratio of its
    empty-host figure, per backend (goal for nft: at most 1.2x, and below restore's
    time there). None when the series has no empty host or no other count."""
    most = max(counts)
    if 0 not in counts or most == 0:
        return None
    post = {b: (results[f"fw/post ({b}, 0 NICs)"]["median"],
                results[f"fw/post ({b}, {most} NICs)"]["median"]) for b in ("restore", "nft")}
    return {"nics": most,
            "nft_post_vs_empty": post["nft"][1] / post["nft"][0],
            "restore_post_vs_empty": post["restore"][1] / post["restore"][0],
            "nft_post_vs_restore": post["nft"][1] / post["restore"][1],
            "goal_vs_empty": 1.2}


def report(results, grown):
    base = results["python -c pass"]["median"]
    header("x restore")
    for name, r in results.items():
        versus = None
        if "(nft, " in name:
            versus = results[name.replace("(nft, ", "(restore, ")]["median"]
        row(name, r, base, versus)
    if grown:
        n = grown["nics"]
        print(f"post at {n} NICs / empty host: nft {grown['nft_post_vs_empty']:.2f}x "
              f"(goal <= {grown['goal_vs_empty']}x: "
              f"{'met' if grown['nft_post_vs_empty'] <= grown['goal_vs_empty'] else 'MISSED'}), "
              f"restore {grown['restore_post_vs_empty']:.2f}x; nft / restore at {n} NICs "
              f"{grown['nft_post_vs_restore']:.2f}x (goal below 1: "
              f"{'met' if grown['nft_post_vs_restore'] < 1 else 'MISSED'})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=9)
    parser.add_argument("--nics", default=COUNTS, help="NICs protected besides the subject, "
                                                       "comma-separated (default %(default)s)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the phases of the nft commit instead of the actions")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(n) for n in args.nics.split(",")]
    if not args.inside:
        return in_namespace(["-n", str(args.runs), "--nics", args.nics]
                            + (["--breakdown"] if args.breakdown else []))
    with tempfile.TemporaryDirectory() as workdir:
        os.environ["VNM_RUN_DIR"] = os.path.join(workdir, "run")
        if args.breakdown:
            phases = breakdown(args.runs, counts)
            print("phase of the nft commit".ljust(32)
                  + "".join(f"{n:>8} NICs" for n in counts))
            for phase, by_count in phases.items():
                print(phase.ljust(32)
                      + "".join(f"{by_count[n] * 1000:10.1f} ms" for n in counts))
            return 0
        results = measure(args.runs, counts, workdir)
    grown = growth(results, counts)
    report(results, grown)
    try:
        save("bench_nft", {"python": PYTHON, "runs": args.runs, "nics": counts,
                           "results": results, "post_growth": grown})
    except OSError as exc:  # a read-only tree (QEMU): the table above is the result
        print(f"bench: results not saved: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
