"""Protected from the first packet on Open vSwitch (issue 21): a NIC's rules from pre.

With security groups on Open vSwitch, ``pre`` makes the tap's port row with a
requested OpenFlow port number and installs the NIC's flows on it, plus a drop
by MAC for a port that lost the number (vnmlib.ovs.pre_guard). One private
Open vSwitch (userspace datapath) for the module:

    peer P (10.61.0.100, uplink0p) ── uplink0 ┐
    VM A 61 (10.61.0.61)           ── one-61-0 ┤ fpbr (ovswitch, security groups)
    VM C 62 (10.61.0.62), :protect_in_pre: false ── one-62-0 ┘

A's tap appears only after ``pre`` and is added the way libvirt adds it; from
then on, before and during ``post``, what the rules allow passes and nothing
they deny does, either way. C, with the reference's timing, shows the window
this closes. Flows are read with ovs-ofctl, never vnmlib.
"""

import os
import re
import stat
import subprocess
import time

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import stop
from support.namespaces import Guest
from support.oned_input import b64, rules_xml, vm_xml
from support.ovs import OvsHost, checksums_in_software
from support.remotes import copy_tree
from support.wire_probe import FRAMES, SCAPY_PYTHON, Sniffer

BRIDGE = "fpbr"
A_MAC, A_IP = "02:00:0a:3d:00:3d", "10.61.0.61"
C_MAC, C_IP = "02:00:0a:3d:00:3e", "10.61.0.62"
P_IP = "10.61.0.100"
DENIED, ALLOWED = 9, 5001  # UDP ports, both directions


def rule(direction, **extra):
    return dict(dict(PROTOCOL="UDP", RULE_TYPE=direction, SECURITY_GROUP_ID=100,
                     RANGE=str(ALLOWED)), **extra)


RULES = rules_xml(rule("INBOUND"), rule("OUTBOUND"))


def nic(vm_id, mac, ip, nic_id=0, **extra):
    attrs = {"NIC_ID": nic_id, "BRIDGE": BRIDGE, "VN_MAD": "ovswitch",
             "BRIDGE_TYPE": "openvswitch", "TARGET": f"one-{vm_id}-{nic_id}", "MAC": mac,
             "IP": ip, "NETWORK_ID": 9, "PHYDEV": "uplink0", "SECURITY_GROUPS": "100",
             "FILTER_MAC_SPOOFING": "YES", "FILTER_IP_SPOOFING": "YES",
             "CONF": "ovs_security_groups=yes"}
    attrs.update(extra)
    return attrs


A_XML = b64(vm_xml(61, [nic(61, A_MAC, A_IP)], extra=RULES))
C_XML = b64(vm_xml(62, [nic(62, C_MAC, C_IP)], extra=RULES))
A_COOKIE, C_COOKIE = "0x4f4e0000003d0000", "0x4f4e0000003e0000"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (network namespaces)")
    work = tmp_path_factory.mktemp("ovs-first")
    host = OvsHost(work)
    try:
        peer = Guest(host.ns, link="uplink0p", ipv4=f"{P_IP}/24")
        host.guests.append(peer)
        checksums_in_software(peer)
        # the module's tree with the reference's timing (OvsHost's conf plus the opt-out)
        host.reference_tree = copy_tree(os.path.join(str(work), "reference"),
                                        ":ovs_bridge_conf:\n    :datapath_type: netdev\n"
                                        ":protect_in_pre: false\n")
        yield host, peer
    finally:
        host.delete()


def unplugged_guest(host, tap, mac, ip):
    """The VM's side of a tap that is not on the bridge yet (libvirt's next step)."""
    guest = Guest(host.ns, tap=tap, mac=mac, ipv4=f"{ip}/24")
    host.guests.append(guest)
    checksums_in_software(guest)
    return guest


def mac_of(host, guest):
    return host.ns.exec("ip", "netns", "exec", guest.name, "cat",
                        f"/sys/class/net/{guest.dev}/address").strip()


def udp_arrives(source, receiver, mac, sip, dip, port, dst_mac="ff:ff:ff:ff:ff:ff"):
    """Whether one hand-made UDP frame from ``source`` reaches ``receiver`` (netprobe)."""
    sniffer = receiver.start("sniff", receiver.dev, 1.0, "udp", port)
    try:
        assert source.probe("udp-frame", source.dev, mac, sip, dip, port, dst_mac) == 0
        return int(sniffer.stdout.readline()) > 0
    finally:
        stop(sniffer)


