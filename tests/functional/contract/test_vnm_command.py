"""The vnm command against the real host state: install (+ what onehost sync does), plan,
status, doctor, gc. Every host change happens in the test's namespace."""

import glob
import json
import os
import pwd
import subprocess

import pytest

from support.assertions import assert_ok
from support.commands import sh
from support.oneadmin import unprivileged_user
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import FIXTURES, PYTHON, REPO, fixture_bytes

VM7 = os.path.join(FIXTURES, "vm7_vnm_reduced.xml")
USER = "vnmtest"


def vnm(ns, *args, env=None):
    """``vnm ARGS`` inside the namespace (the checkout's vnmlib, the suite's interpreter)."""
    full = dict(os.environ, VNM_RUN_DIR=ns.run_dir, PYTHONPATH=REPO, **(env or {}))
    return subprocess.run(["ip", "netns", "exec", ns.name, PYTHON, "-m", "vnmlib.cli", *args],
                          capture_output=True, text=True, env=full, check=False)


def state(ns):
    """Everything an action could change in the namespace, as text."""
    # up or down, not the carrier flags the kernel settles asynchronously
    links = sorted((link["ifname"], link.get("master"), "UP" in link["flags"])
                   for link in json.loads(ns.ip("-j", "link", "show")))
    records = sorted(os.walk(os.path.join(ns.run_dir, "users")))  # locks and caches aside
    tables = [line for tool in ("iptables-save", "ip6tables-save")
              for line in ns.exec(tool).splitlines() if not line.startswith("#")]
    return links, tables, ns.exec("ipset", "save"), records


def info_lines(done):
    return [line.split(": ", 2)[2] for line in done.stderr.decode().splitlines()
            if line.startswith("INFO: ")]


# -- install, and what onehost sync does with the result ------------------------------

@pytest.fixture
def synced():
    """A non-root user (oneadmin's stand-in) and a /var/tmp directory for copies."""
    with unprivileged_user(USER) as base:
        yield base


def test_install_then_onehost_sync_copy_runs_on_the_hypervisor_python(ns, synced):
    remotes = os.path.join(synced, "remotes")
    done = subprocess.run([PYTHON, "-m", "vnmlib.cli", "install", "--remotes", remotes],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "oneadmin ALL=(root) NOPASSWD: /usr/local/sbin/vnm-action" in done.stdout
    assert "onehost sync -f" in done.stdout
    # onehost sync: the tree copied by oneadmin to the host's /var/tmp/one
    host_dir = os.path.join(synced, "one")
    os.makedirs(host_dir)
    os.chown(host_dir, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    for part in ("vnm", "etc"):
        sh("runuser", "-u", USER, "--", "cp", "-r", os.path.join(remotes, part), host_dir)
    tree = os.path.join(host_dir, "vnm")
    assert os.path.islink(os.path.join(tree, "bridge", "pre"))
    pycs = {}
    for root, _, files in os.walk(os.path.join(tree, "vnmlib")):
        for name in files:
            if name.endswith(".pyc"):
                with open(os.path.join(root, name), "rb") as handle:
                    data = handle.read()
                # PEP 552 flags: 0b11 = hash-based, checked: valid without mtimes
                assert int.from_bytes(data[4:8], "little") == 3, name
                pycs[os.path.join(root, name)] = data
    assert len(pycs) > 30
    stdin = b64(vm_xml(3, [bridge_nic(3, 0, "syncbr", "uplink0")]))
    for action in ("pre", "post", "clean"):
        args = {"post": ("one-3", "node1"), "clean": ("node1",)}.get(action, ())
        assert_ok(ns.run("bridge", action, *args, stdin=stdin, tree=tree,
                         python="/usr/bin/python3"))
    # the copied byte code was used as it is: nothing recompiled
    for path, data in pycs.items():
        with open(path, "rb") as handle:
            assert handle.read() == data, path


def test_install_keeps_hooks_and_an_edited_conf(tmp_path):
    remotes = str(tmp_path)
    from vnmlib.ops.install import install

    install(remotes)
    hook = tmp_path / "vnm" / "bridge" / "pre.d" / "10-mine"
    hook.write_text("#!/bin/sh\n")
    conf = tmp_path / "etc" / "vnm" / "OpenNebulaNetwork.conf"
    conf.write_text(conf.read_text().replace(":keep_empty_bridge: false",
                                             ":keep_empty_bridge: true"))
    done = subprocess.run([PYTHON, "-m", "vnmlib.cli", "install", "--remotes", remotes],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert "hooks: 10-mine" in done.stdout
    assert "-:keep_empty_bridge: true" in done.stdout and "+:keep_empty_bridge: false" in \
        done.stdout
    assert hook.exists() and ":keep_empty_bridge: true" in conf.read_text()
    again = subprocess.run([PYTHON, "-m", "vnmlib.cli", "install", "--remotes", remotes,
                            "--json"], capture_output=True, text=True, cwd=REPO, check=False)
    assert {c["change"] for c in json.loads(again.stdout)} == {"keep"}  # nothing else to do


# -- plan: no change, and equal to what the action then does ---------------------------

def test_plan_changes_nothing_and_equals_the_run(ns):
    vm7 = fixture_bytes("vm7_vnm_reduced.b64")
    steps = [("bridge", "pre", ()), ("fw", "pre", ()), ("vxlan", "pre", ())]
    for driver, action, args in steps:
        before = state(ns)
        planned = vnm(ns, "plan", driver, action, *args, "--vm", VM7, "--json",
                      "--tree", os.path.join(REPO, "vnm"))
        assert planned.returncode == 0, planned.stderr
        assert state(ns) == before
        done = assert_ok(ns.run(driver, action, *args, stdin=vm7))
        assert json.loads(planned.stdout) == info_lines(done), (driver, action)
        assert json.loads(planned.stdout)  # each of these creates something
    for i in (1, 2):
        ns.add_tap(f"one-7-{i}", "onebr1" if i == 1 else "onebr.100")
    before = state(ns)
    planned = vnm(ns, "plan", "fw", "post", "one-7", "node1", "--vm", VM7, "--json")
    assert state(ns) == before
    done = assert_ok(ns.run("fw", "post", "one-7", "node1", stdin=vm7))
    assert json.loads(planned.stdout) == info_lines(done)
    # nothing left to do: the plan says so
    again = vnm(ns, "plan", "bridge", "pre", "--vm", VM7)
    assert again.stdout.strip() == "nothing to change"
    # the VM goes: each clean's plan (rules, records, bridges deleted) is what it does
    for i in (1, 2):
        ns.ip("link", "del", f"one-7-{i}")
    for driver in ("fw", "vxlan", "bridge"):
        before = state(ns)
        planned = vnm(ns, "plan", driver, "clean", "node1", "--vm", VM7, "--json")
        assert planned.returncode == 0, planned.stderr
        assert state(ns) == before
        done = assert_ok(ns.run(driver, "clean", "node1", stdin=vm7))
        assert json.loads(planned.stdout) == info_lines(done), driver
        assert json.loads(planned.stdout)


# -- status, gc --------------------------------------------------------------------------

RULES = rules_xml(dict(PROTOCOL="TCP", RULE_TYPE="INBOUND", RANGE="22", SECURITY_GROUP_ID=5))


def deploy(ns, vm_id, bridge="gcbr"):
    stdin = b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, VN_MAD="fw", IP=f"10.3.0.{vm_id}",
                                          SECURITY_GROUPS="5", FILTER_IP_SPOOFING="YES")],
                       extra=RULES))
    assert_ok(ns.run("fw", "pre", stdin=stdin))
    ns.add_tap(f"one-{vm_id}-0", bridge)
    assert_ok(ns.run("fw", "post", f"one-{vm_id}", "node1", stdin=stdin))


