import base64
import os

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import FIXTURES, fixture_bytes
from vnmlib.errors import InputError
from vnmlib.model.limits import MAX_STDIN_BYTES
from vnmlib.model.template import decode_base64, parse_vm, parse_vnet


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(FIXTURES)
                                        if f.endswith((".xml", ".b64")) and "dumpxml" not in f))
def test_every_fixture_parses(name):
    data = fixture_bytes(name)
    vm = parse_vm(data if name.endswith(".b64") else base64.b64encode(data))
    assert vm.id in (7, 8, 9, 10)
    assert vm.nics, "every fixture VM has NICs"


def test_reduced_vm_spans_sibling_templates():
    vm = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))
    assert [n.vn_mad for n in vm.nics] == ["bridge", "fw", "vxlan"]
    assert [n.nic_id for n in vm.nics] == [0, 1, 2]
    assert len(vm.rules) == 8
    assert vm.rules[2].get("RANGE") == "22,80:90"  # CDATA content
    assert vm.vm_mad == "kvm" and vm.deploy_id == "one-7"
    assert [a.parent_id for a in vm.aliases] == [1]
    assert vm.vnet_update == {}


def test_update_nic_full_vm_line_wrapped_with_vnet_update():
    data = fixture_bytes("vm7_full_update_nic_mtu.b64")
    assert b"\n" in data.strip()  # 60-column base64, as oned sends it
    vm = parse_vm(data + b"\nEOT\n"[:1])
    assert vm.vnet_update == {"MTU": "1450"}
    assert vm.nics[2].get("MTU") == "1400"


@pytest.mark.parametrize("mangle", [
    lambda s: s.rstrip(b"="),                       # missing padding
    lambda s: s + b"\n",                            # trailing newline (heredoc)
    lambda s: b"\n".join(s[i:i + 60] for i in range(0, len(s), 60)),  # wrapped
    lambda s: b"  " + s + b"\r\n",                  # junk around
])
def test_lenient_base64(mangle):
    raw = b"<VM><ID>3</ID></VM>"
    assert decode_base64(mangle(base64.b64encode(raw))) == raw


@pytest.mark.parametrize("data, needle", [
    (b"", "empty"),
    (b"QUJDR", "base64"),
    (base64.b64encode(b"<VM><ID>1</ID>"), "XML"),
    (base64.b64encode(b"not xml at all"), "XML"),
    (base64.b64encode(b"<VNET><ID>1</ID></VNET>"), "<VM>"),
    (base64.b64encode(b"<VM><DEPLOY_ID/></VM>"), "VM ID"),
    (base64.b64encode(b"<VM><ID>x</ID></VM>"), "VM ID"),
])
def test_bad_input_is_one_clear_error(data, needle):
    with pytest.raises(InputError) as exc:
        parse_vm(data)
    assert needle in str(exc.value)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE VM [<!ENTITY a "aaaaaaaaaa">'
                  b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                  b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><VM><ID>1</ID><X>&c;</X></VM>')
EXTERNAL = (b'<?xml version="1.0"?><!DOCTYPE VM [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<VM><ID>1</ID><X>&x;</X></VM>')


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL,
                                 # in UTF-16 the bytes "<!DOCTYPE" never appear: the parser's
                                 # doctype event refuses it
                                 BILLION_LAUGHS.replace(b'"1.0"?>', b'"1.0" encoding="UTF-16"?>')
                                 .decode().encode("utf-16")])
def test_hostile_xml_refused(doc):
    with pytest.raises(InputError, match="DOCTYPE"):
        parse_vm(base64.b64encode(doc))


@pytest.mark.parametrize("doc, needle", [
    (b"<VM><ID>1</ID><X>&a;</X></VM>", "undefined entity"),  # no DTD: no entity
    (b"<VM>" + b"<A>" * 100_000 + b"</A>" * 100_000 + b"</VM>", "deeper than 256"),
])
def test_entities_and_deep_nesting_refused(doc, needle):
    with pytest.raises(InputError, match=needle):
        parse_vm(base64.b64encode(doc))


def test_comments_and_processing_instructions_are_not_elements():
    vm = parse_vm(base64.b64encode(b"<?x y?><VM><!-- c --><ID>1<!-- z -->2</ID><TEMPLATE>"
                                   b"<NIC><NIC_ID>0</NIC_ID><!-- d --></NIC></TEMPLATE></VM>"))
    assert vm.id == 12 and vm.nics[0].attrs == {"NIC_ID": "0"}


def test_huge_input_refused_before_decoding():
    with pytest.raises(InputError, match="bytes"):
        decode_base64(b"A" * (MAX_STDIN_BYTES + 4))


def test_whitespace_empty_deploy_id_and_no_history():
    xml = """<VM>
      <ID> 5 </ID>
      <DEPLOY_ID/>
      <TEMPLATE>
        <NIC><NIC_ID> 0 </NIC_ID><BRIDGE>br0</BRIDGE><VN_MAD> bridge </VN_MAD></NIC>
      </TEMPLATE>
    </VM>"""
    vm = parse_vm(b64(xml))
    assert vm.id == 5 and vm.deploy_id == "" and vm.vm_mad == ""
    assert vm.nics[0].nic_id == 0 and vm.nics[0].vn_mad == "bridge"
    assert vm.tap_name(vm.nics[0]) == "one-5-0"


