#!/usr/bin/env python3
"""Latency of ovswitch post, update_sg and clean with security groups (issue 18).

    sudo /usr/bin/python3 bench/bench_ovs_sg.py [-n RUNS]

Runs in a throwaway network namespace with a private Open vSwitch (userspace
datapath, as bench_ovs.py). The subject is vm7's fw NIC (NIC 1 of the
fixtures: 8 rules in groups 0 and 100, MAC/IP anti-spoofing, an alias) moved to
ovswitch with ``:ovs_security_groups: true``. Baselines in the same run:
``python3 -c pass`` and the same post without security groups. Scale: the
same after the flows of 1,000 other protected NICs (vm7's rules, other VM
ids and port numbers) are on the bridge; their ports are not created: the
flow table is what grows with them, and it is what post and clean change.
Budgets (issue 18): post <= 0.2 s; at 1,000 protected NICs post and clean
<= 2x the empty-bridge figure. Also: flows per NIC.

Protection from pre (issue 21, vnmlib/ovs/pre_guard.py), at 1,000 NICs: pre
and post of vm7 from an undeployed NIC (no port row, no flows, no tap; the
tap appears after pre and is re-added as libvirt does), with ``:protect_in_pre:``
true (the row and the flows in pre) and false (the reference's timing, the
baseline). Budget, as the Linux drivers' (bench_protect_in_pre.py): pre + post
protected <= 1.5x pre + post with the reference's timing. Results: table on
stdout, JSON in bench/out/.
"""

import base64
import os
import subprocess
import sys
import tempfile

from common import PYTHON, REPO, check_budgets, header, latency_main, row, script, series

sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
from support.ovs import Ovs  # noqa: E402
from support.paths import SHARED  # noqa: E402
from support.remotes import copy_tree  # noqa: E402
from vnmlib.model.template import parse_vm  # noqa: E402
from vnmlib.ovs import flows as ovs_flows, sg_flows  # noqa: E402

BRIDGE = "onebr1"
NICS = 1000
NETDEV = ":ovs_bridge_conf:\n    :datapath_type: netdev\n"


def vm7_on_ovs():
    """vm7 with its fw NIC (and alias) on ovswitch, PHYDEV uplink0."""
    path = os.path.join(SHARED, "fixtures", "opennebula", "vm7_vnm_reduced.b64")
    with open(path, "rb") as handle:
        xml = base64.b64decode(handle.read()).decode()
    xml = xml.replace("<VN_MAD><![CDATA[fw]]></VN_MAD>",
                      "<VN_MAD><![CDATA[ovswitch]]></VN_MAD>"
                      "<PHYDEV><![CDATA[uplink0]]></PHYDEV>")
    return base64.b64encode(xml.encode())


def sh(*argv, stdin=None):
    subprocess.run(argv, input=stdin, capture_output=True, check=False, text=True)


def populate(ovs, vm7):
    """The flows of ``NICS`` NICs protected as vm7's, one bundle (ports 2000…)."""
    vm = parse_vm(vm7)
    nic = vm.driver_nics("ovswitch")[0]
    groups = sg_flows.vm_groups(vm)
    lines = []
    for i in range(NICS):
        vm_id, port = 1000 + i, 2000 + i
        mac = f"02:01:{vm_id >> 8 & 0xff:02x}:{vm_id & 0xff:02x}:00:01"
        other = type(nic)(nic.kind, dict(nic.attrs, MAC=mac, TARGET=f"one-{vm_id}-1"), vm_id)
        flows = ovs_flows.port_flows(port, other, [], True, accept=sg_flows.ENTER)
        flows += sg_flows.protected_flows(port, other, groups, True)
        lines += ovs_flows.replace_lines(port, other, flows)
    subprocess.run(["ovs-ofctl", "--bundle", "add-flows", BRIDGE, "-"], check=True,
                   input="".join(f"{line}\n" for line in lines), text=True,
                   env=dict(os.environ, **ovs.env))


def measure(runs):
    work = tempfile.mkdtemp(prefix="vnm-bench-ovs-sg-")
    ovs = Ovs(os.environ["VNM_BENCH_NETNS"], work).start()
    os.environ.update(ovs.env)
    try:
        return _measure(runs, work, ovs)
    finally:
        ovs.stop()


