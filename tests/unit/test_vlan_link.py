"""The <PHYDEV>.<VLAN_ID> device specs of 802.1Q and vxlan: lookups, mappings, validation."""

import socket

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import fixture_bytes
from vnmlib.model import config
from vnmlib.errors import InputError
from vnmlib.host.netlink.reader import Link
from vnmlib.model.template import parse_vm
from vnmlib.linux.vlan_link import vlan_spec, vxlan_spec

CONF = dict(config.DEFAULTS)
NO_ADDRESSES = list


def nic(driver="802.1Q", **attrs):
    attrs.setdefault("VLAN_ID", 50)
    return parse_vm(b64(vm_xml(1, [bridge_nic(1, 0, "onebr.50", "uplink0", VN_MAD=driver,
                                              **attrs)]))).nics[0]


def vx(conf=CONF, addresses=NO_ADDRESSES, **attrs):
    return vxlan_spec(nic("vxlan", **attrs), conf, addresses)


def test_golden_b_vlan_devices():
    """golden B/01: uplink0.50 mtu 1500 id 50 reorder_hdr on; uplink0.100 mtu 9000 id 100."""
    first, second = (vlan_spec(n, CONF) for n in parse_vm(fixture_bytes("vm8_vnm_reduced.b64"))
                     .driver_nics("802.1Q"))
    assert (first.name, first.mtu, first.data) == ("uplink0.50", 1500, {"id": 50, "flags": (1, 1)})
    assert first.netlink_args(7) == {"ifname": "uplink0.50", "kind": "vlan", "mtu": 1500,
                                     "vlan_id": 50, "vlan_flags": {"flags": 1, "mask": 1},
                                     "link": 7}
    assert (second.name, second.mtu, second.data) == ("uplink0.100", 9000, {"id": 100})


def test_golden_a_vxlan_device():
    """golden A/01: uplink0.100 mtu 1450 type vxlan id 100 group 239.0.0.100 ttl 16 dev uplink0."""
    spec = next(vxlan_spec(n, CONF, NO_ADDRESSES)
                for n in parse_vm(fixture_bytes("vm7_vnm_reduced.b64")).driver_nics("vxlan"))
    assert (spec.name, spec.mtu) == ("uplink0.100", 1450)
    assert spec.data == {"id": 100, "group": "239.0.0.100", "ttl": 16}
    assert spec.netlink_args(3)["vxlan_link"] == 3


def test_mtu_lookup_order():
    assert vlan_spec(nic(MTU=9000), dict(CONF, vlan_mtu=1400)).mtu == 9000
    assert vlan_spec(nic(CONF="vlan_mtu=1300"), dict(CONF, vlan_mtu=1400)).mtu == 1300
    assert vlan_spec(nic(), dict(CONF, vlan_mtu=1400)).mtu == 1400
    assert vx(CONF="vxlan_mtu=1400").mtu == 1400
    assert vx().mtu == 1500


@pytest.mark.parametrize("vni, group", [(100, "239.0.0.100"), (500, "239.0.1.244"),
                                        (70000, "239.1.17.112")])
def test_multicast_group_is_base_plus_vni(vni, group):
    assert vx(VLAN_ID=vni).data["group"] == group


def test_multicast_base_from_nic_conf_and_ipv6():
    assert vx(VXLAN_MC="239.1.0.0").data["group"] == "239.1.0.50"
    assert vx(CONF="vxlan_mc=239.2.0.0").data["group"] == "239.2.0.50"
    assert vx(VXLAN_MC="ff05::100").data["group6"] == "ff05::132"


def test_evpn_tep_dev_or_local_address():
    dev = vx(VXLAN_MODE="evpn")
    assert "group" not in dev.data and dev.on_phydev and "dev uplink0" in dev.shown
    addresses = [(socket.AF_INET6, "fe80::1", 253), (socket.AF_INET6, "2001:db8::7", 0),
                 (socket.AF_INET, "192.0.2.7", 0)]
    local = vx(VXLAN_MODE="evpn", VXLAN_TEP="local", addresses=lambda: addresses)
    assert local.data["local"] == "192.0.2.7" and not local.on_phydev
    assert "vxlan_link" not in local.netlink_args(3)
    only6 = vx(CONF="vxlan_mode=evpn,vxlan_tep=ip", addresses=lambda: addresses[:2])
    assert only6.data["local6"] == "2001:db8::7"


def test_ip_link_conf_vxlan_options_conf_file_and_network():
    conf = dict(CONF, ip_link_conf={"nolearning": None, "dstport": 4789})
    spec = vx(conf)
    assert spec.data["learning"] == 0 and spec.data["port"] == 4789
    spec = vx(conf, IP_LINK_CONF="dstport=8472,nolearning=__delete__,udpcsum=,tos=inherit,ttl=64")
    assert spec.data["port"] == 8472 and "learning" not in spec.data
    assert spec.data["udp_csum"] == 1 and spec.data["tos"] == 1 and spec.data["ttl"] == 64
    assert spec.netlink_args(1)["vxlan_port"] == 8472


