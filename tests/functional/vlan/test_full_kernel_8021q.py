"""802.1Q driver on a kernel with 8021q, bridge VLAN filtering and netfilter
(Debian's kernel under QEMU, tools/qemu/run.sh).

Real VLAN devices, the bridge VLAN table after post, and tagged frames on the
wire: a peer namespace behind PHYDEV receives a VM's traffic only through a
VLAN device of the right VID (and protocol), and QinQ frames carry both tags.
post's security groups are real iptables chains, equal to the reference's
(golden B), and filter real packets between the VLAN and the VM.
"""

import re

import pytest

from support import golden
from support.assertions import assert_ok, assert_one_error
from support.commands import sh, stop
from support.namespaces import Guest
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import fixture_bytes

pytestmark = pytest.mark.full_kernel

VM8 = fixture_bytes("vm8_vnm_reduced.b64")


def replay(ns, step):
    driver, action, args = golden.argv("B", step)
    done = ns.run(driver, action, *args, stdin=VM8)
    assert done.returncode == golden.rc("B", step), f"{step}: {done.stderr.decode()}"


def asked_vlans(step):
    """{port: {vid: flags}} from the trace's ``bridge vlan add dev P vid V [pvid untagged]``."""
    asked = {}
    for line in golden.commands("B", step, "bridge vlan add"):
        match = re.match(r"bridge vlan add dev (\S+) vid (\d+)(.*)", line)
        flags = {"PVID", "Egress Untagged"} if "pvid untagged" in match.group(3) else set()
        asked.setdefault(match.group(1), {})[int(match.group(2))] = flags
    return asked


def test_scenario_b_802_1q_qinq_and_bridge_trunk(ns):
    # NIC 1 asks for MTU 9000: a VLAN device cannot exceed its PHYDEV, so the
    # host has jumbo frames on uplink0 (the reference's veth stand-ins hid this)
    ns.ip("link", "set", "uplink0", "mtu", "9000")
    replay(ns, "01-pre-802.1Q")
    replay(ns, "01-pre-bridge")
    links, masters = golden.state("B", "01-after-pre.state")
    have = ns.links()
    standins = {name for name in links if name.startswith("fv")}  # the reference's veth peers
    assert set(have) == links - standins
    assert {n: l["master"] for n, l in have.items() if l["master"]} == masters
    for name, vid, mtu in (("uplink0.50", 50, 1500), ("uplink0.100", 100, 9000)):
        assert have[name]["kind"] == "vlan" and have[name]["data"]["id"] == vid
        assert have[name]["data"]["protocol"] == "802.1Q" and have[name]["mtu"] == mtu
    assert "REORDER_HDR" in have["uplink0.50"]["data"]["flags"]
    # vnm protects in pre (:protect_in_pre:, docs/differences.md): before the taps exist
    # the rules are already those of the reference's post
    for tool in ("iptables", "ip6tables"):
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("B", "02-after-post.state", f"{tool} -S")

    for tap, bridge in (("one-8-0", "onebr.50"), ("one-8-1", "onebr.100"), ("one-8-2", "br1")):
        ns.add_tap(tap, bridge)
    replay(ns, "02-post-802.1Q")
    replay(ns, "02-post-bridge")
    have = ns.links()
    assert have["onebr.100"]["data"]["vlan_filtering"] == 1
    assert have["br1"]["data"]["vlan_filtering"] == 1
    assert have["onebr.50"]["data"]["vlan_filtering"] == 0  # no CVLANS there
    table = ns.bridge_vlans()
    for step in ("02-post-802.1Q", "02-post-bridge"):
        for port, vids in asked_vlans(step).items():
            for vid, flags in vids.items():
                assert flags <= table[port][vid], (port, vid)
    # the S-VLAN is the only PVID of the QinQ ports
    for port in ("one-8-1", "uplink0.100"):
        assert [v for v, f in table[port].items() if "PVID" in f] == [100]
    # post also protected both 802.1Q NICs, QinQ one included: the reference's chains
    for tool in ("iptables", "ip6tables"):  # minus vnm's connlimit rules (golden.py)
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("B", "02-after-post.state", f"{tool} -S")

    for tap in ("one-8-0", "one-8-1", "one-8-2"):
        ns.ip("link", "del", tap)
    replay(ns, "03-clean-802.1Q")
    replay(ns, "03-clean-bridge")
    links, masters = golden.state("B", "03-after-clean.state")
    assert set(ns.links()) == links
    assert {n: l["master"] for n, l in ns.links().items() if l["master"]} == masters
    for tool in ("iptables", "ip6tables"):  # the NICs' chains are gone again
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("B", "03-after-clean.state", f"{tool} -S")


