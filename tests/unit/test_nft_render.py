"""The nft backend's renderer (no root): layout's rules and ipsets as one transaction of
``table bridge vnm``, sets made disjoint and put in their rules, the commands a protection
uses (none that makes nft 1.0.6 fetch the other NICs' objects first), and what an update
deletes and keeps."""

import ipaddress

import pytest

from support.paths import fixture_bytes

from vnmlib.errors import InputError
from vnmlib.firewall import nft_render
from vnmlib.firewall.layout import CONNTRACK, IpSet, NicFirewall
from vnmlib.firewall.nft_render import MAP_IN, MAP_OUT, MAP_ROUTED, TableState
from vnmlib.firewall.sg_rules import nic_groups, rules_by_group
from vnmlib.model.config import DEFAULTS
from vnmlib.model.template import parse_vm

VM7 = parse_vm(fixture_bytes("vm7_vnm_reduced.b64"))


def build(vm, index):
    nic = vm.nics[index]
    groups = rules_by_group(r.attrs for r in vm.rules)
    aliases = [a for a in vm.aliases if a.get("PARENT_ID") == str(nic.nic_id)]
    return NicFirewall(vm, nic, aliases, nic_groups(nic, groups), DEFAULTS["ipset_maxelem"],
                       True, vm.tap_name(nic))


def lines(script):
    return script.splitlines()


def dispatch(map_name, tap, chain):
    """A map element added as nft_render adds it: in a declaration of the map."""
    return (f'add map bridge vnm {map_name} {{ type ifname : verdict; '
            f'elements = {{ "{tap}" : jump {chain} }}; }}')


@pytest.mark.parametrize("family, tokens, expected", [
    (4, CONNTRACK, "meta protocol ip ct state established,related return"),
    (6, ("-j", "DROP"), "meta protocol ip6 drop"),
    (4, ("-p", "tcp", "-m", "multiport", "--dports", "22,8000:8010", "-j", "RETURN"),
     "meta protocol ip tcp dport { 22, 8000-8010 } return"),
    (4, ("-p", "icmp", "-m", "icmp", "--icmp-type", "3/1", "-j", "RETURN"),
     "meta protocol ip icmp type 3 icmp code 1 return"),
    (6, ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "134", "-j", "RETURN"),
     "meta protocol ip6 icmpv6 type 134 return"),
    (4, ("-s", "0.0.0.0/32", "-d", "255.255.255.255/32", "-p", "udp", "-m", "udp",
         "--sport", "68", "--dport", "67", "-j", "RETURN"),
     "meta protocol ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 "
     "return"),
    (6, ("-m", "mac", "!", "--mac-source", "02:00:0A:00:00:01", "-j", "DROP"),
     "meta protocol ip6 ether saddr != 02:00:0a:00:00:01 drop"),
    (4, ("-m", "connlimit", "--connlimit-above", "100", "--connlimit-mask", "0",
         "--connlimit-saddr", "-j", "DROP"), "meta protocol ip ct count over 100 drop"),
    (4, ("-p", "esp", "-j", "RETURN"), "meta protocol ip meta l4proto esp return"),
])
def test_rules_translate_one_by_one(family, tokens, expected):
    assert nft_render.rule(family, tokens, {}) == expected


def test_set_matches_follow_direction_and_type():
    """A set is anonymous, in its rule, which carries the ipset's name as its comment."""
    sets = {"s-n": IpSet("s-n", "hash:net", 4), "s-nr": IpSet("s-nr", "hash:net,port", 6),
            "s-ni": IpSet("s-ni", "hash:net,port", 4), "sp": IpSet("sp", "hash:ip", 4)}
    for ipset, members in (("s-n", ["10.0.0.0/24", "10.0.0.128/25", "192.0.2.0/24"]),
                           ("s-nr", ["2001:db8::/64,tcp:22", "2001:db8::/64,tcp:80-90"]),
                           ("s-ni", ["10.0.0.0/8,icmp:8/0"]),
                           ("sp", ["10.0.1.5", "10.0.1.6"])):
        sets[ipset].members.update(dict.fromkeys(members))
    rule = nft_render.rule
    assert rule(4, ("-p", "tcp", "-m", "set", "--match-set", "s-n", "src", "-j", "RETURN"),
                sets) == ('meta protocol ip meta l4proto tcp ip saddr { 10.0.0.0/24, '
                          '192.0.2.0/24 } return comment "s-n"')
    assert rule(6, ("-m", "set", "--match-set", "s-nr", "dst,dst", "-j", "RETURN"), sets) == \
        ('meta protocol ip6 ip6 daddr . meta l4proto . th dport { 2001:db8::/64 . tcp . 22, '
         '2001:db8::/64 . tcp . 80-90 } return comment "s-nr"')
    assert rule(4, ("-m", "set", "--match-set", "s-ni", "src,dst", "-j", "RETURN"), sets) == \
        ('meta protocol ip ip saddr . icmp type . icmp code { 10.0.0.0/8 . 8 . 0 } return '
         'comment "s-ni"')
    assert rule(4, ("-m", "set", "!", "--match-set", "sp", "src", "-j", "DROP"), sets) == \
        'meta protocol ip ip saddr != { 10.0.1.5, 10.0.1.6 } drop comment "sp"'


