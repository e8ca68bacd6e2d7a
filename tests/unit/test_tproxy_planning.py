"""TProxy without a kernel: ``:tproxy:`` parsing, which services a NIC's bridge gets, the
ARP chain's nft text, and when ``clean`` removes a bridge's TProxy."""

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from vnmlib.errors import InputError
from vnmlib.host.view import LinkView, StaticLinks
from vnmlib.linux import tproxy
from vnmlib.linux.bridge import BridgeNeed
from vnmlib.model import config, tproxy_conf
from vnmlib.model.template import parse_vm

ENTRY = {"service_port": 5030, "remote_addr": "10.0.0.1", "remote_port": 5030}


def nic(network_id=0, network="vnet0", bridge="br0", phydev="uplink0"):
    attrs = {"NETWORK_ID": network_id, "NETWORK": network}
    return parse_vm(b64(vm_xml(1, [bridge_nic(1, 0, bridge, phydev, **attrs)]))).nics[0]


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, message):
        self.lines.append(message)


class Ctx:
    def __init__(self, entries):
        self.conf = dict(config.DEFAULTS, tproxy=entries)
        self.log = Log()


def test_entries_are_parsed_to_typed_values():
    [service] = tproxy_conf.services({"tproxy": [
        dict(ENTRY, service_port="5030", remote_addr="OneGate.example.", networks=[0, "vnet1"])]})
    assert service.as_list() == [5030, "OneGate.example", 5030]
    assert service.networks == {"0", "vnet1"}
    assert tproxy_conf.services({"tproxy": None}) == [] == tproxy_conf.services({})


@pytest.mark.parametrize("entry, needle", [
    (dict(ENTRY, remote_addr="10.0.0.1;reboot"), ":remote_addr: '10.0.0.1;reboot' is not"),
    (dict(ENTRY, remote_addr="10.0.0.300"), ":remote_addr: '10.0.0.300' is not"),
    (dict(ENTRY, remote_addr="-x.example"), ":remote_addr: '-x.example' is not"),
    (dict(ENTRY, remote_addr=["10.0.0.1"]), ":remote_addr: ['10.0.0.1'] is not"),
    (dict(ENTRY, service_port=True), ":service_port: True is not a port"),
    (dict(ENTRY, remote_port=65536), ":remote_port: 65536 is not a port"),
    (dict(ENTRY, networks=[{"a": 1}]), ":networks: {'a': 1} is not"),
    (dict(ENTRY, command="/bin/sh"), "unknown key :command:"),
    ("5030", "must be a mapping"),
])
def test_a_bad_entry_is_one_message_naming_it(entry, needle):
    with pytest.raises(InputError) as error:
        tproxy_conf.services({"tproxy": [ENTRY, entry]})
    assert ":tproxy: entry 2" in str(error.value) and needle in str(error.value)


def test_networks_choose_the_bridges_and_the_first_entry_of_a_port_wins():
    ctx = Ctx([dict(ENTRY, networks=["vnet1"]),
               dict(ENTRY, remote_addr="10.0.0.2", networks=[0]),
               dict(ENTRY, remote_addr="10.0.0.3"),
               dict(ENTRY, service_port=5031, networks=[7])])
    wanted = tproxy.wanted(ctx, [nic(0, "vnet0")], BridgeNeed)
    assert [s.as_list() for s in wanted["br0"].services.values()] == [[5030, "10.0.0.2", 5030]]
    assert wanted["br0"].uplinks == {"uplink0"}
    assert "service_port 5030 is defined twice" in ctx.log.lines[0]
    assert tproxy.wanted(Ctx([dict(ENTRY, networks=[5])]), [nic(0, "vnet0")], BridgeNeed) == {}


def test_a_bridge_without_room_for_the_veth_names_is_refused():
    with pytest.raises(InputError, match="BRIDGE abcdefghijklmno cannot have a TProxy"):
        tproxy.wanted(Ctx([ENTRY]), [nic(bridge="abcdefghijklmno")], BridgeNeed)


def test_the_arp_chain_names_the_uplinks_both_ways():
    text = tproxy._chain_script("br0", {"uplink0.50"})
    assert text.splitlines()[2:] == [
        "flush chain bridge one_tproxy ch_br0",
        'add rule bridge one_tproxy ch_br0 oifname "uplink0.50" arp operation request '
        "arp daddr ip 169.254.16.9 drop",
        'add rule bridge one_tproxy ch_br0 iifname "uplink0.50" arp operation request '
        "arp daddr ip 169.254.16.9 drop"]
    assert tproxy._chain_script("br0", None).splitlines()[-1] == \
        "delete chain bridge one_tproxy ch_br0"


BRIDGE = {"kind": "bridge", "up": True}
PORT = {"kind": "", "master": "br0", "up": True}


@pytest.mark.parametrize("links, users, removed", [
    ({"br0": BRIDGE, "br0b": PORT, "uplink0": PORT}, [], True),  # the veth is no guest
    ({}, [], True),  # the bridge went with its last guest
    ({"br0": BRIDGE, "br0b": PORT, "one-2-0": PORT}, [], False),  # a guest's tap
    ({"br0": BRIDGE, "br0b": PORT}, ["2-0"], False),  # another NIC's record
])
def test_clean_removes_the_tproxy_once_no_guest_is_left(links, users, removed):
    need = BridgeNeed(nic(), dict(config.DEFAULTS))
    planned = tproxy.plan_release(LinkView(StaticLinks(links)), "br0", [need], users)
    assert [type(step).__name__ for step in planned] == (
        ["TproxyServices", "TproxyArpRule", "RemoveTproxyPort"] if removed else [])
