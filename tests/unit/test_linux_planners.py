"""The Linux-bridge and VLAN/VXLAN planners over a made-up host: no root, no kernel.

Each test describes a host as :class:`~vnmlib.host.view.StaticLinks` entries
(what sysfs would show) and checks the steps planned for it, by type and by the
line ``vnm plan`` and the log would print. The same entries answer what sysfs
cannot tell (a VLAN's ID, the device it sits on, MTUs) through ``view.link``.
"""

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from vnmlib.errors import VnmError
from vnmlib.host import steps
from vnmlib.host.netlink import VLAN_INFO_PVID, VLAN_INFO_UNTAGGED
from vnmlib.host.view import LinkView, StaticLinks
from vnmlib.linux import bridge as linux_bridge, vlan_bridge
from vnmlib.model import config
from vnmlib.model.template import parse_vm

CONF = dict(config.DEFAULTS)
UPLINK = {"kind": "", "up": True, "mtu": 1500}


def host(**links):
    """A view of a host with ``links`` (name -> StaticLinks entry)."""
    return LinkView(StaticLinks(links))


def vm(*nics, vm_id=1):
    return parse_vm(b64(vm_xml(vm_id, nics)))


def nic(nic_id=0, bridge="br0", phydev="uplink0", vm_id=1, **attrs):
    return vm(bridge_nic(vm_id, nic_id, bridge, phydev, **attrs), vm_id=vm_id).nics[0]


def described(planned):
    return [(type(step).__name__, step.describe()) for step in planned]


# -- plan_attach: bridge, options, uplink ----------------------------------------

def test_attach_on_an_empty_host_creates_the_bridge_with_options_uplink_and_up():
    view = host(uplink0=UPLINK)
    need = linux_bridge.BridgeNeed(nic(BRIDGE_CONF="stp=on,sethello=6"), CONF)
    assert described(linux_bridge.plan_attach(view, [need])) == [
        ("CreateBridge", "create bridge br0 stp_state 1 hello_time 600"),
        ("Ipv6Quiet", "set br0 ipv6 accept_ra=0 autoconf=0 addr_gen_mode=1"),
        ("LinkUp", "set br0 up"),
        ("SetMaster", "enslave uplink0 to br0"),
    ]


def test_attach_of_two_nics_on_one_bridge_plans_it_once():
    view = host(uplink0=UPLINK)
    needs = [linux_bridge.BridgeNeed(nic(nic_id), CONF) for nic_id in (0, 1)]
    assert [type(s) for s in linux_bridge.plan_attach(view, needs)] == [
        steps.CreateBridge, steps.Ipv6Quiet, steps.LinkUp, steps.SetMaster]


def test_attach_where_everything_exists_plans_nothing():
    view = host(br0={"kind": "bridge", "up": True, "options": {"stp_state": 1}},
                   uplink0=dict(UPLINK, master="br0"))
    need = linux_bridge.BridgeNeed(nic(BRIDGE_CONF="stp=on"), CONF)
    assert linux_bridge.plan_attach(view, [need]) == []


def test_attach_brings_a_down_bridge_up_and_enslaves_a_free_uplink():
    view = host(br0={"kind": "bridge", "up": False}, uplink0=UPLINK)
    need = linux_bridge.BridgeNeed(nic(), CONF)
    assert described(linux_bridge.plan_attach(view, [need])) == [
        ("LinkUp", "set br0 up"), ("SetMaster", "enslave uplink0 to br0")]


def test_attach_refuses_an_uplink_already_in_another_bridge():
    view = host(br0={"kind": "bridge", "up": True}, br9={"kind": "bridge", "up": True},
                   uplink0=dict(UPLINK, master="br9"))
    with pytest.raises(VnmError, match="NIC 0: PHYDEV uplink0 is already a port of br9, "
                                       "not of br0"):
        linux_bridge.plan_attach(view, [linux_bridge.BridgeNeed(nic(), CONF)])


