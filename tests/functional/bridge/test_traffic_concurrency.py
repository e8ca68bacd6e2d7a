"""Real packets through a bridge vnm built, and many actions racing on one host."""

import concurrent.futures
import os

from support.assertions import assert_ok
from support.commands import sh
from support.oned_input import b64, bridge_nic, vm_xml


def plug_vm(ns, tap, bridge, address):
    """A "VM": its own namespace, joined to the bridge by a veth whose host end is the tap."""
    vm_ns = f"{ns.name}-{tap}"
    sh("ip", "netns", "add", vm_ns)
    ns.ip("link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vm_ns)
    ns.ip("link", "set", tap, "master", bridge)
    ns.ip("link", "set", tap, "up")
    sh("ip", "-n", vm_ns, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", vm_ns, "link", "set", "eth0", "up")
    return vm_ns


def ping(namespace, address):
    return sh("ip", "netns", "exec", namespace, "ping", "-c", "1", "-W", "2", address, check=False)


def test_two_vms_and_a_peer_behind_phydev_talk(ns):
    vm = b64(vm_xml(20, [bridge_nic(20, 0, "brt", "uplink0"), bridge_nic(20, 1, "brt")]))
    assert_ok(ns.run("bridge", "pre", stdin=vm))
    # the "physical network": uplink0's peer moves into its own namespace
    peer = f"{ns.name}-peer"
    sh("ip", "netns", "add", peer)
    vms = []
    try:
        ns.ip("link", "set", "uplink0p", "netns", peer)
        sh("ip", "-n", peer, "addr", "add", "192.0.2.1/24", "dev", "uplink0p")
        sh("ip", "-n", peer, "link", "set", "uplink0p", "up")
        vms = [plug_vm(ns, "one-20-0", "brt", "192.0.2.10/24"),
               plug_vm(ns, "one-20-1", "brt", "192.0.2.11/24")]
        assert_ok(ns.run("bridge", "post", "one-20", "h", stdin=vm))
        assert " 0% packet loss" in ping(vms[0], "192.0.2.11")
        assert " 0% packet loss" in ping(vms[1], "192.0.2.1")
        assert " 0% packet loss" in ping(peer, "192.0.2.10")
    finally:
        for name in vms + [peer]:
            sh("ip", "netns", "del", name, check=False)


def test_twenty_parallel_pre_then_clean_on_one_bridge(ns):
    vms = [b64(vm_xml(i, [bridge_nic(i, 0, "brp", "uplink0")])) for i in range(100, 120)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda vm: ns.run("bridge", "pre", stdin=vm), vms))
    for done in results:
        assert_ok(done)
    links = ns.links()
    assert links["brp"]["kind"] == "bridge" and links["uplink0"]["master"] == "brp"
    creates = sum(d.stderr.decode().count("create bridge brp") for d in results)
    assert creates == 1
    assert len(os.listdir(os.path.join(ns.run_dir, "users", os.listdir(
        os.path.join(ns.run_dir, "users"))[0], "brp"))) == 20
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda vm: ns.run("bridge", "clean", "h", stdin=vm), vms))
    for done in results:
        assert_ok(done)
    assert "brp" not in ns.links()
    assert ns.links()["uplink0"]["master"] is None


def test_mixed_pre_and_clean_race_never_strands_a_vm(ns):
    """Half the VMs leave while the other half arrive: the arrivals keep their bridge."""
    leaving = [b64(vm_xml(i, [bridge_nic(i, 0, "brz", "uplink1")])) for i in range(200, 210)]
    arriving = [b64(vm_xml(i, [bridge_nic(i, 0, "brz", "uplink1")])) for i in range(210, 220)]
    for vm in leaving:
        assert_ok(ns.run("bridge", "pre", stdin=vm))
    jobs = [("clean", vm) for vm in leaving] + [("pre", vm) for vm in arriving]
    jobs = [jobs[i] for i in range(0, 20, 2)] + [jobs[i] for i in range(1, 20, 2)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(
            lambda job: ns.run("bridge", job[0], *(["h"] if job[0] == "clean" else []),
                               stdin=job[1]), jobs))
    for done in results:
        assert_ok(done)
    links = ns.links()
    assert links["brz"]["kind"] == "bridge" and links["uplink1"]["master"] == "brz"
    for vm in arriving:
        assert_ok(ns.run("bridge", "clean", "h", stdin=vm))
    assert "brz" not in ns.links()
