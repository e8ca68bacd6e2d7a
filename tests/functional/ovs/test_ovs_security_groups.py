"""Security groups on Open vSwitch (issue 18): traffic through the conntrack flows.

One private Open vSwitch (userspace datapath) per module, one site for every
test: a bridge with PHYDEV uplink0, a peer B on the LAN (the far end of
uplink0), VM A (protected, spoofing filters on) and VM C (protected) on the
bridge. Verdicts are read from traffic; flows with ovs-ofctl, never vnmlib.
"""

import json
import os
import subprocess
import sys
import threading

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import stop
from support.fault_injection import vnm
from support.namespaces import Guest, PROBE
from support.oned_input import b64, rules_xml, vm_xml
from support.ovs import OvsHost, checksums_in_software
from support.remotes import copy_tree

BRIDGE = "sgbr"
A_IP, A_IP6, B_IP, B_IP6, C_IP = "10.70.0.10", "fd00:70::10", "10.70.0.20", "fd00:70::20", \
    "10.70.0.30"
A_MAC, C_MAC = "02:00:0a:46:00:0a", "02:00:0a:46:00:1e"


def rule(protocol, direction="INBOUND", sg=100, **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID=sg, **extra)


def nic(vm_id, mac, ip, **extra):
    attrs = {"NIC_ID": 0, "BRIDGE": BRIDGE, "VN_MAD": "ovswitch", "BRIDGE_TYPE": "openvswitch",
             "TARGET": f"one-{vm_id}-0", "MAC": mac, "IP": ip, "NETWORK_ID": 7,
             "PHYDEV": "uplink0", "SECURITY_GROUPS": "100,101",
             # opt-in per network (the conf file's :ovs_security_groups: stays false)
             "CONF": "ovs_security_groups=yes"}
    attrs.update(extra)
    return attrs


OUT_ALL = rule("ALL", "OUTBOUND", 101)
A_RULES = (
    rule("TCP", RANGE="22,8000:8003"),                               # port range -> masks
    rule("UDP", RANGE="53", IP="10.70.0.16", SIZE="8"),               # net + port
    rule("TCP", RANGE="6000:6001,6010", IP="10.70.0.20", SIZE="3"),   # 2 nets x 2 masks: conj
    rule("ICMP", ICMP_TYPE="8"),
    rule("ICMPV6", ICMPV6_TYPE="128"),
    rule("TCP", RANGE="7000", IP6=B_IP6, SIZE="1"),
    rule("TCP", RANGE="5000", IP="10.70.0.64", SIZE="16"),            # a net B is not in
    OUT_ALL)
# the same verdicts for every port the tests probe, written differently
A_RULES_TOO = (rule("TCP", RANGE="22,23,8000:8003"), rule("UDP", RANGE="53", IP="10.70.0.0",
               SIZE="32")) + A_RULES[2:]