def answered(client, server, address, attempts=1):
    """Whether ``client`` gets an answer from ``server`` on the allowed UDP port; with
    ``attempts``, in a few tries: right after a bundle, Open vSwitch's revalidators may
    still hold the old datapath flow for a moment."""
    service = server.start("serve", "--udp", ALLOWED)
    try:
        return any(client.probe("udp", address, ALLOWED) == 0 for _ in range(attempts))
    finally:
        stop(service)


def dropping(host, match):
    """Wait until the lowest-priority drop among the flows ``match`` has counted a packet."""
    for _ in range(600):
        for line in host.ovs.ofctl("--no-names", "dump-flows", BRIDGE, match).splitlines():
            if "priority=1," in line and "actions=drop" in line and \
                    not re.search(r"n_packets=0,", line):
                return
        time.sleep(0.05)
    raise AssertionError(f"no frame reached the drop of {match}")


def sender(guest, count, **args):
    """wire_frames.py sending ``count`` UDP frames 20 ms apart from ``guest``, in the background."""
    return subprocess.Popen(["ip", "netns", "exec", guest.name, SCAPY_PYTHON, FRAMES, "send",
                             guest.dev, "udp", f"count={count}", "inter=0.02",
                             *(f"{k}={v}" for k, v in args.items())])


def cookie_flows(host, cookie):
    return host.ovs.flows(BRIDGE, f"cookie={cookie}/-1")


def test_the_rules_apply_from_the_taps_first_frame_both_ways(site):
    host, peer = site
    assert_ok(host.run("ovswitch", "pre", stdin=A_XML))
    assert "one-61-0" not in host.ns.links()  # the row and flows come before the tap
    row = host.ovs.row("Interface", "one-61-0", "ofport", "ofport_request")
    number = row["ofport_request"]
    assert number >= 32768 and row["ofport"] == -1, row
    flows = cookie_flows(host, A_COOKIE)
    assert f"cookie={A_COOKIE},table=0,priority=95,dl_src={A_MAC} actions=drop" in flows
    assert any("table=31," in f and f"in_port={number}" in f and f"tp_dst={ALLOWED}" in f
               for f in flows), flows  # the OUTBOUND rule, on the number to come

    a = unplugged_guest(host, "one-61-0", A_MAC, A_IP)  # the tap appears ...
    assert host.ovs.opened("one-61-0") == number
    # ... and libvirt replaces the row: the number stays
    host.ovs.libvirt_add_port(BRIDGE, "one-61-0", A_MAC)
    assert host.ovs.ofport("one-61-0") == number
    # the VM's rules from its first frame: allowed traffic passes both ways before post ...
    assert answered(a, peer, P_IP, attempts=4) and answered(peer, a, A_IP, attempts=4)
    p_mac = mac_of(host, peer)
    # ... denied traffic does not, either way, nor a frame with a forged source MAC
    assert not udp_arrives(a, peer, A_MAC, A_IP, P_IP, DENIED, p_mac)
    assert not udp_arrives(a, peer, "02:00:0a:3d:00:99", A_IP, P_IP, ALLOWED, p_mac)
    assert not udp_arrives(peer, a, p_mac, P_IP, A_IP, DENIED, A_MAC)
    # and none while post replaces pre's flows (the sniffers match the source IP, not the
    # port: only frames to drop are sent meanwhile)
    out = dict(src=A_MAC, dst=p_mac, sip=A_IP, dip=P_IP)
    sniffers = Sniffer(peer, f"src={A_IP}"), Sniffer(a, f"src={P_IP}")  # started together
    with sniffers[0] as from_a, sniffers[1] as to_a:
        senders = [sender(a, 250, dport=DENIED, **out),
                   sender(peer, 250, dport=DENIED, src=p_mac, dst=A_MAC, sip=P_IP, dip=A_IP)]
        try:
            # post only once pre's rule drops are counting both senders' frames
            dropping(host, f"table=31,in_port={number}")
            dropping(host, f"table=51,dl_dst={A_MAC}")
            assert_ok(host.run("ovswitch", "post", "one-61", "node1", stdin=A_XML))
            for proc in senders:
                assert proc.wait(timeout=120) == 0
        finally:
            for proc in senders:
                stop(proc)
        assert (from_a.count(), to_a.count()) == (0, 0)
    assert answered(a, peer, P_IP, attempts=4) and answered(peer, a, A_IP, attempts=4)
    # post replaced pre's flows (the fallback with them) in one bundle
    assert not [f for f in cookie_flows(host, A_COOKIE) if "priority=95" in f]


