"""elastic: settings resolution, targets, host operations, nat transactions (pure logic)."""

import os

import pytest

from support.oned_input import b64, vm_xml
from support.paths import fixture_bytes

from vnmlib.contract.context import handler_of
from vnmlib.elastic import hostops, nat, providers, settings, targets
from vnmlib.firewall import backend_restore
from vnmlib.errors import InputError, VnmError
from vnmlib.model.template import parse_vm

VM10 = parse_vm(fixture_bytes("vm10_vnm_reduced.b64"))


def write(tmp_path, text, mode=0o600):
    tree = tmp_path / "vnm"
    tree.mkdir()
    (tmp_path / "etc" / "vnm").mkdir(parents=True)
    path = tmp_path / "etc" / "vnm" / "elastic.yaml"
    path.write_text(text)
    os.chmod(path, mode)
    return str(tree)


LAYOUT = """
providers:
  lab: {driver: nat, interface: eth1}
  ec2: {driver: aws, region: eu-west-1}
hosts:
  node1: lab
  "aws-*": {provider: ec2, instance_id: i-1, remote_dir: /srv/vnm}
clusters:
  edge: {hosts: [node7, "edge-*"], provider: lab, interface: eth9}
default: lab
transport: {ssh_options: [-p, "2222"]}
"""


@pytest.mark.parametrize("host, provider, values", [
    ("node1", "lab", {"driver": "nat", "interface": "eth1"}),
    ("aws-3", "ec2", {"driver": "aws", "region": "eu-west-1", "instance_id": "i-1"}),
    ("edge-2", "lab", {"driver": "nat", "interface": "eth9"}),
    ("node7", "lab", {"driver": "nat", "interface": "eth9"}),
    ("other", "lab", {"driver": "nat", "interface": "eth1"}),
])
def test_hosts_then_globs_then_clusters_then_default(tmp_path, host, provider, values):
    found = settings.for_host(write(tmp_path, LAYOUT), host)
    assert (found.provider, found.values) == (provider, values)


def test_transport_settings_merge_and_host_overrides(tmp_path):
    found = settings.for_host(write(tmp_path, LAYOUT), "aws-1")
    assert found.transport == {"ssh_options": ["-p", "2222"], "remote_dir": "/srv/vnm"}
    assert "remote_dir" not in found.values


def test_settings_readable_by_others_are_refused(tmp_path):
    with pytest.raises(InputError, match="mode 0604"):
        settings.for_host(write(tmp_path, LAYOUT, 0o604), "node1")


def test_vm10_targets_are_the_nic_and_its_alias():
    found = targets.scoped(VM10)
    assert [(t.label, t.base, t.bridge, t.ip, t.external_ip, t.gateway) for t in found] == [
        ("NIC 0", "one-10-0", "br-el", "10.9.0.10", "203.0.113.10", "10.9.0.1"),
        ("NIC_ALIAS 1", "one-10-1", "br-el", "10.9.0.11", "203.0.113.11", "10.9.0.1")]


def test_hot_plug_scopes_to_the_attached_element_only():
    nic = {"NIC_ID": 0, "VN_MAD": "elastic", "BRIDGE": "b", "IP": "10.0.0.2",
           "EXTERNAL_IP": "192.0.2.2", "GATEWAY": "10.0.0.1"}
    other = {"NIC_ID": 2, "VN_MAD": "bridge", "BRIDGE": "b2", "ATTACH": "YES"}
    alias = {"_tag": "NIC_ALIAS", "NIC_ID": 1, "PARENT_ID": 0, "IP": "10.0.0.3",
             "EXTERNAL_IP": "192.0.2.3", "GATEWAY": "10.0.0.1", "ATTACH": "YES"}
    assert [t.label for t in targets.scoped(parse_vm(b64(vm_xml(1, [nic, alias]))))] == \
        ["NIC_ALIAS 1"]
    assert targets.scoped(parse_vm(b64(vm_xml(1, [nic, other])))) == []


def test_nat_provider_operations_and_pool():
    lab = providers.create(settings.HostSettings(
        "h", "lab", {"driver": "nat", "interface": "eth1", "pool": ["192.0.2.0/24"]}, {}))
    ops = lab.activate("10.0.0.2", "192.0.2.2", {})
    assert [type(op).__name__ for op in ops] == ["Address", "Dnat", "Snat"]
    assert ops[1].rule() == ("-d", "192.0.2.2/32", "-j", "DNAT", "--to-destination", "10.0.0.2")
    assert ops[2].rule() == ("-s", "10.0.0.2/32", "-o", "eth1", "-j", "SNAT",
                             "--to-source", "192.0.2.2")
    lab.assign("10.0.0.2", "192.0.2.2", {})
    with pytest.raises(ValueError, match="outside the pool"):
        lab.assign("10.0.0.2", "198.51.100.1", {})


def test_host_operations_check_their_addresses():
    with pytest.raises(ValueError):
        hostops.Dnat("192.0.2.300", "10.0.0.1")
    with pytest.raises(ValueError):
        hostops.Address("eth1", "192.0.2.1", 33)


def test_nat_transaction_adds_missing_jumps_and_removes_by_chain():
    rules = {"dnat": [hostops.Dnat("192.0.2.2", "10.0.0.2").rule()], "snat": []}
    # the same operations through the restore backend's text (the iptc one: functional tests)
    text = backend_restore.render(nat.operations("one-1-0", rules,
                                                 {("PREROUTING", "one-1-0-dnat")}), "nat")
    assert text.splitlines() == [
        "*nat", ":one-1-0-dnat - [0:0]",
        "-A one-1-0-dnat -d 192.0.2.2/32 -j DNAT --to-destination 10.0.0.2",
        "-A OUTPUT -j one-1-0-dnat",
        ":one-1-0-snat - [0:0]", "-X one-1-0-snat", "COMMIT"]
    removal = backend_restore.render(nat.operations("one-1-0", {}, {
        ("PREROUTING", "one-1-0-dnat"), ("POSTROUTING", "one-1-0-snat")}), "nat")
    assert removal.splitlines() == [
        "*nat", ":one-1-0-dnat - [0:0]", "-D PREROUTING -j one-1-0-dnat", "-X one-1-0-dnat",
        ":one-1-0-snat - [0:0]", "-D POSTROUTING -j one-1-0-snat", "-X one-1-0-snat", "COMMIT"]


def test_unknown_provider_driver_names_the_known_ones():
    with pytest.raises(InputError, match="dummy, nat"):
        providers.create(settings.HostSettings("h", "p", {"driver": "nope"}, {}))


def test_only_elastic_has_remote_actions():
    assert handler_of("elastic", "remote_post")
    with pytest.raises(VnmError, match="bridge driver has no remote_post action"):
        handler_of("bridge", "remote_post")