def vm_a(rules=A_RULES):
    attrs = nic(40, A_MAC, A_IP, IP6=A_IP6, FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    return b64(vm_xml(40, [attrs], extra=rules_xml(*rules)))


VM_A = vm_a()
VM_C = b64(vm_xml(41, [nic(41, C_MAC, C_IP)], extra=rules_xml(rule("ALL"), OUT_ALL)))
A_PORTS = "22,8002,6001,6002,7000,5000,9000,9100"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    host = OvsHost(tmp_path_factory.mktemp("ovs-sg"))
    procs = []
    try:
        assert_ok(host.run("ovswitch", "pre", stdin=VM_A))
        a = Guest(host.ns, tap="one-40-0", mac=A_MAC, ipv4=f"{A_IP}/24", ipv6=f"{A_IP6}/64")
        c = Guest(host.ns, tap="one-41-0", mac=C_MAC, ipv4=f"{C_IP}/24")
        b = Guest(host.ns, link="uplink0p", ipv4=f"{B_IP}/24", ipv6=f"{B_IP6}/64")
        host.guests += [a, c, b]
        for guest in (a, b, c):
            checksums_in_software(guest)
        for tap, mac in (("one-40-0", A_MAC), ("one-41-0", C_MAC)):
            host.ovs.libvirt_add_port(BRIDGE, tap, mac)  # pre made their rows (issue 21)
        assert_ok(host.run("ovswitch", "post", "one-40", "node1", stdin=VM_A))
        assert_ok(host.run("ovswitch", "post", "one-41", "node1", stdin=VM_C))
        procs.append(a.start("serve", "--tcp", A_PORTS, "--udp", "53,54"))
        procs.append(b.start("serve", "--tcp", "9100"))
        yield host, a, b, c
    finally:
        for proc in procs:
            stop(proc)
        host.delete()


def ours(host):
    """vnm's flows on the bridge (cookies 0x4f4e…), counters stripped, sorted."""
    return [f for f in host.ovs.flows(BRIDGE) if f.startswith("cookie=0x4f4e")]


def test_allowed_ports_types_and_networks_pass_others_are_dropped(site):
    _host, _a, b, c = site
    assert b.ping_eventually(A_IP)                      # ICMP type 8
    for port in (22, 8002, 6001, 7000):                 # 7000: only over IPv6, below
        assert b.probe("tcp", A_IP, port) == (1 if port == 7000 else 0), port
    assert b.probe("udp", A_IP, 53) == 0                # B is in 10.70.0.16/29
    for port in (6002, 5000, 9000):                     # outside the mask / B not in the net
        assert b.probe("tcp", A_IP, port) == 1, port
    assert b.probe("udp", A_IP, 54) == 1
    assert c.probe("tcp", A_IP, 22) == 0                # VM to VM: A's INBOUND rules apply
    assert c.probe("tcp", A_IP, 6001) == 1              # C (.30) is not in .20/31 + .22
    assert c.probe("udp", A_IP, 53) == 1


def test_ipv6_with_neighbour_discovery(site):
    _host, _a, b, _c = site
    # B knows no neighbour entry for A: NS/NA must pass the tables before any reply
    b.ip("-6", "neigh", "flush", "dev", b.dev)
    assert b.ping_eventually(A_IP6)                     # ICMPv6 type 128
    assert b.probe("tcp", A_IP6, 7000) == 0
    assert b.probe("tcp", A_IP6, 22) == 0
    assert b.probe("tcp", A_IP6, 9000) == 1


def test_replies_of_established_connections_pass(site):
    _host, a, b, _c = site
    assert b.probe("tcp", A_IP, 9100) == 1              # not allowed in ...
    assert a.probe("tcp", B_IP, 9100) == 0              # ... but A's own connection's replies pass


def test_spoofing_is_still_cut_off(site):
    _host, a, b, _c = site
    a.ip("addr", "add", "10.70.0.99/32", "dev", a.dev)
    try:
        done = subprocess.run(["ip", "netns", "exec", a.name, "ping", "-c1", "-W1", "-I",
                               "10.70.0.99", B_IP], capture_output=True, check=False)
        assert done.returncode != 0
    finally:
        a.ip("addr", "del", "10.70.0.99/32", "dev", a.dev)
    assert a.ping_eventually(B_IP)


def test_bad_rule_changes_nothing_and_names_the_rule(site):
    host, _a, b, _c = site
    before = ours(host)
    done = host.run("ovswitch", "update_sg", "one-40",
                    stdin=vm_a((rule("TCP", RANGE="22"), rule("TCP", RANGE="443:80"), OUT_ALL)))
    line = assert_one_error(done, "SECURITY_GROUP_RULE 2", "RANGE")
    assert line.startswith("ERROR: update_sg: ")
    assert ours(host) == before
    assert b.probe("tcp", A_IP, 8002) == 0


def test_update_sg_applies_new_rules_in_one_bundle(site):
    host, _a, b, _c = site
    flows = len(ours(host))
    assert_ok(host.run("ovswitch", "update_sg", "one-40",
                       stdin=vm_a((rule("TCP", RANGE="9000"), OUT_ALL))))
    assert b.probe("tcp", A_IP, 9000) == 0
    assert b.probe("tcp", A_IP, 22) == 1
    assert_ok(host.run("ovswitch", "update_sg", "one-40", stdin=VM_A))
    assert len(ours(host)) == flows
    assert b.probe("tcp", A_IP, 22) == 0
    assert b.probe("tcp", A_IP, 9000) == 1


def test_no_window_while_rules_are_replaced(site):
    """update_sg again and again while B floods denied port 9000 and keeps an allowed
    connection to port 22 round-tripping: nothing denied answers, nothing allowed stalls."""
    host, _a, b, _c = site
    flood = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "flood",
                              A_IP, "9000", "4"], stdout=subprocess.PIPE, text=True)
    hold = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "hold",
                             A_IP, "22", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    failures = []

    def updates():
        for i in range(16):
            done = host.run("ovswitch", "update_sg", "one-40",
                            stdin=vm_a(A_RULES_TOO) if i % 2 else VM_A)
            if done.returncode != 0:
                failures.append(done.stderr.decode())

    worker = threading.Thread(target=updates)
    worker.start()
    worker.join()
    answered = flood.communicate(timeout=30)[0]
    held, cut = hold.communicate(timeout=30)
    assert not failures
    assert int(answered) == 0, "a denied port answered during an update"
    assert hold.returncode == 0, cut
    assert int(held) > 100