def test_a_port_that_lost_its_number_is_closed_until_post(site):
    """libvirt's transaction reached the database before ovs-vswitchd had opened the tap:
    the new row has no request and the port another number. Frames from the NIC's MAC
    are dropped, not passed, until post; traffic to it still meets its rules."""
    host, peer = site
    xml = b64(vm_xml(65, [nic(65, "02:00:0a:3d:00:41", "10.61.0.65")], extra=RULES))
    assert_ok(host.run("ovswitch", "pre", stdin=xml))
    host.ovs.vsctl("del-port", "one-65-0")  # pre's row, gone before the tap appeared
    d = unplugged_guest(host, "one-65-0", "02:00:0a:3d:00:41", "10.61.0.65")
    host.ovs.libvirt_add_port(BRIDGE, "one-65-0", "02:00:0a:3d:00:41")
    assert host.ovs.ofport("one-65-0") < 32768
    assert not answered(d, peer, P_IP)
    assert not udp_arrives(peer, d, mac_of(host, peer), P_IP, "10.61.0.65", DENIED,
                           "02:00:0a:3d:00:41")
    assert_ok(host.run("ovswitch", "post", "one-65", "node1", stdin=xml))
    assert answered(d, peer, P_IP, attempts=4) and answered(peer, d, "10.61.0.65", attempts=4)


def test_with_the_references_timing_the_window_is_open_until_post(site):
    """``:protect_in_pre: false``: nothing in pre, so a denied frame passes until post."""
    host, peer = site
    assert_ok(host.run("ovswitch", "pre", stdin=C_XML, tree=host.reference_tree))
    assert cookie_flows(host, C_COOKIE) == [] and "one-62-0" not in host.ovs.ports(BRIDGE)
    c = unplugged_guest(host, "one-62-0", C_MAC, C_IP)
    host.ovs.libvirt_add_port(BRIDGE, "one-62-0", C_MAC)
    assert udp_arrives(c, peer, C_MAC, C_IP, P_IP, DENIED)
    assert_ok(host.run("ovswitch", "post", "one-62", "node1", stdin=C_XML,
                       tree=host.reference_tree))
    assert not udp_arrives(c, peer, C_MAC, C_IP, P_IP, DENIED)


def test_a_hot_plugged_nic_is_protected_by_pre_and_the_others_are_left_alone(site):
    host, _peer = site
    plugged = b64(vm_xml(61, [nic(61, A_MAC, A_IP),
                              nic(61, "02:00:0a:3d:01:3d", "10.61.0.161", nic_id=1,
                                  ATTACH="YES")], extra=RULES))
    before = cookie_flows(host, A_COOKIE)
    assert_ok(host.run("ovswitch", "pre", stdin=plugged))
    assert cookie_flows(host, A_COOKIE) == before  # the running NIC keeps its flows
    number = host.ovs.row("Interface", "one-61-1", "ofport_request")["ofport_request"]
    assert number >= 32768 and number != host.ovs.ofport("one-61-0")  # NIC 0's is taken
    assert any(f"in_port={number}" in f for f in cookie_flows(host, "0x4f4e0000003d0001"))
    # detached before the NIC ever ran: clean takes its row and flows away again
    assert_ok(host.run("ovswitch", "clean", "node1", stdin=plugged))
    assert cookie_flows(host, "0x4f4e0000003d0001") == []
    assert "one-61-1" not in host.ovs.ports(BRIDGE)
    assert cookie_flows(host, A_COOKIE) == before


def test_migration_destination_is_protected_by_pre_and_clean_before_post_leaves_nothing(site):
    """oned's order on a destination: pre there while the VM still runs on the source.
    A migration that fails runs clean there: no drop, no bridge left."""
    host, _peer = site
    xml = b64(vm_xml(63, [nic(63, "02:00:0a:3d:00:3f", "10.61.0.63", BRIDGE="fpbr2",
                                   PHYDEV="uplink1")],
                     extra=RULES))
    assert_ok(host.run("ovswitch", "pre", stdin=xml))
    assert "one-63-0" in host.ovs.ports("fpbr2")
    assert host.ovs.flows("fpbr2", "cookie=0x4f4e0000003f0000/-1")
    assert_ok(host.run("ovswitch", "clean", "node1", stdin=xml))
    assert "fpbr2" not in host.ovs.bridges()


