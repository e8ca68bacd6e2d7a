"""Which conntrack entries a NIC's new rules no longer admit (vnmlib/firewall/conntrack_cut.py).

Pure: typed rules and hand-made entries in, verdicts out. The kernel side
(dump, delete, real traffic) is tests/functional/netlink/test_conntrack_netlink.py and
tests/functional/firewall/test_fw_conntrack_cut.py.
"""

import ipaddress

import pytest

from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

from vnmlib.firewall import conntrack_cut
from vnmlib.firewall.conntrack_cut import admitted, doomed, flow_of, targets
from vnmlib.firewall.sg_rules import nic_groups, parse_rule, rules_by_group
from vnmlib.host.netlink.conntrack import Entry
from vnmlib.model.template import parse_vm

VM4, VM6 = "10.70.0.10", "fd70::10"
PEER4, PEER6 = "10.70.0.20", "fd70::20"
NIC = frozenset({ipaddress.ip_address(VM4).packed, ipaddress.ip_address(VM6).packed})


def rule(protocol="TCP", direction="INBOUND", **fields):
    return parse_rule(dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID="5",
                           **fields), 1)


def entry(src, dst, protocol=6, sport=40000, dport=22, icmp=None):
    family = ipaddress.ip_address(src).version
    if icmp is not None or dport is None:  # ICMP, ESP: no ports
        sport = dport = None
    return Entry(family, protocol, ipaddress.ip_address(src).packed,
                 ipaddress.ip_address(dst).packed, sport, dport,
                 icmp[0] if icmp else None, icmp[1] if icmp else None, 1 if icmp else None)


def inbound(port=22, protocol=6, peer=PEER4, icmp=None):
    return flow_of(entry(peer, VM6 if ":" in peer else VM4, protocol, dport=port, icmp=icmp),
                   NIC)


def outbound(port=80, protocol=6, peer=PEER4, icmp=None):
    return flow_of(entry(VM6 if ":" in peer else VM4, peer, protocol, dport=port, icmp=icmp),
                   NIC)


def test_direction_peer_and_port_come_from_the_original_tuple():
    into = flow_of(entry(PEER4, VM4, sport=40000, dport=22), NIC)
    assert (into.direction, str(into.peer), into.port) == ("i", PEER4, 22)
    out = flow_of(entry(VM6, PEER6, sport=40000, dport=443), NIC)
    assert (out.direction, str(out.peer), out.port, out.family) == ("o", PEER6, 443, 6)
    assert flow_of(entry(PEER4, "10.70.0.99"), NIC) is None  # not this NIC's


def test_port_ranges_admit_their_ports_only_in_their_direction():
    rules = [rule(RANGE="22,8000:8010")]
    assert admitted(rules, inbound(22))
    assert admitted(rules, inbound(8005))
    assert admitted(rules, inbound(22, peer=PEER6))  # multiport rules are in both families
    assert not admitted(rules, inbound(23))
    assert not admitted(rules, inbound(22, protocol=17))  # UDP 22: a TCP rule
    assert not admitted(rules, outbound(22))


def test_removing_the_port_22_rule_dooms_the_ssh_session_only():
    before = [rule(RANGE="22"), rule(RANGE="80"), rule("ALL", "OUTBOUND")]
    ssh, web = entry(PEER4, VM4, dport=22), entry(PEER4, VM4, dport=80)
    ssh6 = entry(PEER6, VM6, dport=22)
    entries = [ssh, web, ssh6, entry(VM4, PEER4, dport=5432)]
    assert doomed(entries, NIC, before) == []
    assert doomed(entries, NIC, [before[1], before[2]]) == [ssh, ssh6]
    assert doomed(entries, NIC, [before[0], before[2]]) == [web]  # an unrelated rule went
    assert doomed(entries, NIC, [before[0], before[1]]) == [entries[3]]  # the OUTBOUND one


def test_protocol_rules():
    assert admitted([rule("ALL")], inbound(9, protocol=132))
    assert admitted([rule("IPSEC")], inbound(None, protocol=50))
    assert not admitted([rule("UDP")], inbound(53, protocol=6))
    # ICMP goes to the IPv4 chain only, ICMPv6 to the IPv6 chain only (layout)
    assert admitted([rule("ICMP")], inbound(protocol=1, icmp=(8, 0)))
    assert not admitted([rule("ICMP")], inbound(protocol=58, peer=PEER6, icmp=(128, 0)))
    assert admitted([rule("ICMPV6")], inbound(protocol=58, peer=PEER6, icmp=(128, 0)))


