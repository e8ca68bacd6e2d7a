"""Real libvirt guests through the lifecycle as oned drives it, per driver.

Two hypervisors (namespaces with a private libvirtd each, tests/support/libvirt_site.py)
and a peer on each network's LAN. libvirt, not the test, makes the taps from
domains written as OpenNebula's KVM driver writes them, and enslaves them (a
bridge, or an Open vSwitch port for ``<virtualport type='openvswitch'/>``).
Guest-to-guest and guest-to-uplink traffic is checked after every step:

  pre → define + start → post (VM A on h1, VM B on h2);
  hot-plug: pre (NIC 1 ATTACH=YES) → attach-device → post; detach-device → clean;
  live migration of A: pre on h2 → migrate (a ping from the LAN runs through it)
  → clean on h1 → post on h2; shutdown: destroy → clean.

After the last clean on a host, its links (and for fw its chains, for ovswitch
its Open vSwitch bridges) are as before the first pre.

802.1Q is not here: this machine's kernel has no 8021q, and the taps live in
its namespaces (README, Tests). Open vSwitch uses its userspace datapath for
the same reason (no openvswitch.ko).
"""

import os
import re
import signal
import subprocess
import time

import pytest

from support.assertions import assert_ok
from support.commands import sh
from support.libvirt_site import Console, Site, domain_xml, interface_xml
from support.oned_input import b64, rules_xml, vm_xml

UPLINKS = {"bridge": "eth-br", "fw": "eth-fw", "ovswitch": "eth-ovs"}
SG_RULES = [dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=120, RANGE="80"),
            dict(PROTOCOL="ICMP", RULE_TYPE="INBOUND", SECURITY_GROUP_ID=120, ICMP_TYPE="8"),
            dict(PROTOCOL="ALL", RULE_TYPE="OUTBOUND", SECURITY_GROUP_ID=120)]
