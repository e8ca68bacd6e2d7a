"""The Open vSwitch planners over a made-up host: an OVSDB snapshot and StaticLinks.

Each test describes OVS (:class:`~vnmlib.ovs.tools.OvsState`) and the kernel's
links (:class:`~vnmlib.host.view.StaticLinks`) and checks the steps planned:
the ovs-vsctl commands, their undo, the flow lines, the errors.
"""

import pytest

from support.oned_input import b64, vm_xml

from vnmlib.errors import VnmError
from vnmlib.host import steps
from vnmlib.host.view import StaticLinks
from vnmlib.model.config import DEFAULTS
from vnmlib.model.template import parse_vm
from vnmlib.ovs import flows as ovs_flows, tools as ovs
from vnmlib.ovs.bridge_plan import plan_attach, plan_release, plan_uplink_swap
from vnmlib.ovs.flow_plan import plan_flows
from vnmlib.ovs.need import OvsNeed
from vnmlib.ovs.port_settings import plan_port_settings
from vnmlib.ovs.view import OvsView

MARK = {"vnm-vm": "7", "vnm-nic": "1"}  # vnm's mark: NIC 1 of VM 7 (host.port_owner)


def ovs_state(bridges, ports=None, other_config=None, differences=None, ofports=None):
    """bridges: {bridge: [port, …]}; ports: {port: external_ids}; ofports: {interface: n}."""
    ports = ports or {}
    rows = {name: {"bridge": bridge, "external_ids": ports.get(name, {})}
            for bridge, names in bridges.items() for name in names}
    interfaces = {name: {"type": "", "ofport": (ofports or {}).get(name, 1), "error": None,
                         "external_ids": {}} for name in rows}
    return ovs.OvsState({b: set(names) for b, names in bridges.items()}, rows, interfaces,
                        other_config or {}, differences or {})


def view(state, links=None, noted=None):
    def noted_ports(bridge):
        return (noted or {}).get(bridge, [])

    return OvsView(state, StaticLinks(links or {}), noted_ports)


def vm(**attrs):
    nic = {"NIC_ID": 1, "BRIDGE": "ovsbr0", "PHYDEV": "eth9", "VN_MAD": "ovswitch",
           "MAC": "02:00:0a:00:00:01", "TARGET": "one-7-1", **attrs}
    return parse_vm(b64(vm_xml(7, [{k: v for k, v in nic.items() if v is not None}])))


def need(machine, conf=DEFAULTS):
    return OvsNeed(machine.nics[0], conf)


def transactions(planned):
    return [step for step in planned if isinstance(step, ovs.Transaction)]


# -- pre ----------------------------------------------------------------------------

def test_attach_makes_bridge_columns_and_uplink_in_one_transaction():
    conf = dict(DEFAULTS, ovs_bridge_conf={"stp_enable": True})
    planned = plan_attach(view(ovs_state({}), {"eth9": {"kind": "", "up": True}}),
                          [need(vm(), conf)])
    (transaction,) = transactions(planned)
    assert transaction.commands == [["--may-exist", "add-br", "ovsbr0"],
                                    ["set", "Bridge", "ovsbr0", "stp_enable=true"],
                                    ["--may-exist", "add-port", "ovsbr0", "eth9"]]
    # del-br takes the new bridge's uplink with it: no del-port in the undo
    assert transaction.undo_commands == [["--if-exists", "del-br", "ovsbr0"]]
    assert [s.describe() for s in planned[1:]] == [steps.Ipv6Quiet("ovsbr0").describe(),
                                                   "set ovsbr0 up"]


def test_attach_to_a_bridge_in_place_only_brings_it_up():
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9"]})
    links = {"ovsbr0": {"kind": "openvswitch", "up": False}, "eth9": {"master": "ovs-system"}}
    assert [s.describe() for s in plan_attach(view(state, links), [need(vm())])] == [
        "set ovsbr0 up"]
    links["ovsbr0"]["up"] = True
    assert plan_attach(view(state, links), [need(vm())]) == []