def vlan_vm(vm_id, vid, **extra):
    nic = bridge_nic(vm_id, 0, f"onebr.{vid}", "uplink0", VN_MAD="802.1Q", VLAN_ID=vid,
                     NETWORK_ID=vid, **extra)
    return nic, b64(vm_xml(vm_id, [nic]))


class Wire:
    """A VM namespace behind its tap, and a peer namespace holding uplink0's far end."""

    def __init__(self, ns, tap, bridge):
        self.guest, self.peer = f"{ns.name}-vm", f"{ns.name}-peer"
        sh("ip", "netns", "add", self.guest)
        sh("ip", "netns", "add", self.peer)
        ns.ip("link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", self.guest)
        ns.ip("link", "set", tap, "master", bridge, "up")
        ns.ip("link", "set", "uplink0p", "netns", self.peer)
        sh("ip", "-n", self.guest, "link", "set", "eth0", "up")
        sh("ip", "-n", self.peer, "link", "set", "uplink0p", "up")

    def vlan(self, where, parent, name, vid, address, protocol="802.1Q"):
        namespace = self.guest if where == "guest" else self.peer
        sh("ip", "-n", namespace, "link", "add", "link", parent, "name", name, "type", "vlan",
           "protocol", protocol, "id", str(vid))
        sh("ip", "-n", namespace, "addr", "add", address, "dev", name)
        sh("ip", "-n", namespace, "link", "set", name, "up")

    def ping(self, address):
        done = sh("ip", "netns", "exec", self.guest, "ping", "-c", "2", "-W", "1", address,
                  check=False)
        return " 0% packet loss" in done

    def delete(self):
        sh("ip", "netns", "del", self.guest, check=False)
        sh("ip", "netns", "del", self.peer, check=False)


@pytest.mark.parametrize("protocol", ["802.1Q", "802.1ad"])
def test_vm_traffic_leaves_phydev_tagged_with_its_vid(ns, protocol):
    _, stdin = vlan_vm(90, 20, IP_LINK_CONF=f"protocol={protocol}")
    assert_ok(ns.run("802.1Q", "pre", stdin=stdin))
    assert ns.links()["uplink0.20"]["data"]["protocol"] == protocol
    wire = Wire(ns, "one-90-0", "onebr.20")
    try:
        sh("ip", "-n", wire.guest, "addr", "add", "10.20.0.10/24", "dev", "eth0")
        assert_ok(ns.run("802.1Q", "post", "one-90", "h", stdin=stdin))
        wire.vlan("peer", "uplink0p", "v21", 21, "10.20.0.1/24", protocol)  # wrong VID
        assert not wire.ping("10.20.0.1")
        other = "802.1ad" if protocol == "802.1Q" else "802.1Q"
        sh("ip", "-n", wire.peer, "link", "del", "v21")
        wire.vlan("peer", "uplink0p", "v20x", 20, "10.20.0.1/24", other)  # right VID, other TPID
        assert not wire.ping("10.20.0.1")
        sh("ip", "-n", wire.peer, "link", "del", "v20x")
        wire.vlan("peer", "uplink0p", "v20", 20, "10.20.0.1/24", protocol)
        assert wire.ping("10.20.0.1")
    finally:
        wire.delete()


def test_qinq_frames_carry_the_s_vlan_outside_the_c_vlan(ns):
    _, stdin = vlan_vm(91, 100, CVLANS="200,300-302")
    assert_ok(ns.run("802.1Q", "pre", stdin=stdin))
    wire = Wire(ns, "one-91-0", "onebr.100")
    try:
        assert_ok(ns.run("802.1Q", "post", "one-91", "h", stdin=stdin))
        wire.vlan("guest", "eth0", "c200", 200, "10.200.0.10/24")       # the VM tags C-VLAN 200
        sh("ip", "-n", wire.guest, "addr", "add", "10.100.0.10/24", "dev", "eth0")  # untagged
        wire.vlan("peer", "uplink0p", "s100", 100, "10.100.0.1/24")     # outer tag: S-VLAN 100
        wire.vlan("peer", "s100", "s100c200", 200, "10.200.0.1/24")     # inner: C-VLAN 200
        assert wire.ping("10.200.0.1")   # double-tagged 100/200
        assert wire.ping("10.100.0.1")   # untagged from the VM: S-VLAN only (the PVID)
        wire.vlan("guest", "eth0", "c250", 250, "10.250.0.10/24")       # not in CVLANS
        wire.vlan("peer", "s100", "s100c250", 250, "10.250.0.1/24")
        assert not wire.ping("10.250.0.1")
    finally:
        wire.delete()


