"""A firewall update changes a NIC's IPv4 rules, IPv6 rules and ipsets together, or not at all.

Each tool call of an update is made to fail in turn (a wrapper first on PATH
fails the Nth call of iptables, ip6tables, their -restore and ipset): the
action either succeeds with exactly the new state, or fails with one line and
leaves exactly the old one — IPv4 and IPv6 rules and every set's members.
Before, a failing ip6tables-restore left the IPv4 rules and the new set
members live while the action reported failure.
"""


import pytest

from support.assertions import assert_ok, assert_one_error
from support.fault_injection import FailingInTurn
from support.firewall import Firewall, ipsets
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

TOOLS = ("iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset")


def nic(**extra):
    return bridge_nic(40, 0, "rbbr", "uplink0", VN_MAD="fw", IP="10.61.0.10",
                      IP6="fd00:61::10", MAC="02:00:0a:3d:00:0a", SECURITY_GROUPS="100",
                      FILTER_IP_SPOOFING="YES", **extra)


def vm(*nets, **extra):
    rules = [{"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": 100, "RANGE": "22",
              "IP6" if ":" in ip else "IP": ip, "SIZE": size} for ip, size in nets]
    return b64(vm_xml(40, [nic(**extra)], extra=rules_xml(*rules)))


OLD = vm(("10.1.0.0", 256), ("fd00:1::", 65536))
NEW = vm(("10.1.0.0", 256), ("10.2.0.0", 256), ("fd00:2::", 65536))


@pytest.fixture
def wrapped(tmp_path):
    return FailingInTurn(tmp_path, TOOLS)


def state(fw, ns):
    return fw.save(ns, 4), fw.save(ns, 6), ipsets(ns)


def test_each_tool_call_failing_in_turn_leaves_old_or_new_state(ns, tmp_path, wrapped):
    fw = Firewall("restore-nft", tmp_path)
    assert_ok(fw.run(ns, "fw", "pre", stdin=OLD))
    ns.add_tap("one-40-0", "rbbr")
    # the global chain and FORWARD jump, made by a host's first protected NIC, stay
    assert_ok(fw.run(ns, "fw", "post", "one-40", "h", stdin=OLD))
    cases = {  # action, stdin before, stdin of the action, argv
        "post": (None, OLD, ("one-40", "h")),
        "update_sg": (OLD, NEW, ("one-40",)),
        "clean": (OLD, OLD, ("h",)),
    }
    for action, (before, stdin, args) in cases.items():
        def reset():
            assert_ok(fw.run(ns, "fw", "clean", "h", stdin=OLD))
            if before is not None:
                assert_ok(fw.run(ns, "fw", "post", "one-40", "h", stdin=before))
            return state(fw, ns)

        old = reset()
        assert_ok(fw.run(ns, "fw", action, *args, stdin=stdin, env=wrapped.env(0)))
        new = state(fw, ns)
        calls = wrapped.calls()
        assert calls >= 4 and new != old
        failed = 0
        for fail_at in range(1, calls + 1):
            assert reset() == old
            done = fw.run(ns, "fw", action, *args, stdin=stdin, env=wrapped.env(fail_at))
            now = state(fw, ns)
            if done.returncode == 0:
                assert now == new, (action, fail_at, done.stderr.decode())
            else:
                failed += 1
                assert_one_error(done, "injected failure")
                assert now == old, (action, fail_at, done.stderr.decode())
        # every read and write of the update can fail it (only destroying
        # unused sets afterwards is retried)
        assert failed >= calls - 2, (action, failed, calls)


def test_a_set_over_its_maxelem_is_refused_before_anything_changes(ns, tmp_path):
    """A rule that overflows an ipset ("Hash is full" half-way through ``ipset restore``)
    used to leave the sets loaded before it live while the rules stayed old."""
    fw = Firewall("restore-nft", tmp_path)
    small = dict(CONF="ipset_maxelem=16")
    port_rule = dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=100,
                     RANGE="1000:1003", IP="10.5.0.0", SIZE=256)
    first = b64(vm_xml(40, [nic(**small)], extra=rules_xml(port_rule)))
    assert_ok(fw.run(ns, "fw", "pre", stdin=first))
    ns.add_tap("one-40-0", "rbbr")
    assert_ok(fw.run(ns, "fw", "post", "one-40", "h", stdin=first))
    before = state(fw, ns)
    wide = dict(port_rule, RANGE="1000:1020")  # 21 ports x 1 network > 16
    extra = dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=100, RANGE="22",
                 IP="10.9.0.0", SIZE=256)
    bad = b64(vm_xml(40, [nic(**small)], extra=rules_xml(extra, wide)))
    assert_one_error(fw.run(ns, "fw", "update_sg", "one-40", stdin=bad), "NIC 0", "maxelem")
    assert state(fw, ns) == before
