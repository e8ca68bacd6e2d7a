"""bridge driver against the real kernel, in a fresh namespace per test."""

import json

from support.assertions import assert_ok, assert_one_error
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import fixture_bytes
from support.remotes import copy_tree

VM7 = fixture_bytes("vm7_vnm_reduced.b64")


def topology(ns):
    """Link names, masters and kinds: the part of the state the bridge driver owns."""
    return {name: (link["master"], link["kind"]) for name, link in ns.links().items()}


def test_pre_creates_bridge_and_enslaves_phydev(ns):
    done = assert_ok(ns.run("bridge", "pre", stdin=VM7))
    links = ns.links()
    assert links["br0"]["kind"] == "bridge" and links["br0"]["up"]
    assert links["uplink0"]["master"] == "br0"
    # only the bridge driver's NIC: fw's onebr1 and vxlan's onebr.100 are not ours
    assert "onebr1" not in links and "onebr.100" not in links
    assert done.stdout == b""
    assert "INFO: pre: create bridge br0" in done.stderr.decode()


def test_pre_is_idempotent_and_clean_restores_prior_state(ns):
    before = topology(ns)
    assert_ok(ns.run("bridge", "pre", stdin=VM7))
    after_first = topology(ns)
    second = assert_ok(ns.run("bridge", "pre", stdin=VM7))
    assert topology(ns) == after_first
    assert second.stderr == b""  # nothing to change, nothing logged
    assert_ok(ns.run("bridge", "clean", "node1", stdin=VM7))
    assert topology(ns) == before
    assert_ok(ns.run("bridge", "clean", "node1", stdin=VM7))  # clean twice: still fine
    assert topology(ns) == before


def test_clean_keeps_bridge_while_a_guest_is_attached(ns):
    a = b64(vm_xml(1, [bridge_nic(1, 0, "brx", "uplink0")]))
    b = b64(vm_xml(2, [bridge_nic(2, 0, "brx", "uplink0")]))
    assert_ok(ns.run("bridge", "pre", stdin=a))
    assert_ok(ns.run("bridge", "pre", stdin=b))
    ns.add_tap("one-1-0", "brx")
    ns.add_tap("one-2-0", "brx")
    ns.ip("link", "del", "one-2-0")  # libvirt removes the tap before clean
    assert_ok(ns.run("bridge", "clean", "h", stdin=b))
    assert ns.links()["brx"]["kind"] == "bridge"  # VM 1's tap is still a guest
    ns.ip("link", "del", "one-1-0")
    assert_ok(ns.run("bridge", "clean", "h", stdin=a))
    assert "brx" not in ns.links()
    assert ns.links()["uplink0"]["master"] is None


def test_clean_keeps_bridge_another_vm_prepared_but_not_yet_plugged(ns):
    """The window between pre and the hypervisor's tap: no guest port, bridge in use."""
    a = b64(vm_xml(1, [bridge_nic(1, 0, "brx", "uplink0")]))
    b = b64(vm_xml(2, [bridge_nic(2, 0, "brx", "uplink0")]))
    assert_ok(ns.run("bridge", "pre", stdin=a))
    assert_ok(ns.run("bridge", "pre", stdin=b))
    assert_ok(ns.run("bridge", "clean", "h", stdin=a))
    assert "brx" in ns.links()
    assert_ok(ns.run("bridge", "clean", "h", stdin=b))
    assert "brx" not in ns.links()


def test_clean_hotplug_detach_only_touches_the_detached_nic(ns):
    nics = [bridge_nic(3, 0, "bra", "uplink0"), bridge_nic(3, 1, "brb", "uplink1")]
    assert_ok(ns.run("bridge", "pre", stdin=b64(vm_xml(3, nics))))
    nics[1]["ATTACH"] = "YES"
    assert_ok(ns.run("bridge", "clean", "h", stdin=b64(vm_xml(3, nics))))
    links = ns.links()
    assert "bra" in links and "brb" not in links
    # an alias being detached does no bridge-level work (reference special_hotplug?)
    alias = {"_tag": "NIC_ALIAS", "NIC_ID": 2, "PARENT_ID": 0, "ATTACH": "YES", "VN_MAD": "bridge"}
    assert_ok(ns.run("bridge", "clean", "h", stdin=b64(vm_xml(3, nics[:1] + [alias]))))
    assert "bra" in ns.links()


