"""A failed pre leaves nothing (issue 28.5): a full run directory, a stalled tool.

The run directory is a tiny tmpfs mounted in a private mount namespace
(``unshare -m``), filled up before ``pre`` runs: the bridge-user record
cannot be written, so ``pre`` must fail before it builds the bridge or
enslaves the uplink. The kernel is checked from outside with ``ip -j``.

An Open vSwitch ``pre`` whose ``ovs-vsctl`` commits and then stalls (a
wrapper that sleeps after the real tool; a stopped ovs-vswitchd) is killed
after its timeout and its committed transaction undone: the database, read
with ovs-vsctl, has no bridge.
"""

import glob
import os
import signal
import subprocess

import pytest

from support.assertions import assert_one_error
from support.fault_injection import path_with, wrap
from support.oned_input import b64, bridge_nic, vm_xml
from support.ovs import OvsHost
from support.paths import PYTHON, TREE

FILL = """
i=0
while touch "$RUN/inode$i" 2>/dev/null; do i=$((i+1)); done
dd if=/dev/zero of="$RUN/blocks" bs=4096 2>/dev/null || true
"""


def bridge_vm(vm_id, bridge):
    return b64(vm_xml(vm_id, [bridge_nic(vm_id, 0, bridge, "uplink0")]))


def test_pre_with_a_full_run_directory_builds_nothing(ns, tmp_path):
    run = os.path.join(str(tmp_path), "tiny-run")
    os.makedirs(run)
    vms = {}
    for name, vm_id in (("warm", 97), ("full", 98)):
        vms[name] = os.path.join(str(tmp_path), f"{name}.b64")
        with open(vms[name], "wb") as handle:
            handle.write(bridge_vm(vm_id, "fullbr"))
    action = f'ip netns exec {ns.name} {PYTHON} {TREE}/bridge'
    script = f"""
set -e
mount -t tmpfs -o size=64k,nr_inodes=64,mode=0755 vnm-test-run "$RUN"
# an earlier VM's pre and clean: the lock directory and lock files exist
{action}/pre < {vms['warm']}
{action}/clean node1 < {vms['warm']}
{FILL}
set +e
{action}/pre < {vms['full']} 2> "$OUT/pre.err"
echo $? > "$OUT/pre.rc"
ls -R "$RUN" > "$OUT/run.ls"
"""
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          env=dict(os.environ, RUN=run, OUT=str(tmp_path), VNM_RUN_DIR=run),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(str(tmp_path), "pre.err")) as handle:
        err = handle.read()
    with open(os.path.join(str(tmp_path), "pre.rc")) as handle:
        assert handle.read().strip() == "1", err
    errors = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], err
    assert "fullbr" in errors[0], err
    links = ns.links()
    assert "fullbr" not in links, err
    assert links["uplink0"]["master"] is None, err
    # the mount was private to the test's mount namespace
    assert not os.listdir(run)


# -- Open vSwitch: a tool that stalls after its transaction committed ----------------------

@pytest.fixture
def ovs_host(tmp_path, request):
    """A namespace with its own Open vSwitch; an indirect parameter adds conf lines."""
    host = OvsHost(tmp_path, conf=getattr(request, "param", ""))
    yield host
    host.delete()


def ovs_vm(vm_id, bridge):
    return b64(vm_xml(vm_id, [dict(NIC_ID=0, BRIDGE=bridge, VN_MAD="ovswitch", PHYDEV="uplink0",
                                   BRIDGE_TYPE="openvswitch", TARGET=f"one-{vm_id}-0",
                                   MAC=f"02:00:0a:00:{vm_id:02x}:00")]))


def records(host, bridge):
    return glob.glob(os.path.join(host.ns.run_dir, "users", "*", bridge, "*"))


@pytest.mark.parametrize("ovs_host", [":tool_timeout: 2\n"], indirect=True)
def test_a_stalled_ovs_vsctl_after_its_commit_is_undone(ovs_host, tmp_path):
    bindir = os.path.join(str(tmp_path), "bin")
    wrap(bindir, "ovs-vsctl", "stall-after", nth=1)  # the bridge's transaction commits, then hangs
    done = ovs_host.run("ovswitch", "pre", stdin=ovs_vm(99, "stallbr"),
                        env={"PATH": path_with(bindir)})
    line = assert_one_error(done, "ovs-vsctl did not finish within 2 s (tool_timeout): killed")
    assert "rolled back: ovs: undo" in done.stderr.decode(), line
    assert "stallbr" not in ovs_host.ovs.bridges()
    assert "uplink0" not in ovs_host.ovs.vsctl("show")
    assert records(ovs_host, "stallbr") == []


def test_a_stopped_ovs_vswitchd_fails_pre_and_leaves_no_bridge(ovs_host):
    with open(ovs_host.ovs.path("ovs-vswitchd.pid")) as handle:
        vswitchd = int(handle.read())
    os.kill(vswitchd, signal.SIGSTOP)  # the daemon we started for this test
    try:
        done = ovs_host.run("ovswitch", "pre", stdin=ovs_vm(100, "stopbr"))
        assert_one_error(done, "no answer from Open vSwitch within 10 s")
        # the database is the truth (ovs-vswitchd applies it when it resumes)
        assert "stopbr" not in ovs_host.ovs.bridges()
        assert records(ovs_host, "stopbr") == []
    finally:
        os.kill(vswitchd, signal.SIGCONT)