def test_status_lists_nics_and_flags_leftovers(ns):
    deploy(ns, 41)
    done = vnm(ns, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [nic] = json.loads(done.stdout)
    assert (nic["vm"], nic["nic"], nic["tap"], nic["bridge"]) == (41, 0, "one-41-0", "gcbr")
    assert nic["chains"]["one-41-0-i"] > 0 and "one-41-0-ip-spoofing" in nic["ipsets"]
    assert nic["records"] == ["gcbr"] and nic["problems"] == []
    ns.ip("link", "del", "one-41-0")  # the VM died without clean
    done = vnm(ns, "status", "--vm", "41")
    assert done.returncode == 1
    assert "security-group chains but no tap" in done.stdout


def test_gc_removes_only_what_dead_vms_left(ns):
    deploy(ns, 51, "gcbr")
    deploy(ns, 52, "gcbr2")
    ns.ip("link", "del", "one-52-0")  # VM 52 is gone, its clean never ran
    # long ago: a record younger than gc_record_grace is a VM being deployed
    for record in glob.glob(os.path.join(ns.run_dir, "users", "*", "gcbr2", "52-0")):
        os.utime(record, (0, 0))
    before = state(ns)
    dry = vnm(ns, "gc", "--live", "51", "--json")
    assert dry.returncode == 0, dry.stderr
    found = {(r["remove"], r["what"]) for r in json.loads(dry.stdout)}
    assert found == {("firewall", "one-52-0"), ("record", "gcbr2:52-0"), ("bridge", "gcbr2")}
    assert state(ns) == before
    done = vnm(ns, "gc", "--live", "51", "--apply")
    assert done.returncode == 0, done.stderr
    rules = ns.exec("iptables", "-S")
    assert "one-52-0" not in rules and "one-51-0-i" in rules
    assert not any(s.startswith("one-52") for s in ns.exec("ipset", "list", "-n").split())
    assert "gcbr2" not in ns.links() and ns.links()["one-51-0"]["master"] == "gcbr"
    assert vnm(ns, "gc", "--live", "51", "--json").stdout.strip() == "[]"


def test_doctor_reports_and_fails_on_a_broken_conf(ns, tmp_path):
    done = vnm(ns, "doctor", "--json")
    checks = {r["check"]: r["status"] for r in json.loads(done.stdout)}
    assert checks["bridge"] == "ok" and checks["ip"] == "ok" and checks["python pyroute2"] == "ok"
    assert "iptables backend" in checks and "run directory" in checks
    assert done.returncode == (1 if "FAIL" in checks.values() else 0)
    tree = tmp_path / "remotes" / "vnm"
    tree.mkdir(parents=True)
    (tmp_path / "remotes" / "etc" / "vnm").mkdir(parents=True)
    (tmp_path / "remotes" / "etc" / "vnm" / "OpenNebulaNetwork.conf").write_text(":a: [\n")
    broken = vnm(ns, "doctor", "--tree", str(tree), "--json")
    rows = {r["check"]: r for r in json.loads(broken.stdout)}
    assert broken.returncode == 1
    assert rows["OpenNebulaNetwork.conf"]["status"] == "FAIL"
    assert "not valid YAML" in rows["OpenNebulaNetwork.conf"]["detail"]
