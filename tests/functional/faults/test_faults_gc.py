"""vnm gc racing the actions (issue 28.1): each removal re-checked under the actions' locks.

A dead VM's leftovers (a record long ago, its bridge) are what gc plans to
remove; meanwhile a new VM runs ``pre`` on that bridge and the hypervisor
plugs its tap. The bridge must survive every time. gc's window between its
snapshot and its deletions is widened by an ``ip`` wrapper that pauses after
gc's first read, so the race is hit on every run, not by luck; a second loop
runs the same race at random offsets without the wrapper.
"""

import glob
import os
import random
import subprocess
import time

from support.assertions import assert_ok
from support.fault_injection import path_with, vnm, vnm_argv, vnm_env, wrap
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

BRIDGE = "racebr"
RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))


def bridge_vm(vm_id):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, BRIDGE)]))


def age_records(ns, user):
    """Make ``user``'s records old: its VM died long ago (older than gc_record_grace)."""
    for record in glob.glob(os.path.join(ns.run_dir, "users", "*", "*", user)):
        os.utime(record, (0, 0))


def dead_vm(ns, vm_id):
    """A VM whose pre ran long ago and which is gone without clean: record, empty bridge."""
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(vm_id)))
    age_records(ns, f"{vm_id}-0")


def start_gc(ns, env=None):
    return subprocess.Popen(vnm_argv(ns, "gc", "--live", "", "--apply"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=vnm_env(ns, **(env or {})))


def deploy_while_gc_runs(ns, vm_id, delay, env=None):
    """gc --apply, and after ``delay`` s a new VM's pre and tap on the same bridge."""
    gc = start_gc(ns, env)
    time.sleep(delay)
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(vm_id)))
    tap = f"one-{vm_id}-0"
    plugged = subprocess.run(["ip", "-n", ns.name, "link", "add", tap, "master", BRIDGE,
                              "type", "veth", "peer", "name", f"{tap}p"],
                             capture_output=True, text=True, check=False)
    out, err = gc.communicate(timeout=60)
    assert gc.returncode == 0, out + err
    return plugged, err


def assert_bridge_kept(ns, vm_id, plugged, gc_err):
    links = ns.links()
    tap = f"one-{vm_id}-0"
    assert plugged.returncode == 0, f"tap plug failed (bridge gone?): {plugged.stderr} / {gc_err}"
    assert BRIDGE in links, gc_err
    assert links[tap]["master"] == BRIDGE, gc_err
    ns.ip("link", "del", tap)


def test_gc_never_deletes_a_bridge_a_deploying_vm_just_took(ns, tmp_path):
    # the dead VM's bridge is planned for deletion; gc pauses 1 s after its
    # first read (the snapshot) and the new VM's pre + tap come in that window
    for run in range(3):
        dead_vm(ns, 200 + run)
        bindir = os.path.join(str(tmp_path), f"bin{run}")
        wrap(bindir, "ip", "pause-after", nth=1, seconds=1.5)
        plugged, err = deploy_while_gc_runs(ns, 210 + run, 0.6, {"PATH": path_with(bindir)})
        assert_bridge_kept(ns, 210 + run, plugged, err)
        assert "kept bridge racebr" in err or "kept" in err, err
        # the dead VM's record went; the live VM's stays
        users = {os.path.basename(p) for p in glob.glob(os.path.join(
            ns.run_dir, "users", "*", BRIDGE, "*"))}
        assert f"{200 + run}-0" not in users and f"{210 + run}-0" in users
        age_records(ns, f"{210 + run}-0")  # this VM dies too: next run's leftover


def test_gc_race_at_random_offsets(ns):
    rng = random.Random(28)
    for run in range(8):
        dead_vm(ns, 230 + run)
        plugged, err = deploy_while_gc_runs(ns, 240 + run, rng.uniform(0, 0.8))
        assert_bridge_kept(ns, 240 + run, plugged, err)
        age_records(ns, f"{240 + run}-0")


def test_a_vm_between_pre_and_its_domain_is_alive_for_gc(ns):
    # pre ran (record, bridge), no tap yet, virsh does not list it: nothing goes
    assert_ok(ns.run("bridge", "pre", stdin=bridge_vm(61)))
    dry = vnm(ns, "gc", "--live", "", "--json")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "[]"
    done = vnm(ns, "gc", "--live", "", "--apply")
    assert done.returncode == 0, done.stderr
    assert BRIDGE in ns.links()
    # once the record is older than gc_record_grace the VM is taken as dead
    age_records(ns, "61-0")
    done = vnm(ns, "gc", "--live", "", "--apply")
    assert done.returncode == 0, done.stderr
    assert BRIDGE not in ns.links()


def test_gc_keeps_the_firewall_of_a_nic_whose_tap_came_back(ns, tmp_path):
    stdin = b64(vm_xml(62, [bridge_nic(62, 0, "fwbr", VN_MAD="fw", IP="10.3.0.62",
                                       SECURITY_GROUPS="5")], extra=RULES))
    assert_ok(ns.run("fw", "pre", stdin=stdin))
    ns.add_tap("one-62-0", "fwbr")
    assert_ok(ns.run("fw", "post", "one-62", "node1", stdin=stdin))
    ns.ip("link", "del", "one-62-0")  # gone (migrating away, say)...
    age_records(ns, "62-0")
    bindir = os.path.join(str(tmp_path), "bin")
    wrap(bindir, "ip", "pause-after", nth=1, seconds=1.5)
    gc = start_gc(ns, {"PATH": path_with(bindir)})
    time.sleep(0.8)
    ns.add_tap("one-62-0", "fwbr")  # ...and back while gc looked away
    out, err = gc.communicate(timeout=60)
    assert gc.returncode == 0, out + err
    assert "kept firewall one-62-0: tap one-62-0 exists again" in err
    assert "-A opennebula -m physdev --physdev-out one-62-0" in " ".join(
        ns.exec("iptables", "-S").splitlines()) or "one-62-0-i" in ns.exec("iptables", "-S")