def test_a_migrating_vm_still_reaches_this_hosts_vms_over_the_uplink(site):
    """pre on the destination while the VM runs on the source (behind the uplink, the
    peer's side here): its frames keep reaching this host's VMs, through their inbound
    rules as before; only frames with its MAC from any other port are dropped."""
    host, peer = site
    mac, ip = "02:00:0a:3d:00:42", "10.61.0.66"
    xml = b64(vm_xml(66, [nic(66, mac, ip)], extra=RULES))
    assert_ok(host.run("ovswitch", "pre", stdin=xml))
    a = next(g for g in host.guests if g.dev == "one-61-0p")  # A, plugged by the first test
    try:
        assert udp_arrives(peer, a, mac, ip, A_IP, ALLOWED, A_MAC)
        assert not udp_arrives(peer, a, mac, ip, A_IP, DENIED, A_MAC)  # A's rules still
        # the same frame from a VM port of this host is dropped until post
        assert not udp_arrives(a, peer, mac, A_IP, P_IP, ALLOWED, mac_of(host, peer))
    finally:
        assert_ok(host.run("ovswitch", "clean", "node1", stdin=xml))
    assert host.ovs.flows(BRIDGE, "cookie=0x4f4e000000420000/-1") == []


OFCTL_FAILS = """#!/bin/sh
echo "ovs-ofctl: injected failure" >&2
exit 1
"""


def test_a_pre_that_fails_leaves_nothing(site, tmp_path):
    host, _peer = site
    xml = b64(vm_xml(64, [nic(64, "02:00:0a:3d:00:40", "10.61.0.64", BRIDGE="fpbr3",
                                   PHYDEV="uplink1")],
                     extra=RULES))
    bindir = tmp_path / "fail-bin"
    bindir.mkdir()
    (bindir / "ovs-ofctl").write_text(OFCTL_FAILS)
    (bindir / "ovs-ofctl").chmod(stat.S_IRWXU)
    done = host.run("ovswitch", "pre", stdin=xml,
                    env={"PATH": f"{bindir}:{os.environ['PATH']}"})
    assert_one_error(done, "injected failure")
    assert "fpbr3" not in host.ovs.bridges()  # the bridge pre made is undone with the flows
    assert "fpbr3" not in host.ns.links()
    # a bad rule fails pre before anything changes, naming the rule
    bad = b64(vm_xml(64, [nic(64, "02:00:0a:3d:00:40", "10.61.0.64", BRIDGE="fpbr3",
                                   PHYDEV="uplink1")],
                     extra=rules_xml(rule("INBOUND", RANGE="443:80"))))
    assert_one_error(host.run("ovswitch", "pre", stdin=bad), "SECURITY_GROUP_RULE 1", "RANGE")
    assert "fpbr3" not in host.ovs.bridges()


def test_a_tap_device_that_exists_before_pre_is_not_added_but_closed(site):
    """A device of that name outside Open vSwitch may not be the VM's yet: pre does not put
    it on the bridge; frames from and to the NIC's MAC are dropped until post."""
    host, _peer = site
    xml = b64(vm_xml(66, [nic(66, "02:00:0a:3d:00:42", "10.61.0.66")], extra=RULES))
    host.ns.add_tap("one-66-0")
    assert_ok(host.run("ovswitch", "pre", stdin=xml))
    assert "one-66-0" not in host.ovs.ports(BRIDGE)
    assert cookie_flows(host, "0x4f4e000000420000") == [
        "cookie=0x4f4e000000420000,table=0,priority=120,dl_dst=02:00:0a:3d:00:42 actions=drop",
        "cookie=0x4f4e000000420000,table=0,priority=120,dl_src=02:00:0a:3d:00:42 actions=drop"]
    assert_ok(host.run("ovswitch", "clean", "node1", stdin=xml))
    # (the bridge goes too when no other VM's port is left on it)
    assert BRIDGE not in host.ovs.bridges() or cookie_flows(host, "0x4f4e000000420000") == []


def test_pre_refuses_a_target_naming_another_nics_tap_before_it_exists(site):
    """Its row and flows would become that tap's once its VM starts."""
    host, _peer = site
    xml = b64(vm_xml(67, [nic(67, "02:00:0a:3d:00:43", "10.61.0.67", BRIDGE="fpbr4",
                              PHYDEV="uplink1", TARGET="one-99-0")], extra=RULES))
    assert_one_error(host.run("ovswitch", "pre", stdin=xml), "NIC 0", "TARGET one-99-0")
    assert "fpbr4" not in host.ovs.bridges()
