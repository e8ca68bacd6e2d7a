"""Protection in pre on Debian 12's kernel (6.1), which cannot hook a device that does not exist.

There fw/pre writes the wire guard as the interim ``bridge`` table that matches the
tap by name (vnmlib/firewall/l2guard.py) and post replaces it with the netdev one.
test.sh runs this in Debian's kernel under QEMU (tools/qemu/run.sh) with VNM_FULL_KERNEL=1;
test_fw_first_packet.py covers the same on the host's kernel.
"""

import re
import subprocess

import pytest

from support.assertions import assert_ok
from support.namespaces import Guest
from support.oned_input import b64, bridge_nic, vm_xml

pytestmark = pytest.mark.full_kernel

MAC, IP, FORGED, PEER = "02:00:0a:36:00:36", "10.54.0.54", "10.54.0.99", "10.54.0.100"


def guard_tables(ns):
    return [line for line in ns.exec("nft", "list", "tables").splitlines() if "one-54-0" in line]


def test_the_interim_guard_drops_forged_arp_from_the_first_frame_until_post(ns):
    xml = b64(vm_xml(54, [bridge_nic(54, 0, "kbr", "uplink0", VN_MAD="fw", MAC=MAC, IP=IP,
                                     FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")]))
    assert_ok(ns.run("fw", "pre", stdin=xml))
    assert guard_tables(ns) == ["table bridge one-54-0"]
    peer = Guest(ns, link="uplink0p", ipv4=f"{PEER}/24")
    vm = Guest(ns, "one-54-0", MAC, f"{IP}/24", bridge="kbr")  # plugged after pre
    try:
        vm.ip("addr", "add", f"{FORGED}/24", "dev", vm.dev)
        # who-has PEER from the forged address: dropped before the bridge, P never hears it
        forged = subprocess.run(["ip", "netns", "exec", vm.name, "ping", "-c1", "-W1", "-I",
                                 FORGED, PEER], capture_output=True, check=False)
        assert forged.returncode != 0
        assert FORGED not in peer.ip("neigh", "show")
        arp_check = ns.exec("nft", "list", "chain", "bridge", "one-54-0", "arp_check")
        assert int(re.search(r"arp saddr ip != .* counter packets (\d+)", arp_check).group(1)) > 0
        assert vm.ping_eventually(PEER)  # its own address: the path is open
        assert_ok(ns.run("fw", "post", "one-54", "node1", stdin=xml))
        assert guard_tables(ns) == ["table netdev one-54-0"]
        assert vm.ping(PEER)
    finally:
        vm.delete()
        peer.delete()
