"""vnm why on golden fixture A's fw NIC (VM 7 NIC 1), each verdict checked against real traffic.

VM 7 as oned sent it, but NIC 1 (and its alias) in security group 100 only,
so its rules decide (group 0 allows everything). Topology, in namespaces made
and removed here:

    peer P (10.0.1.100, 10.0.1.20, 192.168.10.7) ── peer0 ──┐ onebr1
    VM 7 NIC 1 (02:00:0a:00:01:05, 10.0.1.5)  ──── one-7-1 ─┘

Group 100: INBOUND TCP 22,80:90 (port range), ICMP 8 (ICMP type), TCP from
192.168.10.0/24 (network), ICMP 3 from 172.16.0.10+10 (network + ICMP type);
OUTBOUND UDP 53 to 10.0.0.0+300 (network + ports), ESP (protocol); IP and MAC
spoofing filters. For each packet: what ``vnm why`` says, then what the same
packet really does.
"""

import json
import os
import subprocess

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.firewall import Firewall
from support.namespaces import Guest, Namespace
from support.paths import PYTHON, REPO, fixture_bytes

VM_MAC, VM_IP = "02:00:0a:00:01:05", "10.0.1.5"
PEER_IP, PEER_DNS, PEER_NET = "10.0.1.100", "10.0.1.20", "192.168.10.7"
XML = fixture_bytes("vm7_vnm_reduced.xml").replace(
    b"<SECURITY_GROUPS><![CDATA[0,100]]>", b"<SECURITY_GROUPS><![CDATA[100]]>")


def b64(xml):
    import base64

    return base64.b64encode(xml)


class Site:
    def __init__(self, backend, tmp):
        self.fw = Firewall(backend, tmp)
        run_dir = tmp / "run"
        run_dir.mkdir()
        self.host = Namespace(str(run_dir))
        self.guests, self.procs = {}, []
        try:
            self._build()
        except BaseException:
            self.delete()
            raise

    def _build(self):
        host, fw = self.host, self.fw
        assert_ok(fw.run(host, "fw", "pre", stdin=b64(XML)))
        self.guests["vm"] = vm = Guest(host, "one-7-1", VM_MAC, f"{VM_IP}/24", bridge="onebr1")
        assert_ok(fw.run(host, "fw", "post", "one-7", "node1", stdin=b64(XML)))
        self.guests["peer"] = peer = Guest(host, "peer0", "02:00:0a:00:01:64",
                                           f"{PEER_IP}/24", bridge="onebr1")
        for address in (f"{PEER_DNS}/24", f"{PEER_NET}/24"):
            peer.ip("addr", "add", address, "dev", "peer0p")
        vm.ip("route", "add", "192.168.10.0/24", "dev", "one-7-1p")
        self.procs.append(vm.start("serve", "--tcp", "22,85,9000"))
        self.procs.append(peer.start("serve", "--udp", "53"))

    def why(self, *packet, json_out=True):
        # the tree whose OpenNebulaNetwork.conf names the backend; iptables-legacy first
        # on PATH for the legacy flavours, as on such a host
        env = dict(os.environ, VNM_RUN_DIR=self.host.run_dir, PYTHONPATH=REPO, **self.fw.env)
        args = ["why", "--tree", self.fw.tree, "--vm", "7", "--nic", "1",
                *(["--json"] if json_out else []), *packet]
        return subprocess.run(["ip", "netns", "exec", self.host.name, PYTHON, "-m",
                               "vnmlib.cli", *args], capture_output=True, text=True, env=env,
                              check=False)

    def verdict(self, packet):
        done = self.why(*packet.split())
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)

    def delete(self):
        for proc in self.procs:
            stop(proc)
        for guest in self.guests.values():
            guest.delete()
        self.host.delete()


@pytest.fixture(scope="module", params=["restore-nft", "iptc"])
def site(request, tmp_path_factory):
    built = Site(request.param, tmp_path_factory.mktemp(request.param))
    yield built
    built.delete()


def sniffed(guest, dev, kind, value, send):
    proc = guest.start("sniff", dev, "0.8", kind, value)
    try:
        send()
        return int(proc.stdout.readline())
    finally:
        stop(proc)