def test_clean_never_deletes_a_bridge_another_nic_of_the_same_vm_uses(ns):
    nics = [bridge_nic(4, 0, "brs", "uplink0"), bridge_nic(4, 1, "brs")]
    assert_ok(ns.run("bridge", "pre", stdin=b64(vm_xml(4, nics))))
    ns.add_tap("one-4-0", "brs")
    nics[1]["ATTACH"] = "YES"  # detach NIC 1 while NIC 0 is plugged in
    assert_ok(ns.run("bridge", "clean", "h", stdin=b64(vm_xml(4, nics))))
    assert "brs" in ns.links()


def test_keep_empty_bridge_from_network_conf(ns):
    vm = b64(vm_xml(5, [bridge_nic(5, 0, "brk", "uplink1", CONF="keep_empty_bridge=yes")]))
    assert_ok(ns.run("bridge", "pre", stdin=vm))
    assert_ok(ns.run("bridge", "clean", "h", stdin=vm))
    assert ns.links()["uplink1"]["master"] == "brk"


def test_bridge_options_from_conf_file_and_bridge_conf(ns, tmp_path):
    tree = copy_tree(tmp_path / "one", conf=":ip_bridge_conf:\n  :forward_delay: 1000\n")
    vm = b64(vm_xml(6, [bridge_nic(6, 0, "bro", BRIDGE_CONF="stp=on,sethello=6")]))
    assert_ok(ns.run("bridge", "pre", stdin=vm, tree=tree))
    data = ns.links()["bro"]["data"]
    assert data["stp_state"] == 1
    assert data["hello_time"] == 600    # brctl seconds -> centiseconds (SPEC decision 2)
    assert data["forward_delay"] == 1000


def test_existing_bridge_with_other_options_is_an_error(ns):
    ns.ip("link", "add", "brq", "type", "bridge", "stp_state", "0")
    vm = b64(vm_xml(7, [bridge_nic(7, 0, "brq", "uplink0", BRIDGE_CONF="stp_state=1")]))
    before = topology(ns)
    assert_one_error(ns.run("bridge", "pre", stdin=vm), "brq", "stp_state")
    assert topology(ns) == before


def test_existing_non_bridge_with_the_bridge_name_is_an_error(ns):
    vm = b64(vm_xml(7, [bridge_nic(7, 0, "uplink1p", "uplink0")]))
    before = topology(ns)
    assert_one_error(ns.run("bridge", "pre", stdin=vm), "NIC 0", "not a bridge")
    assert topology(ns) == before


def test_missing_phydev_fails_and_changes_nothing(ns):
    vm = b64(vm_xml(8, [bridge_nic(8, 0, "brm", "uplink0"), bridge_nic(8, 1, "brn", "nosuch0")]))
    before = topology(ns)
    assert_one_error(ns.run("bridge", "pre", stdin=vm), "NIC 1", "PHYDEV nosuch0")
    assert topology(ns) == before


def test_phydev_of_another_bridge_is_never_stolen(ns):
    ns.ip("link", "add", "brother", "type", "bridge")
    ns.ip("link", "set", "uplink0", "master", "brother")
    vm = b64(vm_xml(8, [bridge_nic(8, 0, "brm", "uplink0")]))
    assert_one_error(ns.run("bridge", "pre", stdin=vm), "uplink0", "brother")
    assert ns.links()["uplink0"]["master"] == "brother"
    assert "brm" not in ns.links()


def test_failed_pre_rolls_back_what_it_created(ns):
    # NIC 1's hello_time is refused by the kernel (range 1-10 s) only when
    # applying, after NIC 0's bridge was created and its uplink enslaved.
    vm = b64(vm_xml(9, [bridge_nic(9, 0, "brr", "uplink0"),
                        bridge_nic(9, 1, "brs", "uplink1", BRIDGE_CONF="hello_time=6")]))
    before = topology(ns)
    err = assert_one_error(ns.run("bridge", "pre", stdin=vm), "brs")
    assert "hello_time" in err or "range" in err
    assert topology(ns) == before


