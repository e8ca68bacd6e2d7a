"""update_nic's bandwidth: attribute parsing, the libvirt URI, domiflist, the as_caller order."""

import os
import socket

import pytest

from support.oned_input import b64, bridge_nic, vm_xml
from vnmlib.contract import action
from vnmlib.errors import InputError, VnmError
from vnmlib.host import libvirt_domain
from vnmlib.model import qos
from vnmlib.model.template import parse_vm


def nic(**attrs):
    return parse_vm(b64(vm_xml(5, [bridge_nic(5, 0, "br0", **attrs)]))).nics[0]


def test_absent_attributes_are_zero_and_values_kept():
    assert qos.limits(nic()) == {"inbound": (0, 0, 0), "outbound": (0, 0, 0)}
    got = qos.limits(nic(INBOUND_AVG_BW="500", INBOUND_PEAK_BW="1000", INBOUND_PEAK_KB="64",
                         OUTBOUND_AVG_BW="4294967295"))
    assert got == {"inbound": (500, 1000, 64), "outbound": (4294967295, 0, 0)}


@pytest.mark.parametrize("name,value", [("INBOUND_AVG_BW", "4294967296"), ("OUTBOUND_PEAK_KB", "-1"),
                                        ("INBOUND_PEAK_BW", "1.5"), ("OUTBOUND_AVG_BW", "+5"),
                                        ("INBOUND_AVG_BW", "٧"), ("OUTBOUND_AVG_BW", "1e3")])
def test_bad_values_name_the_nic_and_attribute(name, value):
    extra = {} if "AVG" in name else {name.split("_")[0] + "_AVG_BW": "10"}
    with pytest.raises(InputError, match=f"^NIC 0: {name} "):
        qos.limits(nic(**{name: value}, **extra))


@pytest.mark.parametrize("name", ["INBOUND_PEAK_BW", "OUTBOUND_PEAK_KB"])
def test_peak_or_burst_needs_an_average(name):
    with pytest.raises(InputError, match=f"^NIC 0: {name} is set without"):
        qos.limits(nic(**{name: "100"}))


def test_requested_only_for_bandwidth_keys():
    assert qos.requested({"INBOUND_PEAK_KB": ""})
    assert not qos.requested({"PHYDEV": "eth0", "VLAN_TAGGED_ID": "1"})


@pytest.mark.parametrize("good", ["one-12", "9c2b4f1e-8f2a-4a55-9d0e-2b7c1a4e5f60", "vm_1.x"])
def test_domain_names(good):
    assert qos.domain_name(good) == good


@pytest.mark.parametrize("bad", ["", "-c", "--domain", "a b", "a/b", "a;b", "x" * 201, "é"])
def test_domain_names_refused(bad):
    with pytest.raises(InputError, match="deploy_id"):
        qos.domain_name(bad)


@pytest.mark.parametrize("good", ["qemu:///system", "qemu:///session",
                                  "qemu+unix:///system?socket=/run/lv/libvirt-sock"])
def test_uris_accepted(good):
    assert qos.parse_uri(good)[0] == good


@pytest.mark.parametrize("bad", ["qemu+ssh://h/system", "qemu+ext:///system?command=/bin/sh",
                                 "qemu+unix:///system?socket=/x&command=/bin/sh",
                                 "qemu+unix:///system?socket=relative",
                                 "qemu+unix:///system?socket=/a/../b", "qemu:///system?x=1",
                                 "qemu+unix:///session?socket=/s", "lxc:///", 5, None, ""])
def test_other_uris_refused_naming_the_key(bad):
    with pytest.raises(InputError, match="^:libvirt_uri: .* is not one of"):
        qos.parse_uri(bad)


