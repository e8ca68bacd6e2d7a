"""The ovn driver on a real OVN: a front-end (NB, SB, ovn-northd) and two hosts
(Open vSwitch userspace datapath, ovn-controller) joined by Geneve.

The actions run as oned runs them: the real scripts of a remotes tree, the
front-end ones (vnet_create, pre, clean, update_sg: VNMAD_LOCAL_ACTIONS) in
the front-end's namespace, ``post`` in the host's. VMs are namespaces on
br-int. One deployment serves the module (it starts in about a second);
each test uses its own VM and network ids.
"""

import pytest

from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64, rules_xml, vm_xml
from support.ovn import OvnBed
from support.remotes import copy_tree

NET = 10


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ovn")
    bed = OvnBed(workdir, tree=None)
    try:
        conf = f":ovn_nb_connection: {bed.front.nb_remote}\n:ovn_nb_timeout: 5\n"
        bed.tree = copy_tree(workdir / "remotes", conf)
        for host in bed.hosts:
            host.tree = bed.tree
        done = front(bed, "vnet_create", NET, stdin=vnet(NET))
        assert_ok(done)
        yield bed
    finally:
        bed.stop()


def front(bed, action, *args, stdin, tree=None):
    """A front-end action, as oned runs a local one."""
    return bed.front.ns.run("ovn", action, *map(str, args), stdin=stdin, tree=tree or bed.tree)


def vnet(vnet_id, extra=""):
    return b64(f"<VNET><ID>{vnet_id}</ID><NAME>net {vnet_id}</NAME><VN_MAD>ovn</VN_MAD>"
               "<TEMPLATE><NETWORK_ADDRESS>192.168.10.0</NETWORK_ADDRESS>"
               "<NETWORK_MASK>255.255.255.0</NETWORK_MASK><GATEWAY>192.168.10.1</GATEWAY>"
               "<DNS>192.168.10.2 fd00::53</DNS><GUEST_MTU>1400</GUEST_MTU>"
               f"{extra}</TEMPLATE><AR_POOL><AR><AR_ID>0</AR_ID><TYPE>IP4_6</TYPE>"
               "<IP>192.168.10.100</IP><SIZE>50</SIZE>"
               "<GLOBAL_PREFIX>fd00:10::</GLOBAL_PREFIX></AR></AR_POOL></VNET>")


def nic(vm_id, net=NET, **extra):
    attrs = {"NIC_ID": 0, "NETWORK_ID": net, "VN_MAD": "ovn", "BRIDGE": "br-int",
             "TARGET": f"one-{vm_id}-0", "MAC": f"02:00:c0:a8:0a:{vm_id:02x}",
             "IP": f"192.168.10.{vm_id}", "IP6": f"fd00:10::{vm_id:x}"}
    attrs.update(extra)
    return attrs


def vm_stdin(vm_id, host, nics, rules=()):
    xml = vm_xml(vm_id, nics, extra=rules_xml(*rules))
    return b64(xml.replace("</VM_MAD>", f"</VM_MAD><HOSTNAME>{host.name}</HOSTNAME>"))


def listed(value):
    """A set column as a list: OVSDB's JSON writes a one-element set as the bare element."""
    return value if isinstance(value, list) else [value]


def port(bed, name):
    rows = [r for r in bed.front.rows("Logical_Switch_Port", "name", "addresses",
                                      "port_security", "options") if r["name"] == name]
    return rows[0] if rows else None


def deploy(bed, host, vm_id, rules=(), **nic_attrs):
    """pre (front-end), the VM started (its tap on br-int), post (host): its guest."""
    attrs = nic(vm_id, **nic_attrs)
    stdin = vm_stdin(vm_id, host, [attrs], rules)
    assert_ok(front(bed, "pre", stdin=stdin))
    guest = host.guest(attrs["TARGET"], attrs["MAC"], f"{attrs['IP']}/24",
                       f"{attrs['IP6']}/64")
    assert_ok(host.run("ovn", "post", f"one-{vm_id}", host.name, stdin=stdin))
    return guest, stdin


def allow(direction, **fields):
    return {"SECURITY_GROUP_ID": fields.pop("sg"), "RULE_TYPE": direction, **fields}


