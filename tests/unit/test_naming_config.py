import os

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import REPO
from vnmlib.model import config
from vnmlib.model.bridge_options import bridge_options
from vnmlib.errors import InputError
from vnmlib.model.naming import check_ifname, parse_vlan_ranges
from vnmlib.model.template import parse_vm


def nic(**attrs):
    return parse_vm(b64(vm_xml(1, [bridge_nic(1, 0, "br0", **attrs)]))).nics[0]


@pytest.mark.parametrize("text, vids", [
    ("10", [10]), ("10,20-22", [10, 20, 21, 22]), ("140-130", list(range(130, 141))),
    (" 5 , 7 - 8 ", [5, 7, 8]), ("3,3,2-3", [3, 2]),
])
def test_vlan_ranges(text, vids):
    assert parse_vlan_ranges(text, "X") == vids


@pytest.mark.parametrize("text", ["", "a", "10,", "0", "4095", "1-5000", "1-2-3", "10;20"])
def test_bad_vlan_ranges(text):
    with pytest.raises(InputError):
        parse_vlan_ranges(text, "X")


def test_ifname_limits():
    assert check_ifname("a" * 15, "X") == "a" * 15
    for bad in ("a" * 16, "a/b", "a:b", "a b", ".", "..", "é" * 8):
        with pytest.raises(InputError):
            check_ifname(bad, "X")


def test_shipped_conf_matches_reference_defaults(tmp_path):
    conf = config.load(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), str(tmp_path))
    assert conf == config.DEFAULTS


def test_missing_conf_gives_defaults(tmp_path):
    assert config.load(str(tmp_path / "nope.conf")) == config.DEFAULTS


def test_symbol_keys_nested_and_cache(tmp_path):
    path = tmp_path / "OpenNebulaNetwork.conf"
    path.write_text(":keep_empty_bridge: true\n:ip_bridge_conf:\n  :stp_state: on\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    first = config.load(str(path), str(cache))
    assert first["keep_empty_bridge"] is True
    assert first["ip_bridge_conf"] == {"stp_state": True}
    assert (cache / "conf.marshal").exists()
    assert config.load(str(path), str(cache)) == first  # from the cache
    path.write_text(":keep_empty_bridge: false\n")       # a change invalidates it
    assert config.load(str(path), str(cache))["keep_empty_bridge"] is False


def test_unparsable_conf_is_an_error_not_defaults(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text(":a: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        config.load(str(path))


def test_nic_conf_overrides():
    merged = config.nic_conf(config.DEFAULTS, nic(CONF="keep_empty_bridge=yes,vlan_mtu=9000"))
    assert merged["keep_empty_bridge"] is True and merged["vlan_mtu"] == "9000"
    assert config.DEFAULTS["keep_empty_bridge"] is False  # not mutated


def test_merge_options_delete_and_flags():
    merged = config.merge_options({"nolearning": None, "dstport": 4789},
                                  "tos=10,udpcsum=,dstport=__delete__", "X")
    assert merged == {"nolearning": None, "tos": "10", "udpcsum": None}


def test_bridge_options_brctl_converted_and_most_specific_wins():
    conf = dict(config.DEFAULTS, bridge_conf={"setfd": 4}, ip_bridge_conf={"stp_state": False})
    options = bridge_options(conf, nic(BRIDGE_CONF="stp=on,sethello=6"))
    assert options == {"forward_delay": 400, "stp_state": 1, "hello_time": 600}


@pytest.mark.parametrize("text, needle", [
    ("bogus=1", "unknown bridge option 'bogus'"),
    ("sethello=abc", "not a number"),
    ("stp_state", "needs a value"),
    ("vlan_protocol=802.1x", "802.1ad"),
])
def test_bridge_option_errors_name_the_nic(text, needle):
    with pytest.raises(InputError) as exc:
        bridge_options(config.DEFAULTS, nic(BRIDGE_CONF=text))
    assert "NIC 0: BRIDGE_CONF" in str(exc.value) and needle in str(exc.value)