def test_icmp_types_with_and_without_code():
    echo = inbound(protocol=1, icmp=(8, 0))
    assert admitted([rule("ICMP", ICMP_TYPE="8")], echo)
    assert admitted([rule("ICMP", ICMP_TYPE="8/0")], echo)
    assert not admitted([rule("ICMP", ICMP_TYPE="8/1")], echo)
    assert not admitted([rule("ICMP", ICMP_TYPE="13")], echo)
    echo6 = inbound(protocol=58, peer=PEER6, icmp=(128, 0))
    assert admitted([rule("ICMPV6", ICMPV6_TYPE="128")], echo6)
    assert not admitted([rule("ICMP", ICMP_TYPE="128")], echo6)  # an IPv4-chain rule


def test_network_rules_match_the_peer():
    nets = [rule(IP="10.70.0.16", SIZE="8"), rule(IP6="fd70::", SIZE="256")]
    assert admitted(nets, inbound(9999, peer=PEER4))
    assert admitted(nets, inbound(9999, peer=PEER6))
    assert not admitted(nets, inbound(9999, peer="10.70.0.30"))
    assert not admitted(nets, inbound(9999, peer="fd70::1:0"))
    # outbound: the peer is the destination
    out = [rule("TCP", "OUTBOUND", IP="10.70.0.16", SIZE="8")]
    assert admitted(out, outbound(5432, peer=PEER4))
    assert not admitted(out, outbound(5432, peer="10.70.0.99"))


def test_network_and_port_rules():
    rules = [rule("UDP", IP=PEER4, SIZE="1", RANGE="5353")]
    assert admitted(rules, inbound(5353, protocol=17))
    assert not admitted(rules, inbound(5354, protocol=17))
    assert not admitted(rules, inbound(5353, protocol=6))
    assert not admitted(rules, inbound(5353, protocol=17, peer="10.70.0.21"))


def test_network_icmp_rules_take_the_listed_codes_of_a_type():
    # a type without code is expanded to its codes (3: 0-15 without 8), as the set holds
    unreachable = [rule("ICMP", IP="10.70.0.0", SIZE="256", ICMP_TYPE="3")]
    assert admitted(unreachable, inbound(protocol=1, icmp=(3, 3)))
    assert not admitted(unreachable, inbound(protocol=1, icmp=(3, 8)))
    stamp = [rule("ICMP", IP=PEER4, SIZE="1", ICMP_TYPE="13")]
    assert admitted(stamp, inbound(protocol=1, icmp=(13, 0)))
    assert not admitted(stamp, inbound(protocol=1, peer="10.70.0.21", icmp=(13, 0)))
    echo6 = [rule("ICMPV6", IP6="fd70::", SIZE="256", ICMPV6_TYPE="128")]
    assert admitted(echo6, inbound(protocol=58, peer=PEER6, icmp=(128, 0)))
    assert not admitted(echo6, inbound(protocol=58, peer="fd71::1", icmp=(128, 0)))


def test_a_gone_nic_loses_every_entry_of_its_addresses():
    mine = [entry(PEER4, VM4), entry(VM6, PEER6, dport=443)]
    other = entry(PEER4, "10.70.0.99")
    assert doomed(mine + [other], NIC, None) == mine


def nic(nic_id, ip, **extra):
    return bridge_nic(40, nic_id, "ctbr", VN_MAD="fw", IP=ip, **extra)


def alias(nic_id, parent, ip, **extra):
    return dict(_tag="NIC_ALIAS", NIC_ID=nic_id, PARENT_ID=parent, IP=ip, **extra)


class Ctx:
    def __init__(self, elements, rules, action):
        self.vm = parse_vm(b64(vm_xml(40, elements, extra=rules_xml(*rules))))
        self.action = action


class Nf:  # what targets() reads of a NicFirewall
    def __init__(self, nic_id):
        self.chain = f"one-40-{nic_id}"
        self.label = f"NIC {nic_id}"


SSH = dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID="7")


def packed(*texts):
    return frozenset(ipaddress.ip_address(t).packed for t in texts)


