"""nodeport: a range of the host's TCP ports forwarded to a VM, with real traffic.

Topology (all namespaces made and removed here):

    outside O (198.51.100.2) ── uplink0 (198.51.100.1) ─────────┐ host H
    VM 10 (10.9.0.10, gw 10.9.0.1) ── one-10-0 ── br-np ─────────┘ (forwarding)

oned writes, for PORT_START=9000 and PORT_SIZE=100 on the VM's first lease,
EXTERNAL_PORT_RANGE="9001:9100" and INTERNAL_PORT_RANGE="1-100/9001": host
port 9022 is the VM's port 22.
"""

import json
import os

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import stop
from support.firewall import ipsets
from support.namespaces import Guest
from support.oned_input import b64, rules_xml, vm_xml
from support.paths import REPO
from support.remotes import copy_tree

BRIDGE = "br-np"
OUTSIDE_IP, HOST_IP = "198.51.100.2", "198.51.100.1"
VM_IP, GATEWAY = "10.9.0.10", "10.9.0.1"

# inbound: TCP 22 and ICMP echo only; outbound: anything
RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=100),
                  dict(PROTOCOL="ICMP", RULE_TYPE="INBOUND", ICMP_TYPE="8",
                       SECURITY_GROUP_ID=100),
                  dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=100))


def nic(vm_id=10, nic_id=0, ip=VM_IP, first=9001, size=100, **extra):
    attrs = {"NIC_ID": nic_id, "BRIDGE": BRIDGE, "VN_MAD": "nodeport", "IP": ip,
             "GATEWAY": GATEWAY, "TARGET": f"one-{vm_id}-{nic_id}",
             "MAC": f"02:00:0a:09:{vm_id:02x}:{nic_id:02x}", "SECURITY_GROUPS": "100",
             "EXTERNAL_PORT_RANGE": f"{first}:{first + size - 1}",
             "INTERNAL_PORT_RANGE": f"1-{size}/{first}"}
    attrs.update(extra)
    return attrs


def vm(*nics, vm_id=10):
    return b64(vm_xml(vm_id, list(nics), extra=RULES))


def run(ns, action, *args, stdin):
    return ns.run("nodeport", action, *args, stdin=stdin)


def routes(ns):
    return {r["dst"]: r["dev"] for r in json.loads(ns.ip("-j", "route", "show"))
            if r["dst"] != "default" and "/" not in r["dst"] and r.get("protocol") != "kernel"}


def proxies(ns):
    return {(n["dst"], n["dev"]) for n in json.loads(ns.ip("-j", "neigh", "show", "proxy"))}


def nat_rules(ns):
    return [line for line in ns.exec("iptables", "-w", "-t", "nat", "-S").splitlines()
            if "one-" in line]


def filter_rules(ns):
    return [line for line in ns.exec("iptables", "-w", "-S").splitlines() if "one-" in line]


def host_trace(ns):
    """Everything of ours on the host, for "unchanged" / "all gone" comparisons."""
    return routes(ns), proxies(ns), nat_rules(ns), filter_rules(ns), sorted(ipsets(ns))


NOTHING = ({}, set(), [], [], [])


@pytest.fixture
def site(ns):
    """Host H with forwarding (inside its namespace only), the outside O behind uplink0."""
    ns.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
    ns.ip("addr", "add", f"{HOST_IP}/24", "dev", "uplink0")
    outside = Guest(ns, link="uplink0p", ipv4=f"{OUTSIDE_IP}/24")
    # the kernel answers a proxy-ARP request only when the target (GATEWAY)
    # routes through another device: the host's default route is its uplink
    ns.ip("route", "add", "default", "via", OUTSIDE_IP)
    guests = [outside]
    yield ns, outside, guests
    for guest in guests:
        guest.delete()


def boot(ns, guests, stdin, vm_id=10, ip=VM_IP):
    """pre, the hypervisor's tap, the VM's address and gateway, then post."""
    assert_ok(run(ns, "pre", stdin=stdin))
    guest = Guest(ns, f"one-{vm_id}-0", f"02:00:0a:09:{vm_id:02x}:00", f"{ip}/24", bridge=BRIDGE)
    guests.append(guest)
    guest.ip("route", "add", "default", "via", GATEWAY)
    assert_ok(run(ns, "post", f"one-{vm_id}", stdin=stdin))
    return guest


