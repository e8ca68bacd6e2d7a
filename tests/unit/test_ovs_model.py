"""The pure parts of the OVS drivers: flows, port columns, bridge columns, OVSDB values."""

import pytest

from support import golden_ovs
from support.oned_input import b64, vm_xml
from support.paths import fixture_bytes

from vnmlib.ovs import flows as ovs_flows, ovsdb
from vnmlib.model.config import DEFAULTS
from vnmlib.errors import InputError
from vnmlib.ovs.need import bridge_options
from vnmlib.ovs.port_settings import port_columns
from vnmlib.model.template import parse_vm

VM9 = parse_vm(fixture_bytes("vm9_vnm_reduced.b64"))


def nic(**attrs):
    from vnmlib.model.template import Nic

    base = {"NIC_ID": "1", "MAC": "02:00:0a:00:00:01"}
    base.update({k: str(v) for k, v in attrs.items()})
    return Nic("NIC", base, 7)


def test_port_flows_of_vm9_are_the_golden_add_flows():
    """Port 3 = one-9-0 with its alias, port 4 = one-9-1, as in trace C."""
    golden = golden_ovs.flows("02-post-ovswitch", "ovsbr0", {3: 3, 4: 4})
    nic0, nic1 = VM9.nics[0], VM9.nics[1]
    ours = (ovs_flows.port_flows(3, nic0, VM9.aliases, True)
            + ovs_flows.port_flows(4, nic1, [], True))
    ours = golden_ovs.without_vnm_guards(ours)  # vnm's additions apart (golden_ovs.py)
    assert set(ours) == set(golden)
    assert len(ours) == len(set(golden))  # the reference's repeats of equal flows, once


def test_note_and_cookie():
    assert ovs_flows.note(VM9.nics[1]) == "00.00.00.09.00.01"
    assert ovs_flows.cookie(VM9.nics[1]) == 0x4F4E000000090001
    big = nic(NIC_ID=70000)
    with pytest.raises(InputError, match="NIC_ID"):
        ovs_flows.note(big)


def test_replace_lines_clear_the_port_and_the_cookie_first():
    lines = ovs_flows.replace_lines(5, VM9.nics[0], ["table=0,in_port=5,actions=drop"])
    assert lines == ["delete in_port=5", "delete cookie=0x4f4e000000090000/-1",
                     "add cookie=0x4f4e000000090000,table=0,in_port=5,actions=drop"]
    assert ovs_flows.delete_lines(VM9.nics[0], [7]) == [
        "delete cookie=0x4f4e000000090000/-1", "delete in_port=7"]


def test_without_arp_cache_poisoning_there_are_no_arp_flows():
    flows = ovs_flows.port_flows(3, VM9.nics[0], [], False)
    assert not [f for f in flows if ",arp" in f]
    assert "table=20,in_port=3,ip,priority=40000,actions=drop" in flows


@pytest.mark.parametrize("attrs, want", [
    (dict(VLAN_ID=30, VLAN_TAGGED_ID="40-42", MTU=9000),
     ({"mtu_request": "9000"},
      {"vlan_mode": "native-untagged", "tag": "30", "trunks": "40,41,42", "cvlans": "[]"},
      ["qinq-ethtype"])),
    (dict(VLAN_ID=60),
     ({"mtu_request": "[]"},
      {"vlan_mode": "native-untagged", "tag": "60", "trunks": "60", "cvlans": "[]"},
      ["qinq-ethtype"])),
    # issue 23.6: no VLAN_ID, no VLAN_TAGGED_ID: untagged frames only (VLAN 0), not every VLAN
    (dict(),
     ({"mtu_request": "[]"}, {"vlan_mode": "trunk", "tag": "[]", "trunks": "0", "cvlans": "[]"},
      ["qinq-ethtype"])),
    (dict(VLAN_TAGGED_ID="30,31"),
     ({"mtu_request": "[]"}, {"vlan_mode": "trunk", "tag": "[]", "trunks": "30,31",
                              "cvlans": "[]"}, ["qinq-ethtype"])),
    (dict(VLAN_ID=100, CVLANS="200,201", QINQ_TYPE="802.1AD"),
     ({"mtu_request": "[]"},
      {"vlan_mode": "dot1q-tunnel", "tag": "100", "cvlans": "200,201", "trunks": "[]",
       "other_config:qinq-ethtype": "802.1ad"}, [])),
])
def test_port_columns(attrs, want):
    assert port_columns(nic(**attrs)) == want


@pytest.mark.parametrize("attrs, needle", [
    (dict(VLAN_ID=4095), "VLAN_ID"),
    (dict(CVLANS="200"), "CVLANS needs VLAN_ID"),
    (dict(VLAN_ID=1, CVLANS="2", QINQ_TYPE="qinq"), "QINQ_TYPE"),
    (dict(MTU="big"), "MTU"),
    (dict(VLAN_TAGGED_ID="1-5000"), "VLAN_TAGGED_ID"),
])
def test_port_columns_refuse_bad_input(attrs, needle):
    with pytest.raises(InputError, match=needle):
        port_columns(nic(**attrs))