def test_vnet_create_makes_the_switch_and_its_dhcp_options(bed):
    switches = [s for s in bed.front.rows("Logical_Switch", "name", "external_ids")
                if s["name"] == f"one-vnet-{NET}"]
    assert len(switches) == 1
    assert switches[0]["external_ids"]["opennebula:vnet_id"] == str(NET)
    assert switches[0]["external_ids"]["opennebula:mtu"] == "1400"
    dhcp = {d["external_ids"]["opennebula:family"]: d
            for d in bed.front.rows("DHCP_Options", "cidr", "options", "external_ids")}
    assert dhcp["4"]["cidr"] == "192.168.10.0/24"
    assert dhcp["4"]["options"]["router"] == "192.168.10.1"
    assert dhcp["4"]["options"]["dns_server"] == "{192.168.10.2}"
    assert dhcp["4"]["options"]["mtu"] == "1400"
    assert dhcp["6"]["cidr"] == "fd00:10::/64"
    assert dhcp["6"]["options"]["dns_server"] == "{fd00::53}"
    # again: the same rows, updated in place
    assert_ok(front(bed, "vnet_create", NET, stdin=vnet(NET)))
    assert len(bed.front.rows("DHCP_Options", "cidr")) == 2


def test_vms_on_two_hosts_talk_and_spoofing_is_dropped(bed):
    host1, host2 = bed.hosts
    one, _ = deploy(bed, host1, 21)
    two, _ = deploy(bed, host2, 22)
    row = port(bed, "one-21-0")
    assert listed(row["addresses"]) == ["02:00:c0:a8:0a:15 192.168.10.21 fd00:10::15"]
    assert row["port_security"] == row["addresses"]
    assert row["options"]["requested-chassis"] == "host1"
    assert one.ping_eventually("192.168.10.22")
    assert one.ping_eventually("fd00:10::16")
    # a source address the port does not own: port security drops it
    one.ip("addr", "add", "192.168.10.99/24", "dev", one.dev)
    spoofed = one_ping_from(one, "192.168.10.99", "192.168.10.22")
    assert not spoofed
    one.ip("addr", "del", "192.168.10.99/24", "dev", one.dev)
    # a source MAC the port does not own
    one.ip("link", "set", one.dev, "address", "02:00:c0:a8:0a:99")
    assert not one.ping("192.168.10.22")
    one.ip("link", "set", one.dev, "address", "02:00:c0:a8:0a:15")
    assert one.ping_eventually("192.168.10.22")


def one_ping_from(guest, source, target):
    import subprocess

    done = subprocess.run(["ip", "netns", "exec", guest.name, "ping", "-c1", "-W2", "-I", source,
                           target], capture_output=True, check=False)
    return done.returncode == 0


def test_security_groups_allow_deny_and_update_sg_changes_every_member(bed):
    host1, host2 = bed.hosts
    client, _ = deploy(bed, host1, 31)  # no SECURITY_GROUPS: everything allowed
    ssh_only = [allow("OUTBOUND", sg=101, PROTOCOL="ALL"),
                allow("INBOUND", sg=101, PROTOCOL="TCP", RANGE="22")]
    deploy(bed, host2, 32, ssh_only, SECURITY_GROUPS="101")
    deploy(bed, host1, 33, ssh_only, SECURITY_GROUPS="101")
    icmp_only = [allow("OUTBOUND", sg=102, PROTOCOL="ALL"),
                 allow("INBOUND", sg=102, PROTOCOL="ICMP", ICMP_TYPE="8")]
    third, _ = deploy(bed, host2, 34, icmp_only, SECURITY_GROUPS="102")
    assert client.ping_eventually("192.168.10.34")  # ICMP echo allowed; its reply is related
    assert not client.ping("192.168.10.32")  # group 101 allows TCP 22 only
    assert not client.ping("192.168.10.33")
    assert third.ping_eventually("192.168.10.31")  # outbound allowed, the reply related

    # the group now allows ICMP too: one update_sg, run for one of its VMs
    updated = ssh_only + [allow("INBOUND", sg=101, PROTOCOL="ICMP")]
    stdin = vm_stdin(32, host2, [nic(32, SECURITY_GROUPS="101")], updated)
    assert_ok(front(bed, "update_sg", stdin=stdin))
    assert client.ping_eventually("192.168.10.32")
    assert client.ping_eventually("192.168.10.33")  # the other member too
    groups = {g["name"]: g for g in bed.front.rows("Port_Group", "name", "acls", "ports")}
    assert len(listed(groups["one_sg_101"]["ports"])) == 2
    acls = {a["_uuid"]: (a["direction"], a["match"], a["action"])
            for a in bed.front.rows("ACL", "_uuid", "direction", "match", "action")}
    assert {acls[uuid] for uuid in listed(groups["one_sg_101"]["acls"])} == {
        ("from-lport", "inport == @one_sg_101 && ip4", "allow-related"),
        ("from-lport", "inport == @one_sg_101 && ip6", "allow-related"),
        ("to-lport", "outport == @one_sg_101 && ip4 && tcp && tcp.dst == 22", "allow-related"),
        ("to-lport", "outport == @one_sg_101 && ip6 && tcp && tcp.dst == 22", "allow-related"),
        ("to-lport", "outport == @one_sg_101 && ip4 && icmp4", "allow-related")}


