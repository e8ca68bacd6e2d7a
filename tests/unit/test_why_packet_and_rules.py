"""vnm why's packet parser and iptables rule matcher (pure: no host state)."""

import ipaddress

import pytest

from vnmlib.errors import InputError
from vnmlib.ops.why import netfilter
from vnmlib.ops.why.packet import parse, parse_mac


def test_tcp_ipv4_and_ipv6():
    packet = parse("tcp 10.0.0.5:40000 -> 10.0.0.9:22 in")
    assert (packet.protocol, packet.sport, packet.dport, packet.family) == ("tcp", 40000, 22, 4)
    assert packet.vm_address == ipaddress.ip_address("10.0.0.9")
    six = parse(["udp", "[fd00::5]:53", "->", "[fd00::9]:5353", "out"])
    assert (six.family, six.vm_address, str(six)) == (
        6, ipaddress.ip_address("fd00::5"), "udp [fd00::5]:53 -> [fd00::9]:5353 out")


def test_icmp_types_default_to_echo_request():
    assert (parse("icmp 10.0.0.5 -> 10.0.0.9 in").icmp_type, parse(
        "icmpv6 fd00::1 -> fd00::2 in").icmp_type) == (8, 128)
    packet = parse("icmp:3/1 10.0.0.5 -> 10.0.0.9 in")
    assert (packet.icmp_type, packet.icmp_code, packet.sport) == (3, 1, None)


@pytest.mark.parametrize("text", [
    "", "tcp 10.0.0.5:1 -> 10.0.0.9:22", "tcp 10.0.0.5:1 => 10.0.0.9:22 in",
    "tcp 10.0.0.5 -> 10.0.0.9:22 in", "tcp 10.0.0.5:70000 -> 10.0.0.9:22 in",
    "udp fd00::1:53 -> [fd00::2]:53 in", "tcp 10.0.0.5:1 -> [fd00::2]:53 in",
    "icmp fd00::1 -> fd00::2 in", "icmpv6 10.0.0.1 -> 10.0.0.2 in", "esp:3 10.0.0.1 -> 10.0.0.2 in",
    "icmp:256 10.0.0.1 -> 10.0.0.2 in", "gre 10.0.0.1 -> 10.0.0.2 in",
    "tcp 10.0.0.256:1 -> 10.0.0.2:2 in", "tcp 010.0.0.1:1 -> 10.0.0.2:2 in",
    "tcp 10.0.0.1:1 -> 10.0.0.2:2 up", "tcp 10.0.0.1:1 -> 10.0.0.2:2 in\x00",
    "tcp 10.0.0.1:1 -> 10.0.0.2:2 in " + "x" * 300, "esp 10.0.0.1 -> 10.0.0.2 ín",
])
def test_bad_packets_are_one_clear_error(text):
    with pytest.raises(InputError) as failed:
        parse(text)
    assert str(failed.value).startswith("why: packet: ") and "\n" not in str(failed.value)


def test_mac():
    assert parse_mac("02:00:0A:00:01:05") == "02:00:0a:00:01:05"
    with pytest.raises(InputError):
        parse_mac("02:00:0a:00:01")


SETS = {("spoof", "10.0.0.9"), ("nets", "10.0.0.5,udp:53")}


def in_set(name, dims, packet):
    element = netfilter.element(packet, dims, "hash:ip" if name == "spoof" else "hash:net,port")
    return (name, element) in SETS, element


CHAINS = {
    "FORWARD": [("-m", "physdev", "--physdev-is-bridged", "-j", "opennebula")],
    "opennebula": [
        ("-m", "physdev", "--physdev-out", "tap", "--physdev-is-bridged", "-j", "vm-i"),
        ("-m", "physdev", "--physdev-in", "tap", "--physdev-is-bridged", "-j", "vm-o"),
        ("-j", "ACCEPT")],
    "vm-i": [("-m", "state", "--state", "RELATED,ESTABLISHED", "-j", "RETURN"),
             ("-p", "tcp", "-m", "multiport", "--dports", "22,80:90", "-j", "RETURN"),
             ("-p", "icmp", "-m", "icmp", "--icmp-type", "8", "-j", "RETURN"),
             ("-j", "DROP")],
    "vm-o": [("-m", "mac", "!", "--mac-source", "02:00:00:00:00:01", "-j", "DROP"),
             ("-m", "set", "!", "--match-set", "spoof", "src", "-j", "DROP"),
             ("-m", "connlimit", "--connlimit-above", "10", "--connlimit-mask", "0",
              "--connlimit-saddr", "-j", "DROP"),
             ("-m", "set", "--match-set", "nets", "dst,dst", "-j", "RETURN"),
             ("-p", "esp", "-j", "RETURN"),
             ("-j", "DROP")],
}


def walk(text, chains=CHAINS, mac="02:00:00:00:00:01"):
    packet = parse(text)
    if packet.direction == "in":
        ctx = netfilter.Context(packet, "br", "br", None, "tap", True)
    else:
        ctx = netfilter.Context(packet, "br", "br", "tap", None, True, mac)
    return netfilter.walk("FORWARD", chains.get, ctx, in_set)


