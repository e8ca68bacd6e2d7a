"""The security-group engine's pure parts: rule typing and validation, the NIC
layout against the reference's traces, and transaction planning."""

import ipaddress

import pytest

from support import golden
from support.paths import fixture_bytes

from vnmlib.model.config import DEFAULTS
from vnmlib.errors import InputError
from vnmlib.firewall import backend_restore, transaction
from vnmlib.firewall.layout import GLOBAL_CHAIN, NicFirewall
from vnmlib.firewall.sg_rules import nic_groups, parse_rule, rules_by_group, to_nets
from vnmlib.model.template import parse_vm

VM7 = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))
VM10 = parse_vm(fixture_bytes("vm10_vnm_reduced.b64"))


def build(vm, nic_index, bridged=True, aliases=None):
    nic = vm.nics[nic_index]
    groups = rules_by_group(r.attrs for r in vm.rules)
    if aliases is None:
        aliases = [a for a in vm.aliases if a.get("PARENT_ID") == str(nic.nic_id)]
    return NicFirewall(vm, nic, aliases, nic_groups(nic, groups), DEFAULTS["ipset_maxelem"],
                       bridged, vm.tap_name(nic))


def rule(**fields):
    base = {"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": "5"}
    base.update(fields)
    return parse_rule(base, 1)


def test_to_nets_splits_into_aligned_blocks():
    nets = to_nets(ipaddress.ip_address("10.0.0.0"), 300)
    assert [str(n) for n in nets] == ["10.0.0.0/24", "10.0.1.0/27", "10.0.1.32/29",
                                      "10.0.1.40/30"]
    assert [str(n) for n in to_nets(ipaddress.ip_address("172.16.0.10"), 10)] == [
        "172.16.0.10/31", "172.16.0.12/30", "172.16.0.16/30"]


@pytest.mark.parametrize("fields, kind", [
    ({}, "protocol"),
    ({"RANGE": "22"}, "portrange"),
    ({"PROTOCOL": "ICMP", "ICMP_TYPE": "8"}, "icmp_type"),
    ({"PROTOCOL": "ICMPV6", "ICMPV6_TYPE": "128"}, "icmpv6_type"),
    ({"IP": "10.0.0.0", "SIZE": "4"}, "net"),
    ({"IP": "10.0.0.0", "SIZE": "4", "RANGE": "80:90"}, "net_portrange"),
    ({"PROTOCOL": "ICMP", "IP": "10.0.0.0", "SIZE": "4", "ICMP_TYPE": "3"}, "net_icmp_type"),
    ({"PROTOCOL": "ICMPV6", "IP6": "fd00::", "SIZE": "4", "ICMPV6_TYPE": "1"},
     "net_icmpv6_type"),
])
def test_rule_type_follows_the_fields_present(fields, kind):
    assert rule(**fields).kind == kind


def test_ipsec_is_esp_and_protocol_is_case_insensitive():
    assert rule(PROTOCOL="IPSEC").protocol == "esp"
    assert rule(PROTOCOL="udp").protocol == "udp"


@pytest.mark.parametrize("fields, needle", [
    ({"RANGE": "443:80"}, "reversed"),
    ({"RANGE": "70000"}, "0..65535"),
    ({"RANGE": "22,,80"}, "not a port"),
    ({"RANGE": "80-90"}, "not a port"),
    ({"PROTOCOL": "ICMP", "RANGE": "22"}, "needs PROTOCOL TCP or UDP"),
    ({"PROTOCOL": "GRE"}, "PROTOCOL 'GRE'"),
    ({"PROTOCOL": ""}, "PROTOCOL"),
    ({"RULE_TYPE": "SIDEWAYS"}, "RULE_TYPE"),
    ({"IP": "10.0.0.300", "SIZE": "1"}, "not an IP address"),
    ({"IP6": "10.0.0.1", "SIZE": "1"}, "not an IPv6"),
    ({"IP6": "10.0.0.1", "SIZE": "1"}, "not an IPv6"),
    ({"IP": "10.0.0.1"}, "has no SIZE"),
    ({"SIZE": "4"}, "has no IP"),
    ({"IP": "10.0.0.1", "SIZE": "0"}, "positive integer"),
    ({"IP": "255.255.255.250", "SIZE": "10"}, "past the end"),
    ({"PROTOCOL": "ICMP", "ICMP_TYPE": "300"}, "0..255"),
    ({"PROTOCOL": "ICMP", "ICMP_TYPE": "echo"}, "type or type/code"),
    ({"SECURITY_GROUP_ID": "1;2"}, "SECURITY_GROUP_ID"),
])
def test_bad_rules_are_named_errors(fields, needle):
    with pytest.raises(InputError) as err:
        rule(**fields)
    assert "SECURITY_GROUP_RULE 1" in str(err.value) and needle in str(err.value)


