"""For one NIC, the update_sg that started last wins (issue 28.7).

An older update with many rules is sent first and a newer one with a single
rule 0.2 s later; the older one builds its rules longer and reaches the
firewall lock last. The newer rules must be what the NIC ends up with, 5 runs
of 5. A second test forces the order (the older update stopped while it
queues for the lock) and checks that the older one then changes nothing.
"""

import fcntl
import os
import re
import signal
import subprocess
import time

from support.assertions import assert_ok
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import PYTHON, TREE

VM_ID = 81
OLD_PORTS = 5000  # enough rules for the older update to build for well over 0.2 s


def sg_vm(rules):
    return b64(vm_xml(VM_ID, [bridge_nic(VM_ID, 0, "sgbr", VN_MAD="fw", IP="10.5.0.81",
                                         SECURITY_GROUPS="5")], extra=rules_xml(*rules)))


def tcp(port):
    return dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE=str(port), SECURITY_GROUP_ID=5)


def start_update(ns, stdin, path):
    with open(path, "wb") as handle:
        handle.write(stdin)
    with open(path, "rb") as handle:
        return subprocess.Popen(["ip", "netns", "exec", ns.name, PYTHON,
                                 os.path.join(TREE, "fw", "update_sg"), "one-81", "node1"],
                                stdin=handle, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, VNM_RUN_DIR=ns.run_dir))


def inbound_ports(ns):
    """The --dport values of the NIC's inbound chain (IPv4)."""
    rules = ns.exec("iptables", "-S", "one-81-0-i")
    return {port for ports in re.findall(r"--dports? (\S+)", rules) for port in ports.split(",")}


def test_the_update_that_started_last_wins_whatever_reaches_the_lock_first(ns, tmp_path):
    first = sg_vm([tcp(22)])
    assert_ok(ns.run("fw", "pre", stdin=first))
    ns.add_tap("one-81-0", "sgbr")
    assert_ok(ns.run("fw", "post", "one-81", "node1", stdin=first))
    for run in range(5):
        older = sg_vm([tcp(2000 + p) for p in range(OLD_PORTS)])
        newer_port = str(443 + run)
        slow = start_update(ns, older, os.path.join(str(tmp_path), "older.b64"))
        time.sleep(0.2)
        fast = start_update(ns, sg_vm([tcp(newer_port)]), os.path.join(str(tmp_path),
                                                                         "newer.b64"))
        fast_err = fast.communicate(timeout=60)[1].decode()
        slow_err = slow.communicate(timeout=60)[1].decode()
        assert fast.returncode == 0 and slow.returncode == 0, fast_err + slow_err
        assert inbound_ports(ns) == {newer_port}, (run, slow_err)
        # the older one either came to the lock last and changed nothing, or first
        # (a fast run) and was overwritten by the newer one
        assert ("not applied: a later update of its protection" in slow_err) != \
            ("protection of one-81-0 applied" in slow_err), slow_err
        assert "INFO: update_sg: NIC 0: protection of one-81-0 applied" in fast_err
        # an update after both applies as usual: the record is of starts, not of rules
        assert_ok(ns.run("fw", "update_sg", "one-81", "node1", stdin=sg_vm([tcp(22)])))
        assert inbound_ports(ns) == {"22"}


def blocked_on_a_flock(pid):
    """Whether ``pid`` waits for a flock (/proc/locks lists waiters with "->")."""
    with open("/proc/locks", encoding="ascii") as handle:
        return any("->" in line and line.split()[5] == str(pid) for line in handle)


def wait_until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_an_older_update_reaching_the_lock_last_changes_nothing(ns, tmp_path):
    # the order forced: the test holds the firewall lock; the older update
    # queues on it and is stopped there; the newer one gets the lock first
    first = sg_vm([tcp(22)])
    assert_ok(ns.run("fw", "pre", stdin=first))
    ns.add_tap("one-81-0", "sgbr")
    assert_ok(ns.run("fw", "post", "one-81", "node1", stdin=first))
    [netns] = os.listdir(os.path.join(ns.run_dir, "locks"))
    fd = os.open(os.path.join(ns.run_dir, "locks", netns, "firewall"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        older = start_update(ns, sg_vm([tcp(8080)]), os.path.join(str(tmp_path), "older.b64"))
        wait_until(lambda: blocked_on_a_flock(older.pid))
        os.kill(older.pid, signal.SIGSTOP)
        newer = start_update(ns, sg_vm([tcp(443)]), os.path.join(str(tmp_path), "newer.b64"))
        wait_until(lambda: blocked_on_a_flock(newer.pid))
    finally:
        os.close(fd)
    try:
        newer_err = newer.communicate(timeout=30)[1].decode()
        assert newer.returncode == 0, newer_err
        assert inbound_ports(ns) == {"443"}
    finally:
        os.kill(older.pid, signal.SIGCONT)
    older_err = older.communicate(timeout=30)[1].decode()
    assert older.returncode == 0, older_err
    assert "INFO: update_sg: NIC 0: not applied: a later update of its protection" in older_err
    assert inbound_ports(ns) == {"443"}
