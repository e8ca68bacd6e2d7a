"""802.1Q on the host kernel, which lacks 8021q: what does not need a VLAN device.

Security groups of 802.1Q NICs equal the reference's (golden B), collisions
with a vxlan device of the same name are refused, and a kernel without 8021q
gives one clear error with the half-built bridge rolled back. VLAN devices,
QinQ and tagged traffic: test_full_kernel_8021q.py (Debian's kernel under QEMU).
"""

import base64

from support import golden
from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64
from support.paths import fixture_bytes

VM8 = fixture_bytes("vm8_vnm_reduced.b64")


def without(tag, stdin):
    xml = base64.b64decode(stdin).decode()
    start = xml.index(f"<{tag}>")
    end = xml.index(f"</{tag}>") + len(tag) + 3
    return b64(xml[:start] + xml[end:])


def state(ns):
    return {n: (l["master"], l["kind"], l["mtu"]) for n, l in ns.links().items()}


def test_security_groups_of_802_1q_nics_equal_golden_b(ns):
    # the bridges and taps as pre and the hypervisor would leave them (no 8021q here);
    # NIC 1 without CVLANS, whose filters need the VLAN device
    vm = without("CVLANS", VM8)
    for bridge, tap in (("onebr.50", "one-8-0"), ("onebr.100", "one-8-1")):
        ns.ip("link", "add", bridge, "type", "bridge")
        ns.ip("link", "set", bridge, "up")
        ns.add_tap(tap, bridge)
    driver, action, args = golden.argv("B", "02-post-802.1Q")
    assert ns.run(driver, action, *args, stdin=vm).returncode == golden.rc("B", "02-post-802.1Q")
    for tool in ("iptables", "ip6tables"):  # minus vnm's connlimit rules (golden.py)
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("B", "02-after-post.state", f"{tool} -S")
    for tap in ("one-8-0", "one-8-1"):
        ns.ip("link", "del", tap)
    driver, action, args = golden.argv("B", "03-clean-802.1Q")
    assert ns.run(driver, action, *args, stdin=vm).returncode == golden.rc("B", "03-clean-802.1Q")
    for tool in ("iptables", "ip6tables"):
        assert golden.without_guards(ns.exec(tool, "-w", "-S").splitlines()) == \
            golden.section("B", "03-after-clean.state", f"{tool} -S")
    assert not {"onebr.50", "onebr.100"} & set(ns.links())


def test_vxlan_device_of_the_same_name_is_not_reused(ns):
    """#4903: 802.1Q and vxlan on one PHYDEV with one ID both want uplink0.100."""
    ns.ip("link", "set", "uplink0", "mtu", "9000")
    ns.ip("link", "add", "uplink0.100", "type", "vxlan", "id", "100", "dev", "uplink0",
          "dstport", "0")
    before = state(ns)
    assert_one_error(ns.run("802.1Q", "pre", stdin=VM8), "NIC 1",
                     "uplink0.100 exists but is not the vlan device",
                     "it is a vxlan device, not a vlan device")
    assert state(ns) == before


def test_kernel_without_8021q_is_one_error_and_rolled_back(ns):
    ns.ip("link", "set", "uplink0", "mtu", "9000")
    before = state(ns)
    assert_one_error(ns.run("802.1Q", "pre", stdin=VM8), "NIC 0",
                     "cannot create vlan device uplink0.50", "8021q")
    assert state(ns) == before  # onebr.50 was created first, then removed again


def test_vlan_mtu_above_phydev_mtu_is_refused_before_any_change(ns):
    before = state(ns)
    assert_one_error(ns.run("802.1Q", "pre", stdin=VM8), "NIC 1",
                     "MTU 9000 of uplink0.100 is larger than the MTU 1500 of PHYDEV uplink0")
    assert state(ns) == before
    assert_ok(ns.run("802.1Q", "clean", "node1", stdin=VM8))  # nothing to clean: still fine