def test_an_empty_set_matches_nothing_and_negated_everything():
    """nft has no empty anonymous set: a rule matching an empty ipset is left out (no
    packet is in it), and one matching outside it keeps its other matches (every
    packet is): a NIC without IPv6 addresses drops all its IPv6, as with ipsets."""
    sets = {"e": IpSet("e", "hash:net", 4), "sp6": IpSet("sp6", "hash:ip", 6)}
    assert nft_render.rule(4, ("-p", "tcp", "-m", "set", "--match-set", "e", "src",
                               "-j", "RETURN"), sets) is None
    assert nft_render.rule(6, ("-m", "set", "!", "--match-set", "sp6", "src", "-j", "DROP"),
                           sets) == 'meta protocol ip6 drop comment "sp6"'


def test_unknown_tokens_are_a_programming_error_not_a_silent_rule():
    with pytest.raises(ValueError):
        nft_render.rule(4, ("-m", "physdev", "--physdev-in", "x", "-j", "RETURN"), {})
    with pytest.raises(ValueError):
        nft_render.rule(4, ("-p", "tcp"), {})


def test_overlapping_networks_and_ports_become_disjoint_elements():
    nets = IpSet("one-1-0-5-i-tcp-n-inet", "hash:net", 4)
    for member in ("10.0.0.0/8", "10.1.0.0/16", "192.168.1.4/32"):
        nets.members[member] = None
    assert nft_render.set_elements(nets) == ["10.0.0.0/8", "192.168.1.4"]

    pairs = IpSet("one-1-0-5-i-nr-inet", "hash:net,port", 4)
    for member in ("10.0.0.0/8,tcp:20-30", "10.1.0.0/16,tcp:25-40", "10.0.0.0/8,udp:53",
                   "192.168.0.0/24,tcp:31-40"):
        pairs.members[member] = None
    elements = nft_render.set_elements(pairs)
    assert elements == ["10.0.0.0/8 . tcp . 20-30", "10.1.0.0/16 . tcp . 31-40",
                        "192.168.0.0/24 . tcp . 31-40", "10.0.0.0/8 . udp . 53"]
    # the same (address, protocol, port) pairs, each covered once
    def covered(items):
        found = []
        for item in items:
            net, proto, ports = item.split(" . ")
            low, _, high = ports.partition("-")
            found += [(ipaddress.ip_network(net), proto, p)
                      for p in range(int(low), int(high or low) + 1)]
        return found
    got = covered(elements)
    assert len(got) == len(set(got))
    probe = ipaddress.ip_address("10.1.2.3")
    assert {p for n, proto, p in got if probe in n and proto == "tcp"} == set(range(20, 41))

    icmp = IpSet("one-1-0-5-i-ni", "hash:net,port", 4)
    for member in ("10.0.0.0/24,icmp:3/0", "10.0.0.0/25,icmp:3/0", "10.0.0.0/24,icmp:3/1"):
        icmp.members[member] = None
    assert nft_render.set_elements(icmp) == ["10.0.0.0/24 . 3 . 0", "10.0.0.0/24 . 3 . 1"]


# commands for which nft 1.0.6 fetches no chain or set of the table before the
# transaction: a protection uses only these (the others' objects are not read)
DECLARING = ("add table ", "add map ", "add chain ", "flush chain ")


def chain_declaration(script, chain):
    """The rules of ``chain``'s declaration with rules in ``script``."""
    head = f"add chain bridge vnm {chain} {{ "
    found = [line[len(head):-len("; }")].split("; ") for line in script
             if line.startswith(head)]
    assert len(found) == 1, found
    return found[0]