@pytest.mark.parametrize("attrs, needles", [
    ({"MAC": "02:00:zz:00:00:01"}, ("NIC 0", "MAC")),
    ({"IP": "192.168.10.300"}, ("NIC 0", "IP")),
    ({"SECURITY_GROUPS": "101,x"}, ("NIC 0", "SECURITY_GROUPS")),
    ({"NETWORK_ID": 999}, ("NIC 0", "network 999")),
])
def test_bad_input_is_one_error_and_nb_unchanged(bed, attrs, needles):
    before = bed.front.dump()
    stdin = vm_stdin(41, bed.hosts[0], [nic(41, **attrs)])
    assert_one_error(front(bed, "pre", stdin=stdin), *needles)
    assert bed.front.dump() == before


def test_an_unreachable_nb_is_one_error(bed, tmp_path):
    tree = copy_tree(tmp_path / "remotes", f":ovn_nb_connection: unix:{tmp_path}/none.sock\n")
    stdin = vm_stdin(42, bed.hosts[0], [nic(42)])
    assert_one_error(front(bed, "pre", stdin=stdin, tree=tree), "northbound", "none.sock")


def test_lifecycle_clean_and_vnet_delete(bed):
    host1, host2 = bed.hosts
    assert_ok(front(bed, "vnet_create", 11, stdin=vnet(11)))
    guest, stdin = deploy(bed, host1, 51, net=11)
    # the VM moved on: a clean of another host leaves its port alone
    assert_ok(front(bed, "clean", host2.name, stdin=stdin))
    assert port(bed, "one-51-0") is not None
    assert_one_error(front(bed, "vnet_delete", 11, stdin=vnet(11)), "one-51-0")
    assert_ok(front(bed, "clean", host1.name, stdin=stdin))
    assert port(bed, "one-51-0") is None
    host1.unplug(guest, "one-51-0")
    assert_ok(front(bed, "vnet_delete", 11, stdin=vnet(11)))
    assert not [s for s in bed.front.rows("Logical_Switch", "name") if s["name"] == "one-vnet-11"]


RARP = """
import socket, sys
mac = bytes.fromhex(sys.argv[2].replace(":", ""))
frame = (b"\\xff" * 6 + mac + b"\\x80\\x35" + b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x03"
         + mac + b"\\x00" * 4 + mac + b"\\x00" * 4)
with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
    sock.bind((sys.argv[1], 0))
    sock.send(frame)
"""


def announce(guest, mac):
    """What QEMU does when a live migration ends: a RARP from the VM's MAC."""
    import subprocess
    import sys

    subprocess.run(["ip", "netns", "exec", guest.name, sys.executable, "-c", RARP, guest.dev, mac],
                   check=True)


