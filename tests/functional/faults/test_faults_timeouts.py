"""Nothing waits forever (issue 28.2): bounded lock waits and tool runs, holders named.

A ``post`` whose ``ipset`` stops itself (SIGSTOP, a wrapper first on PATH)
holds the host-wide firewall lock: another VM's ``post`` gives up after
``lock_timeout`` with one ERROR line naming the lock and its holder (pid,
action, VM); ``vnm status`` and ``vnm doctor`` show the held lock; the stopped
tool is killed after ``tool_timeout`` and its action fails with nothing
half-done. Other software holding the xtables lock (iptables-legacy) stops
vnm for the bounded ``xtables_wait``/``tool_timeout`` only.
"""

import fcntl
import json
import os
import shutil
import subprocess
import time

import pytest

from support.assertions import assert_ok, assert_one_error
from support.fault_injection import calls, conf_tree, path_with, vnm, wrap
from support.firewall import Firewall, ipsets
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import PYTHON

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))


def fw_vm(vm_id, bridge="tobr"):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, VN_MAD="fw", IP=f"10.4.0.{vm_id}",
                                         SECURITY_GROUPS="5", FILTER_IP_SPOOFING="YES")],
                      extra=RULES))


def prepared(ns, vm_id, tree):
    """pre and the tap: ready for post. Returns the NIC's rules and ipsets as pre left them
    (protected already: a failing post must leave exactly that)."""
    assert_ok(ns.run("fw", "pre", stdin=fw_vm(vm_id), tree=tree))
    ns.add_tap(f"one-{vm_id}-0", "tobr")
    protected = mine(ns, vm_id)
    assert protected[0] and protected[1], protected
    return protected


def start(ns, tree, action, vm_id, *args, env=None):
    """fw/<action> of VM ``vm_id`` started in the background."""
    full = dict(os.environ, VNM_RUN_DIR=ns.run_dir, **(env or {}))
    stdin = os.path.join(ns.run_dir, f"vm{vm_id}.b64")
    with open(stdin, "wb") as handle:
        handle.write(fw_vm(vm_id))
    with open(stdin, "rb") as handle:
        return subprocess.Popen(["ip", "netns", "exec", ns.name, PYTHON,
                                 os.path.join(tree, "fw", action), *args], stdin=handle,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full)


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def mine(ns, vm_id):
    """Rules and ipsets of the VM's NIC."""
    rules = [line for tool in ("iptables", "ip6tables") for line in
             ns.exec(tool, "-S").splitlines() if f"one-{vm_id}-0" in line]
    return rules, [name for name in ipsets(ns) if name.startswith(f"one-{vm_id}-")]


def test_a_stopped_action_holding_the_firewall_lock_blocks_others_only_for_lock_timeout(
        ns, tmp_path):
    tree = conf_tree(tmp_path, lock_timeout=2, tool_timeout=6)
    before = {vm_id: prepared(ns, vm_id, tree) for vm_id in (71, 72)}
    bindir = os.path.join(str(tmp_path), "bin")
    wrap(bindir, "ipset", "stop", nth=2)  # 1: ipset list -n; 2: ipset restore (the load)
    # without the records of pre's commits, post cannot find the protection in place
    # (vnmlib/firewall/in_place.py): it commits, and its load is the call that stops
    shutil.rmtree(os.path.join(ns.run_dir, "sg-applied"))
    stuck = start(ns, tree, "post", 71, "one-71", "node1", env={"PATH": path_with(bindir)})
    wait_for(lambda: calls(bindir, "ipset") >= 2)

    # status and doctor show who holds the lock, for how long
    status = vnm(ns, "status")
    assert "held locks:" in status.stdout, status.stdout
    [row] = [line for line in status.stdout.splitlines() if line.startswith("firewall")]
    assert row.split()[1:4] == [str(stuck.pid), "post", "71"] or \
        row.split()[2:4] == ["post", "71"], row
    doctor = vnm(ns, "doctor", "--json", "--tree", tree)
    [lock] = [r for r in json.loads(doctor.stdout) if r["check"] == "lock firewall"]
    assert "(post, VM 71)" in lock["detail"], lock

    # another VM's post waits lock_timeout (2 s), then one line naming lock and holder
    began = time.monotonic()
    other = ns.run("fw", "post", "one-72", "node1", stdin=fw_vm(72), tree=tree)
    waited = time.monotonic() - began
    line = assert_one_error(other, "lock_timeout", "the lock of firewall", "(post, VM 71)")
    assert 1.8 < waited < 5, (waited, line)
    assert mine(ns, 72) == before[72]

    # the stopped tool is killed after tool_timeout: the action fails, nothing half-done
    out, err = stuck.communicate(timeout=30)
    assert stuck.returncode == 1
    errors = [x for x in err.decode().splitlines() if x.startswith("ERROR:")]
    assert len(errors) == 1 and "ipset restore did not finish within 6 s" in errors[0], err
    assert mine(ns, 71) == before[71]
    # and the lock is free again: the other VM's post works now
    assert_ok(ns.run("fw", "post", "one-72", "node1", stdin=fw_vm(72), tree=tree))
    assert "held locks:" not in vnm(ns, "status").stdout


