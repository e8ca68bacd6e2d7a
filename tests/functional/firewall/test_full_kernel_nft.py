"""The native nft backend (``:firewall_backend: nft``) on real traffic, in Debian's kernel
(``nf_conntrack_bridge``: ``ct state`` in the bridge family; tools/qemu/run.sh).

The traffic cases are test_fw_traffic's, run here against the same topology built
with the nft backend (allowed/denied ports, nets, net+port, ICMP types, IPv6 with
neighbour discovery, replies, spoofing, VM to host). Then what only nft has to
prove: an update_sg storm opens no window, a bad rule or a transaction the kernel
refuses changes nothing, another nft table and iptables-nft rules are left alone,
clean leaves nothing.
"""

import glob
import json
import os
import subprocess
import sys
import threading

import pytest

from support.assertions import assert_ok, assert_one_error
from support.namespaces import PROBE

import test_fw_traffic as traffic
from test_fw_traffic import (  # noqa: F401 (collected here, against the nft site below)
    test_allowed_ports_pass_and_others_are_dropped, test_icmp_types,
    test_ipv6_with_neighbour_discovery, test_net_rules_open_only_for_their_network,
    test_replies_to_the_vms_own_connections_pass,
    test_spoofed_mac_and_ip_are_dropped_dhcp_passes,
    test_vm_to_host_traffic_goes_through_the_input_jump)

pytestmark = pytest.mark.full_kernel

A_VM, A_XML, A_IP, _ = traffic.VMS["A"]
# A's rules written differently: other sets and rules, the same verdicts for 22 and 9000
A_XML_TOO = traffic.vm(20, A_IP, traffic.A_IP6, "100,101", True, [
    *traffic.A_RULES, traffic.rule(100, "INBOUND", "TCP", RANGE="22,23"),
    traffic.rule(100, "INBOUND", "UDP", IP="10.50.9.0", SIZE="256", RANGE="53:60")])
BAD_XML = traffic.vm(20, A_IP, traffic.A_IP6, "100,101", True, [
    *traffic.A_RULES, traffic.rule(100, "INBOUND", "TCP", RANGE="443:80")])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = traffic.Site("nft", tmp_path_factory.mktemp("nft"))  # its topology, nft engine
    # another program's nft table and iptables-nft rule, which vnm must leave alone
    built.host.exec("nft", "-f", "-", input=b"table inet other {\n chain c {\n  type filter "
                                            b"hook forward priority 10; policy accept;\n"
                                            b"  counter\n }\n}\n")
    built.host.exec("iptables", "-w", "-A", "FORWARD", "-s", "192.0.2.1", "-j", "DROP")
    yield built
    built.delete()


def vnm_table(site):
    return site.host.exec("nft", "list", "table", "bridge", "vnm")


def others(site):
    """What is not vnm's: another program's nft table and the iptables-nft rules
    (without counters: traffic goes on)."""
    return (site.host.exec("nft", "--stateless", "list", "table", "inet", "other"),
            site.host.exec("iptables", "-w", "-S"), site.host.exec("ip6tables", "-w", "-S"))


def test_protection_is_the_bridge_table_not_iptables(site):
    table = vnm_table(site)
    for chain in ("one-20-0-i", "one-20-0-o", "one-22-0-i"):
        assert f"chain {chain} " in table
    assert "ct state established,related return" in table
    assert "one-20-0-100-i-nr-inet" in table  # the net+port rule's native set
    assert "one-" not in site.host.exec("iptables-save")
    assert "one-" not in site.host.exec("ipset", "list", "-n")


