"""status, doctor and gc see lost or bypassed protection (issue 28.4).

Other software's rules are inserted into the test namespace's tables the way
a careless firewall script would; ``vnm status`` must exit 1 naming the NIC
and the cause, ``vnm doctor`` must FAIL its global-chain check, and harmless
neighbours (another interface, established connections only) must not be
flagged. gc lists bridges named as oned names them that no record names, and
removes them only with ``--unrecorded-bridges``.
"""

import json

from support.assertions import assert_ok
from support.fault_injection import vnm
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))


def deploy(ns, vm_id=31, bridge="stbr"):
    stdin = b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, VN_MAD="fw", IP=f"10.7.0.{vm_id}",
                                          SECURITY_GROUPS="5", FILTER_IP_SPOOFING="YES")],
                       extra=RULES))
    assert_ok(ns.run("fw", "pre", stdin=stdin))
    ns.add_tap(f"one-{vm_id}-0", bridge)
    assert_ok(ns.run("fw", "post", f"one-{vm_id}", "node1", stdin=stdin))


def problems(ns):
    done = vnm(ns, "status", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    [nic] = json.loads(done.stdout)
    assert done.returncode == (1 if nic["problems"] else 0)
    return nic["problems"]


def doctor_chains(ns):
    done = vnm(ns, "doctor", "--json")
    return [(r["status"], r["detail"]) for r in json.loads(done.stdout)
            if r["check"].startswith("vnm chains")]


def test_status_and_doctor_see_a_rule_accepting_bridged_traffic_before_vnms_jump(ns):
    deploy(ns)
    assert problems(ns) == []
    assert doctor_chains(ns)[0][0] == "ok"
    # harmless: another bridge's traffic, and established connections only
    ns.exec("iptables", "-I", "FORWARD", "-i", "otherbr", "-j", "ACCEPT")
    ns.exec("iptables", "-I", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
            "-j", "ACCEPT")
    assert problems(ns) == []
    # another program's catch-all for bridged traffic, ahead of vnm's jump
    ns.exec("iptables", "-I", "FORWARD", "2", "-m", "physdev", "--physdev-is-bridged", "-j",
            "ACCEPT")
    assert problems(ns) == [
        "IPv4: FORWARD rule 2 (-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT) accepts "
        "its traffic before vnm's jump"]
    done = vnm(ns, "status")
    assert done.returncode == 1 and "31/0" in done.stdout and "accepts its traffic" in done.stdout
    [(status, detail)] = doctor_chains(ns)
    assert status == "FAIL" and "FORWARD rule 2" in detail


def test_status_sees_a_flushed_global_chain_and_a_family_missing(ns):
    deploy(ns)
    ns.exec("ip6tables", "-F", "opennebula")
    assert problems(ns) == ["IPv6: opennebula does not jump to one-31-0-i",
                            "IPv6: opennebula does not jump to one-31-0-o"]
    ns.exec("iptables", "-F", "opennebula")
    assert problems(ns) == ["opennebula jumps to none of its chains in either family (flushed?)"]


def test_status_sees_an_emptied_nic_chain_and_a_missing_forward_jump(ns):
    deploy(ns)
    ns.exec("iptables", "-F", "one-31-0-i")
    ns.exec("ip6tables", "-D", "FORWARD", "-m", "physdev", "--physdev-is-bridged", "-j",
            "opennebula")
    assert problems(ns) == [
        "IPv4: chain one-31-0-i is empty (no DROP: everything passes)",
        "IPv6: FORWARD has no '-m physdev --physdev-is-bridged -j opennebula' jump"]
    [(status, detail)] = doctor_chains(ns)
    assert status == "FAIL" and "FORWARD does not jump to opennebula" in detail


def test_gc_lists_bridges_named_by_oned_without_a_record_and_removes_them_on_request(ns):
    deploy(ns, 32, "onebr7")  # recorded: not listed
    ns.ip("link", "add", "onebr9", "type", "bridge")  # left by the reference, say
    ns.ip("link", "add", "onebr.20", "type", "bridge")
    ns.ip("link", "add", "mybr", "type", "bridge")  # not a name oned gives: not ours to judge
    dry = vnm(ns, "gc", "--live", "32", "--json")
    found = {(r["remove"].split(" (")[0], r["what"]) for r in json.loads(dry.stdout)}
    assert found == {("unrecorded bridge", "onebr9"), ("unrecorded bridge", "onebr.20")}
    done = vnm(ns, "gc", "--live", "32", "--apply")
    assert done.returncode == 0 and "listed only" in done.stdout
    assert {"onebr9", "onebr.20", "mybr", "onebr7"} <= set(ns.links())
    ns.add_tap("guest0", "onebr.20")  # a guest keeps it
    done = vnm(ns, "gc", "--live", "32", "--apply", "--unrecorded-bridges")
    assert done.returncode == 0, done.stderr
    links = ns.links()
    assert "onebr9" not in links and "onebr.20" in links and "mybr" in links
    assert links["one-32-0"]["master"] == "onebr7"
    assert "kept bridge onebr.20: guest ports guest0" in done.stderr