SG_RULES = [dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=110, RANGE="22"),
            dict(PROTOCOL="ICMP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=110, ICMP_TYPE="8"),
            dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=110)]


@pytest.mark.parametrize("cvlans", [None, "200"], ids=["802.1Q", "QinQ"])
def test_security_groups_filter_packets_from_the_vlan(ns, cvlans):
    """A peer on the VM's VLAN (S-VLAN for QinQ: the VM's untagged frames) reaches
    TCP 22 and echo, the group's rules, but not TCP 23; the VM's own
    connections out pass (OUTBOUND ALL + conntrack)."""
    extra = {"CVLANS": cvlans} if cvlans else {}
    nic, _ = vlan_vm(94, 30, IP="10.30.0.10", SECURITY_GROUPS="110", **extra)
    stdin = b64(vm_xml(94, [nic], extra=rules_xml(*SG_RULES)))
    assert_ok(ns.run("802.1Q", "pre", stdin=stdin))
    vm = Guest(ns, "one-94-0", nic["MAC"], "10.30.0.10/24", bridge="onebr.30")
    peer = Guest(ns, link="uplink0p")
    server = None
    try:
        sh("ip", "-n", peer.name, "link", "add", "link", "uplink0p", "name", "v30", "type", "vlan",
           "id", "30")
        peer.ip("addr", "add", "10.30.0.1/24", "dev", "v30")
        peer.ip("link", "set", "v30", "up")
        server = vm.start("serve", "--tcp", "22,23")
        # protected since pre (:protect_in_pre:), before post: 22 open, 23 closed
        assert peer.probe("tcp", "10.30.0.10", 22) == 0
        assert peer.probe("tcp", "10.30.0.10", 23) == 1
        assert_ok(ns.run("802.1Q", "post", "one-94", "h", stdin=stdin))
        assert peer.probe("tcp", "10.30.0.10", 22) == 0
        assert peer.ping("10.30.0.10")
        assert peer.probe("tcp", "10.30.0.10", 23) == 1
        peer_server = peer.start("serve", "--tcp", "9000")
        try:
            assert vm.probe("tcp", "10.30.0.1", 9000) == 0
        finally:
            stop(peer_server)
    finally:
        if server:
            stop(server)
        vm.delete()
        peer.delete()


def update_stdin(nic, **old):
    extra = "<TEMPLATE><VNET_UPDATE>" + "".join(
        f"<{k}><![CDATA[{v}]]></{k}>" for k, v in old.items()) + "</VNET_UPDATE></TEMPLATE>"
    return b64(vm_xml(92, [nic], extra=extra))


def test_update_nic_vlan_id_mtu_and_cvlans(ns):
    nic, stdin = vlan_vm(92, 50, CVLANS="200")
    assert_ok(ns.run("802.1Q", "pre", stdin=stdin))
    ns.add_tap("one-92-0", "onebr.50")
    assert_ok(ns.run("802.1Q", "post", "one-92", "h", stdin=stdin))
    nic["VLAN_ID"] = 51
    assert_ok(ns.run("802.1Q", "update_nic", "one-92", "50",
                  stdin=update_stdin(nic, VLAN_ID=50)))
    links = ns.links()
    assert "uplink0.50" not in links and links["uplink0.51"]["master"] == "onebr.50"
    table = ns.bridge_vlans()
    for port in ("one-92-0", "uplink0.51"):
        assert "PVID" in table[port][51] and 200 in table[port], port
    assert 50 not in table["one-92-0"]
    nic["CVLANS"] = "250-251"
    assert_ok(ns.run("802.1Q", "update_nic", "one-92", "50",
                  stdin=update_stdin(nic, CVLANS="200")))
    table = ns.bridge_vlans()
    for port in ("one-92-0", "uplink0.51"):
        assert {250, 251} <= set(table[port]) and 200 not in table[port], port
    nic["MTU"] = 1400
    assert_ok(ns.run("802.1Q", "update_nic", "one-92", "50",
                  stdin=update_stdin(nic, MTU=1500)))
    assert ns.links()["uplink0.51"]["mtu"] == 1400


@pytest.mark.parametrize("vid", [0, 4095, 5000])
def test_reserved_and_out_of_range_vids_change_nothing(ns, vid):
    before = ns.links()
    _, stdin = vlan_vm(93, vid)
    assert_one_error(ns.run("802.1Q", "pre", stdin=stdin), "NIC 0: VLAN_ID", "out of range")
    assert ns.links() == before
