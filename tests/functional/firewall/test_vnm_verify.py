"""vnm verify on golden fixture A's fw NIC (VM 7 NIC 1): a protected NIC passes every check,
a deliberately broken one is reported with exit 1, and the probe never outlives the run.

VM 7 as oned sent it, NIC 1 (and alias) in security group 100 only (TCP 22,80:90
in, …; IP and MAC spoofing filters), NIC 0 on a plain bridge without
protection; the guest end of NIC 1's tap listens on TCP 22 and 9000.
"""

import json
import os
import subprocess
import time

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.firewall import Firewall
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml
from support.paths import PYTHON, REPO, fixture_bytes

VM_MAC, VM_IP = "02:00:0a:00:01:05", "10.0.1.5"
XML = b64(fixture_bytes("vm7_vnm_reduced.xml").replace(
    b"<SECURITY_GROUPS><![CDATA[0,100]]>", b"<SECURITY_GROUPS><![CDATA[100]]>"))
FORWARD_HOLE = ("FORWARD", "-m", "physdev", "--physdev-out", "one-7-1", "--physdev-is-bridged",
                "-j", "ACCEPT")


# VM 30: a fw NIC on the same bridge without spoofing filters, TCP 22 in only
VM30_MAC = "02:00:0a:00:01:1e"
VM30 = b64(vm_xml(30, [bridge_nic(30, 0, "onebr1", VN_MAD="fw", IP="10.0.1.30", MAC=VM30_MAC,
                                  SECURITY_GROUPS="200")],
                  extra=rules_xml(dict(PROTOCOL="TCP", RANGE="22", RULE_TYPE="INBOUND",
                                       SECURITY_GROUP_ID="200"))))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("verify")
    fw = Firewall("restore-nft", tmp)
    (tmp / "run").mkdir()
    ns = Namespace(str(tmp / "run"))
    guests, procs = [], []
    try:
        assert_ok(fw.run(ns, "fw", "pre", stdin=XML))
        guests.append(Guest(ns, "one-7-1", VM_MAC, f"{VM_IP}/24", bridge="onebr1"))
        assert_ok(fw.run(ns, "fw", "post", "one-7", "node1", stdin=XML))
        procs.append(guests[0].start("serve", "--tcp", "22,9000"))
        assert_ok(fw.run(ns, "fw", "pre", stdin=VM30))
        guests.append(Guest(ns, "one-30-0", VM30_MAC, "10.0.1.30/24", bridge="onebr1"))
        assert_ok(fw.run(ns, "fw", "post", "one-30", "node1", stdin=VM30))
        yield ns
    finally:
        for proc in procs:
            stop(proc)
        for guest in guests:
            guest.delete()
        ns.delete()


def command(ns, *args):
    env = dict(os.environ, VNM_RUN_DIR=ns.run_dir, PYTHONPATH=REPO)
    return ["ip", "netns", "exec", ns.name, PYTHON, "-m", "vnmlib.cli", "verify", *args], env


def verify(ns, *args):
    argv, env = command(ns, *args)
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def checks(done):
    return {c["check"]: c for c in json.loads(done.stdout)}


def state(ns):
    """The namespace's links, rules and sets: verify must leave them as they were."""
    links = sorted(link["ifname"] for link in json.loads(ns.ip("-j", "link", "show")))
    tables = [line for tool in ("iptables-save", "ip6tables-save")
              for line in ns.exec(tool).splitlines() if not line.startswith("#")]
    return links, tables, ns.exec("ipset", "save"), ns.exec("nft", "-s", "list", "ruleset")