def test_first_protection_creates_the_table_and_dispatches_last():
    nf = build(VM7, 1)
    script = lines(nft_render.render(TableState(), [nf]))
    assert script[0] == "add table bridge vnm"
    assert chain_declaration(script, "opennebula") == \
        ["oifname vmap @nic_in", "iifname vmap @nic_out", "accept"]
    assert script[-2:] == [dispatch(MAP_IN, nf.tap, nf.chain_in),
                           dispatch(MAP_OUT, nf.tap, nf.chain_out)]
    assert all(line.startswith(DECLARING) for line in script), \
        [line for line in script if not line.startswith(DECLARING)]
    # each set in the rule matching it, named by the rule's comment
    out = chain_declaration(script, nf.chain_out)
    assert 'meta protocol ip ip saddr != { 10.0.1.5, 10.0.1.6 } drop ' \
        'comment "one-7-1-ip-spoofing"' in out
    for ipset in nf.sets:
        assert any(f'comment "{ipset}"' in line for line in script) or \
            not nf.sets[ipset].members, ipset
    # each chain: both families, each ending in its own DROP, conntrack first
    ip4 = [r for r in chain_declaration(script, nf.chain_in)
           if r.startswith("meta protocol ip ")]
    assert ip4[0].endswith("ct state established,related return") and ip4[-1].endswith(" drop")


def test_an_update_from_footprints_declares_only():
    """What an update of a NIC the footprints know sends: its chains flushed and
    declared with their rules, its dispatch declared; nothing deleted."""
    nf = build(VM7, 1)
    state = TableState(True, ["opennebula"], [], {MAP_IN: {nf.tap: nf.chain_in},
                                                  MAP_OUT: {nf.tap: nf.chain_out}})
    script = lines(nft_render.render(state, [nf]))
    assert all(line.startswith(DECLARING) for line in script)
    assert script.index(f"flush chain bridge vnm {nf.chain_in}") < \
        script.index(next(line for line in script if line.startswith(
            f"add chain bridge vnm {nf.chain_in} {{")))


def test_update_replaces_only_the_nics_own_things():
    nf = build(VM7, 1)
    state = TableState(True, ["opennebula", "forward", "input", nf.chain_in, nf.chain_out,
                              "one-99-0-i", "one-99-0-o"],
                       [*nf.sets, f"{nf.chain}-9-i-tcp-n-inet", "one-99-0-ip-spoofing"],
                       {MAP_IN: {nf.tap: nf.chain_in, "one-99-0": "one-99-0-i"},
                        MAP_OUT: {nf.tap: nf.chain_out, "one-99-0": "one-99-0-o"}})
    script = lines(nft_render.render(state, [nf]))
    assert not any("add table" in line or "opennebula" in line for line in script)
    # the dispatch is already as wanted: kept, the chains refilled in the same transaction
    assert not any("element bridge vnm nic_" in line for line in script)
    assert not any("one-99-0" in line for line in script)
    # named sets (an older vnm's): they go, after the chains that matched them were
    # flushed; another NIC's stays
    for old in [*nf.sets, f"{nf.chain}-9-i-tcp-n-inet"]:
        assert script.index(f"delete set bridge vnm {old}") > \
            script.index(f"flush chain bridge vnm {nf.chain_in}")


def test_clean_removes_chains_sets_and_dispatch():
    state = TableState(True, ["one-7-1-i", "one-7-1-o", "one-7-10-i"],
                       ["one-7-1-ip-spoofing", "one-7-10-ip-spoofing"],
                       {MAP_IN: {"one-7-1": "one-7-1-i"}, MAP_OUT: {"one-7-1": "one-7-1-o"}})
    script = lines(nft_render.render(state, remove=["one-7-1"]))
    assert script == [
        'delete element bridge vnm nic_in { "one-7-1" }',
        'delete element bridge vnm nic_out { "one-7-1" }',
        "flush chain bridge vnm one-7-1-i", "flush chain bridge vnm one-7-1-o",
        "delete set bridge vnm one-7-1-ip-spoofing",
        "delete chain bridge vnm one-7-1-i", "delete chain bridge vnm one-7-1-o"]


def test_a_tap_name_nft_cannot_quote_is_refused_naming_the_nic():
    nf = build(VM7, 1)
    nf.tap = 'tap"; flush ruleset'
    with pytest.raises(InputError, match=r"NIC.*cannot be matched by the nft backend"):
        nft_render.render(TableState(), [nf])


def test_removing_from_a_host_without_the_table_changes_nothing():
    assert nft_render.render(TableState(), remove=["one-7-1"]) == ""


