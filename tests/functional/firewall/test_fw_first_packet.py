"""Protected from the first packet (issue 21.1): fw installs a NIC's protection in ``pre``.

The rules name the tap (``--physdev-in/out``, the wire guard's device), so
they are in place before the hypervisor creates it. Topology (every namespace
made and removed here):

    peer P (10.51.0.100, uplink0p)  ── uplink0  ┐
    VM A 51 (10.51.0.51)            ── one-51-0 ┤ fbr (fw/pre)
    VM C 52 (10.51.0.52), :protect_in_pre: false ── one-52-0 ┘

A's tap is made only after ``pre``, and A sends from the moment it is on the
bridge until after ``post``: a forged source IP and ARP never reach P, its own
traffic does. C, with the reference's timing, shows the window this closes.
"""

import os
import subprocess

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import stop
from support.fault_injection import FailingInTurn
from support.firewall import ipsets
from support.namespaces import Guest, Namespace
from support.oned_input import b64, bridge_nic, vm_xml
from support.paths import TREE
from support.remotes import copy_tree
from support.wire_probe import FRAMES, SCAPY_PYTHON, Sniffer, arrivals

A_MAC, A_IP = "02:00:0a:33:00:33", "10.51.0.51"
C_MAC, C_IP = "02:00:0a:33:00:34", "10.51.0.52"
P_IP, FORGED = "10.51.0.100", "10.51.0.99"