def test_a_root_caller_uses_only_roots_sockets(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    directory = tmp_path / "run"
    directory.mkdir(mode=0o755)
    path = directory / "sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    os.symlink(path, directory / "link")
    (directory / "file").write_text("")
    try:
        for name in ("link", "file", "none"):
            with pytest.raises(InputError, match=":libvirt_uri: socket"):
                libvirt_domain.connection({"libvirt_uri": f"qemu+unix:///system?socket={directory}/{name}"})
        uri = f"qemu+unix:///system?socket={path}"
        if os.getuid() == 0:  # a socket root made, in root's directory
            assert libvirt_domain.connection({"libvirt_uri": uri}) == uri
            os.chmod(directory, 0o777)
            with pytest.raises(InputError, match="directory another user may change"):
                libvirt_domain.connection({"libvirt_uri": uri})
        else:
            with pytest.raises(InputError, match="not a socket owned by root"):
                libvirt_domain.connection({"libvirt_uri": uri})
    finally:
        listener.close()


DOMIFLIST = """ Interface   Type     Source   Model    MAC
------------------------------------------------------------
 vnet7       bridge   br0      virtio   02:00:0A:00:05:00
 one-5-1     bridge   br0      virtio   02:00:0a:00:05:01
 -           user     -        virtio   52:54:00:aa:bb:cc
"""


def test_domiflist_by_mac_then_target():
    names = libvirt_domain.parse_domiflist(DOMIFLIST)
    assert names == {"02:00:0a:00:05:00": "vnet7", "02:00:0a:00:05:01": "one-5-1",
                     "52:54:00:aa:bb:cc": ""}
    assert libvirt_domain.libvirt_tap(nic(), names) == "vnet7"          # TARGET one-5-0 differs
    assert libvirt_domain.libvirt_tap(nic(TARGET=""), names) == "vnet7"  # TARGET absent
    assert libvirt_domain.libvirt_tap(nic(MAC="", TARGET="one-5-1"), names) == "one-5-1"
    assert libvirt_domain.libvirt_tap(nic(MAC="02:00:00:00:00:09"), names) is None
    assert libvirt_domain.libvirt_tap(nic(MAC="52:54:00:aa:bb:cc", TARGET="x"), names) is None


def test_a_bad_libvirt_name_is_refused():
    with pytest.raises(InputError, match="NIC 0: the domain's interface"):
        libvirt_domain.libvirt_tap(nic(), {"02:00:0a:00:05:00": "a;b"})


class Ctx:
    pass


def test_as_caller_checks_before_and_works_after_the_privileged_part():
    calls = []

    def handler(ctx):
        calls.append("privileged")

    def refusing(ctx):
        raise InputError("NIC 0: INBOUND_AVG_BW 'x' is not a number")

    handler.as_caller = refusing
    with pytest.raises(VnmError):
        action.run_driver_action(Ctx(), handler)
    assert calls == []  # nothing ran: the check came first

    handler.as_caller = lambda ctx: lambda: calls.append("as caller")
    action.run_driver_action(Ctx(), handler)
    assert calls == ["privileged", "as caller"]

    def failing(ctx):
        raise VnmError("bridge gone")

    failing.as_caller = lambda ctx: lambda: calls.append("never")
    with pytest.raises(VnmError):
        action.run_driver_action(Ctx(), failing)
    assert calls == ["privileged", "as caller"]


STATUS = b"""<domstatus state='running' pid='7'><domain type='qemu' id='1'><name>one-5</name>
<devices>
<interface type='bridge'><mac address='02:00:0A:00:05:00'/><source bridge='br0'/>
  <target dev='vnet7'/></interface>
<interface type='bridge'><mac address='02:00:0a:00:05:01'/><target dev='a;b'/></interface>
<interface type='user'><mac address='52:54:00:aa:bb:cc'/></interface>
</devices></domain></domstatus>"""


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, message):
        self.lines.append(message)


def test_status_file_path_follows_the_uri():
    assert libvirt_domain.status_path({}, "one-5") == "/run/libvirt/qemu/one-5.xml"
    conf = {"libvirt_uri": "qemu+unix:///system?socket=/t/run/libvirt-sock"}
    assert libvirt_domain.status_path(conf, "one-5") == "/t/run/qemu/one-5.xml"
    assert libvirt_domain.status_path({"libvirt_uri": "qemu:///session"}, "one-5") is None
    assert libvirt_domain.status_path({}, "../x") is None


def test_live_taps_from_roots_status_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    (tmp_path / "qemu").mkdir(mode=0o755)
    (tmp_path / "qemu" / "one-5.xml").write_bytes(STATUS)
    conf = {"libvirt_uri": f"qemu+unix:///system?socket={tmp_path}/sock"}
    vm = parse_vm(b64(vm_xml(5, [bridge_nic(5, 0, "br0"), bridge_nic(5, 1, "br0")])))
    log = Log()
    taps = libvirt_domain.live_taps(lambda: conf, vm, log)
    if os.getuid() != 0:  # a file another user wrote is not libvirt's word
        assert taps == {} and "not a file root owns" in log.lines[0]
        return
    assert taps == {"02:00:0a:00:05:00": "vnet7"}
    assert len(log.lines) == 1 and "'a;b'" in log.lines[0]  # refused, that NIC keeps TARGET
    vm.libvirt_taps = taps
    assert [vm.tap_name(n) for n in vm.nics] == ["vnet7", "one-5-1"]
    lxc = parse_vm(b64(vm_xml(5, [bridge_nic(5, 0, "br0")], vm_mad="lxc")))
    assert libvirt_domain.live_taps(lambda: conf, lxc, log) == {}
    os.chmod(tmp_path / "qemu", 0o777)  # anyone could have put the file there
    assert libvirt_domain.live_taps(lambda: conf, vm, log) == {}
    assert "not a file root owns in a directory only root" in log.lines[-1]


def test_a_doctype_in_the_status_file_is_refused():
    log = Log()
    assert libvirt_domain._taps_of(b"<!DOCTYPE x>" + STATUS, "f", log) == {}
    assert "DOCTYPE" in log.lines[0]