def test_a_routed_nic_is_dispatched_by_its_tap_on_the_output_hook_too():
    nic = VM7.nics[1]
    groups = rules_by_group(r.attrs for r in VM7.rules)
    routed = NicFirewall(VM7, nic, [], nic_groups(nic, groups), DEFAULTS["ipset_maxelem"],
                         False, VM7.tap_name(nic))
    script = lines(nft_render.render(TableState(), [routed]))
    assert chain_declaration(script, "output")[-1] == "oifname vmap @routed_in"
    for map_name, chain in ((MAP_IN, routed.chain_in), (MAP_OUT, routed.chain_out),
                            (MAP_ROUTED, routed.chain_in)):
        assert dispatch(map_name, routed.tap, chain) in script
    # a bridged NIC on a host with the output hook: no routed dispatch, no second hook
    state = TableState(True, ["opennebula", "output"], [], {})
    script = lines(nft_render.render(state, [build(VM7, 1)]))
    assert not any("routed_in" in line or " output " in line for line in script)
    # removal takes the routed element too
    state = TableState(True, ["opennebula", "output", routed.chain_in, routed.chain_out], [],
                       {MAP_IN: {}, MAP_OUT: {}, MAP_ROUTED: {routed.tap: routed.chain_in}})
    assert (f'delete element bridge vnm routed_in {{ "{routed.tap}" }}'
            in lines(nft_render.render(state, remove=[routed.chain])))


@pytest.mark.parametrize("tokens, expected", [
    (("-d", "198.51.100.10/32", "-j", "DNAT", "--to-destination", "10.9.0.10"),
     "ip daddr 198.51.100.10 dnat to 10.9.0.10"),
    (("-s", "10.9.0.10/32", "-o", "uplink0", "-j", "SNAT", "--to-source", "198.51.100.10"),
     'ip saddr 10.9.0.10 oifname "uplink0" snat to 198.51.100.10'),
    (("-s", "10.9.0.10/32", "-j", "MASQUERADE"), "ip saddr 10.9.0.10 masquerade"),
    (("-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp", "--dport", "9022",
      "-j", "DNAT", "--to-destination", "10.9.0.10:22"),
     "fib daddr type local tcp dport 9022 dnat to 10.9.0.10:22"),
    # iptables' "/base" (port for port) as an explicit map
    (("-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp", "--dport", "9001:9003",
      "-j", "DNAT", "--to-destination", "10.9.0.10:1-3/9001"),
     "fib daddr type local tcp dport 9001-9003 dnat to 10.9.0.10 : tcp dport map "
     "{ 9001 : 1, 9002 : 2, 9003 : 3 }"),
    (("-j", "one-10-0-dnat"), "jump one-10-0-dnat"),
])
def test_nat_rules_translate(tokens, expected):
    assert nft_render.nat_rule(tokens) == expected


def test_nat_jump_deleted_by_its_handle_only():
    ops = [("chain", "one-10-0-dnat"), ("delete", "PREROUTING", ("-j", "one-10-0-dnat")),
           ("delete_chain", "one-10-0-dnat")]
    script = lines(nft_render.nat_script(ops, {("PREROUTING", "one-10-0-dnat"): 7}))
    assert "delete rule ip vnm_nat PREROUTING handle 7" in script
    with pytest.raises(ValueError):
        nft_render.nat_script(ops, {})


def test_a_tap_dispatching_elsewhere_is_taken_over():
    nf = build(VM7, 1)
    state = TableState(True, ["opennebula", nf.chain_in, nf.chain_out, "one-98-0-i"], [],
                       {MAP_IN: {nf.tap: "one-98-0-i"}, MAP_OUT: {}})
    script = lines(nft_render.render(state, [nf]))
    assert script[0] == f'delete element bridge vnm {MAP_IN} {{ "{nf.tap}" }}'
    assert script[-2:] == [dispatch(MAP_IN, nf.tap, nf.chain_in),
                           dispatch(MAP_OUT, nf.tap, nf.chain_out)]


def test_with_the_whole_maps_known_a_removal_redeclares_them_without_its_entries():
    """nft 1.0.6 fetches every element of the table for a ``delete element``: with the
    maps read whole, clean empties each map and declares the others' entries again, in
    the same transaction; from footprints (not whole), it deletes its own entries."""
    dispatch = {MAP_IN: {"one-7-1": "one-7-1-i", "one-8-0": "one-8-0-i"},
                MAP_OUT: {"one-7-1": "one-7-1-o"}}
    state = TableState(True, ["one-7-1-i", "one-7-1-o", "one-8-0-i"], [], dispatch,
                       whole=True)
    script = lines(nft_render.render(state, remove=["one-7-1"]))
    assert script[:3] == [
        "flush map bridge vnm nic_in",
        'add map bridge vnm nic_in { type ifname : verdict; elements = '
        '{ "one-8-0" : jump one-8-0-i }; }',
        "flush map bridge vnm nic_out"]
    assert not any("delete element" in line for line in script)
    state.whole = False
    assert lines(nft_render.render(state, remove=["one-7-1"]))[:2] == [
        'delete element bridge vnm nic_in { "one-7-1" }',
        'delete element bridge vnm nic_out { "one-7-1" }']