def _measure(runs, work, ovs):
    vm7 = vm7_on_ovs()
    trees = {sg: copy_tree(os.path.join(work, f"remotes-{sg}"),
                           NETDEV + f":ovs_security_groups: {str(sg).lower()}\n")
             for sg in (True, False)}
    trees["reference timing"] = copy_tree(os.path.join(work, "remotes-reference"),
                                          NETDEV + ":ovs_security_groups: true\n"
                                          ":protect_in_pre: false\n")
    for tree in trees.values():
        subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.join(tree, "vnmlib")],
                       check=True)
    for link in ("uplink0", "one-7-1", "one-3-0"):
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", f"{link}p")
        sh("ip", "link", "set", link, "up")
    action = {(sg, name): script("ovswitch", name, trees[sg])
              for sg in trees for name in ("pre", "post", "clean", "update_sg")}
    post = action[True, "post"] + ["one-7", "h"]

    def deployed():
        subprocess.run(action[True, "pre"], input=vm7, capture_output=True, check=True)
        # one-3-0, another VM's port, keeps the bridge when vm7's NIC is cleaned
        for tap in ("one-7-1", "one-3-0"):
            sh("ovs-vsctl", "--may-exist", "add-port", BRIDGE, tap)
        subprocess.run(post, input=vm7, capture_output=True, check=True)

    def flows_of_nic():
        dump = ovs.ofctl("dump-flows", BRIDGE, "cookie=0x4f4e000000070001/-1")  # vm 7, NIC 1
        return len(dump.splitlines()) - 1  # the reply's header line

    results = {"python -c pass": series(runs, [PYTHON, "-c", "pass"])}
    subprocess.run(action[False, "pre"], input=vm7, capture_output=True, check=True)
    for tap in ("one-7-1", "one-3-0"):
        sh("ovs-vsctl", "--may-exist", "add-port", BRIDGE, tap)
    subprocess.run(action[False, "post"] + ["one-7", "h"], input=vm7, capture_output=True,
                   check=True)
    flows = {"without security groups": flows_of_nic()}
    deployed()
    flows["with security groups"] = flows_of_nic()
    for scale in ("empty", f"{NICS} NICs"):
        if scale != "empty":
            populate(ovs, vm7)
        results[f"post without security groups ({scale})"] = series(
            runs, action[False, "post"] + ["one-7", "h"], vm7)
        results[f"post ({scale})"] = series(runs, post, vm7)
        results[f"update_sg ({scale})"] = series(runs, action[True, "update_sg"] + ["one-7"],
                                                 vm7)
        results[f"clean ({scale})"] = series(runs, action[True, "clean"] + ["h"], vm7,
                                             before=deployed)
        deployed()
    for timing, tree in (("protected in pre", True), ("reference timing", "reference timing")):
        results.update(_pre_post(runs, action, tree, timing, vm7))
    return results, flows


def _pre_post(runs, action, tree, timing, vm7):
    """pre and post of vm7's NIC from undeployed, the tap appearing between them."""
    def run(name, *args):
        subprocess.run(action[tree, name] + list(args), input=vm7, capture_output=True,
                       check=True)

    def undeployed():  # clean, then no tap (one-3-0 keeps the bridge)
        run("clean", "h")
        sh("ip", "link", "del", "one-7-1")

    def pre_done():
        undeployed()
        run("pre")
        sh("ip", "link", "add", "one-7-1", "type", "veth", "peer", "name", "one-7-1p")
        sh("ip", "link", "set", "one-7-1", "up")
        # libvirt's call: the row pre made, if any, replaced by a new one
        sh("ovs-vsctl", "--", "--if-exists", "del-port", "one-7-1", "--", "add-port", BRIDGE,
           "one-7-1")

    return {f"pre ({timing}, {NICS} NICs)": series(runs, action[tree, "pre"], vm7,
                                                   before=undeployed),
            f"post ({timing}, {NICS} NICs)": series(runs, action[tree, "post"] + ["one-7", "h"],
                                                    vm7, before=pre_done)}


def report(measured):
    results, flows = measured
    base = results["python -c pass"]["median"]
    header("x empty")
    for name, r in results.items():
        empty = name.replace(f"{NICS} NICs", "empty")
        versus = results.get(empty) if empty != name else None
        row(name, r, base, versus["median"] if versus else None)
    print("flows per NIC (vm7's fw NIC: 8 rules, anti-spoofing, an alias): "
          + ", ".join(f"{count} {what}" for what, count in flows.items()))

    def ratio(what):
        return results[f"{what} ({NICS} NICs)"]["median"] / results[f"{what} (empty)"]["median"]

    def pre_post(timing):
        return sum(results[f"{action} ({timing}, {NICS} NICs)"]["median"]
                   for action in ("pre", "post"))

    protected = pre_post("protected in pre") / pre_post("reference timing")
    print(f"pre + post protected in pre / with the reference's timing: {protected:.2f}x")

    return check_budgets([
        ("post <= 0.2 s", results["post (empty)"]["median"] <= 0.2),
        (f"post at {NICS} protected NICs <= 2x empty", ratio("post") <= 2),
        (f"clean at {NICS} protected NICs <= 2x empty", ratio("clean") <= 2),
        ("pre + post protected in pre <= 1.5x the reference's timing", protected <= 1.5),
    ])


if __name__ == "__main__":
    sys.exit(latency_main("bench_ovs_sg", __doc__, measure, report, default_runs=15))
