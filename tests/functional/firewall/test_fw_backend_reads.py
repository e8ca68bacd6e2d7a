"""vnm status and gc read the firewall through the configured backend (issue 19).

With ``:firewall_backend: iptc`` vnm writes the legacy tables (libiptc),
which the host's ``iptables`` (nft) does not show: status must count the
NIC's chains there and see another program's rule ahead of vnm's jump there,
and gc must find and remove a dead VM's chains and sets there.
"""

import glob
import json
import os

from support.assertions import assert_ok
from support.fault_injection import vnm
from support.firewall import Firewall, ipsets
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))
VM_ID = 41


def status(ns, *args):
    done = vnm(ns, "status", "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {(n["vm"], n["nic"]): n for n in json.loads(done.stdout)}


def ours(lines):
    return [line for line in lines if f"one-{VM_ID}-0" in line]


def test_status_and_gc_read_the_tables_the_iptc_backend_writes(ns, tmp_path):
    fw = Firewall("iptc", tmp_path)
    stdin = b64(vm_xml(VM_ID, [bridge_nic(VM_ID, 0, "rdbr", VN_MAD="fw", IP="10.7.1.41",
                                          SECURITY_GROUPS="5", FILTER_IP_SPOOFING="YES")],
                       extra=RULES))
    assert_ok(fw.run(ns, "fw", "pre", stdin=stdin))
    ns.add_tap(f"one-{VM_ID}-0", "rdbr")
    assert_ok(fw.run(ns, "fw", "post", f"one-{VM_ID}", "node1", stdin=stdin))
    assert ours(fw.rules(ns)) and not ours(ns.exec("iptables", "-w", "-S").splitlines())

    code, nics = status(ns, "--tree", fw.tree)
    nic = nics[(VM_ID, 0)]
    assert code == 0 and nic["problems"] == []
    listed = fw.rules(ns) + fw.rules(ns, 6)  # iptables-legacy -S
    assert nic["chains"] == {chain: sum(line.startswith(f"-A {chain} ") for line in listed)
                             for chain in (f"one-{VM_ID}-0-i", f"one-{VM_ID}-0-o")}
    assert min(nic["chains"].values()) > 3
    assert sorted(nic["ipsets"]) == [f"one-{VM_ID}-0-ip-spoofing", f"one-{VM_ID}-0-ip6-spoofing"]
    # the restore backend reads the host's iptables (nft): no chains of this NIC there
    assert status(ns)[1][(VM_ID, 0)]["chains"] == {}

    # another program's catch-all ahead of vnm's jump, in the tables iptc wrote
    ns.exec(fw.tool("iptables"), "-w", "-I", "FORWARD", "1", "-m", "physdev",
            "--physdev-is-bridged", "-j", "ACCEPT")
    code, nics = status(ns, "--tree", fw.tree)
    assert code == 1 and nics[(VM_ID, 0)]["problems"] == [
        "IPv4: FORWARD rule 1 (-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT) accepts "
        "its traffic before vnm's jump"]

    # the VM is gone without clean, long ago: gc finds its chains and sets through iptc
    ns.ip("link", "del", f"one-{VM_ID}-0")
    for record in glob.glob(os.path.join(ns.run_dir, "users", "*", "*", f"{VM_ID}-0")):
        os.utime(record, (0, 0))
    done = vnm(ns, "gc", "--tree", fw.tree, "--live", "", "--apply", "--json")
    assert done.returncode == 0, done.stderr
    assert {"vm": VM_ID, "nic": 0, "remove": "firewall", "what": f"one-{VM_ID}-0"} in \
        json.loads(done.stdout)
    assert ours(fw.rules(ns)) == [] and ours(fw.rules(ns, 6)) == []
    assert not [name for name in ipsets(ns) if name.startswith(f"one-{VM_ID}-")]


def nodeport_vm(vm_id, first):
    return b64(vm_xml(vm_id, [bridge_nic(
        vm_id, 0, "npbr", VN_MAD="nodeport", IP=f"10.9.1.{vm_id}", GATEWAY="10.9.1.1",
        EXTERNAL_PORT_RANGE=f"{first}:{first + 99}", INTERNAL_PORT_RANGE=f"1-100/{first}")]))


def test_nodeport_refuses_host_ports_an_iptc_rule_forwards_already(ns, tmp_path):
    """The overlap check reads the other NICs' DNAT rules through the iptc backend:
    their ``--dport`` must come back (it did not, and both NICs got the ports)."""
    fw = Firewall("iptc", tmp_path)
    first = nodeport_vm(10, 9001)
    assert_ok(fw.run(ns, "nodeport", "pre", stdin=first))
    ns.add_tap("one-10-0", "npbr")
    assert_ok(fw.run(ns, "nodeport", "post", "one-10", stdin=first))
    intruder = nodeport_vm(11, 9050)
    assert_ok(fw.run(ns, "nodeport", "pre", stdin=intruder))
    before = ns.exec(fw.tool("iptables"), "-w", "-t", "nat", "-S")
    done = fw.run(ns, "nodeport", "post", "one-11", stdin=intruder)
    assert done.returncode != 0
    assert "EXTERNAL_PORT_RANGE 9050:9149 overlaps the host ports 9001:9100, forwarded to " \
           "VM 10 NIC 0 already" in done.stderr.decode()
    assert ns.exec(fw.tool("iptables"), "-w", "-t", "nat", "-S") == before
    assert_ok(fw.run(ns, "nodeport", "clean", stdin=first))
