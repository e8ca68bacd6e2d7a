"""TARGET names a NIC's tap, and the VM's owner may write it (issue 23.4): the Linux-bridge
drivers never configure a port that is provably another VM's tap or the bridge's uplink.

(The Open vSwitch drivers' part, with vnm's port marks, is in test_ovswitch.py.) State is
read with ``bridge -j vlan``, ``ip -j link`` and ``iptables-save``, never with vnmlib.
"""

import pytest

from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64, bridge_nic, vm_xml


def vm(vm_id, *nics, extra=""):
    return b64(vm_xml(vm_id, nics, extra=extra))


def warnings(done):
    return [line for line in done.stderr.decode().splitlines() if line.startswith("WARN:")]


def host_state(ns):
    rules = "".join(ns.exec(tool, check=False) for tool in ("iptables-save", "ip6tables-save"))
    rules = "\n".join(line for line in rules.splitlines() if not line.startswith("#"))
    return (ns.bridge_vlans(), {name: link["master"] for name, link in ns.links().items()}, rules)


def deploy(ns, driver, nic, vm_id):
    assert_ok(ns.run(driver, "pre", stdin=vm(vm_id, nic)))
    ns.add_tap(nic["TARGET"], nic["BRIDGE"])
    assert_ok(ns.run(driver, "post", "one-x", "h", stdin=vm(vm_id, nic)))


def libvirt_tap(ns, name, guest_mac, bridge):
    """A tap as libvirt makes one: a tun device with the guest MAC's first byte fe."""
    ns.exec("ip", "tuntap", "add", name, "mode", "tap")
    ns.ip("link", "set", name, "address", "fe" + guest_mac[2:], "master", bridge, "up")


def plug(ns, driver, nic, vm_id):
    """pre, then the hypervisor's tap on the bridge (no post)."""
    assert_ok(ns.run(driver, "pre", stdin=vm(vm_id, nic)))
    ns.add_tap(nic["TARGET"], nic["BRIDGE"])


def test_bridge_post_refuses_a_target_that_is_not_the_nics_tap(ns):
    """Refused before any VLAN filter is planned (so on any kernel)."""
    victim = bridge_nic(70, 0, "brown", "uplink0", VLAN_TAGGED_ID="30")
    attacker = bridge_nic(71, 0, "brown", "uplink0", VLAN_TAGGED_ID="40-41")
    plug(ns, "bridge", victim, 70)
    plug(ns, "bridge", attacker, 71)
    libvirt_tap(ns, "vnet70", victim["MAC"], "brown")  # the victim's, named by libvirt
    before = host_state(ns)
    for target, needle in (("one-70-0", "VM 70 NIC 0's tap"),
                           ("uplink0", "uplink of bridge brown"),
                           ("vnet70", "libvirt's tap of another guest MAC")):
        forged = vm(71, dict(attacker, TARGET=target))
        assert_one_error(ns.run("bridge", "post", "one-71", "h", stdin=forged),
                         "NIC 0", f"TARGET {target}", needle)
        assert host_state(ns) == before


@pytest.mark.full_kernel
def test_bridge_trunks_only_the_nics_own_tap(ns):
    """post with the NIC's own tap under a name of its TARGET's choice trunks it; update_nic
    with TARGET = another VM's tap leaves that tap's VLANs as they are (a WARN line)."""
    victim = bridge_nic(72, 0, "brown2", "uplink0", VLAN_TAGGED_ID="30", NETWORK_ID=5)
    attacker = bridge_nic(73, 0, "brown2", "uplink0", VLAN_TAGGED_ID="30", NETWORK_ID=5,
                          TARGET="vnet73")
    plug(ns, "bridge", victim, 72)
    assert_ok(ns.run("bridge", "post", "one-72", "h", stdin=vm(72, victim)))
    assert_ok(ns.run("bridge", "pre", stdin=vm(73, attacker)))
    ns.add_tap("vnet73", "brown2")  # a veth: a name of the user's choice on no libvirt tap
    assert_ok(ns.run("bridge", "post", "one-73", "h", stdin=vm(73, attacker)))
    assert 30 in ns.bridge_vlans()["vnet73"]
    victim_vids = ns.bridge_vlans()["one-72-0"]
    forged = dict(attacker, TARGET="one-72-0", VLAN_TAGGED_ID="31")
    done = assert_ok(ns.run("bridge", "update_nic", "one-73", "5", stdin=vm(
        73, forged, extra="<TEMPLATE><VNET_UPDATE><VLAN_TAGGED_ID>30</VLAN_TAGGED_ID>"
                          "</VNET_UPDATE></TEMPLATE>")))
    assert len(warnings(done)) == 1 and "NIC 0: TARGET one-72-0" in warnings(done)[0]
    assert ns.bridge_vlans()["one-72-0"] == victim_vids


def test_fw_post_refuses_another_vms_tap(ns):
    """A jump on ``--physdev-in one-74-0`` to the attacker's chains would filter (or let
    through) the victim's traffic by the attacker's security groups."""
    victim = bridge_nic(74, 0, "brown3", "uplink0", VN_MAD="fw", IP="10.74.0.74",
                        FILTER_IP_SPOOFING="YES")
    attacker = bridge_nic(75, 0, "brown3", "uplink0", VN_MAD="fw", IP="10.74.0.75")
    deploy(ns, "fw", victim, 74)
    deploy(ns, "fw", attacker, 75)
    before = host_state(ns)
    for target in ("one-74-0", "uplink0"):
        forged = vm(75, dict(attacker, TARGET=target))
        for action in ("post", "update_sg"):
            assert_one_error(ns.run("fw", action, "one-75", "h", stdin=forged), "NIC 0",
                             f"TARGET {target}")
            assert host_state(ns) == before