def test_attach_refuses_a_missing_phydev_a_non_bridge_and_other_options():
    view = host(br0={"kind": "vlan", "up": True})
    with pytest.raises(VnmError, match="BRIDGE br0 exists but is a vlan device, not a bridge"):
        linux_bridge.plan_attach(view, [linux_bridge.BridgeNeed(nic(), CONF)])
    view = host(br0={"kind": "bridge", "up": True, "options": {"stp_state": 0}})
    with pytest.raises(VnmError, match="exists with stp_state=0, but the configuration asks "
                                       "for stp_state=1"):
        linux_bridge.plan_attach(view, [linux_bridge.BridgeNeed(nic(BRIDGE_CONF="stp=on"), CONF)])
    view = host()
    with pytest.raises(VnmError, match="PHYDEV uplink0 does not exist on this host"):
        linux_bridge.plan_attach(view, [linux_bridge.BridgeNeed(nic(), CONF)])


# -- plan_release ----------------------------------------------------------------

def released(links, needs, users_left=()):
    view = host(**links)
    return described(linux_bridge.plan_release(view, "br0", needs, set(users_left)))


BRIDGE_WITH_UPLINK = {"br0": {"kind": "bridge", "up": True},
                      "uplink0": dict(UPLINK, master="br0")}


def test_release_deletes_a_bridge_left_with_its_uplink_only():
    need = linux_bridge.BridgeNeed(nic(), CONF)
    assert released(BRIDGE_WITH_UPLINK, [need]) == [("DeleteLink", "delete br0")]


def test_release_keeps_a_bridge_another_nic_still_uses():
    need = linux_bridge.BridgeNeed(nic(), CONF)
    assert released(BRIDGE_WITH_UPLINK, [need], users_left={"2-0"}) == []


def test_release_keeps_a_bridge_with_a_foreign_port_or_keep_empty_bridge():
    need = linux_bridge.BridgeNeed(nic(), CONF)
    links = dict(BRIDGE_WITH_UPLINK, **{"one-2-0": {"kind": "", "master": "br0"}})
    assert released(links, [need]) == []
    keep = linux_bridge.BridgeNeed(nic(CONF="keep_empty_bridge=true"), CONF)
    assert released(BRIDGE_WITH_UPLINK, [keep]) == []


def test_release_of_a_bridge_that_is_gone_plans_nothing():
    assert released({"uplink0": UPLINK}, [linux_bridge.BridgeNeed(nic(), CONF)]) == []


def test_release_deletes_the_vlan_device_with_its_bridge_only_when_it_is_a_port():
    need = vlan_bridge.VlanNeed(nic(VN_MAD="802.1Q", VLAN_ID=50), CONF)
    device = {"kind": "vlan", "up": True, "master": "br0"}
    assert released({"br0": {"kind": "bridge"}, "uplink0.50": device}, [need]) == [
        ("DeleteLink", "delete uplink0.50"), ("DeleteLink", "delete br0")]
    elsewhere = dict(device, master="br9")
    assert released({"br0": {"kind": "bridge"}, "uplink0.50": elsewhere}, [need]) == [
        ("DeleteLink", "delete br0")]


# -- plan_trunk (VLAN_TAGGED_ID of the bridge driver) -----------------------------

def test_trunk_turns_filtering_on_and_allows_the_vids_on_each_port():
    view = host(br0={"kind": "bridge", "options": {"vlan_filtering": 0}})
    planned = linux_bridge.plan_trunk(view, "br0", ["one-1-0", "uplink0"], [10, 11, 12, 20])
    assert described(planned) == [
        ("SetBridgeOptions", "set bridge br0 vlan_filtering 1"),
        ("VlanAdd", "allow VLANs 10-12,20 on one-1-0"),
        ("VlanAdd", "allow VLANs 10-12,20 on uplink0"),
    ]


def test_trunk_on_a_filtering_bridge_removes_old_vids_and_adds_new_ones():
    view = host(br0={"kind": "bridge", "options": {"vlan_filtering": 1}})
    planned = linux_bridge.plan_trunk(view, "br0", ["one-1-0", "uplink0"], [30], remove=[10])
    assert described(planned) == [
        ("VlanDel", "remove VLANs 10 from one-1-0"), ("VlanDel", "remove VLANs 10 from uplink0"),
        ("VlanAdd", "allow VLANs 30 on one-1-0"), ("VlanAdd", "allow VLANs 30 on uplink0"),
    ]