def test_attach_adds_the_uplink_to_an_existing_bridge_undoing_only_the_port():
    state = ovs_state({"ovsbr0": ["ovsbr0"]})
    links = {"ovsbr0": {"kind": "openvswitch", "up": True}, "eth9": {}}
    (transaction,) = plan_attach(view(state, links), [need(vm())])
    assert transaction.commands == [["--may-exist", "add-port", "ovsbr0", "eth9"]]
    assert transaction.undo_commands == [["--if-exists", "del-port", "ovsbr0", "eth9"]]


def test_two_nics_on_one_bridge_add_it_once():
    machine = parse_vm(b64(vm_xml(7, [
        {"NIC_ID": n, "BRIDGE": "ovsbr0", "PHYDEV": "eth9", "VN_MAD": "ovswitch"}
        for n in (0, 1)])))
    needs = [OvsNeed(nic, DEFAULTS) for nic in machine.nics]
    (transaction,) = transactions(plan_attach(view(ovs_state({}), {"eth9": {}}), needs))
    assert transaction.commands == [["--may-exist", "add-br", "ovsbr0"],
                                    ["--may-exist", "add-port", "ovsbr0", "eth9"]]


@pytest.mark.parametrize("bridges, links, differences, needle", [
    ({}, {"ovsbr0": {"kind": "bridge"}, "eth9": {}}, {},
     "BRIDGE ovsbr0 exists but is a bridge device, not an Open vSwitch bridge"),
    ({}, {"ovsbr0": {}, "eth9": {}}, {}, "is a plain device"),
    ({}, {}, {}, "PHYDEV eth9 does not exist on this host"),
    ({}, {"br7": {"kind": "bridge"}, "eth9": {"master": "br7"}}, {},
     "PHYDEV eth9 is already a port of br7"),
    ({"ovsbr1": ["eth9"]}, {"eth9": {"master": "ovs-system"}}, {},
     "PHYDEV eth9 is already a port of Open vSwitch bridge ovsbr1, not of ovsbr0"),
    ({"ovsbr0": ["eth9"]}, {"eth9": {}}, {("ovsbr0", "stp_enable"): "false"},
     "bridge ovsbr0 exists with stp_enable=false, but the configuration asks for "
     "stp_enable=true"),
])
def test_attach_refuses_what_it_cannot_reuse(bridges, links, differences, needle):
    conf = dict(DEFAULTS, ovs_bridge_conf={"stp_enable": True})
    state = ovs_state(bridges, differences=differences)
    with pytest.raises(VnmError, match=needle):
        plan_attach(view(state, links), [need(vm(), conf)])


# -- post ---------------------------------------------------------------------------

def test_port_settings_are_one_transaction_and_qinq_raises_vlan_limit_once():
    machine = vm(VLAN_ID=100, CVLANS="200")
    state = ovs_state({"ovsbr0": ["eth9", "one-7-1"]}, {"one-7-1": MARK}, ofports={"one-7-1": 3})
    planned = plan_port_settings(state, machine, [need(machine)])
    assert [type(s) for s in planned] == [ovs.Transaction, ovs.PurgeDatapathFlows]
    assert planned[0].commands[-1] == ["set", "Open_vSwitch", ".", "other_config:vlan-limit=2"]
    state.other_config["vlan-limit"] = "2"  # set already: nothing global to change
    assert [type(s) for s in plan_port_settings(state, machine, [need(machine)])] == [
        ovs.Transaction]


def test_flows_of_a_port_carry_its_aliases_but_the_leaving_one():
    machine = parse_vm(b64(vm_xml(7, [
        {"NIC_ID": 1, "BRIDGE": "ovsbr0", "PHYDEV": "eth9", "VN_MAD": "ovswitch",
         "MAC": "02:00:0a:00:00:01", "IP": "10.0.0.1"},
        {"_tag": "NIC_ALIAS", "NIC_ID": 2, "PARENT_ID": 1, "IP": "10.0.0.2",
         "FILTER_IP_SPOOFING": "YES"}])))
    state = ovs_state({"ovsbr0": ["eth9", "one-7-1"]}, {"one-7-1": MARK}, ofports={"one-7-1": 3})
    (bundle,) = plan_flows(state, machine, "ovswitch", [need(machine)], DEFAULTS)
    assert bundle.bridge == "ovsbr0"
    assert bundle.lines[:2] == ["delete in_port=3", "delete cookie=0x4f4e000000070001/-1"]
    assert any("10.0.0.2" in line for line in bundle.lines)
    (bundle,) = plan_flows(state, machine, "ovswitch", [need(machine)], DEFAULTS,
                           leaving_alias=machine.aliases[0])
    assert not any("10.0.0.2" in line for line in bundle.lines)


