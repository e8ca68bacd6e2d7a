"""elastic and nodeport with ``:firewall_backend: nft``, in Debian's kernel (tools/qemu/run.sh:
``ct state`` in the bridge family needs nf_conntrack_bridge, which this host's kernel refuses).

One host namespace for the module (test_elastic's and test_nodeport's topology, one bridge
per driver):

    outside O (198.51.100.2) ── uplink0 (198.51.100.1, + EXTERNAL_IPs /32) ─┐ host H
    elastic VM 10 (10.9.0.10, gw 10.9.0.1) ── one-10-0 ── br-el ────────────┤ (forwarding)
    nodeport VMs (10.9.1.x, gw 10.9.1.1) ── one-2x-0 ── br-np ──────────────┘

The routed security groups go into ``table bridge vnm`` (by tap), the nat chains into
``table ip vnm_nat`` with iptables' names; real packets go through both.
"""

import glob
import json
import os
import select
import time

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import sh, stop
from support.fault_injection import conf_tree, vnm
from support.namespaces import Guest, Namespace
from support.oned_input import b64, vm_xml

from test_elastic import NAT, RULES, settings

pytestmark = pytest.mark.full_kernel

OUTSIDE_IP, HOST_IP = "198.51.100.2", "198.51.100.1"
EXTERNAL_IP = "198.51.100.10"
OTHER_NAT = ("-s", "192.0.2.0/24", "-j", "MASQUERADE")
OTHER_TABLE = ("table ip other {\n chain c {\n  type nat hook postrouting priority 50;\n"
               "  ip saddr 192.0.2.0/24 masquerade\n }\n}\n")


def elastic_nic(vm_id, ip):
    return {"NIC_ID": 0, "BRIDGE": "br-el", "VN_MAD": "elastic", "IP": ip,
            "EXTERNAL_IP": EXTERNAL_IP, "GATEWAY": "10.9.0.1", "TARGET": f"one-{vm_id}-0",
            "MAC": f"02:00:0a:09:{vm_id:02x}:00", "SECURITY_GROUPS": "100",
            "FILTER_IP_SPOOFING": "YES"}


def nodeport_nic(vm_id, ip, first):
    return {"NIC_ID": 0, "BRIDGE": "br-np", "VN_MAD": "nodeport", "IP": ip,
            "GATEWAY": "10.9.1.1", "TARGET": f"one-{vm_id}-0",
            "MAC": f"02:00:0a:09:{vm_id:02x}:00", "SECURITY_GROUPS": "100",
            "EXTERNAL_PORT_RANGE": f"{first}:{first + 99}",
            "INTERNAL_PORT_RANGE": f"1-100/{first}"}


def vm(vm_id, nic):
    return b64(vm_xml(vm_id, [nic], extra=RULES))