def test_multiport_keeps_15_slots_per_rule():
    many = rule(RANGE=",".join(str(p) for p in range(1000, 1020)))
    assert [c.count(",") + 1 for c in many.multiport_chunks()] == [15, 5]
    ranges = rule(RANGE="1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16")
    assert ranges.multiport_chunks() == ["1:2,3:4,5:6,7:8,9:10,11:12,13:14", "15:16"]


def test_icmp_codes_expand_as_the_reference():
    assert rule(PROTOCOL="ICMP", ICMP_TYPE="11", IP="10.0.0.0", SIZE="1").icmp_entries(
        {11: (0, 1)}, "icmp") == ["icmp:11/0", "icmp:11/1"]
    assert rule(PROTOCOL="ICMP", ICMP_TYPE="3/4", IP="10.0.0.0", SIZE="1").icmp_entries(
        {3: (0, 1)}, "icmp") == ["icmp:3/4"]


@pytest.mark.parametrize("family, title", [(4, "iptables -S"), (6, "ip6tables -S")])
def test_vm7_fw_nic_layout_equals_the_reference_state(family, title):
    lines = golden.section("A", "02-after-post.state", title)
    nf = build(VM7, 1)
    for chain in ("one-7-1-i", "one-7-1-o"):
        assert nf.rules[family][chain] == golden.chain_rules(lines, chain), chain
    # jumps: each inserted at the top, so the state lists them in reverse
    inserted = [(c, t) for c, t in nf.jumps[family]]
    for parent in (GLOBAL_CHAIN, "INPUT"):
        ours = [t for c, t in reversed(inserted) if c == parent]
        theirs = [t for t in golden.chain_rules(lines, parent) if t[-1].startswith("one-7-1-")]
        assert ours == theirs


def test_vm7_fw_nic_ipsets_equal_the_reference_commands():
    nf = build(VM7, 1)
    assert sorted(nf.sets) == sorted(golden.section("A", "02-after-post.state",
                                                     "ipset list -name"))
    adds = [line.split()[3:] for line in golden.commands("A", "02-post-fw", "ipset add -exist")]
    ours = [[name, member] for name, ipset in nf.sets.items() for member in ipset.members]
    assert sorted(ours) == sorted(adds)
    assert nf.sets["one-7-1-100-o-nr-inet"].create_args() == \
        "hash:net,port family inet maxelem 65536"


@pytest.mark.parametrize("family, title", [(4, "iptables -S"), (6, "ip6tables -S")])
def test_vm10_routed_layout_equals_the_reference_state(family, title):
    lines = golden.section("D", "02-after-remote_post.state", title)
    nf = build(VM10, 0, bridged=False)
    for chain in ("one-10-0-i", "one-10-0-o"):
        assert nf.rules[family][chain] == golden.chain_rules(lines, chain)
    ours = [t for c, t in reversed(nf.jumps[family]) if c == GLOBAL_CHAIN]
    theirs = [golden.routed_out_jump(t) for t in golden.chain_rules(lines, GLOBAL_CHAIN)
              if t[-1].startswith("one-")]
    assert ours == theirs
    assert ("-j", GLOBAL_CHAIN) in golden.chain_rules(lines, "FORWARD")


def test_detached_alias_leaves_the_parent_sets():
    nf = build(VM7, 1, aliases=[])
    assert list(nf.sets["one-7-1-ip-spoofing"].members) == ["10.0.1.5"]


def test_missing_security_groups_allows_all_for_that_nic_only():
    xml_nic = VM7.nics[1]
    del xml_nic.attrs["SECURITY_GROUPS"]
    try:
        nf = build(VM7, 1)
        assert nf.rules[4]["one-7-1-i"][-2:] == [("-j", "RETURN"), ("-j", "DROP")]
        assert not [s for s in nf.sets if "-100-" in s]
    finally:
        xml_nic.attrs["SECURITY_GROUPS"] = "0,100"
    assert [s for s in build(VM7, 1).sets if "-100-" in s]