@pytest.mark.parametrize("text, verdict, decided_by", [
    ("tcp 10.0.0.5:1 -> 10.0.0.9:85 in", "ACCEPT", "opennebula rule 3"),
    ("tcp 10.0.0.5:1 -> 10.0.0.9:91 in", "DROP", "vm-i rule 4"),
    ("icmp:8 10.0.0.5 -> 10.0.0.9 in", "ACCEPT", "opennebula rule 3"),
    ("icmp:0 10.0.0.5 -> 10.0.0.9 in", "DROP", "vm-i rule 4"),
    ("udp 10.0.0.9:1 -> 10.0.0.5:53 out", "ACCEPT", "opennebula rule 3"),
    ("udp 10.0.0.9:1 -> 10.0.0.5:54 out", "DROP", "vm-o rule 6"),
    ("udp 10.0.0.8:1 -> 10.0.0.5:53 out", "DROP", "vm-o rule 2"),
    ("esp 10.0.0.9 -> 10.0.0.7 out", "ACCEPT", "opennebula rule 3"),
])
def test_walk_verdicts(text, verdict, decided_by):
    found = walk(text)
    assert (found.verdict, found.reason.split(":")[0]) == (verdict, decided_by), found.path


def test_set_lookups_and_connlimit_are_shown_in_the_path():
    found = walk("udp 10.0.0.9:1 -> 10.0.0.5:53 out")
    assert "10.0.0.5,udp:53 in ipset nets" in found.path[-2]
    assert found.path[1].startswith("opennebula rule 2")


def test_another_mac_is_dropped_and_an_unknown_one_undetermined():
    assert walk("esp 10.0.0.9 -> 10.0.0.7 out", mac="02:00:00:00:00:02").reason.startswith(
        "vm-o rule 1")
    unknown = walk("esp 10.0.0.9 -> 10.0.0.7 out", mac=None)
    assert unknown.verdict == "UNDETERMINED" and "--mac" in unknown.reason


def test_an_unknown_match_is_undetermined_never_guessed():
    chains = dict(CHAINS, FORWARD=[("-m", "owner", "--uid-owner", "0", "-j", "ACCEPT")]
                  + CHAINS["FORWARD"])
    found = walk("tcp 10.0.0.5:1 -> 10.0.0.9:22 in", chains)
    assert found.verdict == "UNDETERMINED"
    assert found.reason.startswith("FORWARD rule 1 (-m owner --uid-owner 0 -j ACCEPT)")


def test_negations_rule_order_policy_and_missing_chains():
    chains = {"FORWARD": [("!", "-s", "10.0.0.0/8", "-j", "DROP"),
                          ("-p", "tcp", "-m", "tcp", "--dport", "22", "-j", "LOG"),
                          ("-d", "10.0.0.9/32", "-j", "gone")]}
    packet = parse("tcp 10.0.0.5:1 -> 10.0.0.8:22 in")
    ctx = netfilter.Context(packet)
    found = netfilter.walk("FORWARD", chains.get, ctx, in_set, "DROP")
    assert (found.verdict, found.reason) == ("DROP", "FORWARD policy DROP")
    assert found.path[0].startswith("FORWARD rule 2")  # LOG goes on
    far = parse("tcp 192.168.0.5:1 -> 10.0.0.8:22 in")
    assert netfilter.walk("FORWARD", chains.get, netfilter.Context(far), in_set).reason \
        .startswith("FORWARD rule 1")
    gone = parse("tcp 10.0.0.5:1 -> 10.0.0.9:22 in")
    assert netfilter.walk("FORWARD", chains.get, netfilter.Context(gone), in_set).verdict \
        == "UNDETERMINED"


def test_set_elements_by_type():
    packet = parse("icmp:3/1 10.0.0.5 -> 10.0.0.9 in")
    assert netfilter.element(packet, ["src", "dst"], "hash:net,port") == "10.0.0.5,icmp:3/1"
    assert netfilter.element(parse("esp 10.0.0.5 -> 10.0.0.9 in"), ["src", "dst"],
                             "hash:net,port") == "10.0.0.5,esp:0"
    with pytest.raises(netfilter.Undetermined):
        netfilter.element(packet, ["src", "dst"], "bitmap:port")


@pytest.mark.parametrize("tokens", [
    ("-s", "gateway.example", "-j", "ACCEPT"), ("-p", "tcp", "-m", "multiport", "--dports",
                                                 "ssh", "-j", "ACCEPT"),
    ("-p", "sctp", "-j", "ACCEPT"), ("-p", "tcp", "-m", "tcp", "--dport", "http", "-j", "DROP"),
])
def test_values_it_cannot_read_are_undetermined(tokens):
    found = netfilter.walk("FORWARD", {"FORWARD": [tokens]}.get,
                           netfilter.Context(parse("tcp 10.0.0.5:1 -> 10.0.0.9:22 in")), in_set)
    assert found.verdict == "UNDETERMINED", found.reason