@pytest.mark.parametrize("source, port, verdict, rule", [
    (PEER_IP, 22, "ACCEPT", "--dports 22,80:90"),          # port range
    (PEER_IP, 85, "ACCEPT", "--dports 22,80:90"),
    (PEER_IP, 9000, "DROP", "one-7-1-i rule"),             # nothing allows it
    (PEER_NET, 9000, "ACCEPT", "--match-set one-7-1-100-i-tcp-n-inet src"),  # network rule
])
def test_tcp_to_the_vm(site, source, port, verdict, rule):
    found = site.verdict(f"tcp {source}:40000 -> {VM_IP}:{port} in")
    assert found["verdict"] == verdict, found
    assert rule in found["reason"] or verdict == "ACCEPT" and any(rule in s for s in found["path"])
    peer = site.guests["peer"]
    # the real connection from that source address
    done = subprocess.run(["ip", "netns", "exec", peer.name, "python3", "-c",
                           "import socket,sys; s=socket.socket(); s.settimeout(0.5); "
                           f"s.bind(('{source}', 0)); sys.exit(s.connect_ex(('{VM_IP}', {port})))"],
                          capture_output=True, check=False)
    assert (done.returncode == 0) == (verdict == "ACCEPT")


@pytest.mark.parametrize("icmp_type, source, verdict", [
    (8, PEER_IP, "ACCEPT"),    # ICMP type rule
    (13, PEER_IP, "DROP"),     # no rule for timestamps
])
def test_icmp_to_the_vm(site, icmp_type, source, verdict):
    found = site.verdict(f"icmp:{icmp_type} {source} -> {VM_IP} in")
    assert found["verdict"] == verdict, found
    peer, vm = site.guests["peer"], site.guests["vm"]
    seen = sniffed(vm, "one-7-1p", "icmp", icmp_type, lambda: peer.probe("icmp4", VM_IP,
                                                                         icmp_type))
    assert seen == (1 if verdict == "ACCEPT" else 0)


def test_icmp_from_the_network_of_a_net_icmp_rule(site):
    # destination unreachable from 172.16.0.12 (in 172.16.0.10+10), not from elsewhere
    found = site.verdict(f"icmp:3/1 172.16.0.12 -> {VM_IP} in")
    assert found["verdict"] == "ACCEPT"
    assert any("172.16.0.12,icmp:3/1 in ipset one-7-1-100-i-ni" in s for s in found["path"])
    assert site.verdict(f"icmp:3/1 172.16.1.12 -> {VM_IP} in")["verdict"] == "DROP"


@pytest.mark.parametrize("source, destination, verdict, why", [
    (VM_IP, PEER_DNS, "ACCEPT", "one-7-1-100-o-nr-inet"),   # net + port range
    (VM_IP, PEER_IP, "DROP", "one-7-1-o rule"),             # 10.0.1.100 is past 10.0.0.0+300
    ("10.0.1.99", PEER_DNS, "DROP", "one-7-1-ip-spoofing"),  # not the NIC's address
    ("10.0.1.6", PEER_DNS, "ACCEPT", "one-7-1-100-o-nr-inet"),  # the alias's address
])
def test_udp_from_the_vm(site, source, destination, verdict, why):
    found = site.verdict(f"udp {source}:40000 -> {destination}:53 out")
    assert found["verdict"] == verdict, found
    assert why in found["reason"] or any(why in step for step in found["path"]), found
    peer, vm = site.guests["peer"], site.guests["vm"]
    seen = sniffed(peer, "peer0p", "udp", 53, lambda: vm.probe(
        "udp-frame", "one-7-1p", VM_MAC, source, destination, 53))
    assert seen == (1 if verdict == "ACCEPT" else 0)


def test_another_source_mac_meets_the_wire_guard(site):
    done = site.why("--json", "--mac", "02:00:00:00:00:99", "udp", f"{VM_IP}:40000", "->",
                    f"{PEER_DNS}:53", "out", json_out=False)
    found = json.loads(done.stdout)
    assert found["verdict"] == "DROP"
    assert found["reason"].startswith("wire guard (nft table netdev one-7-1, ingress of one-7-1)")
    peer, vm = site.guests["peer"], site.guests["vm"]
    assert sniffed(peer, "peer0p", "udp", 53, lambda: vm.probe(
        "udp-frame", "one-7-1p", "02:00:00:00:00:99", VM_IP, PEER_DNS, 53)) == 0