def test_flows_need_the_port_the_hypervisor_added():
    machine = vm()
    with pytest.raises(VnmError, match="tap one-7-1 is not a port of any Open vSwitch bridge"):
        plan_flows(ovs_state({"ovsbr0": ["eth9"]}), machine, "ovswitch", [need(machine)],
                   DEFAULTS)
    state = ovs_state({"ovsbr0": ["eth9", "one-7-1"]}, {"one-7-1": MARK}, ofports={"one-7-1": -1})
    with pytest.raises(VnmError, match="Open vSwitch cannot use tap one-7-1"):
        plan_flows(state, machine, "ovswitch", [need(machine)], DEFAULTS)


# -- clean --------------------------------------------------------------------------

class Users:
    """BridgeUsers' reading side over a dict: {bridge: {user, …}}."""

    def __init__(self, users):
        self.records = users

    def users(self, bridge):
        return self.records.get(bridge, set())


def test_release_of_the_last_nic_deletes_port_and_bridge_in_one_transaction():
    machine = vm()
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9", "one-7-1"]}, {"one-7-1": MARK})
    planned = plan_release(view(state), machine, [need(machine)], Users({}), {"one-7-1"})
    (transaction,) = planned  # the bridge takes its flows with it: no flow bundle
    assert transaction.commands == [["--if-exists", "del-port", "ovsbr0", "one-7-1"],
                                    ["--if-exists", "del-br", "ovsbr0"]]


def test_release_keeps_a_bridge_in_use_and_deletes_the_nics_flows():
    machine = vm()
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9", "one-7-1", "one-8-0"]},
                      {"one-7-1": MARK}, ofports={"one-7-1": 3, "one-8-0": 4})
    note = ovs_flows.note(machine.nics[0])
    noted = {"ovsbr0": [(0, 3, note), (0, 9, note),   # the reference's flows of this NIC
                        (ovs_flows.cookie(machine.nics[0]), 3, note),  # vnm's: by cookie
                        (0, 4, "00.00.00.08.00.00")]}  # another NIC's
    planned = plan_release(view(state, noted=noted), machine, [need(machine)], Users({}),
                           {"one-7-1"})
    bundle, transaction = planned
    assert bundle.lines == ["delete cookie=0x4f4e000000070001/-1", "delete in_port=3",
                            "delete in_port=9"]
    assert transaction.commands == [["--if-exists", "del-port", "ovsbr0", "one-7-1"]]
    # a bridge-user record of another NIC keeps the bridge too
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9", "one-7-1"]}, {"one-7-1": MARK})
    planned = plan_release(view(state), machine, [need(machine)], Users({"ovsbr0": {"8-0"}}),
                           {"one-7-1"})
    assert transactions(planned)[0].commands == [["--if-exists", "del-port", "ovsbr0",
                                                  "one-7-1"]]


def test_release_leaves_a_port_not_provably_the_nics():
    machine = vm()
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9", "one-7-1"]}, ofports={"one-7-1": 3})
    noted = {"ovsbr0": [(0, 3, ovs_flows.note(machine.nics[0]))]}
    planned = plan_release(view(state, noted=noted), machine, [need(machine)], Users({}),
                           owned=set())
    # nothing deleted but the NIC's own flows: the port and its in_port flows are its owner's
    assert [s.lines for s in planned] == [["delete cookie=0x4f4e000000070001/-1"]]


# -- update_nic ---------------------------------------------------------------------

def test_uplink_swap_moves_the_bridge_to_the_new_phydev():
    machine = vm(PHYDEV="eth10")
    state = ovs_state({"ovsbr0": ["ovsbr0", "eth9", "one-7-1"]})
    links = {"ovsbr0": {"kind": "openvswitch", "up": True}, "eth9": {"master": "ovs-system"},
             "eth10": {}}
    swap, add = plan_uplink_swap(view(state, links), [need(machine)], ["eth9"])
    assert swap.commands == [["--if-exists", "del-port", "ovsbr0", "eth9"]]
    assert add.commands == [["--may-exist", "add-port", "ovsbr0", "eth10"]]