@pytest.mark.parametrize("attr, value, needle", [
    ("MAC", "02:00:0a:00:01", "MAC"),
    ("IP", "10.0.1.500", "IP"),
    ("SECURITY_GROUPS", "0,abc", "SECURITY_GROUPS"),
])
def test_bad_nic_attributes_are_named_errors(attr, value, needle):
    nic = VM7.nics[1]
    old = nic.attrs[attr]
    nic.attrs[attr] = value
    try:
        with pytest.raises(InputError) as err:
            build(VM7, 1)
        assert "NIC 1" in str(err.value) and needle in str(err.value)
    finally:
        nic.attrs[attr] = old


def test_overlong_ipset_name_is_refused_before_anything_changes():
    vm = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))
    vm.id = 123456789012
    with pytest.raises(InputError, match="ipset name .* bytes"):
        build(vm, 1)


def snapshot(global_chain=True, forward=(), jumps=()):
    return transaction.TableSnapshot(global_chain, list(forward),
                                     [(c, t, t) for c, t in jumps])


def test_first_protection_bootstraps_the_global_chain():
    ops = transaction.plan_family(4, snapshot(global_chain=False), [build(VM7, 1)], [])
    assert ops[:3] == [("new_chain", GLOBAL_CHAIN),
                       ("append", "FORWARD", ("-m", "physdev", "--physdev-is-bridged", "-j",
                                              GLOBAL_CHAIN)),
                       ("append", GLOBAL_CHAIN, ("-j", "ACCEPT"))]


def test_routed_and_bridged_modes_each_get_their_forward_jump():
    bridged_only = snapshot(forward=[("-m", "physdev", "--physdev-is-bridged", "-j",
                                      GLOBAL_CHAIN)])
    ops = transaction.plan_family(4, bridged_only, [build(VM10, 0, bridged=False)], [])
    assert ops[0] == ("append", "FORWARD", ("-j", GLOBAL_CHAIN))
    assert ("append", "FORWARD", ("-j", GLOBAL_CHAIN)) not in transaction.plan_family(
        4, snapshot(forward=[("-j", GLOBAL_CHAIN)]), [build(VM10, 0, bridged=False)], [])


def test_only_the_nics_own_jumps_are_deleted():
    mine = ("-m", "physdev", "--physdev-in", "one-7-1", "-j", "one-7-1-o")
    other = ("-m", "physdev", "--physdev-in", "one-7-10", "-j", "one-7-10-o")
    admin = ("-s", "10.0.0.1/32", "-j", "ACCEPT")
    ops = transaction.plan_family(4, snapshot(jumps=[("INPUT", mine), ("INPUT", other),
                                                     (GLOBAL_CHAIN, admin)]), [], ["one-7-1"])
    assert ops == [("delete", "INPUT", mine),
                   ("chain", "one-7-1-i"), ("delete_chain", "one-7-1-i"),
                   ("chain", "one-7-1-o"), ("delete_chain", "one-7-1-o")]


def test_stale_sets_are_only_the_nics_own():
    nf = build(VM7, 1)
    existing = set(nf.sets) | {"one-7-1-200-i-tcp-n-inet", "one-7-10-ip-spoofing", "admin-set"}
    assert transaction.stale_sets(existing, [nf], []) == ["one-7-1-200-i-tcp-n-inet"]
    assert transaction.stale_sets(existing, [], ["one-7-1"]) == sorted(
        set(nf.sets) | {"one-7-1-200-i-tcp-n-inet"})


def test_restore_text_is_one_transaction():
    text = backend_restore.render([("new_chain", GLOBAL_CHAIN), ("chain", "one-7-1-i"),
                                   ("append", "one-7-1-i", ("-j", "DROP")),
                                   ("insert", "INPUT", ("-j", "one-7-1-i")),
                                   ("delete", "INPUT", ("-j", "one-7-1-o")),
                                   ("delete_chain", "one-7-1-o")])
    assert text == ("*filter\n-N opennebula\n:one-7-1-i - [0:0]\n-A one-7-1-i -j DROP\n"
                    "-I INPUT -j one-7-1-i\n-D INPUT -j one-7-1-o\n-X one-7-1-o\nCOMMIT\n")


def test_an_ipv6_address_in_ip_is_an_ipv6_network_rule():
    """oned accepts IP=<IPv6> + SIZE; the reference's to_nets makes IPv6 CIDRs of it."""
    rule = parse_rule({"PROTOCOL": "TCP", "RULE_TYPE": "INBOUND",
                       "SECURITY_GROUP_ID": "100", "IP": "2001:db8:161::",
                       "SIZE": "65537"}, 0)
    assert [str(n) for n in rule.nets_of(6)] == ["2001:db8:161::/112", "2001:db8:161::1:0/128"]
    assert rule.nets_of(4) == []