def test_update_sg_storm_opens_no_window_and_leaves_others_alone(site):
    host, b = site.host, site.guests["B"]
    before = others(site)
    flood = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "flood",
                              A_IP, "9000", "4"], stdout=subprocess.PIPE, text=True)
    hold = subprocess.Popen(["ip", "netns", "exec", b.name, sys.executable, PROBE, "hold",
                             A_IP, "22", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    failures = []

    def updates():
        for i in range(6):
            done = site.fw.run(host, "fw", "update_sg", f"one-{A_VM}",
                               stdin=A_XML_TOO if i % 2 else A_XML)
            if done.returncode:
                failures.append(done.stderr.decode())

    worker = threading.Thread(target=updates)
    worker.start()
    worker.join()
    answered = flood.communicate(timeout=30)[0]
    held, cut = hold.communicate(timeout=30)
    assert not failures
    assert int(answered) == 0, "a denied port answered during an update"
    assert hold.returncode == 0, cut
    assert int(held) > 100  # the allowed connection kept round-tripping
    assert others(site) == before


def test_bad_rule_changes_nothing(site):
    before = vnm_table(site), others(site)
    done = site.fw.run(site.host, "fw", "update_sg", f"one-{A_VM}", stdin=BAD_XML)
    assert_one_error(done, "RANGE")
    assert (vnm_table(site), others(site)) == before
    assert site.guests["B"].probe("tcp", A_IP, 22) == 0
    assert site.guests["B"].probe("tcp", A_IP, 9000) == 1


def test_a_transaction_the_kernel_refuses_changes_nothing(site):
    """A named set of A's (as an older vnm left it and its record names it) that a rule
    planted here still matches: the kernel refuses to delete it, so it refuses the whole
    update, planned from the footprints and again from the whole table; nothing of the
    update went in."""
    host = site.host
    legacy = f"one-{A_VM}-0-100-i-udp-n-inet"
    host.exec("nft", "-f", "-", input=(f"add set bridge vnm {legacy} {{ type ipv4_addr; }}\n"
                                       f"add chain bridge vnm planted {{ ip saddr @{legacy} "
                                       "drop; }\n").encode())
    record = footprints(site).get(f"one-{A_VM}-0", {"sets": [], "taps": {}})
    record["sets"] = sorted(record["sets"] + [legacy])
    with open(footprint_path(site, f"one-{A_VM}-0"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    try:
        before = vnm_table(site), others(site)
        wider = traffic.vm(20, A_IP, traffic.A_IP6, "100,101", True, [
            *traffic.A_RULES, traffic.rule(100, "INBOUND", "UDP", IP="10.50.0.11", SIZE="1")])
        done = site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=wider)
        assert_one_error(done, "nft")
        assert (vnm_table(site), others(site)) == before
        assert site.guests["B"].probe("udp", A_IP, 54) == 1  # the wider rule is not in
    finally:
        host.exec("nft", "delete", "chain", "bridge", "vnm", "planted")
        host.exec("nft", "delete", "set", "bridge", "vnm", legacy)


def footprints(site):
    """{name: record} of the host namespace's nft footprints (vnmlib/firewall/nft_footprint)."""
    found = {}
    for path in glob.glob(os.path.join(site.host.run_dir, "nft-footprint", "*", "*")):
        with open(path, encoding="utf-8") as handle:
            found[os.path.basename(path)] = json.load(handle)
    return found


def footprint_path(site, name):
    return os.path.join(glob.glob(os.path.join(site.host.run_dir, "nft-footprint", "*"))[0],
                        name)


def test_an_update_reads_its_own_nics_objects_and_asks_the_kernel_for_their_dispatch(site):
    """update_sg plans from A's footprint and one ``get element`` per tap, not from a
    listing of the whole table: a set of A's name that no record knows (planted) is not
    seen, and another NIC's lost footprint stays lost; read whole (no table record), the
    set goes as A's leftover and the footprints are adopted again. The dispatch is the
    kernel's word, not the record's: an element deleted behind vnm's back is back."""
    host, b = site.host, site.guests["B"]
    leftover = f"one-{A_VM}-0-777-i-tcp-n-inet"
    # (the refused transaction above left the records to be read whole: this adopts it)
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    recorded = footprints(site)
    assert recorded["table"] == {"routed": False}
    assert recorded[f"one-{A_VM}-0"]["taps"] == {"nic_in": [f"one-{A_VM}-0"],
                                                 "nic_out": [f"one-{A_VM}-0"]}
    assert recorded[f"one-{A_VM}-0"]["sets"] == []  # its sets are in its rules
    os.unlink(footprint_path(site, "one-22-0"))
    host.exec("nft", "add", "set", "bridge", "vnm", leftover,
              "{ type ipv4_addr . inet_proto . inet_service; flags interval; }")
    host.exec("nft", "delete", "element", "bridge", "vnm", "nic_in", f'{{ "one-{A_VM}-0" }}')
    assert b.probe("tcp", A_IP, 9000) == 0  # A's inbound chain is not reached: open
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert b.probe("tcp", A_IP, 9000) == 1 and b.probe("tcp", A_IP, 22) == 0
    assert f"set {leftover} " in vnm_table(site)
    assert "one-22-0" not in footprints(site)
    os.unlink(footprint_path(site, "table"))
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert f"set {leftover} " not in vnm_table(site)
    assert footprints(site) == recorded


def test_an_update_planned_from_a_wrong_footprint_is_planned_again_from_the_table(site):
    """A footprint naming a set the table does not have (the table changed behind vnm):
    the kernel refuses the transaction planned from it, and the update goes in planned
    from the whole table instead; the footprints are right again afterwards."""
    host, b = site.host, site.guests["B"]
    recorded = footprints(site)
    wrong = dict(recorded[f"one-{A_VM}-0"])
    wrong["sets"] = sorted(wrong["sets"] + [f"one-{A_VM}-0-999-i-tcp-n-inet"])
    with open(footprint_path(site, f"one-{A_VM}-0"), "w", encoding="utf-8") as handle:
        json.dump(wrong, handle)
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert footprints(site) == recorded
    assert b.probe("tcp", A_IP, 9000) == 1 and b.probe("tcp", A_IP, 22) == 0


def test_a_set_left_with_a_nics_name_is_not_used_and_goes_with_a_whole_read(site):
    """A named set of A's name holding other members (left by anything: the record does
    not know it) does not widen A: its rules carry their own sets. Read whole, the table
    loses it as A's leftover."""
    host, b = site.host, site.guests["B"]
    assert_ok(site.fw.run(host, "fw", "clean", f"one-{A_VM}", "node1", stdin=A_XML))
    leftover = f"one-{A_VM}-0-100-i-nr-inet"
    host.exec("nft", "add", "set", "bridge", "vnm", leftover,
              "{ type ipv4_addr . inet_proto . inet_service; flags interval; "
              "elements = { 10.50.0.0/24 . tcp . 9000 }; }")
    assert_ok(site.fw.run(host, "fw", "post", f"one-{A_VM}", "node1", stdin=A_XML))
    assert b.probe("tcp", A_IP, 9000) == 1 and b.probe("tcp", A_IP, 22) == 0
    assert f"@{leftover}" not in vnm_table(site)
    os.unlink(footprint_path(site, "table"))
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert f"set {leftover} " not in vnm_table(site)


def guard_handle(site, table):
    """The kernel's handle of wire guard table ``table`` (a new one once it is rewritten)."""
    first = site.host.exec("nft", "-a", "list", "table", "netdev", table).splitlines()[0]
    return first.rsplit("# handle ", 1)[1].strip()


def test_an_update_leaves_an_unchanged_guard_as_it_is_and_puts_a_lost_one_back(site):
    """update_sg does not rewrite A's wire guard when it is in the kernel as A's last
    commit wrote it (a rewrite is a delete, for which nft fetches every chain and set of
    every table); one deleted behind vnm's back is written again, and guards again."""
    host, a_guard = site.host, f"one-{A_VM}-0"
    before = guard_handle(site, a_guard)
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert guard_handle(site, a_guard) == before
    host.exec("nft", "delete", "table", "netdev", a_guard)
    assert_ok(site.fw.run(host, "fw", "update_sg", f"one-{A_VM}", stdin=A_XML))
    assert guard_handle(site, a_guard) != before
    # A's frames still meet their checks: the clean one passes, the spoofed ones do not
    test_spoofed_mac_and_ip_are_dropped_dhcp_passes(site)


def test_clean_leaves_nothing_of_the_vms(site):
    before = others(site)
    for name, (vm_id, xml, _ip, _ip6) in traffic.VMS.items():
        assert_ok(site.fw.run(site.host, "fw", "clean", f"one-{vm_id}", "node1", stdin=xml))
    table = vnm_table(site)
    assert "one-" not in table, table
    assert others(site) == before
    # unprotected again: the global chain accepts, as with restore
    assert site.guests["B"].probe("tcp", A_IP, 9000) == 0