def test_a_pre_waiting_for_a_bridge_lock_names_its_holder(ns, tmp_path):
    # an OVS-free stand-in for "a hung ovs-vsctl blocks every action on that
    # bridge": the bridge's lock held by a process that says who it is
    tree = conf_tree(tmp_path, lock_timeout=1)
    locks = os.path.join(ns.run_dir, "locks")
    assert_ok(ns.run("fw", "pre", stdin=fw_vm(73), tree=tree))  # makes the lock directory
    [netns] = os.listdir(locks)
    path = os.path.join(locks, netns, "link.tobr")
    holder = subprocess.Popen(["sleep", "60"])
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, json.dumps({"pid": holder.pid, "action": "clean", "vm": 9,
                                  "since": time.time() - 42}).encode(), 0)
        done = ns.run("fw", "pre", stdin=fw_vm(74), tree=tree)
        assert_one_error(done, "waited 1 s (lock_timeout) for the lock of link tobr",
                         f"pid {holder.pid} (clean, VM 9) for 4")
        assert not os.path.exists(os.path.join(ns.run_dir, "users", netns, "tobr", "74-0"))
    finally:
        os.close(fd)
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("family_tool", ["iptables-restore", "ipset"])
def test_a_hung_tool_is_killed_after_tool_timeout(ns, tmp_path, family_tool):
    tree = conf_tree(tmp_path, tool_timeout=2)
    before = prepared(ns, 75, tree)
    bindir = os.path.join(str(tmp_path), "bin")
    # iptables-restore: the first read of the chains (-S lines); ipset: the first listing
    wrap(bindir, family_tool, "hang", nth=1)
    began = time.monotonic()
    done = ns.run("fw", "post", "one-75", "node1", stdin=fw_vm(75), tree=tree,
                  env={"PATH": path_with(bindir)})
    assert time.monotonic() - began < 8
    assert_one_error(done, family_tool, "did not finish within 2 s (tool_timeout): killed")
    assert mine(ns, 75) == before


def test_another_programs_xtables_lock_stops_vnm_only_for_a_bounded_time(ns, tmp_path):
    firewall = Firewall("restore-legacy", tmp_path)
    tree = conf_tree(tmp_path, tool_timeout=8)
    lockfile = os.path.join(str(tmp_path), "xtables.lock")
    env = dict(firewall.env, XTABLES_LOCKFILE=lockfile)  # iptables-legacy's lock, ours alone
    assert_ok(ns.run("fw", "pre", stdin=fw_vm(76), tree=tree, env=env))
    ns.add_tap("one-76-0", "tobr")
    before = [x for x in ns.exec("iptables-legacy", "-S").splitlines() if "one-76" in x]
    assert before  # protected by pre already
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the other program
        began = time.monotonic()
        done = ns.run("fw", "post", "one-76", "node1", stdin=fw_vm(76), tree=tree, env=env)
        assert time.monotonic() - began < 12
        assert_one_error(done, "xtables lock", "Stopped waiting after 3s")
    finally:
        os.close(fd)
    assert [x for x in ns.exec("iptables-legacy", "-S").splitlines() if "one-76" in x] == before
    assert_ok(ns.run("fw", "post", "one-76", "node1", stdin=fw_vm(76), tree=tree, env=env))
