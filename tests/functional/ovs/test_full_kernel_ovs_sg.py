"""Security groups on Open vSwitch's *kernel* datapath (openvswitch.ko's conntrack), under QEMU.

The userspace datapath's traffic tests are test_ovs_security_groups.py; here
the same flows run on the kernel's conntrack, with the VM on VLAN 10 so the
peer's frames reach the conntrack flows tagged.
"""

import subprocess

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.namespaces import Guest
from support.oned_input import b64, rules_xml, vm_xml
from support.ovs import OvsHost

pytestmark = pytest.mark.full_kernel

A_MAC = "02:00:0a:47:00:0a"


def rule(protocol, direction="INBOUND", **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID=100, **extra)


def test_kernel_datapath_conntrack_rules(tmp_path):
    # opt-in for the whole host this time (the conf file), not per network
    host = OvsHost(tmp_path, kernel=True, conf=":ovs_security_groups: true\n")
    server = None
    try:
        attrs = {"NIC_ID": 0, "BRIDGE": "ovsk1", "VN_MAD": "ovswitch", "PHYDEV": "uplink0",
                 "TARGET": "one-50-0", "MAC": A_MAC, "VLAN_ID": 10, "IP": "10.71.0.10",
                 "IP6": "fd00:71::10", "FILTER_MAC_SPOOFING": "YES", "FILTER_IP_SPOOFING": "YES",
                 "SECURITY_GROUPS": "100"}
        rules = rules_xml(rule("TCP", RANGE="20:23"), rule("ICMPV6", ICMPV6_TYPE="128"),
                          rule("ALL", "OUTBOUND"))
        stdin = b64(vm_xml(50, [attrs], extra=rules))
        assert_ok(host.run("ovswitch", "pre", stdin=stdin))
        # pre made the tap's row with a requested port number and its flows (issue 21)
        number = host.ovs.row("Interface", "one-50-0", "ofport_request")["ofport_request"]
        assert number >= 32768
        a = Guest(host.ns, tap="one-50-0", mac=A_MAC, ipv4="10.71.0.10/24",
                  ipv6="fd00:71::10/64")
        host.guests.append(a)
        assert host.ovs.opened("one-50-0") == number  # the kernel datapath honours it too
        host.ovs.libvirt_add_port("ovsk1", "one-50-0", A_MAC)
        assert host.ovs.ofport("one-50-0") == number
        assert_ok(host.run("ovswitch", "post", "one-50", "h", stdin=stdin))
        b = Guest(host.ns, link="uplink0p")  # the LAN, where VLAN 10 is tagged
        host.guests.append(b)
        b.ip("link", "add", "link", b.dev, "name", "v10", "type", "vlan", "id", "10")
        b.ip("addr", "add", "10.71.0.20/24", "dev", "v10")
        b.ip("addr", "add", "fd00:71::20/64", "dev", "v10", "nodad")
        b.ip("link", "set", "v10", "up")
        server = a.start("serve", "--tcp", "22,9000")
        peer = b.start("serve", "--tcp", "9100")
        try:
            assert b.probe("tcp", "10.71.0.10", 22) == 0
            assert b.probe("tcp", "10.71.0.10", 9000) == 1
            assert not b.ping("10.71.0.10")                      # no ICMP rule
            assert b.ping_eventually("fd00:71::10")              # ND, then echo
            assert b.probe("tcp", "fd00:71::10", 22) == 0
            assert b.probe("tcp", "10.71.0.10", 9100) == 1   # not allowed in, but the replies
            assert a.probe("tcp", "10.71.0.20", 9100) == 0   # of A's own connection pass
            a.ip("addr", "add", "10.71.0.99/32", "dev", a.dev)
            spoofed = subprocess.run(["ip", "netns", "exec", a.name, "ping", "-c1", "-W1", "-I",
                                      "10.71.0.99", "10.71.0.20"], capture_output=True, check=False)
            assert spoofed.returncode != 0
        finally:
            stop(peer)
        assert_ok(host.run("ovswitch", "clean", "h", stdin=stdin))
        assert "ovsk1" not in host.ovs.bridges()
    finally:
        if server is not None:
            stop(server)
        host.delete()