def test_host_ports_reach_the_vm_and_its_connections_leave_masqueraded(site):
    ns, outside, guests = site
    stdin = vm(nic())
    vm_ns = boot(ns, guests, stdin)
    assert routes(ns) == {VM_IP: BRIDGE} and proxies(ns) == {(GATEWAY, BRIDGE)}
    assert nat_rules(ns) == [
        "-N one-10-0-dnat", "-N one-10-0-snat",
        "-A PREROUTING -j one-10-0-dnat", "-A OUTPUT -j one-10-0-dnat",
        "-A POSTROUTING -j one-10-0-snat",
        "-A one-10-0-dnat -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 9001:9100 "
        f"-j DNAT --to-destination {VM_IP}:1-100/9001",
        f"-A one-10-0-snat -s {VM_IP}/32 -j MASQUERADE"]

    server = vm_ns.start("serve", "--tcp", "22,80", "--udp", "22")
    try:
        assert vm_ns.ping(OUTSIDE_IP)  # (and both sides' ARP resolved)
        assert outside.probe("tcp", HOST_IP, 9022) == 0  # host 9022 -> VM 22
        assert outside.probe("tcp", HOST_IP, 9080) == 1  # VM 80: its security group drops
        assert outside.probe("tcp", HOST_IP, 9200) == 1  # outside the range: not forwarded
        assert outside.probe("udp", HOST_IP, 9022) == 1  # TCP only, as the reference
    finally:
        stop(server)

    # the VM's own connections leave with the host's address
    seen = outside.start("seen-from", 9000, 5)
    vm_ns.probe("tcp", OUTSIDE_IP, 9000)
    assert seen.stdout.readline().strip() == HOST_IP
    seen.wait()

    # post again: the same state; clean: every trace gone, the bridge too; clean again: fine
    before = host_trace(ns)
    assert_ok(run(ns, "post", "one-10", stdin=stdin))
    assert host_trace(ns) == before
    ns.ip("link", "del", "one-10-0")  # the VM is gone before clean
    guests.remove(vm_ns)
    vm_ns.delete()
    assert_ok(run(ns, "clean", stdin=stdin))
    assert host_trace(ns) == NOTHING
    assert BRIDGE not in ns.links()
    assert outside.probe("tcp", HOST_IP, 9022) == 1
    assert_ok(run(ns, "clean", stdin=stdin))


def test_two_vms_share_the_gateway_proxy_until_the_last_leaves(site):
    ns, outside, guests = site
    first = vm(nic())
    second = vm(nic(vm_id=11, ip="10.9.0.20", first=9101), vm_id=11)
    boot(ns, guests, first)
    other = boot(ns, guests, second, vm_id=11, ip="10.9.0.20")
    server = other.start("serve", "--tcp", "22")
    try:
        assert other.ping(OUTSIDE_IP)
        assert outside.probe("tcp", HOST_IP, 9122) == 0
        assert_ok(run(ns, "clean", stdin=first))
        assert (GATEWAY, BRIDGE) in proxies(ns)  # VM 11 still needs it
        assert routes(ns) == {"10.9.0.20": BRIDGE}
        assert not [line for line in nat_rules(ns) if "one-10-0" in line]
        other.ip("neigh", "flush", "all")
        assert other.ping(OUTSIDE_IP)
        assert outside.probe("tcp", HOST_IP, 9122) == 0
    finally:
        stop(server)
    assert_ok(run(ns, "clean", stdin=second))
    assert proxies(ns) == set() and routes(ns) == {} and nat_rules(ns) == []


def test_overlapping_host_ports_are_refused(site):
    ns, outside, guests = site
    boot(ns, guests, vm(nic()))
    intruder = vm(nic(vm_id=11, ip="10.9.0.20", first=9050, size=100), vm_id=11)
    assert_ok(run(ns, "pre", stdin=intruder))
    before = host_trace(ns)
    done = run(ns, "post", "one-11", stdin=intruder)
    assert_one_error(done, "NIC 0", "EXTERNAL_PORT_RANGE 9050:9149", "9001:9100", "VM 10 NIC 0")
    assert host_trace(ns) == before
    # two NICs of one VM may not share host ports either
    twins = vm(nic(vm_id=12, ip="10.9.0.30", first=9201),
               nic(vm_id=12, nic_id=1, ip="10.9.0.31", first=9250), vm_id=12)
    assert_one_error(run(ns, "post", "one-12", stdin=twins), "NIC 1", "VM 12 NIC 0")
    assert host_trace(ns) == before