def nic(vm_id, mac, ip, nic_id=0, **extra):
    return bridge_nic(vm_id, nic_id, "fbr", "uplink0", VN_MAD="fw", MAC=mac, IP=ip,
                      FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES", **extra)


A_XML = b64(vm_xml(51, [nic(51, A_MAC, A_IP)]))
C_XML = b64(vm_xml(52, [nic(52, C_MAC, C_IP)]))


def _reference_timing_tree(tmp):
    with open(os.path.join(os.path.dirname(TREE), "etc", "vnm", "OpenNebulaNetwork.conf"),
              encoding="utf-8") as handle:
        return copy_tree(tmp / "remotes", handle.read() + ":protect_in_pre: false\n")


class Site:
    def __init__(self, tmp):
        self.host = Namespace(str(tmp))
        self.guests = {}
        try:
            self.guests["P"] = Guest(self.host, link="uplink0p", ipv4=f"{P_IP}/24")
            self.reference_tree = _reference_timing_tree(tmp)
        except BaseException:
            self.delete()
            raise

    def guest_unplugged(self, name, tap, mac, ip):
        """The VM's side of a tap that is not on the bridge yet (the hypervisor's next step)."""
        self.guests[name] = Guest(self.host, tap, mac, f"{ip}/24")
        return self.guests[name]

    def state(self):
        """What pre and post write, read with the kernel's own tools."""
        tables = sorted(line for line in self.host.exec("nft", "list", "tables").splitlines()
                        if "one-" in line)
        return (self.host.exec("iptables", "-w", "-S"), self.host.exec("ip6tables", "-w", "-S"),
                sorted(ipsets(self.host)), tables)

    def delete(self):
        for guest in self.guests.values():
            guest.delete()
        self.host.delete()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("functional tests need root (network namespaces)")
    built = Site(tmp_path_factory.mktemp("first"))
    yield built
    built.delete()


def sender(guest, kind, count, **args):
    """wire_frames.py sending ``count`` frames 20 ms apart from ``guest``, in the background."""
    return subprocess.Popen(["ip", "netns", "exec", guest.name, SCAPY_PYTHON, FRAMES, "send",
                             guest.dev, kind, f"count={count}", "inter=0.02",
                             *(f"{k}={v}" for k, v in args.items())])


def test_denied_frames_sent_from_the_taps_first_instant_never_pass(site):
    host = site.host
    assert_ok(host.run("fw", "pre", stdin=A_XML))
    assert "one-51-0" not in host.links()  # protected before the tap exists:
    rules = host.exec("iptables", "-w", "-S")
    assert "-A opennebula -m physdev --physdev-in one-51-0 --physdev-is-bridged " \
           "-j one-51-0-o" in rules
    assert "-A one-51-0-o -m mac ! --mac-source 02:00:0a:33:00:33 -j DROP" in rules
    # the wire guard too: a netdev chain on the missing device (recent kernels), or
    # else the interim bridge table (l2guard); either way under the NIC's name
    assert site.state()[3] in (["table netdev one-51-0"],
                               ["table bridge one-51-0"])
    after_pre = site.state()

    a = site.guest_unplugged("A", "one-51-0", A_MAC, A_IP)
    p = site.guests["P"]
    with Sniffer(p, f"src={FORGED}") as forged, Sniffer(p, f"src={A_IP}") as own:
        # the hypervisor plugs the tap in; the VM sends from then on, until after post
        host.ip("link", "set", "one-51-0", "master", "fbr")
        senders = [sender(a, "udp", 150, src=A_MAC, sip=FORGED, dip=P_IP),
                   sender(a, "arp", 150, src=A_MAC, spa=FORGED, tpa=P_IP),
                   sender(a, "udp", 150, src=A_MAC, sip=A_IP, dip=P_IP)]
        try:
            assert_ok(host.run("fw", "post", "one-51", "node1", stdin=A_XML))
            for proc in senders:
                assert proc.wait(timeout=120) == 0
        finally:
            for proc in senders:
                stop(proc)
        assert forged.count() == 0
        assert own.count() > 0  # the path was open all along: the rules made the difference
    # post only re-checked: the same rules and sets; the guard now hooks the tap itself
    after_post = site.state()
    assert after_post[:3] == after_pre[:3]
    assert after_post[3] == ["table netdev one-51-0"]


def test_with_the_references_timing_the_window_is_open_until_post(site):
    """``:protect_in_pre: false``: nothing in pre, so a forged frame passes until post."""
    host = site.host
    assert_ok(host.run("fw", "pre", stdin=C_XML, tree=site.reference_tree))
    assert "one-52-0" not in host.exec("iptables", "-w", "-S")
    c = site.guest_unplugged("C", "one-52-0", C_MAC, C_IP)
    host.ip("link", "set", "one-52-0", "master", "fbr")
    forged = dict(src=C_MAC, sip=FORGED, dip=P_IP)
    assert arrivals(c, site.guests["P"], "udp", (f"src={FORGED}",), **forged) == 1
    assert_ok(host.run("fw", "post", "one-52", "node1", stdin=C_XML, tree=site.reference_tree))
    assert arrivals(c, site.guests["P"], "udp", (f"src={FORGED}",), **forged) == 0


def test_a_hot_plugged_nic_is_protected_by_pre_and_the_others_are_left_alone(site):
    host = site.host
    before = host.exec("iptables", "-w", "-S")
    plugged = b64(vm_xml(51, [nic(51, A_MAC, A_IP),
                              nic(51, "02:00:0a:33:01:33", "10.51.0.151", nic_id=1,
                                  ATTACH="YES")]))
    assert_ok(host.run("fw", "pre", stdin=plugged))
    after = host.exec("iptables", "-w", "-S")
    assert "-A opennebula -m physdev --physdev-in one-51-1 --physdev-is-bridged " \
           "-j one-51-1-o" in after
    assert [line for line in after.splitlines() if "one-51-0" in line] == \
        [line for line in before.splitlines() if "one-51-0" in line]
    assert "table netdev one-51-1" in host.exec("nft", "list", "tables") or \
        "table bridge one-51-1" in host.exec("nft", "list", "tables")
    # detach before the NIC ever ran: clean takes its protection away again
    assert_ok(host.run("fw", "clean", "node1", stdin=plugged))
    assert "one-51-1" not in host.exec("iptables", "-w", "-S")
    assert "one-51-1" not in host.exec("nft", "list", "tables")


def test_live_migration_protects_on_the_destination_before_the_vm_runs_there(site, tmp_path):
    """oned's order: pre on the destination, the hypervisor migrates (the tap appears there
    with the VM already running), clean on the source, post on the destination."""
    destination = Namespace(str(tmp_path))
    try:
        assert_ok(destination.run("fw", "pre", stdin=A_XML))
        assert "one-51-0" not in destination.links()
        rules = destination.exec("iptables", "-w", "-S")
        assert "-A opennebula -m physdev --physdev-out one-51-0 --physdev-is-bridged " \
               "-j one-51-0-i" in rules
        assert "-A one-51-0-o -m set ! --match-set one-51-0-ip-spoofing src -j DROP" in rules
        tables = destination.exec("nft", "list", "tables")
        assert "table netdev one-51-0" in tables or "table bridge one-51-0" in tables
        destination.add_tap("one-51-0", "fbr")  # the running VM arrives
        before_post = destination.exec("iptables", "-w", "-S")
        assert_ok(destination.run("fw", "post", "one-51", "node2", stdin=A_XML))
        assert destination.exec("iptables", "-w", "-S") == before_post
    finally:
        destination.delete()


def test_pre_refuses_a_target_naming_another_nics_tap_before_it_exists(ns):
    """The jumps would put this NIC's chains on that tap's traffic once it appears."""
    xml = b64(vm_xml(55, [nic(55, "02:00:0a:33:00:37", "10.51.0.55", TARGET="one-99-0")]))
    assert_one_error(ns.run("fw", "pre", stdin=xml), "NIC 0", "TARGET one-99-0")
    assert "fbr" not in ns.links()
    assert "one-55-0" not in ns.exec("iptables", "-w", "-S")


TOOLS = ("iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
         "ip6tables-restore", "ipset", "nft")


def test_a_pre_that_fails_at_any_tool_call_leaves_nothing(ns, tmp_path):
    """Each firewall tool call of pre fails in turn: pre fails with one line and the host
    is as before it (no bridge, rules, sets or guard), or it succeeds whole."""
    tools = FailingInTurn(tmp_path, TOOLS)
    xml = b64(vm_xml(53, [nic(53, "02:00:0a:33:00:35", "10.51.0.53", IP6="fd51::53")]))
    env = tools.env

    def state():
        # the guard's family: netdev, or the interim bridge table when nft refused that
        tables = [t.split()[-1] for t in ns.exec("nft", "list", "tables").splitlines()
                  if "one-" in t]
        return (sorted(ns.links()), ns.exec("iptables-save").count("one-53-0"),
                ns.exec("ip6tables-save").count("one-53-0"), sorted(ipsets(ns)), tables)

    # the global chain and FORWARD jump, made by a host's first protected NIC, stay
    assert_ok(ns.run("fw", "pre", stdin=xml))
    assert_ok(ns.run("fw", "clean", "h", stdin=xml))
    old = state()
    assert_ok(ns.run("fw", "pre", stdin=xml, env=env(0)))
    new, calls = state(), tools.calls()
    assert calls >= 5 and new != old
    assert_ok(ns.run("fw", "clean", "h", stdin=xml))
    failed = 0
    for fail_at in range(1, calls + 1):
        assert state() == old
        done = ns.run("fw", "pre", stdin=xml, env=env(fail_at))
        if done.returncode == 0:
            assert state() == new, (fail_at, done.stderr.decode())
            assert_ok(ns.run("fw", "clean", "h", stdin=xml))
        else:
            failed += 1
            assert_one_error(done, "injected failure")
            assert state() == old, (fail_at, done.stderr.decode())
    assert failed >= calls - 2, (failed, calls)