def test_protocol_rule_and_the_global_path(site):
    found = site.verdict(f"esp {VM_IP} -> {PEER_IP} out")
    assert found["verdict"] == "ACCEPT"
    assert found["path"][0].startswith("source MAC taken as the NIC's own, 02:00:0a:00:01:05")
    assert found["path"][1].startswith("FORWARD rule")  # the walk starts at the hook
    assert any("-p esp -j RETURN" in step for step in found["path"])
    assert site.verdict(f"esp {PEER_IP} -> {VM_IP} in")["verdict"] == "DROP"


def test_text_output_is_one_verdict_line_then_the_path(site):
    done = site.why(f"tcp {PEER_IP}:40000 -> {VM_IP}:22 in", json_out=False)  # as quoted
    assert done.returncode == 0, done.stderr
    first, *path = done.stdout.splitlines()
    assert first.startswith(f"ACCEPT: tcp {PEER_IP}:40000 -> {VM_IP}:22 in (opennebula rule")
    assert path and all(line.startswith("  ") for line in path)


@pytest.mark.parametrize("packet", [
    "tcp 10.0.0.5 -> 10.0.0.9:22 in", "tcp 10.0.0.5:1 -> 10.0.0.9:22 sideways",
    "icmp:300 10.0.0.5 -> 10.0.0.9 in", "tcp 10.0.0.5:1 -> fd00::1:22 in",
])
def test_a_bad_packet_is_one_line_and_exit_2(site, packet):
    done = site.why(*packet.split())
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "packet" in done.stderr


def test_a_nic_without_protection_is_named(site):
    done = site.why("--vm", "99", "tcp", "10.0.0.5:1", "->", "10.0.0.9:22", "in")
    assert done.returncode != 0
    assert "VM 99" in done.stderr


# -- Open vSwitch: golden fixture C's NIC 0 (VM 9), IP and MAC spoofing filters -----------

OVS_MAC, OVS_IP, OVS_PEER = "02:00:0a:1e:00:02", "10.30.0.2", "10.30.0.50"


@pytest.fixture(scope="module")
def ovs_site(tmp_path_factory):
    from support.ovs import OvsHost

    host = OvsHost(tmp_path_factory.mktemp("why-ovs"))
    try:
        vm9 = fixture_bytes("vm9_vnm_reduced.b64")
        assert_ok(host.run("ovswitch", "pre", stdin=vm9))
        vm = host.guest("ovsbr0", "one-9-0", OVS_MAC, f"{OVS_IP}/24")
        host.plug("ovsbr0", "one-9-1")
        assert_ok(host.run("ovswitch", "post", "one-9", "node1", stdin=vm9))
        # the fixture's stp_enable=true keeps a new port listening (dropping) for 30 s
        host.ovs.vsctl("set", "Bridge", "ovsbr0", "stp_enable=false")
        # a peer in the NIC's VLAN 30, on an access port of the same bridge
        peer = host.guest("ovsbr0", "peer9", "02:00:0a:1e:00:32", f"{OVS_PEER}/24")
        host.ovs.vsctl("set", "Port", "peer9", "tag=30")
        yield host, vm, peer
    finally:
        host.delete()


def ovs_why(host, *args):
    env = dict(os.environ, VNM_RUN_DIR=host.ns.run_dir, PYTHONPATH=REPO, **host.ovs.env)
    done = subprocess.run(["ip", "netns", "exec", host.ns.name, PYTHON, "-m", "vnmlib.cli", "why",
                           "--vm", "9", "--nic", "0", "--json", *args], capture_output=True,
                          text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


@pytest.mark.parametrize("mac, source, verdict", [
    (OVS_MAC, OVS_IP, "ACCEPT"),
    (OVS_MAC, "10.30.0.99", "DROP"),           # IP anti-spoofing flows
    ("02:00:00:00:00:99", OVS_IP, "DROP"),     # MAC anti-spoofing flows
])
def test_ovs_nic_verdicts_are_the_switchs(ovs_site, mac, source, verdict):
    host, vm, peer = ovs_site
    found = ovs_why(host, "--mac", mac, f"udp {source}:40000 -> {OVS_PEER}:53 out")
    assert found["verdict"] == verdict, found
    assert found["reason"].startswith("datapath actions: ")
    assert found["path"][0].startswith("0. in_port="), found  # the trace's tables
    seen = sniffed(peer, "peer9p", "udp", 53, lambda: vm.probe(
        "udp-frame", "one-9-0p", mac, source, OVS_PEER, 53, "02:00:0a:1e:00:32"))
    assert seen == (1 if verdict == "ACCEPT" else 0)