def test_trunk_needs_the_bridge():
    view = host(uplink0=UPLINK)
    with pytest.raises(VnmError, match="bridge br0 does not exist on this host"):
        linux_bridge.plan_trunk(view, "br0", ["uplink0"], [10])


# -- the NIC's tap -----------------------------------------------------------------

def test_a_tap_not_on_its_bridge_is_refused():
    machine = vm(bridge_nic(1, 0, "br0", "uplink0"))
    view = host(br0={"kind": "bridge"}, br9={"kind": "bridge"},
                   **{"one-1-0": {"kind": "", "master": "br9"}})
    with pytest.raises(VnmError, match="NIC 0: tap one-1-0 is not a port of bridge br0"):
        linux_bridge.require_tap(view, machine, machine.nics[0], "br0")
    view = host(br0={"kind": "bridge"})
    with pytest.raises(VnmError, match="tap one-1-0 does not exist"):
        linux_bridge.require_tap(view, machine, machine.nics[0], "br0")


def test_a_target_naming_the_uplink_is_refused():
    machine = vm(bridge_nic(1, 0, "br0", "uplink0", TARGET="uplink0"))
    view = host(br0={"kind": "bridge"}, uplink0=dict(UPLINK, master="br0"))
    with pytest.raises(VnmError, match="TARGET uplink0 is the uplink of bridge br0"):
        linux_bridge.require_tap(view, machine, machine.nics[0], "br0")


# -- VLAN / VXLAN devices -----------------------------------------------------------

def vlan_need(**attrs):
    attrs.setdefault("VLAN_ID", 50)
    return vlan_bridge.VlanNeed(nic(VN_MAD="802.1Q", **attrs), CONF)


def planned_device(need, **links):
    view = host(**links)
    return described(vlan_bridge.plan_device(view, need))


def test_vlan_device_is_created_up_and_enslaved_when_missing():
    assert planned_device(vlan_need(), br0={"kind": "bridge"}, uplink0=UPLINK) == [
        ("CreateLink", "create vlan uplink0.50 mtu 1500 id 50"),
        ("Ipv6Quiet", "set uplink0.50 ipv6 accept_ra=0 autoconf=0 addr_gen_mode=1"),
        ("LinkUp", "set uplink0.50 up"),
        ("SetMaster", "enslave uplink0.50 to br0"),
    ]


def test_vxlan_device_is_created_with_its_group():
    need = vlan_bridge.VxlanNeed(nic(VN_MAD="vxlan", VLAN_ID=500), CONF)
    assert planned_device(need, br0={"kind": "bridge"}, uplink0=UPLINK)[0] == (
        "CreateLink", "create vxlan uplink0.500 mtu 1500 id 500 group 239.0.1.244 dev uplink0 "
        "ttl 16")


def test_the_right_vlan_device_is_reused():
    device = {"kind": "vlan", "up": True, "master": "br0", "lower": "uplink0", "data": {"id": 50}}
    assert planned_device(vlan_need(), br0={"kind": "bridge"}, uplink0=UPLINK,
                          **{"uplink0.50": device}) == []
    down_and_free = dict(device, up=False, master=None)
    assert planned_device(vlan_need(), br0={"kind": "bridge"}, uplink0=UPLINK,
                          **{"uplink0.50": down_and_free}) == [
        ("LinkUp", "set uplink0.50 up"), ("SetMaster", "enslave uplink0.50 to br0")]


