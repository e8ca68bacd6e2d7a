"""Fail-closed security groups (SPEC decision 6) and updates without a window.

A bad rule in update_sg fails the action naming the rule and leaves the
previous protection exactly as it was (the reference tore it down: #6759).
While update_sg runs again and again, a flood of connection attempts to a
denied port never gets an answer and an established allowed flow never stalls.
"""

import subprocess
import sys
import threading

import pytest

from support.assertions import assert_ok, assert_one_error
from support.commands import stop
from support.firewall import Firewall, ipsets
from support.namespaces import Guest, PROBE
from support.oned_input import b64, bridge_nic, rules_xml, vm_xml

A_IP = "10.60.0.10"


def vm_a(*rules, spoofing=True):
    nic = bridge_nic(30, 0, "fcbr", "uplink0", VN_MAD="fw", IP=A_IP, SECURITY_GROUPS="100,101",
                     MAC="02:00:0a:3c:00:0a")
    if spoofing:
        nic.update(FILTER_MAC_SPOOFING="YES", FILTER_IP_SPOOFING="YES")
    return b64(vm_xml(30, [nic], extra=rules_xml(*rules)))


def rule(protocol, direction="INBOUND", sg=100, **extra):
    return dict(PROTOCOL=protocol, RULE_TYPE=direction, SECURITY_GROUP_ID=sg, **extra)


OUT_ALL = rule("ALL", "OUTBOUND", 101)
GOOD = vm_a(rule("TCP", RANGE="22"), rule("TCP", IP="10.60.1.0", SIZE="256"), OUT_ALL)
# the same allowances written differently: other sets, other rules, same verdicts
GOOD_TOO = vm_a(rule("TCP", RANGE="22,23"), rule("TCP", IP="10.60.2.0", SIZE="512"),
                rule("UDP", IP="10.60.3.0", SIZE="8", RANGE="53"), OUT_ALL)

BAD_RULES = {
    "reversed range": (rule("TCP", RANGE="443:80"), "RANGE"),
    "bad CIDR": (rule("TCP", IP="10.60.1.300", SIZE="4"), "IP"),
    "unknown protocol": (rule("SCTP"), "PROTOCOL"),
    "ICMP type": (rule("ICMP", ICMP_TYPE="999"), "ICMP_TYPE"),
}


@pytest.fixture
def site(ns, tmp_path):
    fw = Firewall("restore-nft", tmp_path)
    guests, procs = [], []
    try:
        assert_ok(fw.run(ns, "fw", "pre", stdin=GOOD))
        a = Guest(ns, "one-30-0", "02:00:0a:3c:00:0a", f"{A_IP}/24", bridge="fcbr")
        guests.append(a)
        b = Guest(ns, link="uplink0p", ipv4="10.60.0.20/24")  # a peer on the LAN
        guests.append(b)
        assert_ok(fw.run(ns, "fw", "post", "one-30", "node1", stdin=GOOD))
        procs.append(a.start("serve", "--tcp", "22,9000"))
        yield fw, ns, a, b
    finally:
        for proc in procs:
            stop(proc)
        for guest in guests:
            guest.delete()


def state(fw, ns):
    return fw.save(ns, 4), fw.save(ns, 6), ipsets(ns)


@pytest.mark.parametrize("case", sorted(BAD_RULES))
def test_bad_rule_keeps_the_old_protection(site, case):
    fw, ns, a, b = site
    before = state(fw, ns)
    bad_rule, needle = BAD_RULES[case]
    done = fw.run(ns, "fw", "update_sg", "one-30",
                  stdin=vm_a(rule("TCP", RANGE="22"), bad_rule, OUT_ALL))
    line = assert_one_error(done, "SECURITY_GROUP_RULE 2", needle)
    assert line.startswith("ERROR: update_sg: ")
    assert state(fw, ns) == before
    assert b.probe("tcp", A_IP, 22) == 0
    assert b.probe("tcp", A_IP, 9000) == 1


def test_update_sg_with_the_same_rules_changes_nothing(site):
    fw, ns, _a, _b = site
    before = state(fw, ns)
    assert_ok(fw.run(ns, "fw", "update_sg", "one-30", stdin=GOOD))
    assert state(fw, ns) == before


def traffic(b):
    """From the peer, for 4 s: a connection attempt to denied port 9000 every 2 ms, and
    one established connection to allowed port 22 kept round-tripping."""
    flood = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "flood",
                              A_IP, "9000", "4"], stdout=subprocess.PIPE, text=True)
    hold = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "hold",
                             A_IP, "22", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    return flood, hold


def test_no_window_while_rules_are_replaced(site):
    fw, ns, _a, b = site
    flood, hold = traffic(b)
    failures = []

    def updates():
        for i in range(16):
            done = fw.run(ns, "fw", "update_sg", "one-30", stdin=GOOD_TOO if i % 2 else GOOD)
            if done.returncode != 0:
                failures.append(done.stderr.decode())

    worker = threading.Thread(target=updates)
    worker.start()
    worker.join()
    answered = flood.communicate(timeout=30)[0]
    held, cut = hold.communicate(timeout=30)
    assert not failures
    assert int(answered) == 0, "a denied port answered during an update"
    assert hold.returncode == 0, cut
    assert int(held) > 100  # round trips kept flowing


def test_repeated_bad_updates_never_open_a_window(site):
    """Bad updates (each kind of bad rule) between good ones, while a flood hits a
    denied port and an established allowed flow keeps round-tripping: every bad one
    fails with one line, every good one applies, nothing denied ever answers."""
    fw, ns, _a, b = site
    flood, hold = traffic(b)
    outcomes = []
    bad = [vm_a(rule("TCP", RANGE="22"), bad_rule, OUT_ALL)
           for bad_rule, _ in BAD_RULES.values()]
    for i in range(16):
        stdin = bad[(i // 2) % len(bad)] if i % 2 == 0 else (GOOD_TOO if i % 4 == 1 else GOOD)
        done = fw.run(ns, "fw", "update_sg", "one-30", stdin=stdin)
        errors = [line for line in done.stderr.decode().splitlines() if line.startswith("ERROR")]
        outcomes.append((i % 2 == 0, done.returncode, len(errors)))
    answered = flood.communicate(timeout=30)[0]
    held, cut = hold.communicate(timeout=30)
    assert all((rc, count) == ((1, 1) if is_bad else (0, 0)) for is_bad, rc, count in outcomes), \
        outcomes
    assert int(answered) == 0, "a denied port answered while bad updates were refused"
    assert hold.returncode == 0, cut
    assert int(held) > 100
