"""bridge driver VLAN trunking: needs bridge VLAN filtering and 8021q.

test.sh runs them in Debian's kernel under QEMU (tools/qemu/run.sh) with VNM_FULL_KERNEL=1.
"""

import pytest

from support import golden
from support.assertions import assert_ok
from support.commands import sh
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import fixture_bytes

pytestmark = pytest.mark.full_kernel

VM8 = fixture_bytes("vm8_vnm_reduced.b64")


def vids(ns, port):
    return set(ns.bridge_vlans().get(port, {}))


def test_scenario_b_bridge_trunk_replay(ns):
    """golden B, bridge steps: the trace asked for VIDs 10,20-22 on the tap and uplink1."""
    driver, action, args = golden.argv("B", "01-pre-bridge")
    assert ns.run(driver, action, *args, stdin=VM8).returncode == golden.rc("B", "01-pre-bridge")
    links, masters = golden.state("B", "01-after-pre.state")
    assert ns.links()["uplink1"]["master"] == masters["uplink1"] == "br1"
    ns.add_tap("one-8-2", "br1")
    driver, action, args = golden.argv("B", "02-post-bridge")
    assert ns.run(driver, action, *args, stdin=VM8).returncode == golden.rc("B", "02-post-bridge")
    assert ns.links()["br1"]["data"]["vlan_filtering"] == 1
    # the reference's commands: bridge vlan add dev {one-8-2,uplink1} vid {10,20,21,22}
    asked = {10, 20, 21, 22}
    assert asked <= vids(ns, "one-8-2") and asked <= vids(ns, "uplink1")
    ns.ip("link", "del", "one-8-2")
    driver, action, args = golden.argv("B", "03-clean-bridge")
    assert ns.run(driver, action, *args, stdin=VM8).returncode == golden.rc("B", "03-clean-bridge")
    links, masters = golden.state("B", "03-after-clean.state")
    assert ns.links()["uplink1"]["master"] == masters["uplink1"] == "br1"  # keep_empty_bridge


def test_update_nic_retrunks_tap_and_uplink(ns):
    nic = bridge_nic(40, 0, "brv", "uplink0", NETWORK_ID=3, VLAN_TAGGED_ID="10,20-22")
    vm = b64(vm_xml(40, [nic]))
    assert_ok(ns.run("bridge", "pre", stdin=vm))
    ns.add_tap("one-40-0", "brv")
    assert_ok(ns.run("bridge", "post", "one-40", "h", stdin=vm))
    assert_ok(ns.run("bridge", "post", "one-40", "h", stdin=vm))  # idempotent
    nic["VLAN_TAGGED_ID"] = "20,30"
    full = vm_xml(40, [nic], extra="<TEMPLATE><VNET_UPDATE><VLAN_TAGGED_ID><![CDATA[10,20-22]]>"
                                   "</VLAN_TAGGED_ID></VNET_UPDATE></TEMPLATE>")
    assert_ok(ns.run("bridge", "update_nic", "one-40", "3", stdin=b64(full)))
    for port in ("one-40-0", "uplink0"):
        assert vids(ns, port) - {1} == {20, 30}, port


def test_trunk_carries_allowed_vids_only(ns):
    vm = b64(vm_xml(41, [bridge_nic(41, 0, "brw", "uplink0", VLAN_TAGGED_ID="20")]))
    assert_ok(ns.run("bridge", "pre", stdin=vm))
    guest, peer = f"{ns.name}-vm", f"{ns.name}-peer"
    sh("ip", "netns", "add", guest)
    sh("ip", "netns", "add", peer)
    try:
        ns.ip("link", "add", "one-41-0", "type", "veth", "peer", "name", "eth0", "netns", guest)
        ns.ip("link", "set", "one-41-0", "master", "brw")
        ns.ip("link", "set", "one-41-0", "up")
        ns.ip("link", "set", "uplink0p", "netns", peer)
        assert_ok(ns.run("bridge", "post", "one-41", "h", stdin=vm))
        for namespace, dev in ((guest, "eth0"), (peer, "uplink0p")):
            host = 10 if namespace == guest else 1
            sh("ip", "-n", namespace, "link", "set", dev, "up")
            for vid in (20, 30):  # 20 is trunked, 30 is not
                sh("ip", "-n", namespace, "link", "add", "link", dev, "name", f"v{vid}",
                   "type", "vlan", "id", str(vid))
                sh("ip", "-n", namespace, "addr", "add", f"10.{vid}.0.{host}/24", "dev", f"v{vid}")
                sh("ip", "-n", namespace, "link", "set", f"v{vid}", "up")
        ok = sh("ip", "netns", "exec", guest, "ping", "-c", "2", "-W", "2", "10.20.0.1", check=False)
        assert " 0% packet loss" in ok
        blocked = sh("ip", "netns", "exec", guest, "ping", "-c", "2", "-W", "1", "10.30.0.1",
                     check=False)
        assert "100% packet loss" in blocked
    finally:
        sh("ip", "netns", "del", guest, check=False)
        sh("ip", "netns", "del", peer, check=False)