def test_bridge_options():
    conf = dict(DEFAULTS, ovs_bridge_conf={"stp_enable": True, "other_config:foo": "x"})
    assert bridge_options(conf, nic(OVS_BRIDGE_CONF="other_config:foo=__delete__")) == {
        "stp_enable": "true"}
    assert bridge_options(DEFAULTS, nic(BRIDGE_TYPE="openvswitch_dpdk")) == {
        "datapath_type": "netdev"}
    for bad in ("a b=1", "stp_enable", "x=a'b", "Upper=1"):
        with pytest.raises(InputError, match="NIC 1: OVS_BRIDGE_CONF"):
            bridge_options(DEFAULTS, nic(OVS_BRIDGE_CONF=bad))


@pytest.mark.parametrize("column_type, current, key, text, same", [
    ({"key": "boolean"}, True, None, "true", True),
    ({"key": "boolean"}, False, None, "true", False),
    ({"key": {"type": "string", "enum": ["set", ["system", "netdev"]]}, "min": 0, "max": 1},
     "netdev", None, "netdev", True),
    ("string", "", None, "netdev", False),
    ({"key": "string", "value": "string", "min": 0, "max": "unlimited"}, {"a": "1"}, "a", "1",
     True),
    ({"key": "string", "value": "string", "min": 0, "max": "unlimited"}, {}, "a", "1", False),
    ({"key": {"type": "integer", "maxInteger": 4095}, "min": 0, "max": 4096}, [10, 20], None,
     "20,10", True),
    ({"key": {"type": "integer"}, "min": 0, "max": 4096}, [], None, "[]", True),
    ({"key": "integer", "min": 0, "max": 1}, [], None, "5", False),
])
def test_ovsdb_holds(column_type, current, key, text, same):
    assert ovsdb.holds(column_type, current, key, text) is same


@pytest.mark.parametrize("column_type, key, text", [
    ("boolean", None, "maybe"),
    ({"key": "integer", "min": 0, "max": 1}, None, "x"),
    ({"key": "string", "value": "string", "min": 0, "max": "unlimited"}, None, "x"),
    ("string", "k", "x"),
])
def test_ovsdb_holds_refuses_values_of_another_type(column_type, key, text):
    with pytest.raises(ValueError):
        ovsdb.holds(column_type, None, key, text)


def test_ovsdb_decode():
    assert ovsdb.decode(["map", [["a", ["uuid", "u1"]]]]) == {"a": "u1"}
    assert ovsdb.decode(["set", [1, 2]]) == [1, 2]
    assert ovsdb.decode("x") == "x"


# -- whose port (issue 23.4) ---------------------------------------------------------

def _state(port, port_ids=None, iface_ids=None, kind=""):
    from vnmlib.ovs.tools import OvsState

    ports = {port: {"bridge": "ovsbr0", "external_ids": port_ids or {}},
             "uplink0": {"bridge": "ovsbr0", "external_ids": {}}}
    interfaces = {port: {"type": kind, "ofport": 3, "external_ids": iface_ids or {}}}
    return OvsState({"ovsbr0": set(ports)}, ports, interfaces, {}, {})


@pytest.mark.parametrize("tap, port_ids, iface_ids, kind, want", [
    ("one-7-1", {"vnm-vm": "7", "vnm-nic": "1"}, {}, "", None),             # marked: ours
    ("one-7-1", {"vnm-vm": "8", "vnm-nic": "1"}, {}, "", "VM 8 NIC 1"),     # another NIC's mark
    ("vnet3", {"vnm-vm": "7", "vnm-nic": "1"}, {}, "", None),               # any name, marked
    ("uplink0", {}, {}, "", "uplink of Open vSwitch bridge ovsbr0"),
    ("ovsbr0", {}, {}, "internal", "own port"),
    ("one-7-1", {}, {}, "internal", "internal interface"),
    ("one-7-1", {}, {}, "patch", "patch interface"),
    ("vnet3", {}, {"attached-mac": "02:00:0A:00:00:01"}, "", None),         # libvirt's word
    ("vnet3", {}, {"attached-mac": "02:00:0a:00:00:99"}, "", "attached-mac"),
    ("one-7-1", {}, {"attached-mac": "02:00:0a:00:00:99"}, "", "attached-mac"),
    ("one-7-1", {}, {}, "", None),                                           # its own name
    ("one-8-1", {}, {}, "", "neither vnm's mark nor an attached-mac"),
    ("one-7-1", {"vnm-vm": "x7", "vnm-nic": "1"}, {}, "", None),            # no mark: by name
])
def test_foreign_port(tap, port_ids, iface_ids, kind, want):
    from vnmlib.ovs.need import OvsNeed
    from vnmlib.ovs.port_ownership import foreign_port

    vm = parse_vm(b64(vm_xml(7, [{"NIC_ID": 1, "BRIDGE": "ovsbr0", "PHYDEV": "uplink0",
                                  "VN_MAD": "ovswitch", "MAC": "02:00:0a:00:00:01"}])))
    need = OvsNeed(vm.nics[0], DEFAULTS)
    found = foreign_port(_state(tap, port_ids, iface_ids, kind), vm, need, tap)
    assert found is None if want is None else want in found


def test_post_marks_the_port_it_configures():
    from vnmlib.ovs.port_settings import port_commands

    commands = port_commands(nic(NIC_ID=3), "vnet9")
    assert commands[1][:3] == ["set", "Port", "vnet9"]
    assert commands[1][-2:] == ["external_ids:vnm-vm=7", "external_ids:vnm-nic=3"]
