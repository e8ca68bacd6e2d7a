"""Security groups enforced on real traffic, with the restore and iptc backends.

Topology (built once per backend, every namespace made and removed here):

    peer P (10.50.0.100, fd50::100) ── uplink0 ─┐
    VM A 20 (10.50.0.10, fd50::10) ── one-20-0 ─┤ fwbr (host H: 10.50.0.1)
    VM B 21 (10.50.0.11, fd50::11) ── one-21-0 ─┤
    VM C 22 (10.50.0.12)           ── one-22-0 ─┘

A: inbound TCP 22,8000:8010, UDP 53, ICMP echo, ICMPv6 echo, all TCP from P
(net), UDP 5353 from P (net+port), ICMP timestamp from P (net+ICMP);
outbound everything; MAC and IP spoofing filters. B: no SECURITY_GROUPS
(allow all). C: outbound ICMP only (so C -> host TCP shows the INPUT jump).
"""

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.firewall import Firewall
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

A_MAC, A_IP, A_IP6 = "02:00:0a:32:00:0a", "10.50.0.10", "fd50::10"
P_IP = "10.50.0.100"
HOST_IP = "10.50.0.1"


def rule(sg, direction, protocol, **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID=sg, **extra)


A_RULES = [
    rule(100, "INBOUND", "TCP", RANGE="22,8000:8010"),
    rule(100, "INBOUND", "UDP", RANGE="53"),
    rule(100, "INBOUND", "ICMP", ICMP_TYPE="8"),
    rule(100, "INBOUND", "ICMPV6", ICMPV6_TYPE="128"),
    rule(100, "INBOUND", "TCP", IP=P_IP, SIZE="1"),
    rule(100, "INBOUND", "UDP", IP=P_IP, SIZE="1", RANGE="5353"),
    rule(100, "INBOUND", "ICMP", IP=P_IP, SIZE="1", ICMP_TYPE="13"),
    rule(101, "OUTBOUND", "ALL"),
]
C_RULES = [rule(102, "OUTBOUND", "ICMP"), rule(102, "INBOUND", "ALL")]


def vm(vm_id, ip, ip6=None, groups=None, spoofing=False, rules=()):
    nic = bridge_nic(vm_id, 0, "fwbr", "uplink0", VN_MAD="fw", IP=ip,
                     MAC=f"02:00:0a:32:00:{vm_id - 10:02x}")
    if ip6:
        nic["IP6"] = ip6
    if groups:
        nic["SECURITY_GROUPS"] = groups
    if spoofing:
        nic.update(FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    return b64(vm_xml(vm_id, [nic], extra=rules_xml(*rules)))


VMS = {
    "A": (20, vm(20, A_IP, A_IP6, "100,101", True, A_RULES), A_IP, A_IP6),
    "B": (21, vm(21, "10.50.0.11", "fd50::11"), "10.50.0.11", "fd50::11"),
    "C": (22, vm(22, "10.50.0.12", None, "102", rules=C_RULES), "10.50.0.12", None),
}


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
        self.guests["P"] = Guest(host, link="uplink0p", ipv4=f"{P_IP}/24",
                                 ipv6="fd50::100/64")
        for name, (vm_id, xml, ip, ip6) in VMS.items():
            assert_ok(fw.run(host, "fw", "pre", stdin=xml))
            self.guests[name] = Guest(host, f"one-{vm_id}-0", f"02:00:0a:32:00:{vm_id - 10:02x}",
                                      f"{ip}/24", f"{ip6}/64" if ip6 else None, bridge="fwbr")
            assert_ok(fw.run(host, "fw", "post", f"one-{vm_id}", "node1", stdin=xml))
        host.ip("addr", "add", f"{HOST_IP}/24", "dev", "fwbr")
        a, b = self.guests["A"], self.guests["B"]
        self.procs.append(a.start("serve", "--tcp", "22,8005,9000", "--udp", "53,54,5353"))
        self.procs.append(b.start("serve", "--tcp", "9000"))
        self.procs.append(self._start_in_host("serve", "--tcp", "7000"))

    def _start_in_host(self, *args):
        # the host namespace is not a Guest; borrow its start() with our name
        starter = Guest.__new__(Guest)
        starter.name = self.host.name
        return starter.start(*args)

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


def sniffed(site, where, dev, kind, value, send):
    """Frames matching ``kind value`` that reach ``where`` while ``send()`` runs (and
    netprobe's grace after it: a fixed window missed a sender slow to start under TCG)."""
    guest = site.guests[where]
    proc = guest.start("sniff", dev, "20", kind, value, "told")
    try:
        send()
        proc.stdin.write("sent\n")
        proc.stdin.flush()
        return int(proc.stdout.readline())
    finally:
        stop(proc)


def test_allowed_ports_pass_and_others_are_dropped(site):
    b = site.guests["B"]
    assert b.probe("tcp", A_IP, 22) == 0
    assert b.probe("tcp", A_IP, 8005) == 0
    assert b.probe("tcp", A_IP, 9000) == 1
    assert b.probe("udp", A_IP, 53) == 0
    assert b.probe("udp", A_IP, 54) == 1
    assert b.probe("udp", A_IP, 5353) == 1  # net+port rule: only from P


def test_net_rules_open_only_for_their_network(site):
    p = site.guests["P"]
    assert p.probe("tcp", A_IP, 9000) == 0  # every TCP port from P
    assert p.probe("udp", A_IP, 5353) == 0
    assert p.probe("udp", A_IP, 54) == 1


def test_icmp_types(site):
    b, p = site.guests["B"], site.guests["P"]
    assert b.ping(A_IP)  # echo request: allowed from anywhere
    # timestamp request: allowed from P's network only (net + ICMP type rule)
    assert sniffed(site, "A", "one-20-0p", "icmp", 13, lambda: b.probe("icmp4", A_IP, 13)) == 0
    assert sniffed(site, "A", "one-20-0p", "icmp", 13, lambda: p.probe("icmp4", A_IP, 13)) == 1


def test_ipv6_with_neighbour_discovery(site):
    b = site.guests["B"]
    assert b.ping(A_IP6)  # needs NS/NA through A's chains, then ICMPv6 echo
    assert b.probe("tcp", A_IP6, 22) == 0
    assert b.probe("tcp", A_IP6, 9000) == 1


def test_replies_to_the_vms_own_connections_pass(site):
    assert site.guests["A"].probe("tcp", "10.50.0.11", 9000) == 0


def test_spoofed_mac_and_ip_are_dropped_dhcp_passes(site):
    a = site.guests["A"]

    def count(src_mac, src_ip, dst_ip, port):
        return sniffed(site, "P", "uplink0p", "udp", port,
                       lambda: a.probe("udp-frame", "one-20-0p", src_mac, src_ip, dst_ip, port))

    assert count(A_MAC, A_IP, P_IP, 6001) == 1  # clean
    assert count("02:00:0a:32:00:99", A_IP, P_IP, 6002) == 0  # spoofed MAC
    assert count(A_MAC, "10.50.0.99", P_IP, 6003) == 0  # spoofed IP
    assert count(A_MAC, "0.0.0.0", "255.255.255.255", 67) == 1  # DHCP discover
    assert count(A_MAC, "0.0.0.0", "255.255.255.255", 6004) == 0  # not DHCP


def test_vm_to_host_traffic_goes_through_the_input_jump(site):
    b, c = site.guests["B"], site.guests["C"]
    assert b.probe("tcp", HOST_IP, 7000) == 0
    assert c.probe("tcp", HOST_IP, 7000) == 1  # C may only send ICMP
    assert c.ping(HOST_IP)
