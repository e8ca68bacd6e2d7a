"""The root boundary around libvirt holds against oneadmin (SPEC §7).

Two paths reach libvirt. Root's helper reads a running domain's taps from
libvirt's status file (``<run dir>/qemu/<domain>.xml``), and ``update_nic``
sets bandwidth with ``virsh domiftune``, which must run as the caller and never
as root. A throwaway user stands in for oneadmin and tries both. First it
points ``:libvirt_uri:``'s ``socket=`` at a root-owned directory that holds a
status file naming another VM's tap. Then it puts its own ``virsh`` first on
its PATH and asks for a QoS change, both through the action and by calling the
sudo helper directly.
"""

import os
import pwd
import subprocess

from support.assertions import assert_ok
from support.oneadmin import USER, install, oneadmin  # noqa: F401 (a fixture)
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import PYTHON

from vnmlib.contract.privileged import frame

VM_ID, MAC = 43, "02:00:0a:46:00:05"
TAP, VICTIM, BRIDGE = f"one-{VM_ID}-0", "victim0", "lvbr"


def user_owned(path):
    user = pwd.getpwnam(USER)
    os.lchown(path, user.pw_uid, user.pw_gid)


def add_conf(tree, text):
    conf = os.path.join(os.path.dirname(tree), "etc", "vnm", "OpenNebulaNetwork.conf")
    with open(conf, "a", encoding="ascii") as handle:
        handle.write(f"\n{text}\n")
    return conf


def run_as(ns, tree, helper, action, *args, stdin, path=None):
    env = ["env", f"VNM_SUDO_HELPER={helper}"] + ([f"PATH={path}"] if path else [])
    return subprocess.run(["ip", "netns", "exec", ns.name, "sudo", "-u", USER, *env, PYTHON,
                           os.path.join(tree, "fw" if action != "update_nic" else "bridge",
                                        action), *args],
                          input=stdin, capture_output=True, check=False)


def planted_status_dir(base):
    """A directory only root may change, holding what libvirt's status file of one-43
    would be if this were libvirt's run directory: MAC -> another VM's tap."""
    run_dir = os.path.join(base, "other-libvirt")
    os.makedirs(os.path.join(run_dir, "qemu"), mode=0o755)
    os.chmod(run_dir, 0o755)
    path = os.path.join(run_dir, "qemu", f"one-{VM_ID}.xml")
    with open(path, "w", encoding="ascii") as handle:
        handle.write(f"<domstatus><domain><devices><interface type='bridge'>"
                     f"<mac address='{MAC}'/><target dev='{VICTIM}'/></interface>"
                     "</devices></domain></domstatus>\n")
    os.chmod(path, 0o644)
    return run_dir


def test_the_callers_libvirt_uri_does_not_choose_the_status_file_root_reads(ns, oneadmin):
    from vnmlib.host import libvirt_domain
    from vnmlib.model.template import parse_vm

    base, sudoers = oneadmin
    tree, helper = install(base, sudoers)
    run_dir = planted_status_dir(base)
    uri = f"qemu+unix:///system?socket={run_dir}/libvirt-sock"
    add_conf(tree, f":libvirt_uri: {uri}")
    nic = bridge_nic(VM_ID, 0, BRIDGE, None, VN_MAD="fw", IP="10.71.0.5", MAC=MAC, TARGET=TAP,
                     FILTER_IP_SPOOFING="YES", FILTER_MAC_SPOOFING="YES")
    vm = b64(vm_xml(VM_ID, [nic]))

    class Log:
        def warning(self, text):
            raise AssertionError(text)

    # the control: were the URI followed, the planted file would give the victim's tap
    parsed = parse_vm(vm)
    assert libvirt_domain.live_taps(lambda: {"libvirt_uri": uri}, parsed, Log()) == {MAC: VICTIM}

    assert_ok(run_as(ns, tree, helper, "pre", stdin=vm))
    for name in (TAP, VICTIM):
        ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name[:12]}p")
        ns.ip("link", "set", name, "master", BRIDGE, "up")
    assert_ok(run_as(ns, tree, helper, "post", f"one-{VM_ID}", "node1", stdin=vm))
    rules = ns.exec("iptables-save", "-t", "filter")
    assert f"--physdev-out {TAP} " in rules or f"--physdev-in {TAP} " in rules
    assert VICTIM not in rules
    # clean too: the rules it removes are TARGET's, and the victim's port stays
    assert_ok(run_as(ns, tree, helper, "clean", f"one-{VM_ID}", "node1", stdin=vm))
    assert TAP not in ns.exec("iptables-save", "-t", "filter")
    assert VICTIM in ns.links()


def fake_virsh(base):
    """A ``virsh`` on the user's PATH that records who ran it and answers as libvirt would."""
    bin_dir = os.path.join(base, "bin")
    os.makedirs(bin_dir)
    log = os.path.join(base, "virsh-calls")
    with open(log, "w", encoding="ascii"):
        pass
    os.chmod(log, 0o666)
    script = os.path.join(bin_dir, "virsh")
    with open(script, "w", encoding="ascii") as handle:
        handle.write(f"#!/bin/sh\necho \"$(id -u) $*\" >> {log}\n"
                     f"case \"$*\" in *domiflist*) echo \"{TAP} bridge {BRIDGE} virtio {MAC}\";; "
                     "esac\nexit 0\n")
    os.chmod(script, 0o755)
    for path in (bin_dir, script):
        user_owned(path)
    return bin_dir, log


def calls(log):
    with open(log, encoding="ascii") as handle:
        return [line.split(" ", 1) for line in handle.read().splitlines()]


def test_qos_runs_virsh_as_the_caller_and_never_as_root(ns, oneadmin):
    base, sudoers = oneadmin
    tree, helper = install(base, sudoers)
    bin_dir, log = fake_virsh(base)
    nic = bridge_nic(VM_ID, 0, BRIDGE, None, NETWORK_ID=7, IP="10.71.0.5", MAC=MAC, TARGET=TAP,
                     INBOUND_AVG_BW="500")
    update = "<TEMPLATE><VNET_UPDATE><INBOUND_AVG_BW><![CDATA[]]></INBOUND_AVG_BW></VNET_UPDATE></TEMPLATE>"
    vm = b64(vm_xml(VM_ID, [nic], extra=update))
    path = f"{bin_dir}:/usr/bin:/bin"

    assert_ok(run_as(ns, tree, helper, "update_nic", f"one-{VM_ID}", "7", stdin=vm, path=path))
    uid = str(pwd.getpwnam(USER).pw_uid)
    made = calls(log)
    assert [who for who, _ in made] == [uid, uid], made
    assert "domiftune" in made[1][1] and "--inbound 500," in made[1][1]

    # the helper asked directly for update_nic: its privileged part only, libvirt untouched
    done = subprocess.run(["ip", "netns", "exec", ns.name, "sudo", "-u", USER, "env",
                           f"PATH={path}", "sudo", "-n", helper, "bridge", "update_nic",
                           f"one-{VM_ID}", "7"], input=frame(vm, None, None),
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert calls(log) == made, "the helper ran virsh"