def test_a_protected_nic_passes_every_check(host):
    before = state(host)
    done = verify(host, "--vm", "7", "--nic", "1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = checks(done)
    for name in ("reaches its chains", "IPv4 source spoofing", "MAC spoofing",
                 "ARP sender spoofing", "IPv4 denied TCP port", "IPv4 allowed TCP port"):
        assert found[name]["result"] == "enforced", found[name]
    assert found["IPv4 denied TCP port"]["how"] == "live"
    assert "10.0.1.5:22, allowed by one-7-1-i; the whole path says ACCEPT" in \
        found["IPv4 allowed TCP port"]["detail"]
    assert "one-7-1-ip-spoofing" in found["IPv4 source spoofing"]["detail"]
    assert found["IPv6 source spoofing"]["result"] == "enforced"  # the set exists, empty
    assert state(host) == before  # the probe is gone, nothing else changed


def test_without_nic_every_nic_of_the_vm_here_is_checked(host):
    done = verify(host, "--vm", "7", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)
    # NIC 0 (bridge driver) and NIC 2 (vxlan) were not deployed here: nothing of them
    assert {r["nic"] for r in rows} == {"7/1"}


def test_without_filters_spoofing_is_off_and_the_learned_mac_is_probed(host):
    vm30 = Guest.__new__(Guest)
    vm30.name = f"{host.name}-one-30-0"
    vm30.ping("10.0.1.5")  # the VM speaks: the bridge learns its MAC on the tap
    done = verify(host, "--vm", "30", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = checks(done)
    for name in ("IPv4 source spoofing", "IPv6 source spoofing", "MAC spoofing",
                 "ARP sender spoofing"):
        assert found[name]["result"] == "off", found[name]
    # no MAC filter names the VM's MAC: the probe is sent to the one the bridge learned
    assert found["IPv4 denied TCP port"]["result"] == "enforced", found
    assert found["IPv4 allowed TCP port"]["detail"].startswith(
        "SYN 198.51.100.77 -> 192.0.2.1:22, allowed by one-30-0-i")


def test_a_bypass_before_vnms_jump_is_a_hole(host):
    host.exec("iptables", "-w", "-I", *FORWARD_HOLE)
    try:
        done = verify(host, "--vm", "7", "--nic", "1", "--json")
    finally:
        host.exec("iptables", "-w", "-D", *FORWARD_HOLE)
    assert done.returncode == 1
    found = checks(done)
    assert found["reaches its chains"]["result"] == "HOLE"
    # the live probe proves it: the denied port's SYN reached the tap
    assert found["IPv4 denied TCP port"]["result"] == "HOLE", found["IPv4 denied TCP port"]


def test_a_spoofing_rule_gone_is_a_hole(host):
    rule = ("one-7-1-o", "-m", "set", "!", "--match-set", "one-7-1-ip-spoofing", "src", "-j",
            "DROP")
    host.exec("iptables", "-w", "-D", *rule)
    try:
        done = verify(host, "--vm", "7", "--nic", "1", "--no-probe", "--json")
    finally:
        host.exec("iptables", "-w", "-I", rule[0], "3", *rule[1:])
    assert done.returncode == 1
    assert checks(done)["IPv4 source spoofing"]["result"] == "HOLE"
    assert "IPv4 denied TCP port" not in checks(done)  # --no-probe: nothing live


def test_sigterm_removes_the_probe(host):
    before = state(host)
    argv, env = command(host, "--vm", "7", "--nic", "1")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            names = [link["ifname"] for link in json.loads(host.ip("-j", "link", "show"))]
            if f"vnmvp{proc.pid}" in names:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the probe port never appeared")
        proc.terminate()
        assert proc.wait(timeout=10) == 143
    finally:
        stop(proc)
    assert state(host) == before


def test_a_probe_left_by_a_killed_run_is_removed(host):
    # what a SIGKILLed run leaves: its pair, named after a pid that is gone
    host.ip("link", "add", "vnmvp999999999", "type", "veth", "peer", "name", "vnmvq999999999")
    done = verify(host, "--vm", "7", "--nic", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vnmvp999999999" not in host.ip("link", "show")


def test_a_vm_with_nothing_here_is_one_error_line(host):
    done = verify(host, "--vm", "99")
    assert done.returncode != 0
    assert done.stderr.strip() == "vnm: verify: VM 99: nothing of it on this host"


def test_an_open_vswitch_nic_is_traced(tmp_path):
    """Golden fixture C (VM 9): NIC 0 with IP and MAC spoofing filters, NIC 1 a QinQ port
    that forwards no untagged frame at all (so its spoofing checks cannot run)."""
    from support.ovs import OvsHost

    host = OvsHost(tmp_path)
    try:
        vm9 = fixture_bytes("vm9_vnm_reduced.b64")
        assert_ok(host.run("ovswitch", "pre", stdin=vm9))
        host.plug("ovsbr0", "one-9-0")
        host.plug("ovsbr0", "one-9-1")
        assert_ok(host.run("ovswitch", "post", "one-9", "node1", stdin=vm9))
        # the fixture's stp_enable=true keeps a new port listening (dropping) for 30 s
        host.ovs.vsctl("set", "Bridge", "ovsbr0", "stp_enable=false")
        argv, env = command(host.ns, "--vm", "9", "--json")
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env=dict(env, **host.ovs.env))
    finally:
        host.delete()
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(c["nic"], c["check"]): c for c in json.loads(done.stdout)}
    for name in ("MAC spoofing", "IPv4 source spoofing"):
        assert rows[("9/0", name)]["result"] == "enforced", rows
        assert "own: 10.30.0.2, 02:00:0a:1e:00:02" in rows[("9/0", name)]["detail"]
    assert rows[("9/1", "spoofing")]["result"] == "not run"
