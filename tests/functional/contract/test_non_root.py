"""oneadmin's view: a non-root user runs the actions; root work goes through sudo -n.

The test makes a throwaway user, a oneadmin-owned copy of the remotes tree, a
root-owned helper (vnm-action with its own vnmlib) and a sudoers drop-in for
exactly that helper; all are removed afterwards.
"""

import os
import pwd

from support.assertions import assert_ok, assert_one_error
from support.oneadmin import USER, install, oneadmin, run_as_user  # noqa: F401 (a fixture)
from support.oned_input import b64, bridge_nic, vm_xml

def test_non_root_caller_goes_through_sudo_and_hooks_stay_unprivileged(ns, oneadmin):
    base, sudoers = oneadmin
    tree, helper = install(base, sudoers)
    marker = os.path.join(base, "one", "hook-uid")
    hook = os.path.join(tree, "bridge", "pre.d", "01_whoami")
    with open(hook, "w", encoding="ascii") as handle:
        handle.write(f"#!/bin/sh\nid -u > {marker}\n")
    os.chmod(hook, 0o755)
    os.chown(hook, pwd.getpwnam(USER).pw_uid, -1)
    vm = b64(vm_xml(30, [bridge_nic(30, 0, "brn", "uplink0")]))
    done = assert_ok(run_as_user(ns, tree, helper, "bridge", "pre", stdin=vm))
    assert "create bridge brn" in done.stderr.decode()
    assert ns.links()["uplink0"]["master"] == "brn"
    with open(marker, encoding="ascii") as handle:
        assert int(handle.read()) == pwd.getpwnam(USER).pw_uid
    # errors from the root side arrive as one line
    bad = b64(vm_xml(30, [bridge_nic(30, 0, "brn", "nosuch0")]))
    assert_one_error(run_as_user(ns, tree, helper, "bridge", "pre", stdin=bad), "PHYDEV nosuch0")
    assert_ok(run_as_user(ns, tree, helper, "bridge", "clean", "h", stdin=vm))
    assert "brn" not in ns.links()


def test_missing_sudoers_entry_is_one_clear_error(ns, oneadmin):
    base, sudoers = oneadmin
    tree, helper = install(base, sudoers, allow=False)
    vm = b64(vm_xml(31, [bridge_nic(31, 0, "brn", "uplink0")]))
    assert_one_error(run_as_user(ns, tree, helper, "bridge", "pre", stdin=vm), "sudo -n", "README")
    assert "brn" not in ns.links()
    # actions without privileged work need no sudo at all
    assert_ok(run_as_user(ns, tree, helper, "dummy", "pre", stdin=vm))
    assert_ok(run_as_user(ns, tree, helper, "bridge", "update_sg", "one-31", stdin=vm))


def test_non_root_fw_post_and_clean_through_sudo(ns, oneadmin):
    """The security-group engine runs on the root side too (iptables, ipset via sudo's PATH)."""
    base, sudoers = oneadmin
    tree, helper = install(base, sudoers)
    nic = bridge_nic(32, 0, "brf", None, VN_MAD="fw", IP="10.80.0.2",
                     FILTER_IP_SPOOFING="YES")
    vm = b64(vm_xml(32, [nic]))
    assert_ok(run_as_user(ns, tree, helper, "fw", "pre", stdin=vm))
    ns.add_tap("one-32-0", "brf")
    assert_ok(run_as_user(ns, tree, helper, "fw", "post", "one-32", "h", stdin=vm))
    assert "-A one-32-0-o -m set ! --match-set one-32-0-ip-spoofing src -j DROP" in \
        ns.exec("iptables", "-S").splitlines()
    ns.ip("link", "del", "one-32-0")
    assert_ok(run_as_user(ns, tree, helper, "fw", "clean", "h", stdin=vm))
    assert "one-32" not in ns.exec("iptables", "-S") and "brf" not in ns.links()


def test_non_root_vxlan_pre_and_clean_through_sudo(ns, oneadmin):
    """The VLAN-backed drivers' device work runs on the root side ("802.1Q" is not a module name)."""
    base, sudoers = oneadmin
    tree, helper = install(base, sudoers)
    nic = bridge_nic(33, 0, "onebr.33", "uplink0", VN_MAD="vxlan", VLAN_ID=33, MTU=1450)
    vm = b64(vm_xml(33, [nic]))
    assert_ok(run_as_user(ns, tree, helper, "vxlan", "pre", stdin=vm))
    assert ns.links()["uplink0.33"]["master"] == "onebr.33"
    assert_ok(run_as_user(ns, tree, helper, "vxlan", "clean", "h", stdin=vm))
    assert not {"uplink0.33", "onebr.33"} & set(ns.links())
    # 802.1Q reaches the root side too: the host kernel lacks 8021q, the error says so
    vlan = b64(vm_xml(34, [bridge_nic(34, 0, "onebr.34", "uplink0", VN_MAD="802.1Q",
                                      VLAN_ID=34)]))
    assert_one_error(run_as_user(ns, tree, helper, "802.1Q", "pre", stdin=vlan), "8021q")