@pytest.mark.parametrize("change, needles", [
    ({"EXTERNAL_PORT_RANGE": ""}, ("NIC 0", "EXTERNAL_PORT_RANGE is missing")),
    ({"INTERNAL_PORT_RANGE": ""}, ("NIC 0", "INTERNAL_PORT_RANGE is missing")),
    ({"EXTERNAL_PORT_RANGE": "9001:x"}, ("NIC 0", "EXTERNAL_PORT_RANGE", "not a port range")),
    ({"EXTERNAL_PORT_RANGE": "0:99"}, ("NIC 0", "EXTERNAL_PORT_RANGE", "not 1..65535")),
    ({"EXTERNAL_PORT_RANGE": "65500:65600"}, ("NIC 0", "EXTERNAL_PORT_RANGE", "65600")),
    ({"EXTERNAL_PORT_RANGE": "9100:9001"}, ("NIC 0", "EXTERNAL_PORT_RANGE", "ends before")),
    ({"INTERNAL_PORT_RANGE": "1-50/9001"}, ("NIC 0", "INTERNAL_PORT_RANGE", "50 ports")),
    ({"INTERNAL_PORT_RANGE": "1-100/9000"}, ("NIC 0", "INTERNAL_PORT_RANGE", "base 9000")),
    ({"GATEWAY": ""}, ("NIC 0", "GATEWAY is missing")),
    ({"GATEWAY": "10.9.0.300"}, ("NIC 0", "GATEWAY", "not an IP")),
    ({"IP": "fd00::1"}, ("NIC 0", "IP", "not an IPv4 address")),
])
def test_bad_attributes_one_line_nothing_changed(site, change, needles):
    ns, outside, guests = site
    stdin = vm(nic(**change))
    pre = run(ns, "pre", stdin=stdin)
    if pre.returncode:  # addresses every driver reads are refused by pre already
        assert_one_error(pre, *needles)
    before = host_trace(ns)
    assert_one_error(run(ns, "post", "one-10", stdin=stdin), *needles)
    assert host_trace(ns) == before


def test_hand_written_single_port(site):
    ns, outside, guests = site
    vm_ns = boot(ns, guests, vm(nic(EXTERNAL_PORT_RANGE="2222", INTERNAL_PORT_RANGE="22")))
    server = vm_ns.start("serve", "--tcp", "22")
    try:
        assert vm_ns.ping(OUTSIDE_IP)
        assert outside.probe("tcp", HOST_IP, 2222) == 0
        assert outside.probe("tcp", HOST_IP, 2223) == 1
    finally:
        stop(server)


def test_hot_plug_touches_only_the_attached_nic(site):
    ns, outside, guests = site
    base = nic()
    boot(ns, guests, vm(base))
    before = nat_rules(ns)
    plugged = vm(base, nic(nic_id=1, ip="10.9.0.11", first=9301, ATTACH="YES"))
    assert_ok(run(ns, "pre", stdin=plugged))
    assert_ok(run(ns, "post", "one-10", stdin=plugged))
    assert routes(ns) == {VM_IP: BRIDGE, "10.9.0.11": BRIDGE}
    assert any("--dport 9301:9400" in line for line in nat_rules(ns))
    assert [line for line in nat_rules(ns) if "one-10-0" in line] == before  # NIC 0 untouched
    assert_ok(run(ns, "clean", stdin=plugged))
    assert routes(ns) == {VM_IP: BRIDGE}
    assert nat_rules(ns) == before
    assert (GATEWAY, BRIDGE) in proxies(ns)
    assert "one-10-0-i" in "\n".join(filter_rules(ns))
    assert "one-10-1" not in "\n".join(filter_rules(ns))


def test_iptc_backend_forwards_too(site, tmp_path):
    """With ``:firewall_backend: iptc`` the nat chains go through libiptc, like the
    security groups: both land in the legacy tables."""
    ns, outside, guests = site
    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"),
              encoding="utf-8") as handle:
        conf = handle.read().replace(":firewall_backend: restore", ":firewall_backend: iptc")
    tree = copy_tree(tmp_path / "iptc-remotes", conf)
    stdin = vm(nic())
    assert_ok(ns.run("nodeport", "pre", stdin=stdin, tree=tree))
    vm_ns = Guest(ns, "one-10-0", "02:00:0a:09:0a:00", f"{VM_IP}/24", bridge=BRIDGE)
    guests.append(vm_ns)
    vm_ns.ip("route", "add", "default", "via", GATEWAY)
    assert_ok(ns.run("nodeport", "post", "one-10", stdin=stdin, tree=tree))

    def ours(tool):
        return [line for line in ns.exec(tool, "-w", "-t", "nat", "-S").splitlines()
                if "one-10-0" in line]

    assert "-A one-10-0-dnat -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 9001:9100 " \
        f"-j DNAT --to-destination {VM_IP}:1-100/9001" in ours("iptables-legacy")
    assert ours("iptables-nft") == []
    server = vm_ns.start("serve", "--tcp", "22")
    try:
        assert vm_ns.ping(OUTSIDE_IP)
        assert outside.probe("tcp", HOST_IP, 9022) == 0
    finally:
        stop(server)
    assert_ok(ns.run("nodeport", "clean", stdin=stdin, tree=tree))
    assert ours("iptables-legacy") == []
