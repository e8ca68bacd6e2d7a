"""Isolation at the wire (issue 27): what a hostile VM sends with raw frames, on fw and vxlan.

Topology (every namespace made and removed here):

    peer P (10.27.0.100)              ── uplink0 ─┐
    VM A 30 (10.27.0.30, fd27::30)    ── one-30-0 ┤ wbr (made by fw/pre)
    VM B 31 (10.27.0.31, fd27::31)    ── one-31-0 ┤
    VM C 32 (10.27.0.32), no filters  ── one-32-0 ┘

A and B have MAC and IP anti-spoofing; A trunks VLAN 100 (VLAN_TAGGED_ID).
A is the attacker: scapy (tests/support/wire_frames.py) sends
each frame from A's side of its tap, and a sniffer in B counts what arrives.
The OVS part at the end does the same on an ovswitch port (MAC/IP filters).
Every attack must arrive 0 times; each thing that must keep working (its own
gratuitous ARP, an ARP probe, RARP, DAD, DHCP discover, VLAN 100) once.
"""

import json
import os
import subprocess
import time

import pytest

from support.assertions import assert_ok
from support.commands import sh, stop
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.ovs import OvsHost
from support.paths import PYTHON, REPO, TREE
from support.remotes import copy_tree
from support.wire_probe import Sniffer, arrivals, send

LIMIT = 40  # :conntrack_limit: of this site
MAC_LIMIT = 16  # :learned_mac_limit: of this site

A_MAC, A_IP, A_IP6 = "02:00:0a:1b:00:1e", "10.27.0.30", "fd27::30"
B_MAC, B_IP, B_IP6 = "02:00:0a:1b:00:1f", "10.27.0.31", "fd27::31"
C_MAC, C_IP = "02:00:0a:1b:00:20", "10.27.0.32"
A_LINK_LOCAL = "fe80::aff:fe1b:1e"  # EUI-64 of A_MAC
OTHER_MAC = "02:00:0a:1b:00:99"