def test_migration_binds_both_hosts_then_the_destination_only(bed):
    host1, host2 = bed.hosts
    source, _ = deploy(bed, host1, 61)
    peer, _ = deploy(bed, host2, 62)
    assert peer.ping_eventually("192.168.10.61")

    # pre on the destination (its HOSTNAME now host2): the port is bound on both
    attrs = nic(61)
    moved = vm_stdin(61, host2, [attrs])
    assert_ok(front(bed, "pre", stdin=moved))
    options = port(bed, "one-61-0")["options"]
    assert options["requested-chassis"] == "host1,host2"
    assert options["activation-strategy"] == "rarp"
    assert source.ping_eventually("192.168.10.62")  # the source still works

    # the VM runs on the destination: post there, the source's tap goes, a RARP
    destination = host2.guest(attrs["TARGET"], attrs["MAC"], f"{attrs['IP']}/24")
    assert_ok(host2.run("ovn", "post", "one-61", host2.name, stdin=moved))
    host1.unplug(source, attrs["TARGET"])
    announce(destination, attrs["MAC"])
    assert peer.ping_eventually("192.168.10.61")

    # the source's clean leaves the destination only
    assert_ok(front(bed, "clean", host1.name, stdin=moved))
    options = port(bed, "one-61-0")["options"]
    assert options["requested-chassis"] == "host2"
    assert "activation-strategy" not in options
    assert peer.ping_eventually("192.168.10.61")
    assert "one-61-0" not in host1.ovs.ports("br-int")
    binding = bed.front.sbctl("--bare", "--columns=additional_chassis", "find", "Port_Binding",
                              "logical_port=one-61-0")
    assert binding.strip() == ""  # the source holds no binding any more


def test_nothing_passes_before_post_and_denied_traffic_never(bed):
    host1, host2 = bed.hosts
    client, _ = deploy(bed, host2, 71)
    deny_inbound = [allow("OUTBOUND", sg=103, PROTOCOL="ALL")]
    attrs = nic(72, SECURITY_GROUPS="103")
    stdin = vm_stdin(72, host1, [attrs], deny_inbound)
    assert_ok(front(bed, "pre", stdin=stdin))
    # the VM runs and sends from its first instant, on libvirt's own iface-id
    guest = host1.guest(attrs["TARGET"], attrs["MAC"], f"{attrs['IP']}/24")
    assert not guest.ping("192.168.10.71")
    assert not client.ping("192.168.10.72")
    assert_ok(host1.run("ovn", "post", "one-72", host1.name, stdin=stdin))
    assert guest.ping_eventually("192.168.10.71")  # outbound allowed, its reply related
    assert not client.ping("192.168.10.72")  # inbound still denied


