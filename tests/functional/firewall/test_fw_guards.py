"""Guards every protected NIC gets (issue 21.2): no DHCP server, no router advertisements.

Topology (every namespace made and removed here):

    VM A 21 (10.21.0.21, fd21::21), MAC and IP anti-spoofing  ── one-21-0 ┐
    VM R 22 (10.21.0.22, fd21::22), a router VM: its network   ── one-22-0 ┤ gbr (fw/pre)
        has CONF="dhcp_server_guard=false,ra_guard=false"                  │
    VM B 23 (10.21.0.23, fd21::23), the neighbour that listens ── one-23-0 ┘

Both A and R send, with scapy (tests/support/wire_frames.py), a DHCP server's
reply, a DHCPv6 server's reply and a router advertisement; B counts what
arrives. A's never do, R's do. ARP sender IP/MAC checks (OpenNebula #869)
are test_wire_isolation.py's; the OVS anti-spoofing of VROUTER_IP6 (#5079) is at the end.
"""

import os

import pytest

from support.assertions import assert_ok, assert_one_error
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.ovs import OvsHost
from support.wire_probe import arrivals

VMS = {  # name: (vm id, MAC, IPv4, IPv6, its EUI-64 link-local, extra NIC attributes)
    "A": (21, "02:00:0a:15:00:15", "10.21.0.21", "fd21::21", "fe80::aff:fe15:15", {}),
    "R": (22, "02:00:0a:15:00:16", "10.21.0.22", "fd21::22", "fe80::aff:fe15:16",
          {"CONF": "dhcp_server_guard=false,ra_guard=false"}),
    "B": (23, "02:00:0a:15:00:17", "10.21.0.23", "fd21::23", "fe80::aff:fe15:17", {}),
}


def nic(name):
    vm_id, mac, ip, ip6, link_local, extra = VMS[name]
    return bridge_nic(vm_id, 0, "gbr", "uplink0", VN_MAD="fw", MAC=mac, IP=ip, IP6=ip6,
                      IP6_LINK=link_local, FILTER_MAC_SPOOFING="YES",
                      FILTER_IP_SPOOFING="YES", **extra)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (network namespaces)")
    run_dir = tmp_path_factory.mktemp("guards")
    host = Namespace(str(run_dir))
    guests = {}
    try:
        for name, (vm_id, mac, ip, ip6, _, _) in VMS.items():
            xml = b64(vm_xml(vm_id, [nic(name)]))
            assert_ok(host.run("fw", "pre", stdin=xml))
            guests[name] = Guest(host, f"one-{vm_id}-0", mac, f"{ip}/24", f"{ip6}/64",
                                 bridge="gbr")
            assert_ok(host.run("fw", "post", f"one-{vm_id}", "node1", stdin=xml))
        yield host, guests
    finally:
        for guest in guests.values():
            guest.delete()
        host.delete()


def _sent(name):
    _, mac, ip, ip6, link_local, _ = VMS[name]
    b_ip6 = VMS["B"][3]
    return [
        # src=: not counting B's ICMP "port unreachable", which quotes the frame
        ("a DHCP server's broadcast reply", "udp", dict(src=mac, sip=ip, dip="255.255.255.255",
                                                        sport=67, dport=68), ("src=" + ip,)),
        ("a DHCPv6 server's reply", "udp6", dict(src=mac, dst=VMS["B"][1], sip=link_local,
                                                 dip=b_ip6, sport=547, dport=546),
         ("src=" + link_local,)),
        ("a router advertisement", "ra", dict(src=mac, sip=link_local, prefix="fd21:99::"),
         ("ra=fd21:99::",)),
    ]


CASES = [(name, *case) for name in ("A", "R") for case in _sent(name)]


@pytest.mark.parametrize("sender,what,kind,fields,sniff", CASES,
                         ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_only_a_router_vms_network_lets_it_serve_dhcp_or_advertise_routes(site, sender, what,
                                                                          kind, fields, sniff):
    _, guests = site
    expected = 1 if sender == "R" else 0
    assert arrivals(guests[sender], guests["B"], kind, sniff, **fields) == expected, what


def test_the_guard_drops_server_replies_only(site):
    """A's traffic that merely uses port 67 still passes (its DHCP client discover is
    test_wire_isolation.py's)."""
    _, guests = site
    a_mac, a_ip = VMS["A"][1], VMS["A"][2]
    assert arrivals(guests["A"], guests["B"], "udp", ("src=" + a_ip,), src=a_mac,
                    dst=VMS["B"][1], sip=a_ip, dip=VMS["B"][2], sport=40000, dport=67) == 1


def test_a_guard_setting_that_is_not_yes_or_no_fails_pre_and_changes_nothing(ns):
    attrs = bridge_nic(24, 0, "gbr2", "uplink0", VN_MAD="fw", CONF="ra_guard=maybe")
    done = ns.run("fw", "pre", stdin=b64(vm_xml(24, [attrs])))
    assert_one_error(done, "pre", "NIC 0", "ra_guard")
    assert "gbr2" not in ns.links()
    assert "one-24-0" not in ns.exec("iptables", "-w", "-S")


# -- Open vSwitch: a virtual router's IPv6 addresses pass the anti-spoofing (#5079) -------

V_MAC, V_IP, V_IP6, V_VROUTER6 = "02:00:0a:15:01:18", "10.21.1.24", "fd21:1::24", "fd21:1::1"
W_MAC, W_IP, W_IP6 = "02:00:0a:15:01:19", "10.21.1.25", "fd21:1::25"


def test_ovs_anti_spoofing_admits_a_virtual_routers_ipv6_addresses(tmp_path):
    """V is a virtual router's VM: VROUTER_IP6 is its too (the reference dropped its traffic)."""
    host = OvsHost(tmp_path)
    try:
        guests = {}
        for name, vm_id, mac, ip, ip6, extra in (("V", 24, V_MAC, V_IP, V_IP6,
                                                  {"VROUTER_IP6": V_VROUTER6}),
                                                 ("W", 25, W_MAC, W_IP, W_IP6, {})):
            attrs = bridge_nic(vm_id, 0, "ovsguard", "uplink0", VN_MAD="ovswitch", MAC=mac,
                               IP=ip, IP6=ip6, BRIDGE_TYPE="openvswitch",
                               FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES", **extra)
            xml = b64(vm_xml(vm_id, [attrs]))
            assert_ok(host.run("ovswitch", "pre", stdin=xml))
            guests[name] = Guest(host.ns, tap=f"one-{vm_id}-0", mac=mac, ipv4=f"{ip}/24",
                                 ipv6=f"{ip6}/64")
            host.guests.append(guests[name])
            host.ovs.vsctl("--may-exist", "add-port", "ovsguard", f"one-{vm_id}-0")
            assert_ok(host.run("ovswitch", "post", f"one-{vm_id}", "node1", stdin=xml))
        v, w = guests["V"], guests["W"]
        sent = dict(src=V_MAC, dst=W_MAC, dip=W_IP6, dport=9)
        assert arrivals(v, w, "udp6", (f"src={V_VROUTER6}",), sip=V_VROUTER6, **sent) == 1
        assert arrivals(v, w, "udp6", ("src=fd21:1::99",), sip="fd21:1::99", **sent) == 0
    finally:
        host.delete()