def nic(vm_id, mac, ip, ip6=None, filters=True, **extra):
    attrs = bridge_nic(vm_id, 0, "wbr", "uplink0", VN_MAD="fw", MAC=mac, IP=ip, **extra)
    if ip6:
        attrs["IP6"] = ip6
    if filters:
        attrs.update(FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    return attrs


VMS = {
    "A": (30, nic(30, A_MAC, A_IP, A_IP6, VLAN_TAGGED_ID="100"), A_MAC, A_IP, A_IP6),
    "B": (31, nic(31, B_MAC, B_IP, B_IP6), B_MAC, B_IP, B_IP6),
    # C's network lets VMs advertise routes (a router VM's): its RA reaches the bridge
    "C": (32, nic(32, C_MAC, C_IP, filters=False, CONF="ra_guard=false"), C_MAC, C_IP, None),
}


class Site:
    def __init__(self, tmp):
        self.tree = copy_tree(tmp / "remotes", _conf(f":conntrack_limit: {LIMIT}\n"
                                                     f":learned_mac_limit: {MAC_LIMIT}\n"))
        run_dir = tmp / "run"
        run_dir.mkdir()
        self.host = Namespace(str(run_dir))
        self.guests, self.xml = {}, {}
        try:
            self._build()
        except BaseException:
            self.delete()
            raise

    def run(self, action, name, *args):
        return self.host.run("fw", action, *args, stdin=self.xml[name], tree=self.tree)

    def _build(self):
        self.guests["P"] = Guest(self.host, link="uplink0p", ipv4="10.27.0.100/24")
        for name, (vm_id, attrs, mac, ip, ip6) in VMS.items():
            self.xml[name] = b64(vm_xml(vm_id, [attrs]))
            assert_ok(self.run("pre", name))
            self.guests[name] = Guest(self.host, f"one-{vm_id}-0", mac, f"{ip}/24",
                                      f"{ip6}/64" if ip6 else None, bridge="wbr")
            assert_ok(self.run("post", name, f"one-{vm_id}", "node1"))

    def delete(self):
        for guest in self.guests.values():
            guest.delete()
        self.host.delete()

    def send(self, name, kind, **args):
        send(self.guests[name], kind, **args)

    def arrivals(self, sender, kind, receiver="B", sniff=(), **args):
        return arrivals(self.guests[sender], self.guests[receiver], kind, sniff, **args)


def _conf(extra):
    with open(os.path.join(os.path.dirname(TREE), "etc", "vnm", "OpenNebulaNetwork.conf"),
              encoding="utf-8") as handle:
        return handle.read() + extra


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (network namespaces)")
    built = Site(tmp_path_factory.mktemp("wire"))
    yield built
    built.delete()


A = dict(src=A_MAC, sip=A_IP)

# (what A sends, frame kind, its fields, sniff filter, how many must reach B)
CASES = [
    ("its own untagged IPv4", "udp", dict(A, dip=B_IP), (), 1),
    ("a DHCP discover", "udp", dict(src=A_MAC, sip="0.0.0.0", dip="255.255.255.255",
                                    sport=68, dport=67), (), 1),
    ("VID-0 priority tag, forged IP", "udp", dict(A, sip="10.27.0.99", dip=B_IP, tags=0), (), 0),
    ("VID-0 priority tag, own IP", "udp", dict(A, dip=B_IP, tags=0), (), 0),
    ("double VID-0 tag", "udp", dict(A, sip="10.27.0.99", dip=B_IP, tags="0,0"), (), 0),
    ("802.1ad outer tag", "udp", dict(A, dip=B_IP, ad=100), (), 0),
    ("802.1ad + 802.1Q", "udp", dict(A, dip=B_IP, ad=5, tags=100), (), 0),
    ("a VLAN it does not trunk", "udp", dict(A, dip=B_IP, tags=200), (), 0),
    ("its trunk VLAN 100", "udp", dict(A, dip=B_IP, tags=100), (), 1),
    ("VLAN 100 with a second tag", "udp", dict(A, dip=B_IP, tags="100,7"), (), 0),
    ("another EtherType (LLDP)", "other-type", dict(src=A_MAC), (), 0),
    ("B's MAC as source", "udp", dict(src=B_MAC, sip=A_IP, dip=B_IP), (), 0),
    ("ARP claiming B's IP", "arp", dict(src=A_MAC, spa=B_IP, tpa=B_IP), (), 0),
    ("ARP with another sender MAC", "arp", dict(src=A_MAC, sha=OTHER_MAC, spa=A_IP, tpa=B_IP),
     (), 0),
    ("ARP claiming B's IP in VLAN 100", "arp", dict(src=A_MAC, spa=B_IP, tpa=B_IP, tags=100),
     (), 0),
    ("its gratuitous ARP", "arp", dict(src=A_MAC, spa=A_IP, tpa=A_IP), (), 1),
    ("its gratuitous ARP reply", "arp", dict(src=A_MAC, spa=A_IP, tpa=A_IP, op=2,
                                             dst="ff:ff:ff:ff:ff:ff"), (), 1),
    ("an ARP probe (RFC 5227)", "arp", dict(src=A_MAC, spa="0.0.0.0", tpa=A_IP), (), 1),
    ("its RARP announce (migration)", "rarp", dict(src=A_MAC), (), 1),
    ("RARP for another MAC", "rarp", dict(src=A_MAC, sha=OTHER_MAC), (), 0),
    ("NA claiming B's address", "na", dict(A, sip=A_IP6, target=B_IP6), ("nd=" + B_IP6,), 0),
    ("NA claiming the router's link-local", "na", dict(A, sip=A_IP6, target="fe80::1"),
     ("nd=fe80::1",), 0),
    ("NA with another link-layer address", "na", dict(A, sip=A_IP6, target=A_IP6,
                                                       lladdr=OTHER_MAC), ("nd=" + A_IP6,), 0),
    ("its own NA", "na", dict(A, sip=A_IP6, target=A_IP6), ("nd=" + A_IP6,), 1),
    ("its link-local NA", "na", dict(A, sip=A_LINK_LOCAL, target=A_LINK_LOCAL),
     ("nd=" + A_LINK_LOCAL,), 1),
    ("NS from B's address", "ns", dict(A, sip=B_IP6, target="fd27::1"), ("nd=fd27::1",), 0),
    ("NS with another link-layer address", "ns", dict(A, sip=A_IP6, target="fd27::1",
                                                       lladdr=OTHER_MAC), ("nd=fd27::1",), 0),
    ("its own NS", "ns", dict(A, sip=A_IP6, target="fd27::1"), ("nd=fd27::1",), 1),
    ("duplicate address detection", "dad", dict(src=A_MAC, target="fd27::77"),
     ("nd=fd27::77",), 1),
]


@pytest.mark.parametrize("what,kind,fields,sniff,expected", CASES, ids=[c[0] for c in CASES])
def test_what_a_vm_sends_reaches_its_neighbour_only_when_it_may(site, what, kind, fields, sniff,
                                                                   expected):
    assert site.arrivals("A", kind, sniff=sniff, **fields) == expected, what


def test_resolution_and_traffic_keep_working(site):
    a, b, p = site.guests["A"], site.guests["B"], site.guests["P"]
    assert a.ping(B_IP) and b.ping(A_IP) and p.ping(A_IP)
    done = subprocess.run(["ip", "netns", "exec", a.name, "ping", "-6", "-c1", "-W2", B_IP6],
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stdout  # neighbour discovery through both guards


def fdb_ports(site, mac):
    """The bridge ports ``bridge fdb`` has learned ``mac`` on (independent of vnm)."""
    entries = json.loads(sh("bridge", "-n", site.host.name, "-j", "fdb", "show", "br", "wbr"))
    return {e["ifname"] for e in entries if e["mac"] == mac and "permanent" not in
            e.get("state", "")}


def test_a_forged_source_mac_teaches_the_bridge_nothing(site):
    """The hijack: frames from B's MAC on A's port made the bridge send B's traffic to A."""
    site.send("A", "udp", src=B_MAC, sip=A_IP, dip=B_IP, count=5)
    assert "one-30-0" not in fdb_ports(site, B_MAC)
    c = site.guests["C"]
    with Sniffer(site.guests["A"], f"icmp={B_IP}") as sniffer:
        for _ in range(5):
            site.send("A", "udp", src=B_MAC, sip=A_IP, dip=B_IP)
            assert c.ping(B_IP)
        assert sniffer.count() == 0  # none of the 5 pings intercepted
    # a MAC flood learns nothing either
    site.send("A", "random-macs", sip=A_IP, dip=B_IP, count=300)
    assert learned(site, "one-30-0") <= {A_MAC}


def learned(site, port):
    """MACs ``bridge fdb`` has learned on ``port`` (not the permanent ones)."""
    entries = json.loads(sh("bridge", "-n", site.host.name, "-j", "fdb", "show", "br", "wbr"))
    return {e["mac"] for e in entries if e.get("ifname") == port
            and "permanent" not in e.get("state", "")}


def test_without_mac_filtering_a_nic_teaches_the_bridge_a_bounded_number_of_macs(site):
    """C has no FILTER_MAC_SPOOFING: other MACs are its right, but only MAC_LIMIT at a time."""
    site.send("C", "random-macs", sip=C_IP, dip=B_IP, count=300)
    macs = learned(site, "one-32-0")
    assert MAC_LIMIT // 2 <= len(macs - {C_MAC}) <= MAC_LIMIT, len(macs)
    assert site.guests["C"].ping(B_IP)  # its own MAC always passes


def sysctl(ns, dev, knob):
    return ns.exec("cat", f"/proc/sys/net/ipv6/conf/{dev}/{knob}").strip()


def ipv6_addresses(ns, dev):
    """``ip -6 addr`` of ``dev`` (a device without any is not listed at all)."""
    return [a["local"] for link in json.loads(ns.ip("-j", "-6", "addr", "show", "dev", dev))
            for a in link.get("addr_info", [])]


def test_the_bridge_takes_no_address_or_route_from_a_vms_router_advertisement(site):
    host = site.host
    assert [sysctl(host, "wbr", k) for k in ("accept_ra", "autoconf", "addr_gen_mode")] == \
        ["0", "0", "1"]
    # C has no anti-spoofing: its RA reaches the host's bridge
    c_link_local = "fe80::aff:fe1b:20"
    site.send("C", "ra", src=C_MAC, sip=c_link_local, prefix="fd99:27::")
    time.sleep(1.0)
    assert ipv6_addresses(host, "wbr") == []  # not even a link-local
    assert json.loads(host.ip("-j", "-6", "route", "show", "default")) == []


def test_slaac_from_the_real_router_still_reaches_a_protected_vm(site):
    """What must keep working: the LAN's router (P, behind the uplink) advertises a
    prefix; protected B autoconfigures its address from it, the bridge does not."""
    p, b = site.guests["P"], site.guests["B"]
    router_mac = json.loads(p.ip("-j", "link", "show", p.dev))[0]["address"]
    site.send("P", "ra", src=router_mac, sip="fe80::27:1", prefix="fd27:5::")
    deadline = time.monotonic() + 5
    while not any(a.startswith("fd27:5:") for a in ipv6_addresses(b, b.dev)):
        assert time.monotonic() < deadline, ipv6_addresses(b, b.dev)
        time.sleep(0.1)
    assert ipv6_addresses(site.host, "wbr") == []


def test_doctor_flags_a_bridge_a_router_advertisement_configures(ns):
    """vnm doctor: a bridge made by hand warns, the bridge vnm made does not."""
    ns.ip("link", "add", "handbr", "type", "bridge")
    ns.ip("link", "set", "handbr", "up")
    xml = b64(vm_xml(41, [bridge_nic(41, 0, "vnmbr", VN_MAD="fw")]))
    assert_ok(ns.run("fw", "pre", stdin=xml))
    done = subprocess.run(["ip", "netns", "exec", ns.name, PYTHON, "-m", "vnmlib.cli", "doctor",
                           "--json"], capture_output=True, text=True, check=False,
                          env=dict(os.environ, VNM_RUN_DIR=ns.run_dir, PYTHONPATH=REPO))
    rows = {row["check"]: row for row in json.loads(done.stdout)}
    assert rows["bridge handbr IPv6"]["status"] == "warn"
    assert "accept_ra=1" in rows["bridge handbr IPv6"]["detail"]
    assert "bridge vnmbr IPv6" not in rows


def test_a_guard_table_is_fresh_only_when_in_neither_family(ns):
    """l2guard.fresh, which lets a new guard be only added (nft fetches nothing first),
    asks the kernel by a dry-run ``create``: a table in the netdev family or the interim
    bridge one is not fresh, and the dry run creates nothing."""
    ns.exec("nft", "add", "table", "netdev", "one-1-0")
    ns.exec("nft", "add", "table", "bridge", "one-2-0")
    tables = ns.exec("nft", "list", "tables")
    code = ("import sys, types\nfrom vnmlib.firewall import l2guard\n"
            "guards = [types.SimpleNamespace(table=t) for t in sys.argv[1:]]\n"
            "print(' '.join(sorted(l2guard.fresh(l2guard.states(guards)))))")
    done = subprocess.run(["ip", "netns", "exec", ns.name, PYTHON, "-c", code, "one-1-0",
                           "one-2-0", "one-3-0"], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["one-3-0"]
    assert ns.exec("nft", "list", "tables") == tables


def conntrack_entries(site, source):
    """Connection-tracking entries of the host namespace started from ``source``."""
    lines = site.host.exec("cat", "/proc/net/nf_conntrack").splitlines()
    return [line for line in lines if f" src={source} " in line.split(" dst=")[0] + " "]


def test_a_syn_flood_fills_only_the_vms_own_quota(site):
    b = site.guests["B"]
    server = b.start("serve", "--tcp", "7000")
    try:
        # to an address nobody has, through B's port: nothing answers, every SYN
        # would stay a tracked connection for two minutes
        site.send("A", "syn", src=A_MAC, dst=B_MAC, sip=A_IP, dip="10.27.0.250", dport=80,
                  count=400)
        tracked = conntrack_entries(site, A_IP)
        assert LIMIT <= len(tracked) <= LIMIT + 5, len(tracked)
        # the neighbour still opens connections
        assert site.guests["C"].probe("tcp", B_IP, 7000) == 0
    finally:
        stop(server)


def nft_tables(ns):
    return [line for line in ns.exec("nft", "list", "tables").splitlines()
            if line.startswith("table netdev ")]


def test_post_twice_and_clean(site, tmp_path):
    """The guard is idempotent, and clean removes it with the chains (a throwaway VM 33)."""
    xml = b64(vm_xml(33, [nic(33, "02:00:0a:1b:00:21", "10.27.0.33")]))
    host = site.host
    assert_ok(host.run("fw", "pre", stdin=xml, tree=site.tree))
    host.add_tap("one-33-0", "wbr")
    assert_ok(host.run("fw", "post", "one-33", "node1", stdin=xml, tree=site.tree))
    first = host.exec("nft", "list", "table", "netdev", "one-33-0")
    assert_ok(host.run("fw", "post", "one-33", "node1", stdin=xml, tree=site.tree))
    assert host.exec("nft", "list", "table", "netdev", "one-33-0") == first
    assert 'device "one-33-0"' in first
    host.ip("link", "del", "one-33-0")
    assert_ok(host.run("fw", "clean", "node1", stdin=xml, tree=site.tree))
    assert "table netdev one-33-0" not in nft_tables(host)
    assert_ok(host.run("fw", "clean", "node1", stdin=xml, tree=site.tree))  # idempotent
    assert sorted(nft_tables(host)) == ["table netdev one-30-0", "table netdev one-31-0",
                                        "table netdev one-32-0"]


def test_vxlan_devices_and_bridges_stay_without_ipv6_of_their_own(ns):
    """vxlan shares fw's engine: its NIC gets the guard, its device and bridge no IPv6."""
    attrs = bridge_nic(40, 0, "vxbr", "uplink0", VN_MAD="vxlan", VLAN_ID=270,
                       MAC="02:00:0a:1b:00:28", IP="10.27.1.40",
                       FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    xml = b64(vm_xml(40, [attrs]))
    assert_ok(ns.run("vxlan", "pre", stdin=xml))
    for dev in ("vxbr", "uplink0.270"):
        assert [sysctl(ns, dev, k) for k in ("accept_ra", "autoconf", "addr_gen_mode")] == \
            ["0", "0", "1"], dev
        assert ipv6_addresses(ns, dev) == [], dev
    ns.add_tap("one-40-0", "vxbr")
    assert_ok(ns.run("vxlan", "post", "one-40", "node1", stdin=xml))
    assert nft_tables(ns) == ["table netdev one-40-0"]
    ns.ip("link", "del", "one-40-0")
    assert_ok(ns.run("vxlan", "clean", "node1", stdin=xml))
    assert nft_tables(ns) == []


# -- Open vSwitch (ovswitch): the same attacks against the OpenFlow pipeline ---------

O_A_MAC, O_A_IP, O_A_IP6 = "02:00:0a:1c:00:32", "10.28.0.50", "fd28::50"
O_B_MAC, O_B_IP, O_B_IP6 = "02:00:0a:1c:00:33", "10.28.0.51", "fd28::51"


@pytest.fixture(scope="module")
def ovs_site(tmp_path_factory):
    """VMs A 50 and B 51 on VLAN 10 of an OVS bridge, MAC and IP anti-spoofing on both."""
    host = OvsHost(tmp_path_factory.mktemp("ovswire"))
    try:
        guests = {}
        for name, vm_id, mac, ip, ip6 in (("A", 50, O_A_MAC, O_A_IP, O_A_IP6),
                                          ("B", 51, O_B_MAC, O_B_IP, O_B_IP6)):
            attrs = bridge_nic(vm_id, 0, "ovswire", "uplink0", VN_MAD="ovswitch", MAC=mac,
                               IP=ip, IP6=ip6, VLAN_ID=10, BRIDGE_TYPE="openvswitch",
                               FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
            xml = b64(vm_xml(vm_id, [attrs]))
            assert_ok(host.run("ovswitch", "pre", stdin=xml))
            guest = Guest(host.ns, tap=f"one-{vm_id}-0", mac=mac, ipv4=f"{ip}/24",
                          ipv6=f"{ip6}/64")
            host.guests.append(guest)
            host.ovs.vsctl("--may-exist", "add-port", "ovswire", f"one-{vm_id}-0")
            assert_ok(host.run("ovswitch", "post", f"one-{vm_id}", "node1", stdin=xml))
            guests[name] = guest
        yield guests
    finally:
        host.delete()


OA = dict(src=O_A_MAC, sip=O_A_IP)
OVS_CASES = [
    ("its own untagged IPv4", "udp", dict(OA, dip=O_B_IP), (), 1),
    ("VID-0 priority tag", "udp", dict(OA, dip=O_B_IP, tags=0), (), 0),
    ("double VID-0 tag, forged IP", "udp", dict(OA, sip="10.28.0.99", dip=O_B_IP, tags="0,0"),
     (), 0),
    ("VID 0 then VID 10", "udp", dict(OA, dip=O_B_IP, tags="0,10"), (), 0),
    ("ARP with another sender MAC", "arp", dict(src=O_A_MAC, sha=OTHER_MAC, spa=O_A_IP,
                                                tpa=O_B_IP), (), 0),
    ("its gratuitous ARP", "arp", dict(src=O_A_MAC, spa=O_A_IP, tpa=O_A_IP), (), 1),
    ("its RARP announce (migration)", "rarp", dict(src=O_A_MAC), (), 1),
    ("NA claiming B's address", "na", dict(OA, sip=O_A_IP6, target=O_B_IP6),
     ("nd=" + O_B_IP6,), 0),
    ("NA with another link-layer address", "na", dict(OA, sip=O_A_IP6, target=O_A_IP6,
                                                       lladdr=OTHER_MAC), ("nd=" + O_A_IP6,), 0),
    ("its own NA", "na", dict(OA, sip=O_A_IP6, target=O_A_IP6), ("nd=" + O_A_IP6,), 1),
    # (to an address nobody has: B's answer would be counted too)
    ("NS with another link-layer address", "ns", dict(OA, sip=O_A_IP6, target="fd28::1",
                                                       lladdr=OTHER_MAC), ("nd=fd28::1",), 0),
    ("its own NS", "ns", dict(OA, sip=O_A_IP6, target="fd28::1"), ("nd=fd28::1",), 1),
    ("duplicate address detection", "dad", dict(src=O_A_MAC, target="fd28::77"),
     ("nd=fd28::77",), 1),
]


@pytest.mark.parametrize("what,kind,fields,sniff,expected", OVS_CASES,
                         ids=[c[0] for c in OVS_CASES])
def test_ovs_what_a_vm_sends_reaches_its_neighbour_only_when_it_may(ovs_site, what, kind,
                                                                       fields, sniff, expected):
    assert arrivals(ovs_site["A"], ovs_site["B"], kind, sniff, **fields) == expected, what


def test_ovs_resolution_keeps_working(ovs_site):
    a = ovs_site["A"]
    assert a.ping_eventually(O_B_IP)
    done = subprocess.run(["ip", "netns", "exec", a.name, "ping", "-6", "-c1", "-W2", O_B_IP6],
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stdout


def test_ovs_a_port_without_mac_filtering_cannot_evict_its_neighbours_macs(tmp_path):
    """Issue 27.2 on Open vSwitch, for a NIC without MAC filtering: OVS evicts from a full
    MAC table the least recently used entry of the port holding the most entries
    (lib/mac-learning.c, evict_mac_entry_fairly), so a VM flooding random source MACs
    only ever pushes out its own: the neighbour's entry stays, the table stays bounded."""
    host = OvsHost(tmp_path)
    try:
        macs = {}
        for vm_id, filters in ((52, True), (53, False)):
            mac = f"02:00:0a:1c:00:{vm_id:02x}"
            attrs = bridge_nic(vm_id, 0, "ovsmac", "uplink0", VN_MAD="ovswitch", MAC=mac,
                               IP=f"10.28.1.{vm_id}", VLAN_ID=10, BRIDGE_TYPE="openvswitch")
            if filters:
                attrs.update(FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
            xml = b64(vm_xml(vm_id, [attrs]))
            assert_ok(host.run("ovswitch", "pre", stdin=xml))
            guest = host.guest("ovsmac", f"one-{vm_id}-0", mac, f"10.28.1.{vm_id}/24")
            assert_ok(host.run("ovswitch", "post", f"one-{vm_id}", "node1", stdin=xml))
            macs[vm_id] = (guest, mac)
        host.ovs.vsctl("set", "Bridge", "ovsmac", "other_config:mac-table-size=64")
        victim, victim_mac = macs[52]
        flooder, _ = macs[53]
        send(victim, "udp", src=victim_mac, sip="10.28.1.52", dip="10.28.1.53")

        def table():
            rows = host.ovs._run("ovs-appctl", "fdb/show", "ovsmac").splitlines()[1:]
            return [row.split() for row in rows]

        assert any(row[2] == victim_mac for row in table())
        send(flooder, "random-macs", count=600, sip="10.28.1.53", dip="10.28.1.52")
        learned = table()
        assert len(learned) == 64  # full: the flood was learned, up to the bound
        assert any(row[2] == victim_mac for row in learned), learned
    finally:
        host.delete()
