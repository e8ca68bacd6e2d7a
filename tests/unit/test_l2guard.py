"""The wire guard's nftables text (vnmlib/firewall/l2guard.py); its effect is tested with
real frames in tests/functional/firewall/test_wire_isolation.py."""

import ipaddress

import pytest

from vnmlib.errors import InputError
from vnmlib.firewall.l2guard import WireGuard, render
from vnmlib.model.template import Nic


def guard(**attrs):
    base = {"NIC_ID": "0", "MAC": "02:00:0A:1B:00:1E"}
    base.update(attrs)
    addresses = {4: [ipaddress.ip_address("10.27.0.30")] * 2,  # NIC and alias alike: once
                 6: [ipaddress.ip_address("fd27::30")]}
    return WireGuard("one-30-0", "one-30-0", Nic("NIC", base, 30), addresses)


def text(wire_guard):
    return "\n".join(wire_guard.script())


def test_no_filters_still_admits_only_untagged_ip_arp_rarp():
    body = text(guard())
    assert "ether saddr" not in body and "arp saddr" not in body
    assert " tagged " not in body and "8021q" not in body
    assert "ether type vmap { ip : jump ipv4, ip6 : jump ipv6, arp : jump arp_check, " \
           "0x8035 : jump rarp_check }" in body
    assert 'hook ingress device "one-30-0" priority 0; policy drop;' in body


def test_filters_pin_the_mac_and_the_addresses():
    body = text(guard(FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES"))
    assert "ether saddr != 02:00:0a:1b:00:1e counter drop" in body
    assert "arp saddr ip != { 10.27.0.30, 0.0.0.0 } counter drop" in body
    # the EUI-64 link-local of the MAC joins the NIC's IPv6 addresses
    assert "ip6 saddr != { fd27::30, fe80::aff:fe1b:1e } counter drop" in body
    assert ("@th,64,128 != { 0xfd270000000000000000000000000030, "
            "0xfe8000000000000000000afffe1b001e }") in body
    assert "@th,192,16 0x0201 @th,208,48 0x02000a1b001e accept" in body


def test_trunk_vlans_are_the_only_tags():
    body = text(guard(VLAN_TAGGED_ID="100,20-21", CVLANS="7"))
    assert "vlan id { 7, 20, 21, 100 } vlan type vmap" in body
    assert "8021q : jump tagged" in body


def test_a_bad_vlan_list_names_the_nic_and_attribute():
    with pytest.raises(InputError, match="NIC 0: VLAN_TAGGED_ID"):
        guard(VLAN_TAGGED_ID="0")


def test_render_replaces_and_removes_idempotently():
    lines = render([guard()], ["one-9-1"]).splitlines()
    # declaring before deleting: deleting a missing table is no error
    # both families: post's netdev guard replaces pre's interim bridge table
    assert lines[:8] == ["table netdev one-30-0", "delete table netdev one-30-0",
                         "table bridge one-30-0", "delete table bridge one-30-0",
                         "table netdev one-9-1", "delete table netdev one-9-1",
                         "table bridge one-9-1", "delete table bridge one-9-1"]
    assert lines[8] == "add table netdev one-30-0"
    assert render() == ""


def test_a_table_known_absent_is_only_added_chain_by_chain():
    """nft 1.0.6 fetches every chain and set of every table before a ``delete`` or a
    table block; a new guard is written with ``add`` commands alone, each chain with its
    rules, jump targets first."""
    wire = guard(VLAN_TAGGED_ID="100")
    wire.mac_limit = 8
    lines = render([wire], fresh={"one-30-0"}).splitlines()
    assert lines[:2] == ["add table netdev one-30-0",
                         "add set netdev one-30-0 learned { type ether_addr; size 8; "
                         "flags dynamic,timeout; timeout 300s; }"]
    assert [line.split(" ")[4] for line in lines[2:]] == \
        ["arp_check", "rarp_check", "nd_check", "ipv4", "ipv6", "tagged", "ingress"]
    assert all(line.startswith("add chain netdev one-30-0 ") for line in lines[2:])
    assert lines[-1].startswith('add chain netdev one-30-0 ingress { comment "vnm: what '
                                'one-30-0 may send"; type filter hook ingress device '
                                '"one-30-0" priority 0; policy drop; ')


def test_before_the_tap_exists_the_interim_guard_matches_it_by_name():
    wire = guard(FILTER_MAC_SPOOFING="YES")
    wire.before_tap = True
    body = text(wire)
    assert body.startswith("add table bridge one-30-0")
    assert "type filter hook prerouting priority -200; policy accept;" in body
    assert 'iifname != "one-30-0" accept' in body
    assert "hook ingress" not in body
    # the same checks follow, and anything else the tap sends is dropped
    wire.before_tap = False
    assert body.split('iifname != "one-30-0" accept;')[1] == \
        text(wire).split("policy drop;")[1]


def test_dhcp_server_replies_and_router_advertisements_are_dropped_unless_allowed():
    body = text(guard())
    assert "udp sport 67 udp dport 68 counter drop" in body
    assert "udp sport 547 udp dport 546 counter drop" in body
    assert "icmpv6 type nd-router-advert counter drop" in body
    base = {"NIC_ID": "0", "MAC": "02:00:0a:1b:00:1e"}
    router = text(WireGuard("one-30-0", "one-30-0", Nic("NIC", base, 30), {4: [], 6: []},
                            0, False, False))
    assert "sport 67" not in router and "sport 547" not in router
    assert "nd-router-advert" not in router


def test_without_mac_filtering_the_other_source_macs_are_bounded():
    base = {"NIC_ID": "0", "MAC": "02:00:0a:1b:00:1e"}
    wire = WireGuard("one-30-0", "one-30-0", Nic("NIC", base, 30), {4: [], 6: []}, 16)
    body = text(wire)
    assert "size 16" in body and "flags dynamic,timeout" in body
    assert "ether saddr != 02:00:0a:1b:00:1e update @learned { ether saddr }" in body
    assert "ether saddr != 02:00:0a:1b:00:1e ether saddr != @learned counter drop" in body
    # with MAC filtering the NIC's MAC is the only one: no set
    assert "@learned" not in text(guard(FILTER_MAC_SPOOFING="YES"))