def test_tap_names_kvm_target_and_lxc():
    vm = parse_vm(b64(vm_xml(4, [bridge_nic(4, 1, "br0", TARGET="vnet7")])))
    assert vm.tap_name(vm.nics[0]) == "vnet7"
    lxc = parse_vm(b64(vm_xml(4, [bridge_nic(4, 1, "br0")], deploy_id="one-4", vm_mad="lxc")))
    assert lxc.tap_name(lxc.nics[0]) == "one-4-1"


def test_driver_selection_and_alias_filtering_by_parent():
    vm = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))
    assert [n.nic_id for n in vm.driver_nics("fw")] == [1]
    assert [a.get("IP") for a in vm.driver_aliases("fw")] == ["10.0.1.6"]
    assert vm.driver_aliases("vxlan") == []  # the reference leaked it to vxlan (§5.4)


def _aliased_vm():
    """NIC 0 (bridge) with aliases 2 and 3, NIC 1 (fw) with alias 4."""
    def alias(nic_id, parent, **extra):
        return {"_tag": "NIC_ALIAS", "NIC_ID": nic_id, "PARENT_ID": parent,
                "IP": f"10.0.0.{nic_id}", **extra}

    return parse_vm(b64(vm_xml(3, [bridge_nic(3, 0, "br0"), bridge_nic(3, 1, "br1", VN_MAD="fw"),
                                   alias(2, 0), alias(3, 0, ATTACH="YES"), alias(4, 1)])))


def test_aliases_of_a_nic_by_parent_id():
    vm = _aliased_vm()
    nic0, nic1 = vm.nics
    assert [a.nic_id for a in vm.aliases_of(nic0)] == [2, 3]
    assert [a.nic_id for a in vm.aliases_of(nic1)] == [4]
    leaving = vm.hotplugged()  # a detached alias is not one of them any more
    assert [a.nic_id for a in vm.aliases_of(nic0, leaving=leaving)] == [2]
    assert [a.nic_id for a in vm.aliases_of(nic0, driver="bridge")] == [2, 3]
    assert vm.aliases_of(nic0, driver="fw") == []  # NIC 0 is not the fw driver's


def test_aliases_of_checks_the_drivers_aliases():
    vm = parse_vm(b64(vm_xml(3, [bridge_nic(3, 0, "br0"),
                                 {"_tag": "NIC_ALIAS", "NIC_ID": 1, "PARENT_ID": 0,
                                  "IP": "10.0.0.300"}])))
    assert [a.nic_id for a in vm.aliases_of(vm.nics[0])] == [1]  # no driver: not typed
    with pytest.raises(InputError, match="NIC_ALIAS 1: IP"):
        vm.aliases_of(vm.nics[0], driver="bridge")


def test_alias_parent_is_a_nic_of_the_driver():
    vm = _aliased_vm()
    by_id = {a.nic_id: a for a in vm.aliases}
    assert vm.alias_parent(by_id[3], "bridge") is vm.nics[0]
    assert vm.alias_parent(by_id[4], "fw") is vm.nics[1]
    assert vm.alias_parent(by_id[4], "bridge") is None  # its parent is another driver's


def test_hotplug_scope():
    vm = parse_vm(fixture_bytes("vm7_attach_nic1_reduced.b64"))
    assert vm.hotplugged().nic_id == 1
    assert [n.nic_id for n in vm.scoped_nics("fw")] == [1]
    assert vm.scoped_nics("bridge") == []  # another driver's NIC is being plugged
    full = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))
    assert [n.nic_id for n in full.scoped_nics("bridge")] == [0]
    alias = parse_vm(b64(vm_xml(3, [bridge_nic(3, 0, "br0"),
                                    {"_tag": "NIC_ALIAS", "NIC_ID": 1, "PARENT_ID": 0,
                                     "ATTACH": "YES", "VN_MAD": "bridge"}])))
    assert alias.hotplugged().kind == "NIC_ALIAS" and alias.scoped_nics("bridge") == []


@pytest.mark.parametrize("attrs, needle", [
    ({"BRIDGE": "a" * 16}, "at most 15"),
    ({"BRIDGE": "br 0"}, "not a valid interface name"),
    ({"BRIDGE": "../x"}, "not a valid interface name"),
    ({"BRIDGE": ""}, "empty"),
])
def test_illegal_names_name_the_nic_and_attribute(attrs, needle):
    vm = parse_vm(b64(vm_xml(1, [bridge_nic(1, 2, "br0", **attrs)])))
    with pytest.raises(InputError) as exc:
        vm.nics[0].bridge
    assert "NIC 2: BRIDGE" in str(exc.value) and needle in str(exc.value)


def test_vlan_id_and_nic_id_validation():
    vm = parse_vm(b64(vm_xml(1, [bridge_nic(1, 0, "br0", VLAN_ID="abc")])))
    with pytest.raises(InputError, match="NIC 0: VLAN_ID 'abc' is not an integer"):
        vm.nics[0].vlan_id


def test_vnet_document():
    attrs = parse_vnet(b64("<VNET><ID>7</ID><NAME>n</NAME><TEMPLATE><PHYDEV>eth0</PHYDEV>"
                           "</TEMPLATE></VNET>"))
    assert attrs["ID"] == "7" and attrs["PHYDEV"] == "eth0"