def test_ovswitch_vxlan_post_update_sg_clean(site):
    host, _a, _b, _c = site
    attrs = nic(43, "02:00:0a:46:00:2b", "10.70.0.43", VN_MAD="ovswitch_vxlan", BRIDGE="sgvx",
                PHYDEV="uplink1", OUTER_VLAN_ID=600, VLAN_ID=5)
    e_vm = b64(vm_xml(43, [attrs], extra=rules_xml(rule("TCP", RANGE="22"), OUT_ALL)))
    assert_ok(host.run("ovswitch_vxlan", "pre", stdin=e_vm))
    host.ns.add_tap("one-43-0")
    host.ovs.libvirt_add_port("sgvx", "one-43-0")
    assert_ok(host.run("ovswitch_vxlan", "post", "one-43", "node1", stdin=e_vm))
    rules = host.ovs.flows("sgvx", "table=51")
    assert any("tp_dst=22" in f and "ct(commit,zone=" in f for f in rules), rules
    before = host.ovs.flows("sgvx")
    bad = b64(vm_xml(43, [attrs], extra=rules_xml(rule("TCP", RANGE="22"), rule("UDP", IP="x"))))
    assert_one_error(host.run("ovswitch_vxlan", "update_sg", "one-43", stdin=bad),
                     "SECURITY_GROUP_RULE 2")
    assert host.ovs.flows("sgvx") == before
    assert_ok(host.run("ovswitch_vxlan", "clean", "node1", stdin=e_vm))
    assert "sgvx" not in host.ovs.bridges()


def test_doctor_and_status_say_where_groups_are_not_enforced(site, tmp_path):
    host, _a, _b, _c = site
    # D: an ovswitch NIC of a network without the CONF opt-in, on the same bridge
    d_vm = b64(vm_xml(42, [nic(42, "02:00:0a:46:00:2a", "10.70.0.42", CONF="")]))
    host.ns.add_tap("one-42-0")
    host.ovs.vsctl("add-port", BRIDGE, "one-42-0")
    try:
        assert_ok(host.run("ovswitch", "post", "one-42", "node1", stdin=d_vm))
        refused = host.run("ovswitch", "update_sg", "one-42", stdin=d_vm)
        assert_one_error(refused, "Security groups not supported for ovswitch")
        enforcing = copy_tree(os.path.join(str(tmp_path), "remotes"),
                              ":ovs_security_groups: true\n")
        done = vnm(host.ns, "status", "--json", "--tree", enforcing, env=host.ovs.env)
        assert done.returncode == 1, done.stderr
        problems = {(n["vm"], n["nic"]): n["problems"] for n in json.loads(done.stdout)}
        # (on the userspace datapath a port's link has no master: "tap on no bridge")
        flagged = {key for key, found in problems.items()
                   if any("security groups configured" in p and "not enforced" in p
                          for p in found)}
        assert flagged == {(42, 0)}
        # the module's tree: the option is false (A and C opt in per network)
        done = vnm(host.ns, "doctor", "--json", "--tree", host.tree, env=host.ovs.env)
        rows = {r["check"]: r for r in json.loads(done.stdout)}
        assert rows["Open vSwitch security groups"]["status"] == "warn"
        done = vnm(host.ns, "doctor", "--json", "--tree", enforcing, env=host.ovs.env)
        rows = {r["check"]: r for r in json.loads(done.stdout)}
        assert rows["Open vSwitch security groups"]["status"] == "ok"
    finally:
        assert_ok(host.run("ovswitch", "clean", "node1", stdin=d_vm))


def test_clean_removes_every_flow_of_the_nic(site):
    host, _a, _b, _c = site
    assert_ok(host.run("ovswitch", "clean", "node1", stdin=VM_C))
    left = ours(host)
    assert left and all(f.startswith("cookie=0x4f4e000000280000,") for f in left)  # A's only
    assert not [f for f in left if f"dl_dst={C_MAC}" in f]
    assert_ok(host.run("ovswitch", "clean", "node1", stdin=VM_A))
    assert BRIDGE not in host.ovs.bridges()  # its last NIC gone: bridge and flows with it
