"""vxlan driver against the host kernel: devices, traffic across a VXLAN, updates, errors."""

import concurrent.futures
import json
import time

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import sh
from support.frr import Frr
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.remotes import copy_tree


def vxlan_nic(vm_id, vni=60, phydev="uplink0", **extra):
    extra.setdefault("MTU", 1450)
    return bridge_nic(vm_id, 0, f"onebr.{vni}", phydev, VN_MAD="vxlan", VLAN_ID=vni,
                      NETWORK_ID=vni, **extra)


def vm(vm_id, **extra):
    return b64(vm_xml(vm_id, [vxlan_nic(vm_id, **extra)]))


def state(ns):
    """Everything a failed action must leave alone: links, masters, kinds, MTUs."""
    return {n: (l["master"], l["kind"], l["mtu"], l["up"]) for n, l in ns.links().items()}


@pytest.fixture
def hosts(tmp_path):
    """Two hypervisors joined by an underlay veth ``ul0`` (192.168.100.1 / .2)."""
    pair = []
    for index in (1, 2):
        run = tmp_path / f"run{index}"
        run.mkdir()
        pair.append(Namespace(str(run), uplinks=()))
    a, b = pair
    a.ip("link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b.name)
    for index, host in enumerate(pair, 1):
        host.ip("addr", "add", f"192.168.100.{index}/24", "dev", "ul0")
        host.ip("link", "set", "ul0", "up")
    yield pair
    for host in pair:
        host.delete()


def test_vms_on_two_hosts_ping_across_multicast_vxlan(hosts, tmp_path):
    guests = []
    try:
        for index, host in enumerate(hosts, 1):
            vm_id = 60 + index
            stdin = vm(vm_id, phydev="ul0", IP=f"10.60.0.{index}")
            assert_ok(host.run("vxlan", "pre", stdin=stdin))
            guests.append(Guest(host, tap=f"one-{vm_id}-0", mac=f"02:00:0a:3c:00:{index:02x}",
                                ipv4=f"10.60.0.{index}/24", bridge="onebr.60"))
            assert_ok(host.run("vxlan", "post", f"one-{vm_id}", "node", stdin=stdin))
        device = hosts[0].links()["ul0.60"]
        assert device["kind"] == "vxlan" and device["master"] == "onebr.60"
        assert device["data"]["group"] == "239.0.0.60" and device["data"]["link"] == "ul0"
        assert guests[0].ping("10.60.0.2") and guests[1].ping("10.60.0.1")
        # post protected the NICs as fw does (no SECURITY_GROUPS: allow all)
        assert "-A one-62-0-i -j RETURN" in hosts[1].exec("iptables", "-w", "-S")
    finally:
        for guest in guests:
            guest.delete()


def test_evpn_with_frr_learns_the_vni_and_remote_vtep(hosts, tmp_path):
    """VXLAN_MODE=evpn: no multicast, no fdb entry by hand; FRR does the flooding list."""
    daemons, guests = [], []
    try:
        for index, host in enumerate(hosts, 1):
            daemons.append(Frr(host.name, f"192.168.100.{index}",
                               f"192.168.100.{3 - index}").start())
        for index, host in enumerate(hosts, 1):
            vm_id = 64 + index
            stdin = vm(vm_id, vni=4000, phydev="ul0", VXLAN_MODE="evpn", VXLAN_TEP="local",
                       IP_LINK_CONF="nolearning")
            assert_ok(host.run("vxlan", "pre", stdin=stdin))
            guests.append(Guest(host, tap=f"one-{vm_id}-0", mac=f"02:00:0a:3d:00:{index:02x}",
                                ipv4=f"10.61.0.{index}/24", bridge="onebr.4000"))
            assert_ok(host.run("vxlan", "post", f"one-{vm_id}", "node", stdin=stdin))
        data = hosts[0].links()["ul0.4000"]["data"]
        assert data["local"] == "192.168.100.1" and "group" not in data
        deadline = time.monotonic() + 60
        while not guests[0].ping("10.61.0.2"):
            assert time.monotonic() < deadline, (daemons[0].vtysh("show bgp l2vpn evpn summary")
                                                 + daemons[0].vtysh("show evpn vni"))
        assert guests[1].ping("10.61.0.1")
        # the remote VTEP in the flood list came from zebra, not from us
        fdb = json.loads(sh("bridge", "-n", hosts[0].name, "-j", "fdb", "show", "dev", "ul0.4000"))
        flood = [e for e in fdb if e["mac"] == "00:00:00:00:00:00"]
        assert [e["dst"] for e in flood] == ["192.168.100.2"]
        assert "192.168.100.2" in daemons[0].vtysh("show evpn vni 4000")
    finally:
        for guest in guests:
            guest.delete()
        for daemon in daemons:
            daemon.stop()


def test_device_parameters_from_conf_and_network(ns, tmp_path):
    conf = ":vxlan_ttl: 32\n:ip_link_conf:\n  :nolearning:\n  :dstport: 4789\n"
    tree = copy_tree(tmp_path / "remotes", conf)
    stdin = vm(70, vni=500, MTU=1400, IP_LINK_CONF="tos=inherit")
    assert_ok(ns.run("vxlan", "pre", stdin=stdin, tree=tree))
    data = ns.links()["uplink0.500"]["data"]
    assert ns.links()["uplink0.500"]["mtu"] == 1400
    assert (data["id"], data["group"], data["ttl"], data["port"]) == (500, "239.0.1.244", 32, 4789)
    # tos 1 is the kernel's "inherit" (vxlan_xmit_one); this iproute2 prints it as 0x1
    assert data["learning"] is False and data["tos"] in ("inherit", "0x1")
    before = state(ns)
    again = assert_ok(ns.run("vxlan", "pre", stdin=stdin, tree=tree))
    # warm: no link to change; pre finds the NIC's protection in place (:protect_in_pre:)
    assert [line for line in again.stderr.decode().splitlines()
            if ": protection of one-70-0 in place" not in line] == []
    assert state(ns) == before
    # the same device asked for with another dstport is not "the one wanted"
    other = vm(70, vni=500, MTU=1400, IP_LINK_CONF="tos=inherit,dstport=8472")
    assert_one_error(ns.run("vxlan", "pre", stdin=other, tree=tree), "NIC 0",
                     "uplink0.500 exists", "port 4789 (want 8472)")
    assert state(ns) == before


def test_evpn_device_has_no_group_and_a_local_tep(ns):
    ns.ip("addr", "add", "192.0.2.10/24", "dev", "uplink0")
    assert_ok(ns.run("vxlan", "pre", stdin=vm(71, vni=80, VXLAN_MODE="evpn", VXLAN_TEP="local",
                                             IP_LINK_CONF="nolearning")))
    data = ns.links()["uplink0.80"]["data"]
    assert data["local"] == "192.0.2.10" and "group" not in data and data["learning"] is False
    assert_ok(ns.run("vxlan", "pre", stdin=vm(72, vni=81, VXLAN_MODE="evpn")))
    data = ns.links()["uplink0.81"]["data"]
    assert data["link"] == "uplink0" and "group" not in data and "local" not in data


def test_clean_removes_device_and_bridge_only_when_unused(ns):
    a, b = vm(73), vm(74)
    assert_ok(ns.run("vxlan", "pre", stdin=a))
    assert_ok(ns.run("vxlan", "pre", stdin=b))
    ns.add_tap("one-74-0", "onebr.60")
    assert_ok(ns.run("vxlan", "clean", "h", stdin=a))
    assert ns.links()["uplink0.60"]["master"] == "onebr.60"  # VM 74 still on it
    ns.ip("link", "del", "one-74-0")
    assert_ok(ns.run("vxlan", "clean", "h", stdin=b))
    assert "uplink0.60" not in ns.links() and "onebr.60" not in ns.links()
    kept = vm(75, CONF="keep_empty_bridge=yes")
    assert_ok(ns.run("vxlan", "pre", stdin=kept))
    assert_ok(ns.run("vxlan", "clean", "h", stdin=kept))
    assert ns.links()["uplink0.60"]["master"] == "onebr.60"


def test_nics_without_phydev_are_skipped(ns):
    before = state(ns)
    assert_ok(ns.run("vxlan", "pre", stdin=b64(vm_xml(76, [vxlan_nic(76, phydev=None)]))))
    assert state(ns) == before


def update_stdin(nic, **old):
    extra = "<TEMPLATE><VNET_UPDATE>" + "".join(
        f"<{k}><![CDATA[{v}]]></{k}>" for k, v in old.items()) + "</VNET_UPDATE></TEMPLATE>"
    return b64(vm_xml(77, [nic], extra=extra))


def test_update_nic_vni_and_phydev_recreate_the_device(ns):
    nic = vxlan_nic(77)
    assert_ok(ns.run("vxlan", "pre", stdin=b64(vm_xml(77, [nic]))))
    ns.add_tap("one-77-0", "onebr.60")
    nic["VLAN_ID"] = 61
    assert_ok(ns.run("vxlan", "update_nic", "one-77", "60", stdin=update_stdin(nic, VLAN_ID=60)))
    links = ns.links()
    assert "uplink0.60" not in links and links["uplink0.61"]["master"] == "onebr.60"
    assert links["uplink0.61"]["data"]["id"] == 61 and links["one-77-0"]["master"] == "onebr.60"
    nic["PHYDEV"] = "uplink1"
    assert_ok(ns.run("vxlan", "update_nic", "one-77", "60",
                     stdin=update_stdin(nic, PHYDEV="uplink0")))
    links = ns.links()
    assert "uplink0.61" not in links and links["uplink1.61"]["data"]["link"] == "uplink1"
    nic["MTU"] = 1300
    assert_ok(ns.run("vxlan", "update_nic", "one-77", "60", stdin=update_stdin(nic, MTU=1450)))
    assert ns.links()["uplink1.61"]["mtu"] == 1300
    # another vnet's update does not touch this NIC
    before = state(ns)
    nic["MTU"] = 1200
    assert_ok(ns.run("vxlan", "update_nic", "one-77", "99", stdin=update_stdin(nic, MTU=1300)))
    assert state(ns) == before


def test_collisions_are_errors_and_change_nothing(ns):
    ns.ip("link", "add", "uplink0.90", "type", "veth", "peer", "name", "x90")  # "802.1Q" stand-in
    ns.ip("link", "add", "uplink0.91", "type", "vxlan", "id", "191", "dev", "uplink0",
          "dstport", "0")
    ns.ip("link", "add", "other", "type", "bridge")
    ns.ip("link", "add", "uplink0.92", "type", "vxlan", "id", "92", "group", "239.0.0.92",
          "dev", "uplink0", "ttl", "16", "dstport", "0")
    ns.ip("link", "set", "uplink0.92", "master", "other")
    before = state(ns)
    cases = [
        (vm(80, vni=90), "uplink0.90 exists but is not the vxlan device",
         "it is a veth device, not a vxlan device"),
        (vm(81, vni=91), "uplink0.91 exists", "id 191 (want 91)"),
        (vm(82, vni=92), "uplink0.92 is already a port of other, not of onebr.92"),
        (vm(83, vni=93, phydev="nosuchdev"), "NIC 0: PHYDEV nosuchdev does not exist"),
    ]
    for stdin, *needles in cases:
        assert_one_error(ns.run("vxlan", "pre", stdin=stdin), *needles)
        assert state(ns) == before


@pytest.mark.parametrize("attrs, needles", [
    ({"VLAN_ID": ""}, ("NIC 0: VLAN_ID is missing",)),
    ({"VLAN_ID": 0}, ("NIC 0: VLAN_ID 0 is out of range",)),
    ({"MTU": "x"}, ("NIC 0: MTU 'x' is not an integer",)),
    ({"IP_LINK_CONF": "bogus=1"}, ("NIC 0", "option 'bogus' is not supported")),
    ({"VLAN_ID": 123456789}, ("VLAN_ID 123456789 is out of range",)),
    ({"VLAN_ID": 12345678}, ("NIC 0: VLAN device name 'uplink0.12345678' is 16 bytes",)),
])
def test_bad_input_one_error_no_change(ns, attrs, needles):
    nic = vxlan_nic(84)
    nic.update(attrs)
    before = state(ns)
    assert_one_error(ns.run("vxlan", "pre", stdin=b64(vm_xml(84, [nic]))), *needles)
    assert state(ns) == before


def test_validate_vlan_id_refuses_a_second_vni_in_one_bridge(ns, tmp_path):
    tree = copy_tree(tmp_path / "remotes", ":validate_vlan_id: true\n")
    assert_ok(ns.run("vxlan", "pre", stdin=vm(85, vni=60), tree=tree))
    other = b64(vm_xml(86, [dict(vxlan_nic(86, vni=61), BRIDGE="onebr.60")]))
    before = state(ns)
    assert_one_error(ns.run("vxlan", "pre", stdin=other, tree=tree),
                     "bridge onebr.60 already has uplink0.60 (vxlan id 60)", "validate_vlan_id")
    assert state(ns) == before
    # without the option the reference (and we) let a second device in
    assert_ok(ns.run("vxlan", "pre", stdin=other))


def test_twenty_vms_pre_and_clean_at_once(ns):
    stdins = [vm(100 + i, vni=60 + i % 2) for i in range(20)]

    def run_all(action, *args):
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            return list(pool.map(lambda s: ns.run("vxlan", action, *args, stdin=s), stdins))

    for done in run_all("pre"):
        assert_ok(done)
    links = ns.links()
    assert links["uplink0.60"]["master"] == "onebr.60" and links["uplink0.61"]["master"] == "onebr.61"
    for done in run_all("clean", "h"):
        assert_ok(done)
    assert not {"uplink0.60", "uplink0.61", "onebr.60", "onebr.61"} & set(ns.links())
