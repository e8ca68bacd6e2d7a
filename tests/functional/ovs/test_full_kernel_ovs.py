"""ovswitch on Open vSwitch's *kernel* datapath (openvswitch.ko), in Debian's kernel under QEMU.

The host kernel lacks openvswitch.ko and 8021q: here the bridges vnm creates
use the default (system) datapath, and the VMs' namespaces have real VLAN
devices, so trunks and tagged frames are tested with the kernel switching.
"""

import pytest

from support.assertions import assert_ok
from support.oned_input import b64, vm_xml
from support.ovs import OvsHost

pytestmark = pytest.mark.full_kernel


@pytest.fixture
def host(tmp_path):
    host = OvsHost(tmp_path, kernel=True)
    yield host
    host.delete()


def nic(vm_id, **extra):
    attrs = {"NIC_ID": 0, "BRIDGE": "ovsk0", "VN_MAD": "ovswitch", "PHYDEV": "uplink0",
             "TARGET": f"one-{vm_id}-0", "MAC": f"02:00:0a:1e:00:{vm_id:02x}"}
    attrs.update(extra)
    return attrs


def deploy(host, vm_id, address, **extra):
    """pre, the hypervisor's tap and port, post: a running VM's namespace."""
    attrs = nic(vm_id, **extra)
    stdin = b64(vm_xml(vm_id, [attrs]))
    assert_ok(host.run("ovswitch", "pre", stdin=stdin))
    guest = host.guest("ovsk0", attrs["TARGET"], attrs["MAC"], address)
    assert_ok(host.run("ovswitch", "post", f"one-{vm_id}", "h", stdin=stdin))
    return guest


def vlan_device(guest, vid, address):
    name = f"v{vid}"
    guest.ip("link", "add", "link", guest.dev, "name", name, "type", "vlan", "id", str(vid))
    guest.ip("addr", "add", address, "dev", name)
    guest.ip("link", "set", name, "up")
    return name


def test_kernel_datapath_vlans_trunks_and_spoofing(host):
    a = deploy(host, 1, "10.30.10.1/24", VLAN_ID=10, IP="10.30.10.1",
               FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    b = deploy(host, 2, "10.30.10.2/24", VLAN_ID=10)
    deploy(host, 3, "10.30.20.3/24", VLAN_ID=20)
    t = deploy(host, 4, "10.30.99.4/24", VLAN_TAGGED_ID="10,20")  # a trunk, no VLAN of its own
    assert host.ovs.row("Bridge", "ovsk0", "datapath_type")["datapath_type"] in ("", "system")
    links = host.ns.links()
    assert links["ovsk0"]["kind"] == "openvswitch"
    assert links["uplink0"]["master"] == "ovs-system" and links["one-1-0"]["master"] == "ovs-system"

    # access VLANs: same VLAN talks, different VLANs do not
    assert a.ping("10.30.10.2")
    assert not a.ping("10.30.20.3")
    # the trunk carries both, tagged
    vlan_device(t, 10, "10.30.10.4/24")
    vlan_device(t, 20, "10.30.20.4/24")
    assert t.ping("10.30.10.2") and t.ping("10.30.20.3")

    # B, on VLAN 10 without trunks, cannot send tagged frames into VLAN 20. The
    # reference left trunks empty, which OVS reads as "every VLAN": show that
    # this would have let it through, then that vnm's setting does not
    vlan_device(b, 20, "10.30.20.2/24")
    assert not b.ping("10.30.20.3")
    host.ovs.vsctl("set", "Port", "one-2-0", "trunks=[]")
    b.ip("neigh", "flush", "all")
    assert b.ping_eventually("10.30.20.3")
    stdin = b64(vm_xml(2, [nic(2, VLAN_ID=10)]))
    assert_ok(host.run("ovswitch", "post", "one-2", "h", stdin=stdin))
    b.ip("neigh", "flush", "all")
    assert not b.ping("10.30.20.3")

    # anti-spoofing in the kernel datapath: A with another MAC or IP is cut off
    a.ip("link", "set", a.dev, "address", "02:00:de:ad:be:ef")
    b.ip("neigh", "flush", "all")
    assert not a.ping("10.30.10.2")
    a.ip("link", "set", a.dev, "address", nic(1)["MAC"])
    a.ip("addr", "add", "10.30.10.77/24", "dev", a.dev)
    assert not b.ping("10.30.10.77")
    assert a.ping_eventually("10.30.10.2")

    # clean of every VM: flows, ports, then the bridge (only uplink0 left)
    for vm_id in (1, 2, 3, 4):
        assert_ok(host.run("ovswitch", "clean", "h", stdin=b64(vm_xml(vm_id, [nic(vm_id)]))))
    assert host.ovs.bridges() == set()
    assert host.ns.links()["uplink0"]["master"] is None


def test_kernel_datapath_port_without_vlan_id_carries_untagged_frames_only(host):
    """Issue 23.6: VM 5's network has neither VLAN_ID nor VLAN_TAGGED_ID, on a bridge shared
    with VLAN 10 and 20 networks. Through its own VLAN devices it reaches neither, nor do they
    reach it; untagged it talks to VM 6 (no VLAN_ID either). The reference's empty trunks
    (every VLAN) let both through."""
    x = deploy(host, 5, "10.31.0.5/24")
    deploy(host, 6, "10.31.0.6/24")
    b = deploy(host, 2, "10.30.10.2/24", VLAN_ID=10)
    c = deploy(host, 3, "10.30.20.3/24", VLAN_ID=20)
    assert host.ovs.row("Port", "one-5-0", "vlan_mode", "trunks") == {"vlan_mode": "trunk",
                                                                      "trunks": 0}
    vlan_device(x, 10, "10.30.10.5/24")
    vlan_device(x, 20, "10.30.20.5/24")
    assert x.ping("10.31.0.6")
    assert not x.ping("10.30.10.2") and not x.ping("10.30.20.3")
    assert not b.ping("10.30.10.5") and not c.ping("10.30.20.5")
    host.ovs.vsctl("set", "Port", "one-5-0", "trunks=[]")
    for guest in (x, b, c):
        guest.ip("neigh", "flush", "all")
    assert x.ping_eventually("10.30.10.2") and x.ping_eventually("10.30.20.3")
    assert b.ping_eventually("10.30.10.5") and c.ping_eventually("10.30.20.5")
