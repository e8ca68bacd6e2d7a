#!/usr/bin/env python3
"""50 VMs' pre and post started at once on one host, against one VM alone.

    sudo /usr/bin/python3 bench/bench_concurrency.py [-n RUNS] [--vms 50]

Runs in a throwaway namespace with Debian's /usr/bin/python3: fw VMs (security
groups, anti-spoofing) spread over 5 bridges. Each round:
every VM's ``pre`` at once, the taps, every VM's ``post`` at once; then it
checks that every VM is fully protected (its chains complete, its jumps, its
ipset) and every bridge holds its taps, and cleans up. Reported: wall time of
the round (median over RUNS), against the same round for one VM.
"""

import argparse
import base64
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import PYTHON, in_namespace, save, script

RULES = ("<TEMPLATE><SECURITY_GROUP_RULE><PROTOCOL>TCP</PROTOCOL><RULE_TYPE>INBOUND</RULE_TYPE>"
         "<RANGE>22,80</RANGE><SECURITY_GROUP_ID>7</SECURITY_GROUP_ID></SECURITY_GROUP_RULE>"
         "</TEMPLATE><TEMPLATE><SECURITY_GROUP_RULE><PROTOCOL>ALL</PROTOCOL><RULE_TYPE>OUTBOUND"
         "</RULE_TYPE><SECURITY_GROUP_ID>7</SECURITY_GROUP_ID></SECURITY_GROUP_RULE></TEMPLATE>")


def vm(vm_id):
    nic = (f"<NIC><NIC_ID>0</NIC_ID><BRIDGE>ccbr{vm_id % 5}</BRIDGE>"
           f"<VN_MAD>fw</VN_MAD><IP>10.90.{vm_id // 250}.{vm_id % 250 + 1}</IP>"
           f"<MAC>02:00:0a:5a:{vm_id // 256:02x}:{vm_id % 256:02x}</MAC>"
           f"<SECURITY_GROUPS>7</SECURITY_GROUPS><FILTER_IP_SPOOFING>YES</FILTER_IP_SPOOFING>"
           f"<TARGET>one-{vm_id}-0</TARGET></NIC>")
    return base64.b64encode(f"<VM><ID>{vm_id}</ID><TEMPLATE>{nic}</TEMPLATE>{RULES}</VM>".encode())


def action(name, vm_id, *args):
    done = subprocess.run(script("fw", name) + list(args), input=vm(vm_id), capture_output=True)
    if done.returncode:
        raise SystemExit(f"bench: fw/{name} of VM {vm_id}: {done.stderr.decode()}")


def round_trip(ids):
    """pre of all at once, taps, post of all at once; seconds from first start to last end."""
    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        start = time.perf_counter()
        list(pool.map(lambda v: action("pre", v), ids))
        lines = []
        for v in ids:
            lines += [f"link add one-{v}-0 type veth peer name one-{v}-0p",
                      f"link set one-{v}-0 master ccbr{v % 5} up"]
        subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", text=True,
                       check=True)
        list(pool.map(lambda v: action("post", v, f"one-{v}", "node1"), ids))
        return time.perf_counter() - start


def verify(ids):
    rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True,
                          check=True).stdout.split()
    shapes = set()
    for v in ids:
        mine = [re.sub(rf"one-{v}-0|10\.90\.\d+\.\d+", "X", line) for line in rules
                if f"one-{v}-0" in line]
        shapes.add(tuple(mine))
        assert f"one-{v}-0-ip-spoofing" in sets, v
        master = os.path.basename(os.readlink(f"/sys/class/net/one-{v}-0/master"))
        assert master == f"ccbr{v % 5}", v
    assert len(shapes) == 1 and len(next(iter(shapes))) > 10, "VMs protected differently"


def teardown(ids):
    subprocess.run(["ip", "-batch", "-"], input="".join(f"link del one-{v}-0\n" for v in ids),
                   text=True, check=False, capture_output=True)
    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        list(pool.map(lambda v: action("clean", v, "node1"), ids))
    left = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True).stdout
    assert "one-" not in left, "clean left rules"


def main():
    import statistics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=5)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.inside:
        return in_namespace(["-n", str(args.runs), "--vms", str(args.vms)])
    with tempfile.TemporaryDirectory() as run_dir:
        os.environ["VNM_RUN_DIR"] = run_dir
        results = {}
        for label, ids in (("1 VM", [0]), (f"{args.vms} VMs at once", list(range(args.vms)))):
            samples = []
            for _ in range(args.runs):
                samples.append(round_trip(ids))
                verify(ids)
                teardown(ids)
            results[label] = {"median": statistics.median(samples), "min": min(samples),
                              "max": max(samples)}
    one = results["1 VM"]["median"]
    print(f"{'round (pre all, taps, post all)':<40}{'median':>10}{'min-max':>20}{'x 1 VM':>9}")
    for label, r in results.items():
        print(f"{label:<40}{r['median'] * 1000:>8.0f}ms{r['min'] * 1000:>10.0f}-"
              f"{r['max'] * 1000:<7.0f}ms{r['median'] / one:>8.1f}x")
    print(f"per VM at once: {results[f'{args.vms} VMs at once']['median'] / args.vms * 1000:.0f} ms"
          f" (python: {PYTHON}); every VM verified complete after every round")
    save("bench_concurrency", {"python": PYTHON, "runs": args.runs, "vms": args.vms,
                               "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