def test_targets_are_the_nic_with_its_aliases_and_its_rules():
    ctx = Ctx([nic(0, VM4, IP6=VM6, IP6_ULA="fd71::10", SECURITY_GROUPS="7"),
               nic(1, "10.70.1.10"), alias(2, 0, "10.70.0.11")], [SSH], "update_sg")
    (label, addresses, rules), = targets(ctx, [Nf(0)], [])
    assert label == "NIC 0"
    assert addresses == packed(VM4, VM6, "fd71::10", "10.70.0.11")
    assert [(r.kind, r.port_items) for r in rules] == [("portrange", [(22, 22)])]


def test_a_nic_without_security_groups_admits_everything():
    ctx = Ctx([nic(0, VM4)], [SSH], "post")
    (_label, _addresses, rules), = targets(ctx, [Nf(0)], [])
    assert admitted(rules, inbound(9999)) and admitted(rules, outbound(9999))


def test_a_detached_alias_loses_its_entries_and_leaves_its_parent_s():
    ctx = Ctx([nic(0, VM4, SECURITY_GROUPS="7"), alias(1, 0, "10.70.0.11", ATTACH="YES")],
              [SSH], "clean")
    parent, gone = targets(ctx, [Nf(0)], [])
    assert parent[1] == packed(VM4) and parent[2] is not None
    assert gone == ("NIC_ALIAS 1", packed("10.70.0.11"), None)
    # the same alias being attached (post) is one of the parent's addresses
    ctx.action = "post"
    (_label, addresses, _rules), = targets(ctx, [Nf(0)], [])
    assert addresses == packed(VM4, "10.70.0.11")


def test_removed_nics_lose_everything_and_gc_knows_no_addresses():
    ctx = Ctx([nic(0, VM4, IP6_GLOBAL="2001:db8::10"), alias(1, 0, "10.70.0.11")], [], "clean")
    assert targets(ctx, [], ["one-40-0"]) == [("NIC 0", packed(VM4, "2001:db8::10",
                                                               "10.70.0.11"), None)]
    assert targets(ctx, [], ["one-41-0"]) == []  # another VM's chains

    class GcCtx:
        pass
    assert targets(GcCtx(), [], ["one-40-0"]) == []


def test_nothing_is_read_when_the_table_is_empty(monkeypatch):
    monkeypatch.setattr(conntrack_cut.conntrack, "count", lambda: 0)

    def no_dump(_addresses):
        raise AssertionError("dumped an empty table")
    monkeypatch.setattr(conntrack_cut.conntrack, "dump", no_dump)
    conntrack_cut.after_commit(Ctx([nic(0, VM4)], [], "clean"), [], ["one-40-0"])


def test_after_commit_deletes_the_doomed_and_says_so(monkeypatch):
    ssh, web = entry(PEER4, VM4, dport=22), entry(PEER4, VM4, dport=80)
    deleted, lines = [], []
    monkeypatch.setattr(conntrack_cut.conntrack, "count", lambda: 2)
    monkeypatch.setattr(conntrack_cut.conntrack, "dump", lambda addresses: [ssh, web])
    monkeypatch.setattr(conntrack_cut.conntrack, "delete", deleted.extend)
    ctx = Ctx([nic(0, VM4, SECURITY_GROUPS="7")], [dict(SSH, RANGE="80")], "update_sg")
    ctx.log = type("Log", (), {"info": staticmethod(lines.append)})
    conntrack_cut.after_commit(ctx, [Nf(0)], [])
    assert deleted == [ssh]
    assert lines == ["NIC 0: 1 tracked connection(s) its rules no longer admit cut"]


@pytest.mark.parametrize("groups", ["7", "7,8"])
def test_rules_come_from_the_nic_s_groups_only(groups):
    rules = [SSH, dict(SSH, SECURITY_GROUP_ID="8", RANGE="80")]
    ctx = Ctx([nic(0, VM4, SECURITY_GROUPS=groups)], rules, "update_sg")
    (_label, _addresses, got), = targets(ctx, [Nf(0)], [])
    want = [r for _sg, group in nic_groups(ctx.vm.nics[0], rules_by_group(
        r.attrs for r in ctx.vm.rules)) for r in group]
    assert [r.port_items for r in got] == [r.port_items for r in want]
    assert admitted(got, inbound(80)) == (groups == "7,8")
