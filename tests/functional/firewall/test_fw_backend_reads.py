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



_LIST = """
import json, sys
from vnmlib.firewall import backend_restore
wanted = [tuple(key) for key in json.loads(sys.argv[1])]
print(json.dumps([[list(key), rules] for key, rules in backend_restore.list_rules(wanted).items()]))
"""


def listed_by_restore(ns, wanted, path):
    from support.paths import PYTHON, REPO

    out = ns.exec("env", f"PYTHONPATH={REPO}", f"PATH={path}", PYTHON, "-c", _LIST,
                  json.dumps(wanted))
    return {tuple(key): None if rules is None else [tuple(rule) for rule in rules]
            for key, rules in json.loads(out)}


def listed_by_iptables(ns, tool, table, chain):
    """``iptables -S chain``'s rules as tokens, None when the chain does not exist."""
    try:
        out = ns.exec(tool, "-w", "-t", table, "-S", chain)
    except AssertionError:  # sh's: iptables failed, the chain does not exist
        return None
    return [tuple(line.split()[2:]) for line in out.splitlines()
            if line.startswith(f"-A {chain} ")]


def test_the_restore_backend_lists_many_chains_per_run_with_missing_ones_between(
        ns, tmp_path):
    """One iptables-restore run lists a family's chains; a missing chain, wherever it
    is, reads as None and the others still come back exactly as ``iptables -S`` shows
    them, on the host's iptables (nft) and on iptables-legacy alike."""
    legacy_bin = tmp_path / "legacy"
    legacy_bin.mkdir()
    for tool in ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore"):
        os.symlink(f"/usr/sbin/{tool.replace('tables', 'tables-legacy', 1)}", legacy_bin / tool)
    wanted = [[4, "filter", "gone-a"], [4, "filter", "FORWARD"], [4, "filter", "one-9-0-i"],
              [4, "filter", "gone-b"], [4, "filter", "gone-c"], [4, "filter", "one-9-0-o"],
              [6, "filter", "one-9-0-i"], [6, "filter", "gone-a"], [4, "nat", "one-9-0-dnat"],
              [4, "nat", "PREROUTING"], [4, "nat", "gone-d"]]
    missing = [(4, "filter", "gone-a"), (4, "filter", "gone-b"), (4, "filter", "gone-c"),
               (6, "filter", "gone-a"), (4, "nat", "gone-d")]
    for suffix, path in (("", os.environ["PATH"]),
                         ("-legacy", f"{legacy_bin}:{os.environ['PATH']}")):
        ip4, ip6 = f"iptables{suffix}", f"ip6tables{suffix}"
        for chain in ("one-9-0-i", "one-9-0-o"):
            ns.exec(ip4, "-w", "-N", chain)
        ns.exec(ip4, "-w", "-A", "one-9-0-i", "-s", "10.0.0.0/8", "-p", "tcp", "-m",
                "multiport", "--dports", "22,80:90", "-j", "RETURN")
        ns.exec(ip4, "-w", "-A", "one-9-0-i", "-j", "DROP")
        ns.exec(ip4, "-w", "-A", "FORWARD", "-m", "physdev", "--physdev-is-bridged", "-j",
                "one-9-0-i")
        ns.exec(ip6, "-w", "-N", "one-9-0-i")
        ns.exec(ip6, "-w", "-A", "one-9-0-i", "-s", "fd00::/64", "-j", "RETURN")
        ns.exec(ip4, "-w", "-t", "nat", "-N", "one-9-0-dnat")
        ns.exec(ip4, "-w", "-t", "nat", "-A", "one-9-0-dnat", "-p", "tcp", "--dport", "80",
                "-j", "DNAT", "--to-destination", "10.1.1.1:8080")

        listed = listed_by_restore(ns, wanted, path)
        assert listed == {(f, t, c): listed_by_iptables(ns, ip4 if f == 4 else ip6, t, c)
                          for f, t, c in wanted}, suffix
        assert [key for key, rules in listed.items() if rules is None] == missing
        assert len(listed[(4, "filter", "one-9-0-i")]) == 2
        assert len(listed[(4, "filter", "FORWARD")]) == 1
