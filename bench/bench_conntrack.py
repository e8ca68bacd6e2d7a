#!/usr/bin/env python3
"""What cutting the connections a narrowed security group no longer admits costs update_sg.

    sudo [VNM_BENCH_ENTRIES=10000] /usr/bin/python3 bench/bench_conntrack.py [-n RUNS]

Runs in a throwaway network namespace: one fw NIC (IPv4 + IPv6, inbound TCP
80 and 22 or only 80, outbound all) and a conntrack table that is empty, or
holds ENTRIES entries (made over ctnetlink, vnmlib/host/netlink/conntrack.py) of
the NIC's address that the rules admit (judged, all kept), that they no
longer admit (all cut; made again before each run), or of other IPv4 or
IPv6 addresses (dumped, passed over); and 100 entries of other addresses
(what any dump costs: it walks the kernel's whole hash). Baselines in the same run: ``python3 -c pass`` and
update_sg with the empty table (the second ratio). Last, the cut alone
(dump, judge, delete) timed in this process for the same tables: update_sg's
figures carry the noise of process start-up and of the iptables commit.
Results: table on stdout, JSON in bench/out/.
"""

import ipaddress
import os
import statistics
import subprocess
import sys
import time

from common import PYTHON, REPO, header, latency_main, row, script, series

sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml  # noqa: E402

from vnmlib.host.netlink import conntrack

VM_IP, VM_IP6 = "10.90.0.10", "fd90::10"
ENTRIES = int(os.environ.get("VNM_BENCH_ENTRIES", "10000"))


def vm(ssh):
    rules = [dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="80", SECURITY_GROUP_ID=100),
             dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=100)]
    if ssh:
        rules.append(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=100))
    nic = bridge_nic(9, 0, "ctbr", "uplink0", VN_MAD="fw", IP=VM_IP, IP6=VM_IP6,
                     SECURITY_GROUPS="100")
    return b64(vm_xml(9, [nic], extra=rules_xml(*rules)))


def entries(count, port, to=VM_IP):
    """``count`` established TCP connections from distinct peers to ``to``:``port``."""
    target = ipaddress.ip_address(to)
    first_peer = ipaddress.ip_address("10.100.0.1" if target.version == 4 else "fd92::1")
    return [conntrack.Entry(target.version, 6, (first_peer + i).packed, target.packed,
                            1024 + i % 60000, port) for i in range(count)]


def empty_table():
    conntrack.delete(conntrack.dump())


def fill(made):
    def run():
        empty_table()
        conntrack.create(made)
    return run


def measure(runs):
    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    subprocess.run(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                   check=True)
    narrow, wide = vm(ssh=False), vm(ssh=True)
    subprocess.run(script("fw", "pre"), input=wide, check=True, capture_output=True)
    subprocess.run(["ip", "link", "add", "one-9-0", "type", "veth", "peer", "name", "one-9-0p"],
                   check=True)
    subprocess.run(["ip", "link", "set", "one-9-0", "master", "ctbr", "up"], check=True)
    subprocess.run(script("fw", "post") + ["one-9", "node1"], input=wide, check=True,
                   capture_output=True)
    update = script("fw", "update_sg") + ["one-9"]

    empty_table()
    results["fw/update_sg, empty table"] = series(runs, update, wide)
    # a host's usual table: some entries, none the NIC's; the dump walks the whole hash anyway
    fill(entries(100, 80, to="10.91.0.10"))()
    results["fw/update_sg, 100 entries of other addresses"] = series(runs, update, wide)
    fill(entries(ENTRIES, 80))()
    results[f"fw/update_sg, {ENTRIES} NIC entries, all kept"] = series(runs, update, wide)
    fill(entries(ENTRIES, 80, to="10.91.0.10"))()
    results[f"fw/update_sg, {ENTRIES} IPv4 entries of other addresses"] = series(
        runs, update, wide)
    fill(entries(ENTRIES, 80, to="fd91::10"))()
    results[f"fw/update_sg, {ENTRIES} IPv6 entries of other addresses"] = series(
        runs, update, wide)
    # each run cuts them all: made again (untimed) before each
    results[f"fw/update_sg, {ENTRIES} NIC entries, all cut"] = series(
        runs, update, narrow, fill(entries(ENTRIES, 22)))
    if conntrack.count():
        raise SystemExit("bench: the cut left entries behind")
    results.update(cut_alone(runs))
    return results


def cut_alone(runs):
    """The cut by itself, in this process (what update_sg adds, without its other work
    and without process start-up noise): dump, judge, delete, for the NIC's rules."""
    from vnmlib.firewall import conntrack_cut
    from vnmlib.firewall.sg_rules import parse_rule

    rules = [parse_rule(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="80",
                             SECURITY_GROUP_ID="100"), 1)]
    nic = frozenset(ipaddress.ip_address(a).packed for a in (VM_IP, VM_IP6))

    def cut():
        doomed = conntrack_cut.doomed(conntrack.dump(nic), nic, rules)
        if doomed:
            conntrack.delete(doomed)

    cases = {"100 entries of other addresses": entries(100, 80, to="10.91.0.10"),
             f"{ENTRIES} entries of other addresses": entries(ENTRIES, 80, to="10.91.0.10"),
             f"{ENTRIES} NIC entries, all kept": entries(ENTRIES, 80),
             f"{ENTRIES} NIC entries, all cut": entries(ENTRIES, 22)}
    found = {}
    for name, made in cases.items():
        samples = []
        for _ in range(runs):
            fill(made)()
            start = time.perf_counter()
            cut()
            samples.append(time.perf_counter() - start)
        samples.sort()
        q = statistics.quantiles(samples, n=10)
        found[f"the cut alone, {name}"] = {"median": statistics.median(samples),
                                          "p10": q[0], "p90": q[-1]}
    empty_table()
    return found


def report(results):
    base = results["python -c pass"]["median"]
    empty = results["fw/update_sg, empty table"]["median"]
    header("x empty")
    for name, result in results.items():
        row(name, result, base, empty if name.startswith("fw/") else None)
    return True


if __name__ == "__main__":
    sys.exit(latency_main("bench_conntrack", __doc__, measure, report, default_runs=15))
