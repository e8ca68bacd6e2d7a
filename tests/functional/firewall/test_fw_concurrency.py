"""Many fw actions at once on one host, and bad input that must change nothing."""

import subprocess

import pytest

from support.assertions import assert_ok, assert_one_error
from support.firewall import ipsets
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import PYTHON, TREE

VMS = range(100, 120)


def rule(protocol, direction="INBOUND", **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID="7", **extra)


RULES = rules_xml(rule("TCP", RANGE="22,443"), rule("TCP", IP="192.168.0.0", SIZE="300"),
                  rule("UDP", "OUTBOUND", IP="10.0.0.0", SIZE="4", RANGE="53"),
                  rule("ALL", "OUTBOUND"))


def vm(vm_id, **extra):
    nic = bridge_nic(vm_id, 0, "cbr", "uplink0", VN_MAD="fw", IP=f"10.70.0.{vm_id - 90}",
                     SECURITY_GROUPS="7", FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES")
    nic.update(extra)
    return b64(vm_xml(vm_id, [nic], extra=RULES))


def run_all(ns, action, args_of):
    """Start the action for every VM at once; wait for all."""
    procs = [subprocess.Popen(["ip", "netns", "exec", ns.name, PYTHON, f"{TREE}/fw/{action}",
                               *args_of(v)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env={"VNM_RUN_DIR": ns.run_dir,
                                                           "PATH": "/usr/sbin:/usr/bin"})
             for v in VMS]
    for proc, v in zip(procs, VMS):
        proc.stdin.write(vm(v))
        proc.stdin.close()
    return [(proc.wait(), proc.stderr.read().decode()) for proc in procs]


def chain(ns, name, family=4):
    return [line.split(" ", 2)[2] for line in
            ns.exec("iptables" if family == 4 else "ip6tables", "-S", name).splitlines()
            if line.startswith("-A ")]


def test_twenty_posts_at_once_protect_every_nic_completely(ns):
    for v in VMS:
        assert_ok(ns.run("fw", "pre", stdin=vm(v)))
        ns.add_tap(f"one-{v}-0", "cbr")
    results = run_all(ns, "post", lambda v: [f"one-{v}", "node1"])
    assert all(rc == 0 for rc, _ in results), results

    expected = {f: {d: chain(ns, f"one-100-0-{d}", f) for d in "io"} for f in (4, 6)}
    assert expected[4]["o"][-1] == "-j DROP" and len(expected[4]["i"]) == 4
    for v in VMS:
        for family in (4, 6):
            for direction in "io":
                mine = [r.replace(f"one-{v}-0", "one-100-0").replace(f"10.70.0.{v - 90}",
                                                                     "10.70.0.10")
                        .replace(f":{v:02x}:00", ":64:00")
                        for r in chain(ns, f"one-{v}-0-{direction}", family)]
                assert mine == expected[family][direction], (v, family, direction)
    for family in (4, 6):
        jumps = chain(ns, "opennebula", family)
        assert len(jumps) == 2 * len(VMS) + 1 and jumps[-1] == "-j ACCEPT"
        assert len(chain(ns, "INPUT", family)) == len(VMS)
    assert len(ipsets(ns)) == 4 * len(VMS)  # spoofing v4 + v6, tcp-n, nr

    results = run_all(ns, "clean", lambda v: ["node1"])
    assert all(rc == 0 for rc, _ in results), results
    assert not [line for line in ns.exec("iptables", "-S").splitlines() if "one-" in line]
    assert ipsets(ns) == {}


BAD_RANGE = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID="8",
                           RANGE="90:80"))
BAD = {  # attribute named in the error -> (NIC attributes, extra rules)
    "RANGE": (dict(SECURITY_GROUPS="7,8"), BAD_RANGE),
    "MAC": (dict(MAC="02:00:zz:00:00:01"), ""),
    "IP": (dict(IP="10.70.0.999"), ""),
    "SECURITY_GROUPS": (dict(SECURITY_GROUPS="7;8"), ""),
}


@pytest.mark.parametrize("attribute", sorted(BAD))
def test_bad_input_changes_nothing(ns, attribute):
    attrs, extra_rules = BAD[attribute]
    nic = bridge_nic(140, 0, "cbr", None, VN_MAD="fw", IP="10.70.0.50", SECURITY_GROUPS="7",
                     FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES")
    nic.update(attrs)
    ns.ip("link", "add", "cbr", "type", "bridge")
    ns.add_tap("one-140-0", "cbr")
    before = (ns.exec("iptables-save"), ns.exec("ip6tables-save"), ipsets(ns))
    done = ns.run("fw", "post", "one-140", "node1", stdin=b64(vm_xml(140, [nic],
                                                                     RULES + extra_rules)))
    assert_one_error(done, attribute)
    assert (ns.exec("iptables-save"), ns.exec("ip6tables-save"), ipsets(ns)) == before


def test_missing_tap_is_a_clear_error(ns):
    done = ns.run("fw", "post", "one-141", "node1", stdin=vm(141))
    assert_one_error(done, "NIC 0", "tap one-141-0 does not exist")
    assert "one-141" not in ns.exec("iptables-save")


def test_hot_plugged_nic_only_and_other_drivers_untouched(ns):
    two = [bridge_nic(150, 0, "cbr", None, VN_MAD="fw", IP="10.70.0.60", SECURITY_GROUPS="7"),
           bridge_nic(150, 1, "cbr", None, VN_MAD="fw", IP="10.70.0.61", SECURITY_GROUPS="7",
                      ATTACH="YES")]
    ns.ip("link", "add", "cbr", "type", "bridge")
    ns.add_tap("one-150-1", "cbr")
    assert_ok(ns.run("fw", "post", "one-150", "node1", stdin=b64(vm_xml(150, two, RULES))))
    rules = ns.exec("iptables", "-S")
    assert "one-150-1-i" in rules and "one-150-0" not in rules
    assert_ok(ns.run("fw", "clean", "node1", stdin=b64(vm_xml(150, two, RULES))))
    assert "one-150" not in ns.exec("iptables", "-S")