def test_ip_link_conf_vlan_options():
    spec = vlan_spec(nic(IP_LINK_CONF="protocol=802.1ad,gvrp=on,reorder_hdr=off"), CONF)
    assert spec.data == {"id": 50, "protocol": 0x88A8, "flags": (0x2, 0x3)}
    conf = dict(CONF, ip_link_conf={"mvrp": True, "loose_binding": False})
    assert vlan_spec(nic(), conf).data["flags"] == (0x8, 0xC)


@pytest.mark.parametrize("driver, attrs, needle", [
    ("802.1Q", {"VLAN_ID": ""}, "NIC 0: VLAN_ID is missing"),
    ("802.1Q", {"VLAN_ID": 0}, "NIC 0: VLAN_ID 0 is out of range 1..4094"),
    ("802.1Q", {"VLAN_ID": 4095}, "VLAN_ID 4095 is out of range"),
    ("802.1Q", {"VLAN_ID": 5000}, "VLAN_ID 5000 is out of range"),
    ("802.1Q", {"VLAN_ID": "5x"}, "VLAN_ID '5x' is not an integer"),
    ("vxlan", {"VLAN_ID": 16777216}, "VLAN_ID 16777216 is out of range 1..16777215"),
    ("802.1Q", {"MTU": "big"}, "NIC 0: MTU 'big' is not an integer"),
    ("802.1Q", {"MTU": 20}, "NIC 0: MTU 20 is out of range 68..65535"),
    ("802.1Q", {"CONF": "vlan_mtu=abc"}, "NIC 0: vlan_mtu 'abc' is not an integer"),
    ("vxlan", {"MTU": 70000}, "MTU 70000 is out of range"),
    ("802.1Q", {"PHYDEV": "verylongphydev0", "VLAN_ID": 100},
     "NIC 0: VLAN device name 'verylongphydev0.100' is 19 bytes"),
    ("802.1Q", {"IP_LINK_CONF": "nolearning="}, "IP_LINK_CONF/ip_link_conf option 'nolearning'"),
    ("802.1Q", {"IP_LINK_CONF": "protocol=802.1x"}, "IP_LINK_CONF protocol '802.1x'"),
    ("802.1Q", {"IP_LINK_CONF": "gvrp=maybe"}, "IP_LINK_CONF gvrp 'maybe' must be on or off"),
    ("vxlan", {"IP_LINK_CONF": "reorder_hdr=on"}, "option 'reorder_hdr' is not supported"),
    ("vxlan", {"IP_LINK_CONF": "dstport=99999"}, "IP_LINK_CONF dstport 99999 is out of range"),
    ("vxlan", {"IP_LINK_CONF": "nolearning=off"}, "is a flag: give it without a value"),
    ("vxlan", {"IP_LINK_CONF": "remote=10.0.0.1"}, "option 'remote' is not supported"),
    ("vxlan", {"VXLAN_MODE": "unicast"}, "VXLAN_MODE 'unicast' is not one of"),
    ("vxlan", {"VXLAN_MC": "10.0.0.0"}, "is not a multicast address"),
    ("vxlan", {"VXLAN_MC": "239.255.255.255"}, "is not a multicast address"),
    ("vxlan", {"VXLAN_MODE": "evpn", "VXLAN_TEP": "local"}, "has no global address"),
])
def test_bad_settings_name_nic_and_attribute(driver, attrs, needle):
    with pytest.raises(InputError) as err:
        build = vlan_spec if driver == "802.1Q" else lambda n, c: vxlan_spec(n, c, NO_ADDRESSES)
        build(nic(driver, **attrs), CONF)
    assert needle in str(err.value)


def link(kind, data, lower=None):
    return Link("uplink0.50", 9, True, 1500, lower, None, kind, data)


def test_differences_refuse_another_kind_id_or_lower_device():
    spec = vlan_spec(nic(IP_LINK_CONF="reorder_hdr=on"), CONF)
    assert spec.differences(link("vlan", {"id": 50, "flags": 0x1, "protocol": 0x8100}, 3), 3) == []
    assert spec.differences(link("vxlan", {"id": 50}), 3) == [
        "it is a vxlan device, not a vlan device"]
    assert spec.differences(link("veth", {}), 3) == ["it is a veth device, not a vlan device"]
    assert spec.differences(link("vlan", {"id": 51, "flags": 0x1}, 3), 3) == ["id 51 (want 50)"]
    assert "not on uplink0" in spec.differences(link("vlan", {"id": 50, "flags": 1}, 4), 3)[0]
    assert "vlan flags" in spec.differences(link("vlan", {"id": 50, "flags": 0}, 3), 3)[0]
    vxlan = vx(IP_LINK_CONF="dstport=4789")
    found = link("vxlan", {"id": 50, "group": "239.0.0.50", "ttl": 16, "port": 8472, "link": 3})
    assert vxlan.differences(found, 3) == ["port 8472 (want 4789)"]