# per driver: the network's second octet, its NIC attributes (BRIDGE, PHYDEV, …)
NETWORKS = {
    "bridge": (61, dict(BRIDGE="br61", PHYDEV="eth-br")),
    "fw": (62, dict(BRIDGE="br62", PHYDEV="eth-fw", SECURITY_GROUPS="120")),
    "vxlan": (63, dict(BRIDGE="br63", PHYDEV="ul0", VLAN_ID=63, MTU=1450)),
    "ovswitch": (64, dict(BRIDGE="ovsbr64", PHYDEV="eth-ovs")),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = Site(tmp_path_factory.mktemp("libvirt"), f"lv{os.getpid() % 100000}",
                 list(UPLINKS.values()))
    yield built
    built.delete()


class Vm:
    """One OpenNebula VM: its NICs as oned sends them, its domain, its console."""

    def __init__(self, site, net, vm_id, index, driver):
        self.site, self.net, self.id, self.driver = site, net, vm_id, driver
        self.name = f"one-{vm_id}"
        self.attrs = NETWORKS[driver][1]
        self.ip = f"10.{net}.0.{index}"
        self.nics = [self.nic(0, self.ip)]
        self.console, self.host = None, None

    def nic(self, nic_id, ip, **extra):
        return dict(NIC_ID=nic_id, VN_MAD=self.driver, NETWORK_ID=self.net, IP=ip,
                    TARGET=f"{self.name}-{nic_id}", MAC=f"02:00:0a:{self.net:02x}:{nic_id:02x}:"
                    f"{self.id % 256:02x}", **self.attrs, **extra)

    def stdin(self):
        rules = rules_xml(*SG_RULES) if self.driver == "fw" else ""
        return b64(vm_xml(self.id, self.nics, extra=rules))

    def action(self, host, action):
        args = {"pre": (), "clean": (host.name,)}.get(action, (self.name, host.name))
        assert_ok(self.site.run(host, self.driver, action, *args, stdin=self.stdin()))

    def interface(self, nic):
        return interface_xml(nic["BRIDGE"], nic["TARGET"], nic["MAC"],
                             ovs=self.driver == "ovswitch")

    def socket(self, host):
        return os.path.join(self.site.workdir, f"{self.name}-{host.name}.sock")

    def xml(self, host):
        return domain_xml(self.name, self.site.kernel, self.site.initrd, f"{self.ip}/24",
                          self.socket(host), [self.interface(nic) for nic in self.nics])

    def write(self, name, text):
        path = os.path.join(self.site.workdir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def deploy(self, host):
        """oned's deploy: pre, define + start (libvirt makes the tap), post."""
        self.action(host, "pre")
        host.virsh("define", self.write(f"{self.name}.xml", self.xml(host)))
        host.virsh("start", self.name)
        self.action(host, "post")
        self.host = host
        self.console = Console(self.socket(host))
        if self.driver == "fw":  # one allowed and one filtered service (SG_RULES)
            assert self.console.run("httpd -p 80 -h /tmp && httpd -p 8080 -h /tmp")[0] == 0


def up_connects(site, address, port):
    done = subprocess.run(["ip", "netns", "exec", site.up, "timeout", "3", "bash", "-c",
                           f"exec 3<>/dev/tcp/{address}/{port}"], capture_output=True, check=False)
    return done.returncode == 0


def check_traffic(site, vms, uplink_ip):
    a, b = vms
    assert a.console.ping(b.ip), f"{a.name} -> {b.name}"
    assert b.console.ping(a.ip), f"{b.name} -> {a.name}"
    for vm in vms:
        assert vm.console.ping(uplink_ip), f"{vm.name} -> uplink"
    if a.driver == "fw":  # the security group really filters: port 80 open, 8080 not
        assert up_connects(site, a.ip, 80) and not up_connects(site, a.ip, 8080)


def host_state(host, vm_ids):
    """What a clean host must get back to: links, its VMs' chains, its OVS bridges."""
    chains = [line for line in sh("ip", "netns", "exec", host.name, "iptables-save").splitlines()
              if any(f"one-{vm_id}-" in line for vm_id in vm_ids)]
    return set(host.links()), chains, host.ovs.bridges()


def wait_for(condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def setup_uplink_peer(site, driver, net):
    """The LAN's peer in ``up``: 10.<net>.0.254 and .1.254 (the hot-plugged NIC's subnet)."""
    if driver == "vxlan":  # a VTEP on the underlay, as the device pre made on h1
        data = site.host(1).links()["ul0.63"]["linkinfo"]["info_data"]
        sh("ip", "-n", site.up, "link", "add", "vx63", "type", "vxlan", "id", "63", "group",
           data["group"], "dev", "ul0", "dstport", str(data["port"]))
        sh("ip", "-n", site.up, "link", "set", "vx63", "mtu", "1450", "up")
        device = "vx63"
    else:
        device = UPLINKS[driver]
    for subnet in (0, 1):
        sh("ip", "-n", site.up, "addr", "add", f"10.{net}.{subnet}.254/24", "dev", device)
    return f"10.{net}.0.254"


def ping_through(site, address):
    """A ping from the LAN, every 0.1 s, until stopped (SIGINT: it prints its summary)."""
    return subprocess.Popen(["ip", "netns", "exec", site.up, "ping", "-i", "0.1", "-W", "1",
                             address], stdout=subprocess.PIPE, text=True)


def stop_ping(proc):
    proc.send_signal(signal.SIGINT)  # ip netns exec ran ping in its own process
    out = proc.communicate(timeout=10)[0]
    sent, received = map(int, re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())
    return sent, received


@pytest.mark.parametrize("driver", ["bridge", "fw", "vxlan", "ovswitch"])
def test_guests_through_the_lifecycle(site, driver, record_property):
    net, _ = NETWORKS[driver]
    h1, h2 = site.host(1), site.host(2)
    a, b = Vm(site, net, net * 10 + 1, 11, driver), Vm(site, net, net * 10 + 2, 12, driver)
    ids = (a.id, b.id)
    before = {host.name: host_state(host, ids) for host in (h1, h2)}
    try:
        started = time.monotonic()
        a.deploy(h1)
        b.deploy(h2)
        uplink = setup_uplink_peer(site, driver, net)
        check_traffic(site, (a, b), uplink)
        record_property("deploy_s", round(time.monotonic() - started, 1))

        # hot-plug NIC 1 (same network, its own subnet), then unplug it
        nic = a.nic(1, f"10.{net}.1.11", ATTACH="YES")
        a.nics.append(nic)
        a.action(h1, "pre")
        iface = a.write(f"{a.name}-nic1.xml", a.interface(nic))
        h1.virsh("attach-device", a.name, iface, "--live")
        a.action(h1, "post")
        if driver == "ovswitch":  # libvirt made the port (userspace datapath: no master)
            assert nic["TARGET"] in h1.ovs.ports(nic["BRIDGE"])
        else:
            assert h1.links()[nic["TARGET"]]["master"] == nic["BRIDGE"]
        status, out = a.console.run("while [ ! -e /sys/class/net/eth1 ]; do sleep 0.2; done; "
                                    f"ip addr add {nic['IP']}/24 dev eth1 && ip link set eth1 up")
        assert status == 0, out
        assert a.console.ping(f"10.{net}.1.254"), "hot-plugged NIC -> uplink"
        check_traffic(site, (a, b), uplink)
        h1.virsh("detach-device", a.name, iface, "--live")
        wait_for(lambda: f"one-{a.id}-1" not in h1.links(), "the tap of the detached NIC")
        a.action(h1, "clean")
        a.nics.pop()
        chains = sh("ip", "netns", "exec", h1.name, "iptables-save")
        assert f"one-{a.id}-1-" not in chains
        if driver == "fw":
            assert f"one-{a.id}-0-i" in chains
        check_traffic(site, (a, b), uplink)

        # live migration of A to h2, a ping from the LAN running through it
        a.action(h2, "pre")
        dest = a.write(f"{a.name}-dest.xml", h1.virsh("dumpxml", "--migratable", a.name).stdout
                       .replace(a.socket(h1), a.socket(h2)))
        a.console.close()
        ping = ping_through(site, a.ip)
        time.sleep(1)
        migrate_started = time.monotonic()
        h1.virsh("migrate", "--live", "--persistent", "--undefinesource", "--xml", dest,
                 a.name, h2.uri, "--migrateuri", f"tcp://{h2.address}")
        record_property("migrate_s", round(time.monotonic() - migrate_started, 1))
        a.action(h1, "clean")
        a.action(h2, "post")
        a.host = h2
        time.sleep(1)
        sent, received = stop_ping(ping)
        record_property("migration_ping_lost", f"{sent - received} of {sent} (every 0.1 s)")
        assert received > 0 and sent - received <= 50, (sent, received)
        assert host_state(h1, ids) == before[h1.name]
        a.console = Console(a.socket(h2))
        check_traffic(site, (a, b), uplink)

        # shutdown (destroy: the guests have no ACPI handling), then clean
        for vm in (a, b):
            vm.console.close()
            h2.virsh("destroy", vm.name)
            h2.virsh("undefine", vm.name)
            vm.action(h2, "clean")
        assert host_state(h2, ids) == before[h2.name]
    finally:
        for vm in (a, b):
            if vm.console:
                vm.console.close()
        for host in (h1, h2):
            for vm in (a, b):
                host.virsh("destroy", vm.name, check=False)
                host.virsh("undefine", vm.name, check=False)
        sh("ip", "-n", site.up, "link", "del", "vx63", check=False)
        for device in UPLINKS.values():
            sh("ip", "-n", site.up, "addr", "flush", "dev", device, check=False)