def test_bad_input_one_error_line_and_no_change(ns):
    before = topology(ns)
    for stdin, needle in [(b"%%%", "base64"), (b64("<VM><ID>1</ID>"), "XML"),
                          (b64(vm_xml(1, [bridge_nic(1, 0, "b" * 16, "uplink0")])), "NIC 0: BRIDGE")]:
        assert_one_error(ns.run("bridge", "pre", stdin=stdin), needle)
    assert topology(ns) == before


def test_update_nic_moves_the_uplink(ns):
    nic = bridge_nic(10, 0, "bru", "uplink0", NETWORK_ID=42)
    assert_ok(ns.run("bridge", "pre", stdin=b64(vm_xml(10, [nic]))))
    nic["PHYDEV"] = "uplink1"
    full = vm_xml(10, [nic], extra="<TEMPLATE><VNET_UPDATE><PHYDEV><![CDATA[uplink0]]>"
                                   "</PHYDEV></VNET_UPDATE></TEMPLATE>")
    assert_ok(ns.run("bridge", "update_nic", "one-10", "42", stdin=b64(full)))
    links = ns.links()
    assert links["uplink0"]["master"] is None and links["uplink1"]["master"] == "bru"
    # another network's update leaves this NIC alone
    assert_ok(ns.run("bridge", "update_nic", "one-10", "43", stdin=b64(full)))
    assert_one_error(ns.run("bridge", "update_nic", "one-10", "x", stdin=b64(full)), "vnet_id")


def test_update_sg_and_vnet_actions_succeed(ns):
    assert_ok(ns.run("bridge", "update_sg", "one-7", stdin=VM7))
    vnet = b64("<VNET><ID>7</ID></VNET>")
    assert_ok(ns.run("bridge", "vnet_create", "7", stdin=vnet))
    assert_ok(ns.run("bridge", "vnet_delete", "7", stdin=vnet))


def test_post_without_trunking_changes_nothing(ns):
    assert_ok(ns.run("bridge", "pre", stdin=VM7))
    before = topology(ns)
    assert_ok(ns.run("bridge", "post", "one-7", "node1", stdin=VM7))
    assert topology(ns) == before


def test_runs_from_a_synced_copy_with_its_own_conf(ns, tmp_path):
    tree = copy_tree(tmp_path / "one", conf=":keep_empty_bridge: true\n")
    vm = b64(vm_xml(11, [bridge_nic(11, 0, "brc", "uplink0")]))
    done = assert_ok(ns.run("bridge", "pre", stdin=vm, tree=tree))
    assert "create bridge brc" in done.stderr.decode()
    assert_ok(ns.run("bridge", "clean", "h", stdin=vm, tree=tree))
    assert "brc" in ns.links()  # the copy's conf said keep_empty_bridge


def test_ip_json_view_agrees(ns):
    """Independent check with `bridge -j link` (not vnmlib's sysfs reader)."""
    assert_ok(ns.run("bridge", "pre", stdin=VM7))
    ports = json.loads(ns.exec("bridge", "-j", "link", "show"))
    assert {(p["ifname"], p["master"]) for p in ports} == {("uplink0", "br0")}


def test_trunking_on_a_kernel_without_bridge_vlan_filtering_is_one_line(ns):
    """This host's kernel has no bridge VLAN filtering: VLAN_TAGGED_ID was an internal
    error (FileNotFoundError from sysfs); it is one line saying what the kernel lacks."""
    vm = b64(vm_xml(12, [bridge_nic(12, 0, "vfbr", "uplink0", VLAN_TAGGED_ID="10")]))
    assert_ok(ns.run("bridge", "pre", stdin=vm))
    ns.add_tap("one-12-0", "vfbr")
    probe = ns.exec("sh", "-c", "ls /sys/class/net/vfbr/bridge/")
    done = ns.run("bridge", "post", "one-12", "h", stdin=vm)
    if "vlan_filtering" in probe.split():  # a kernel with it (full-kernel runs): it works
        assert_ok(done)
    else:
        assert_one_error(done, "vlan_filtering", "VLAN_TAGGED_ID")