def test_a_same_named_device_of_another_kind_or_id_is_not_reused():
    vxlan = {"kind": "vxlan", "up": True, "data": {"id": 50}}
    with pytest.raises(VnmError, match="NIC 0: uplink0.50 exists but is not the vlan device this "
                                       "network needs \\(it is a vxlan device, not a vlan "
                                       "device\\); refusing to reuse it"):
        planned_device(vlan_need(), br0={"kind": "bridge"}, uplink0=UPLINK,
                       **{"uplink0.50": vxlan})
    other_id = {"kind": "vlan", "up": True, "lower": "uplink0", "data": {"id": 51}}
    with pytest.raises(VnmError, match="id 51 \\(want 50\\)"):
        planned_device(vlan_need(), br0={"kind": "bridge"}, uplink0=UPLINK,
                       **{"uplink0.50": other_id})


def test_vlan_device_needs_its_phydev_and_fits_in_its_mtu():
    with pytest.raises(VnmError, match="PHYDEV uplink0 does not exist on this host"):
        planned_device(vlan_need(), br0={"kind": "bridge"})
    with pytest.raises(VnmError, match="MTU 9000 of uplink0.50 is larger than the MTU 1500 "
                                       "of PHYDEV uplink0"):
        planned_device(vlan_need(MTU=9000), br0={"kind": "bridge"}, uplink0=UPLINK)


def test_one_device_for_two_nics_of_one_network_is_planned_once():
    view = host(br0={"kind": "bridge"}, uplink0=UPLINK)
    first = vlan_bridge.plan_device(view, vlan_need())
    assert [type(s) for s in vlan_bridge.plan_device(view, vlan_need(NIC_ID=1))] == []
    assert [type(s) for s in first] == [steps.CreateLink, steps.Ipv6Quiet, steps.LinkUp,
                                        steps.SetMaster]


def test_validate_vlan_id_refuses_another_vlan_in_the_bridge():
    other = {"kind": "vlan", "up": True, "master": "br0", "lower": "uplink1", "data": {"id": 60}}
    with pytest.raises(VnmError, match="bridge br0 already has uplink1.60 \\(vlan id 60\\), not "
                                       "vlan id 50 \\(validate_vlan_id\\)"):
        planned_device(vlan_need(CONF="validate_vlan_id=true"), br0={"kind": "bridge"},
                       uplink0=UPLINK, uplink1=UPLINK, **{"uplink1.60": other})


# -- 802.1Q bridge VLAN filters (post) ----------------------------------------------

def test_qinq_filters_put_the_s_vlan_untagged_and_c_vlans_tagged_on_tap_and_device():
    need = vlan_need(CVLANS="100-101")
    s_vlan, vids = vlan_bridge.vlan_filters(need.nic)
    machine = vm(bridge_nic(1, 0, "br0", "uplink0", VN_MAD="802.1Q", VLAN_ID=50))
    view = host(br0={"kind": "bridge", "options": {"vlan_filtering": 0}},
                   **{"one-1-0": {"kind": "", "master": "br0"},
                      "uplink0.50": {"kind": "vlan", "master": "br0"}})
    planned = vlan_bridge.plan_post_filters(view, machine, [(need, s_vlan, vids)])
    assert described(planned) == [
        ("VlanAdd", "allow VLANs 50 on one-1-0"), ("VlanAdd", "allow VLANs 100-101 on one-1-0"),
        ("VlanAdd", "allow VLANs 50 on uplink0.50"),
        ("VlanAdd", "allow VLANs 100-101 on uplink0.50"),
        ("SetBridgeOptions", "set bridge br0 vlan_filtering 1"),
    ]
    assert planned[0].flags == VLAN_INFO_PVID | VLAN_INFO_UNTAGGED and planned[1].flags == 0


def test_filters_need_the_device_on_the_bridge():
    need = vlan_need(VLAN_TAGGED_ID="10")
    machine = vm(bridge_nic(1, 0, "br0", "uplink0", VN_MAD="802.1Q", VLAN_ID=50))
    view = host(br0={"kind": "bridge", "options": {"vlan_filtering": 1}},
                   **{"one-1-0": {"kind": "", "master": "br0"},
                      "uplink0.50": {"kind": "vlan"}})
    with pytest.raises(VnmError, match="uplink0.50 is not a port of br0; pre must run before post"):
        vlan_bridge.plan_post_filters(view, machine, [(need, None, [10])])
