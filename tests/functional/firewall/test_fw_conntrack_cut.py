"""Narrowing a security group cuts the connections it no longer allows (real traffic).

The chains accept ``RELATED,ESTABLISHED`` first, so without the cut a
connection opened while its rule existed outlives the rule (the reference:
OpenNebula #4123). Here a held connection's next segment, triggered by the
test, is echoed ("ok") or not ("cut"); the conntrack table is read with the
``conntrack`` tool.

    peer B (10.61.0.20, fd61::20) ── uplink0 ─┐
    VM A 31 (10.61.0.10, fd61::10) ── one-31-0 ─┤ ctbr
"""

import subprocess
import sys

import pytest

from support.assertions import assert_ok
from support.commands import stop
from support.firewall import Firewall
from support.namespaces import Guest, PROBE
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

A_MAC = "02:00:0a:3d:00:0a"
ADDRESS = {("A", 4): "10.61.0.10", ("A", 6): "fd61::10",
           ("B", 4): "10.61.0.20", ("B", 6): "fd61::20"}


def rule(protocol, direction="INBOUND", **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID=100, **extra)


SSH = rule("TCP", RANGE="22")
OTHER_IN = rule("TCP", RANGE="2222")
DATABASE = rule("TCP", "OUTBOUND", RANGE="5432")
OTHER_OUT = rule("UDP", "OUTBOUND", RANGE="53")
RULES = (SSH, OTHER_IN, DATABASE, OTHER_OUT)


ALIAS_IP = "10.61.0.11"


def vm_a(rules=RULES, alias=False):
    nic = bridge_nic(31, 0, "ctbr", "uplink0", VN_MAD="fw", IP=ADDRESS["A", 4],
                     IP6=ADDRESS["A", 6], MAC=A_MAC, SECURITY_GROUPS="100",
                     FILTER_IP_SPOOFING="YES")
    elements = [nic]
    if alias:  # being hot-plugged or detached
        elements.append(dict(_tag="NIC_ALIAS", NIC_ID=1, PARENT_ID=0, IP=ALIAS_IP, ATTACH="YES"))
    return b64(vm_xml(31, elements, extra=rules_xml(*rules)))


@pytest.fixture
def site(ns, tmp_path):
    fw = Firewall("restore-nft", tmp_path)
    guests, procs = {}, []
    try:
        assert_ok(fw.run(ns, "fw", "pre", stdin=vm_a()))
        guests["A"] = Guest(ns, "one-31-0", A_MAC, f"{ADDRESS['A', 4]}/24",
                            f"{ADDRESS['A', 6]}/64", bridge="ctbr")
        guests["B"] = Guest(ns, link="uplink0p", ipv4=f"{ADDRESS['B', 4]}/24",
                            ipv6=f"{ADDRESS['B', 6]}/64")
        assert_ok(fw.run(ns, "fw", "post", "one-31", "node1", stdin=vm_a()))
        procs.append(guests["A"].start("serve", "--tcp", "22,2222"))
        procs.append(guests["B"].start("serve", "--tcp", "5432"))
        yield fw, ns, guests, procs
    finally:
        for proc in procs:
            stop(proc)
        for guest in guests.values():
            guest.delete()


def converse(guest, host, port, procs):
    """A held connection from ``guest``; returns the function that makes one more round trip."""
    proc = subprocess.Popen(["ip", "netns", "exec", guest.name, sys.executable, PROBE,
                             "converse", host, str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(proc)
    assert proc.stdout.readline().strip() == "ready"

    def again():
        proc.stdin.write("\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()
    return again


def tracked(ns, family, port):
    """``id=`` of the conntrack entries whose original destination port is ``port``."""
    out = ns.exec("conntrack", "-L", "-f", "ipv4" if family == 4 else "ipv6", "-o", "id",
                  "-p", "tcp", "--orig-port-dst", str(port))
    return {word for line in out.splitlines() for word in line.split() if word.startswith("id=")}


# (client, server, port, the rule that goes, what the connection's next round trip does)
CASES = {
    "inbound, its rule goes": ("B", "A", 22, SSH, "cut"),
    "inbound, another rule goes": ("B", "A", 22, OTHER_IN, "ok"),
    "outbound, its rule goes": ("A", "B", 5432, DATABASE, "cut"),
    "outbound, another rule goes": ("A", "B", 5432, OTHER_OUT, "ok"),
}


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("case", sorted(CASES))
def test_update_sg_cuts_only_what_it_no_longer_admits(site, case, family):
    fw, ns, guests, procs = site
    client, server, port, gone, after = CASES[case]
    again = converse(guests[client], ADDRESS[server, family], port, procs)
    assert again() == "ok"
    before = tracked(ns, family, port)
    assert len(before) == 1

    done = fw.run(ns, "fw", "update_sg", "one-31", stdin=vm_a([r for r in RULES if r is not gone]))
    assert_ok(done)
    if after == "cut":
        assert again() == "cut"  # its next segment is a new connection: dropped
        assert tracked(ns, family, port) == set()
    else:
        assert again() == "ok"
        assert tracked(ns, family, port) == before  # the very same entry
    cut_line = "NIC 0: 1 tracked connection(s) its rules no longer admit cut"
    assert (cut_line in done.stderr.decode()) == (after == "cut")


def test_clean_cuts_every_connection_of_the_nic(site):
    fw, ns, guests, procs = site
    for family in (4, 6):
        assert converse(guests["B"], ADDRESS["A", family], 22, procs)() == "ok"
        assert converse(guests["A"], ADDRESS["B", family], 5432, procs)() == "ok"
    assert all(tracked(ns, f, p) for f in (4, 6) for p in (22, 5432))
    done = fw.run(ns, "fw", "clean", "one-31", "node1", stdin=vm_a())
    assert_ok(done)
    assert all(not tracked(ns, f, p) for f in (4, 6) for p in (22, 5432)), \
        "a later VM with these addresses would inherit the connections"
    assert "NIC 0: 4 tracked connection(s) of its addresses cut" in done.stderr.decode()


def test_detaching_an_alias_cuts_its_connections_only(site):
    fw, ns, guests, procs = site
    guests["A"].ip("addr", "add", f"{ALIAS_IP}/24", "dev", guests["A"].dev)
    assert_ok(fw.run(ns, "fw", "post", "one-31", "node1", stdin=vm_a(alias=True)))
    to_alias = converse(guests["B"], ALIAS_IP, 22, procs)
    to_nic = converse(guests["B"], ADDRESS["A", 4], 22, procs)
    assert to_alias() == "ok" and to_nic() == "ok"
    alias_entry, nic_entry = tracked_to(ns, ALIAS_IP), tracked_to(ns, ADDRESS["A", 4])
    assert len(alias_entry) == len(nic_entry) == 1

    done = fw.run(ns, "fw", "clean", "one-31", "node1", stdin=vm_a(alias=True))
    assert_ok(done)
    assert "NIC_ALIAS 1: 1 tracked connection(s) of its addresses cut" in done.stderr.decode()
    assert not tracked_to(ns, ALIAS_IP) & alias_entry
    assert tracked_to(ns, ADDRESS["A", 4]) == nic_entry
    assert to_nic() == "ok"
    # the alias' address left the NIC's anti-spoofing set: its answers are dropped now
    assert to_alias() == "cut"


def tracked_to(ns, address):
    """``id=`` of the TCP entries to ``address`` port 22."""
    out = ns.exec("conntrack", "-L", "-o", "id", "-p", "tcp", "--orig-dst", address,
                  "--orig-port-dst", "22")
    return {word for line in out.splitlines() for word in line.split() if word.startswith("id=")}