def test_ovn_answers_dhcp_even_under_a_closed_security_group(bed):
    closed = [allow("INBOUND", sg=104, PROTOCOL="TCP", RANGE="22")]  # nothing outbound
    guest, _ = deploy(bed, bed.hosts[0], 81, closed, SECURITY_GROUPS="104")
    import subprocess

    done = subprocess.run(["ip", "netns", "exec", guest.name, "busybox", "udhcpc", "-i",
                           guest.dev, "-n", "-q", "-f", "-t", "3", "-T", "1", "-s", "/bin/true"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert "lease of 192.168.10.81 obtained" in done.stdout + done.stderr, done.stderr


def test_vnm_ovn_check_reports_the_join(bed, tmp_path):
    import json

    # the hosts were joined by `vnm ovn join` (tests/support/ovn.py)
    done = bed.hosts[0].vnm("ovn", "check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = {row["check"]: row for row in json.loads(done.stdout)}
    assert found["external_ids:system-id"]["detail"] == "host1"
    assert found["ovn-controller"]["status"] == "ok"
    # a host with no Open vSwitch: one FAIL naming the database, exit 1
    done = bed.hosts[0].vnm("ovn", "check", env={"OVS_RUNDIR": str(tmp_path)})
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "Open vSwitch database" in done.stdout


def test_vnm_ovn_join_refuses_a_bad_address(bed):
    before = bed.hosts[1].ovs.vsctl("get", "Open_vSwitch", ".", "external_ids")
    done = bed.hosts[1].vnm("ovn", "join", "--remote=tcp:10.98.1.1:6642",
                            "--encap-ip=10.99.1.300", "--system-id=host2")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("vnm: --encap-ip '10.99.1.300'")
    assert bed.hosts[1].ovs.vsctl("get", "Open_vSwitch", ".", "external_ids") == before


def test_post_of_a_port_ovn_does_not_know_fails_and_restores_the_tap(bed, tmp_path):
    host = bed.hosts[0]
    tree = copy_tree(tmp_path / "remotes", ":ovn_bind_timeout: 1\n")
    attrs = nic(91)
    host.guest(attrs["TARGET"], attrs["MAC"])  # no pre: NB has no port one-91-0
    before = host.ovs.row("Interface", attrs["TARGET"], "external_ids")["external_ids"]
    done = host.run("ovn", "post", "one-91", host.name, stdin=vm_stdin(91, host, [attrs]),
                    tree=tree)
    assert_one_error(done, "NIC 0 (one-91-0)", "ovn_bind_timeout")
    after = host.ovs.row("Interface", attrs["TARGET"], "external_ids")["external_ids"]
    assert after == before


def test_vnm_plan_shows_the_nb_transaction_and_changes_nothing(bed, tmp_path):
    import subprocess

    from support.paths import PYTHON, REPO

    vm = tmp_path / "vm.b64"
    vm.write_bytes(vm_stdin(95, bed.hosts[0], [nic(95, SECURITY_GROUPS="101")]))
    before = bed.front.dump()
    done = subprocess.run(["ip", "netns", "exec", bed.front.ns.name, PYTHON, "-m", "vnmlib.cli",
                           "plan", "ovn", "pre", "--vm", str(vm), "--tree", bed.tree],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("ovn: NB transaction: logical ports one-95-0 bound to host1, "
                                   "with port security, in security groups 101")
    assert bed.front.dump() == before


def test_vnm_doctor_runs_the_ovn_join_check_on_a_chassis_only(bed, tmp_path):
    import json

    done = bed.hosts[0].vnm("doctor", "--json", "--tree", bed.tree)
    found = {row["check"]: row for row in json.loads(done.stdout)}
    assert found["ovn: external_ids:system-id"]["detail"] == "host1"
    assert found["ovn: ovn-controller"]["status"] == "ok"
    # no Open vSwitch here (or one never joined): not a chassis, no OVN rows
    done = bed.hosts[0].vnm("doctor", "--json", "--tree", bed.tree,
                            env={"OVS_RUNDIR": str(tmp_path)})
    assert not [row for row in json.loads(done.stdout) if row["check"].startswith("ovn")]


def status_of(host, vm_id):
    import json

    done = host.vnm("status", "--vm", str(vm_id), "--json", "--tree", host.tree)
    return json.loads(done.stdout), done.returncode


def test_status_shows_the_ovn_port_and_gc_removes_the_port_a_gone_vm_left(bed):
    """What an OVN NIC leaves on a host is its Open vSwitch port (the iface-id is a column
    of it) when libvirt did not remove it; its logical port is in NB, the front-end's."""
    import json

    host = bed.hosts[0]
    guest, _ = deploy(bed, host, 111)
    [row], code = status_of(host, 111)
    assert (row["ovs_port"], row["ovn_port"], row["ovn_installed"]) == ("br-int", "one-111-0",
                                                                       True)
    assert row["problems"] == [] and code == 0
    # the VM is gone (its tap with it), its port stays on br-int
    host.ns.ip("link", "del", "one-111-0")
    guest.delete()
    host.guests.remove(guest)
    others = sorted({r["vm"] for r in json.loads(host.vnm("status", "--json", "--tree",
                                                          host.tree).stdout)} - {111})
    live = ",".join(map(str, others))
    done = host.vnm("gc", "--live", live, "--json", "--tree", host.tree)
    assert done.returncode == 0, done.stderr
    assert [(r["vm"], r["remove"], r["what"]) for r in json.loads(done.stdout)] == [
        (111, "ovs port", "br-int:one-111-0")]
    done = host.vnm("gc", "--live", live, "--apply", "--tree", host.tree)
    assert done.returncode == 0, done.stderr
    assert "one-111-0" not in host.ovs.ports("br-int")
    assert status_of(host, 111)[0] == []


PROVIDER_VLAN = "<OVN_PROVIDER_NETWORK>provider</OVN_PROVIDER_NETWORK><VLAN_ID>7</VLAN_ID>"


@pytest.fixture(scope="module")
def lan(bed):
    """A LAN host on VLAN 7 of the provider network ``provider``, which host1 maps to its
    bridge br-prov; the LAN's port is an access port of VLAN 7: only frames a localnet
    port tagged 7 reach it."""
    from support.namespaces import Guest

    host = bed.hosts[0]
    host.ovs.vsctl("add-br", "br-prov", "--", "set", "Bridge", "br-prov", "datapath_type=netdev")
    done = host.vnm("ovn", "join", f"--remote={bed.front.sb_remote}",
                    f"--encap-ip={host.address}", f"--system-id={host.name}",
                    "--bridge-datapath-type=netdev", "--bridge-mapping=provider:br-prov")
    assert done.returncode == 0, done.stderr
    lan = Guest(host.ns, tap="prov0", ipv4="192.168.10.250/24")
    host.guests.append(lan)
    lan.ip("addr", "add", "192.0.2.250/24", "dev", lan.dev)
    host.ovs.vsctl("add-port", "br-prov", "prov0", "tag=7")
    host.ns.ip("link", "set", "prov0", "up")
    return lan


def test_a_network_on_a_provider_vlan_reaches_it_through_its_localnet_port(bed, lan):
    host = bed.hosts[0]
    assert_ok(front(bed, "vnet_create", 12, stdin=vnet(12, PROVIDER_VLAN)))
    [localnet] = [p for p in bed.front.rows("Logical_Switch_Port", "name", "type", "options",
                                            "tag", "addresses")
                  if p["name"] == "one-vnet-12-localnet"]
    assert (localnet["type"], localnet["options"], localnet["tag"], localnet["addresses"]) == (
        "localnet", {"network_name": "provider"}, 7, "unknown")
    guest, stdin = deploy(bed, host, 121, net=12)
    assert guest.ping_eventually("192.168.10.250")
    # the VM is the switch's only port that keeps it; the localnet port goes with the switch
    error = assert_one_error(front(bed, "vnet_delete", 12, stdin=vnet(12)), "one-121-0")
    assert "localnet" not in error
    assert_ok(front(bed, "clean", host.name, stdin=stdin))
    host.unplug(guest, "one-121-0")
    assert_ok(front(bed, "vnet_delete", 12, stdin=vnet(12)))
    assert not [p for p in bed.front.rows("Logical_Switch_Port", "name")
                if p["name"].startswith("one-vnet-12")]


@pytest.mark.parametrize("extra, needles", [
    ("<VLAN_ID>7</VLAN_ID>", ("VLAN_ID 7", "OVN_PROVIDER_NETWORK")),
    ("<OVN_PROVIDER_NETWORK>a:b</OVN_PROVIDER_NETWORK>", ("OVN_PROVIDER_NETWORK", "a:b")),
    (PROVIDER_VLAN.replace(">7<", ">4095<"), ("VLAN_ID", "4095")),
    ("<OVN_EXTERNAL_IP>192.0.2.1/24</OVN_EXTERNAL_IP>", ("OVN_EXTERNAL_IP",
                                                         "OVN_EXTERNAL_NETWORK")),
    ("<OVN_EXTERNAL_NETWORK>14</OVN_EXTERNAL_NETWORK><OVN_EXTERNAL_IP>192.0.2.1</OVN_EXTERNAL_IP>"
     "<OVN_GATEWAY_CHASSIS>host1</OVN_GATEWAY_CHASSIS>", ("OVN_EXTERNAL_IP", "192.0.2.1")),
])
def test_a_bad_provider_network_is_one_error_and_nb_unchanged(bed, extra, needles):
    before = bed.front.dump()
    assert_one_error(front(bed, "vnet_create", 13, stdin=vnet(13, extra)), *needles)
    assert bed.front.dump() == before


def test_vnm_ovn_join_refuses_a_bad_bridge_mapping(bed):
    before = bed.hosts[1].ovs.vsctl("get", "Open_vSwitch", ".", "external_ids")
    done = bed.hosts[1].vnm("ovn", "join", "--remote=tcp:10.98.1.1:6642",
                            "--encap-ip=10.99.1.3", "--system-id=host2",
                            "--bridge-mapping=provider,x:br-prov")
    assert done.returncode == 1
    assert "--bridge-mapping 'provider,x:br-prov'" in done.stderr
    assert bed.hosts[1].ovs.vsctl("get", "Open_vSwitch", ".", "external_ids") == before


ROUTED = ("<OVN_EXTERNAL_NETWORK>14</OVN_EXTERNAL_NETWORK>"
          "<OVN_EXTERNAL_IP>192.0.2.1/24</OVN_EXTERNAL_IP>"
          "<OVN_EXTERNAL_GATEWAY>192.0.2.254</OVN_EXTERNAL_GATEWAY>"
          "<OVN_GATEWAY_CHASSIS>host1</OVN_GATEWAY_CHASSIS>")


def public_vnet(vnet_id):
    """An external network: 192.0.2.0/24 on VLAN 7 of the provider network."""
    return b64(f"<VNET><ID>{vnet_id}</ID><NAME>public</NAME><VN_MAD>ovn</VN_MAD><TEMPLATE>"
               "<NETWORK_ADDRESS>192.0.2.0</NETWORK_ADDRESS>"
               f"<NETWORK_MASK>255.255.255.0</NETWORK_MASK>{PROVIDER_VLAN}</TEMPLATE></VNET>")


def test_a_floating_ip_reaches_a_vm_through_its_networks_router(bed, lan):
    host1, host2 = bed.hosts
    assert_ok(front(bed, "vnet_create", 14, stdin=public_vnet(14)))
    assert_ok(front(bed, "vnet_create", 15, stdin=vnet(15, ROUTED)))
    assert_ok(front(bed, "vnet_create", 15, stdin=vnet(15, ROUTED)))  # again: updated in place
    assert [r["chassis_name"] for r in bed.front.rows("Gateway_Chassis", "chassis_name")] == [
        "host1"]
    assert len(bed.front.rows("Logical_Router_Port", "name")) == 2
    # the VM runs on host2: its floating IP is NATed on the gateway chassis, host1
    guest, stdin = deploy(bed, host2, 151, net=15, EXTERNAL_IP="192.0.2.151")
    guest.ip("route", "add", "default", "via", "192.168.10.1")
    assert lan.ping_eventually("192.0.2.151")  # DNAT to 192.168.10.151
    assert guest.ping_eventually("192.0.2.250")  # SNAT from 192.0.2.151: the LAN has no route
    [nat] = bed.front.rows("NAT", "type", "external_ip", "logical_ip")
    assert (nat["type"], nat["external_ip"], nat["logical_ip"]) == (
        "dnat_and_snat", "192.0.2.151", "192.168.10.151")
    # another VM cannot take the same floating IP
    before = bed.front.dump()
    taken = vm_stdin(152, host2, [nic(152, net=15, EXTERNAL_IP="192.0.2.151")])
    assert_one_error(front(bed, "pre", stdin=taken), "NIC 0", "192.0.2.151", "VM 151")
    assert bed.front.dump() == before
    # the external network keeps the router's port while the routed network exists
    assert_one_error(front(bed, "vnet_delete", 14, stdin=public_vnet(14)), "one-router-15-ext")
    assert_ok(front(bed, "clean", host2.name, stdin=stdin))
    assert bed.front.rows("NAT", "external_ip") == []
    assert not lan.ping("192.0.2.151")
    host2.unplug(guest, "one-151-0")
    assert_ok(front(bed, "vnet_delete", 15, stdin=vnet(15)))
    assert bed.front.rows("Logical_Router", "name") == []
    assert_ok(front(bed, "vnet_delete", 14, stdin=public_vnet(14)))


def test_a_floating_ip_on_a_network_without_router_is_one_error(bed):
    before = bed.front.dump()
    stdin = vm_stdin(153, bed.hosts[0], [nic(153, EXTERNAL_IP="192.0.2.153")])
    assert_one_error(front(bed, "pre", stdin=stdin), "NIC 0", "EXTERNAL_IP", "router",
                     f"network {NET}")
    assert bed.front.dump() == before