class Site:
    def __init__(self, tmp):
        run_dir = tmp / "run"
        run_dir.mkdir()
        self.tree = conf_tree(tmp, firewall_backend="nft")
        settings(self.tree, NAT)
        self.host = Namespace(str(run_dir))
        self.guests = []
        try:
            host = self.host
            host.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")
            host.ip("addr", "add", f"{HOST_IP}/24", "dev", "uplink0")
            self.outside = self.guest(link="uplink0p", ipv4=f"{OUTSIDE_IP}/24")
            # proxy ARP answers for a GATEWAY routed through another device
            host.ip("route", "add", "default", "via", OUTSIDE_IP)
            # another program's nat rule (iptables-nft) and nft table: vnm leaves them alone
            host.exec("iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *OTHER_NAT)
            host.exec("nft", "-f", "-", input=OTHER_TABLE.encode())
        except BaseException:
            self.delete()
            raise

    def guest(self, *args, **kwargs):
        made = Guest(self.host, *args, **kwargs)
        self.guests.append(made)
        return made

    def run(self, driver, action, *args, stdin):
        return self.host.run(driver, action, *args, stdin=stdin, tree=self.tree)

    def boot(self, driver, vm_id, ip, gateway, stdin, post_args, post="post"):
        """pre, the hypervisor's tap, the VM's address and gateway, then post."""
        assert_ok(self.run(driver, "pre", stdin=stdin))
        bridge = "br-el" if driver == "elastic" else "br-np"
        guest = self.guest(f"one-{vm_id}-0", f"02:00:0a:09:{vm_id:02x}:00", f"{ip}/24",
                           bridge=bridge)
        guest.ip("route", "add", "default", "via", gateway)
        assert_ok(self.run(driver, post, *post_args, stdin=stdin))
        return guest

    def _list(self, family, table):
        return self.host.exec("nft", "list", "table", family, table, check=False)  # "": none

    def ours(self, base):
        """What vnm's two tables hold of ``base``: its chains and sets with their
        contents, and the map elements leading to them."""
        found, inside = [], False
        for table in (("bridge", "vnm"), ("ip", "vnm_nat")):
            for line in (raw.strip() for raw in self._list(*table).splitlines()):
                if line.startswith(("chain ", "set ")):
                    inside = line.split()[1].startswith(f"{base}-")
                elif line == "}":
                    inside = False
                if inside or f"{base}-" in line:
                    found.append(line)
        return found

    def iptables_trace(self):
        """vnm must write nothing through iptables with this backend."""
        return [line for tool in ("iptables", "ip6tables") for table in ("filter", "nat")
                for line in self.host.exec(tool, "-w", "-t", table, "-S").splitlines()
                if "one-" in line or "opennebula" in line]

    def delete(self):
        for guest in self.guests:
            guest.delete()
        self.host.delete()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = Site(tmp_path_factory.mktemp("nft-routed"))
    yield built
    built.delete()


def connected_from(site, vm_ns):
    """The source address the outside sees on a TCP connection the VM opens (a few
    tries: under TCG on a loaded machine one connect can outlast its timeout)."""
    seen = site.outside.start("seen-from", 9000, 20)
    try:
        for _ in range(3):
            vm_ns.probe("tcp", OUTSIDE_IP, 9000)  # seen-from closes at once: never 0
            if select.select([seen.stdout], [], [], 2)[0]:
                break
        return seen.stdout.readline().strip()
    finally:
        stop(seen)


def _arrived(site, at_least):
    """UDP datagrams to port 4444 the outside's counter saw, once ``at_least`` have (a
    counter, not a capture window: TCG timing does not matter)."""
    deadline = time.monotonic() + 15
    while True:
        listed = json.loads(sh("ip", "netns", "exec", site.outside.name, "nft", "-j", "list",
                               "chain", "inet", "count", "c"))
        [seen] = [e["counter"]["packets"] for i in listed["nftables"] if "rule" in i
                  for e in i["rule"]["expr"] if "counter" in e]
        if seen >= at_least or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def spoof_check(site, vm_ns, bridge, mac, ip):
    """An honest frame, a spoofed one, an honest one: does the outside count only two?"""
    sh("ip", "netns", "exec", site.outside.name, "nft", "-f", "-", input=(
        b"table inet count {\n chain c {\n  type filter hook input priority 0;\n"
        b"  udp dport 4444 counter\n }\n}\n"))
    router = json.loads(site.host.ip("-j", "link", "show", bridge))[0]["address"]
    for source, total in ((ip, 1), ("10.9.9.99", None), (ip, 2)):
        vm_ns.probe("udp-frame", vm_ns.dev, mac, source, OUTSIDE_IP, 4444, router)
        if total:
            assert _arrived(site, total) >= total
    # the spoofed frame, sent before the second honest one, would have arrived first
    return _arrived(site, 2)


def test_elastic_lifecycle_with_nft(site):
    stdin = vm(10, elastic_nic(10, "10.9.0.10"))
    # the host's side directly (the front-end's post only adds the provider's assign)
    vm_ns = site.boot("elastic", 10, "10.9.0.10", "10.9.0.1", stdin, ("one-10", "node1"),
                      post="remote_post")
    lines = site.ours("one-10-0")
    assert "chain one-10-0-i {" in lines and "chain one-10-0-o {" in lines
    assert f"ip daddr {EXTERNAL_IP} dnat to 10.9.0.10" in lines
    assert site.iptables_trace() == []

    server = vm_ns.start("serve", "--tcp", "22,80")
    try:
        assert site.outside.ping(EXTERNAL_IP)  # dnat, routed, ICMP echo allowed
        assert site.outside.probe("tcp", EXTERNAL_IP, 22) == 0
        assert site.outside.probe("tcp", EXTERNAL_IP, 80) == 1  # routed SG: dropped
    finally:
        stop(server)
    assert connected_from(site, vm_ns) == EXTERNAL_IP  # snat
    assert spoof_check(site, vm_ns, "br-el", "02:00:0a:09:0a:00", "10.9.0.10") == 2

    assert_ok(site.run("elastic", "remote_clean", "node1", stdin=stdin))
    assert site.ours("one-10-0") == [] and site.iptables_trace() == []


def test_nodeport_lifecycle_with_nft_and_gc_of_a_dead_vm(site):
    stdin = vm(20, nodeport_nic(20, "10.9.1.20", 9001))
    vm_ns = site.boot("nodeport", 20, "10.9.1.20", "10.9.1.1", stdin, ("one-20",))
    assert "chain one-20-0-dnat {" in site.ours("one-20-0")
    server = vm_ns.start("serve", "--tcp", "22,80")
    try:
        # host port 9022 -> VM's 22; a few tries: the first SYN waits for the host to
        # resolve the VM's address, longer under TCG than the probe's 0.5 s connect
        assert any(site.outside.probe("tcp", HOST_IP, 9022) == 0 for _ in range(4))
        assert site.outside.probe("tcp", HOST_IP, 9080) == 1  # -> 80: routed SG drops it
    finally:
        stop(server)
    assert connected_from(site, vm_ns) == HOST_IP  # masqueraded

    # another VM (its tap on the same bridge) asking for a forwarded port: one line,
    # nothing of it left; the check read VM 20's ports back from vnm's nat table
    intruder = vm(21, nodeport_nic(21, "10.9.1.21", 9050))
    site.host.add_tap("one-21-0", "br-np")
    assert_one_error(site.run("nodeport", "post", "one-21", stdin=intruder),
                     "NIC 0", "EXTERNAL_PORT_RANGE 9050:9149", "VM 20 NIC 0")
    assert site.ours("one-21-0") == []
    site.host.ip("link", "del", "one-21-0")

    # VM 20 dies without clean: status sees its nat chains, gc removes them and its groups
    site.host.ip("link", "del", "one-20-0")
    for record in glob.glob(os.path.join(site.host.run_dir, "users", "*", "*", "20-0")):
        os.utime(record, (0, 0))  # recorded long ago: past gc_record_grace
    status = vnm(site.host, "status", "--json", "--tree", site.tree)
    [nic] = [n for n in json.loads(status.stdout) if (n["vm"], n["nic"]) == (20, 0)]
    assert nic["nat"] == {"one-20-0-dnat": 1, "one-20-0-snat": 1}
    done = vnm(site.host, "gc", "--tree", site.tree, "--live", "", "--json", "--apply")
    assert done.returncode == 0, done.stderr
    assert {"vm": 20, "nic": 0, "remove": "nat", "what": "one-20-0"} in json.loads(done.stdout)
    assert site.ours("one-20-0") == [] and site.iptables_trace() == []
    # the other program's rule and table are still there
    assert "-A POSTROUTING " + " ".join(OTHER_NAT) in site.host.exec(
        "iptables", "-w", "-t", "nat", "-S")
    assert "ip saddr 192.0.2.0/24 masquerade" in site.host.exec("nft", "list", "table", "ip",
                                                                 "other")
