"""Security groups as one nftables transaction in vnm's own ``table bridge vnm``.

Why the bridge family: nft has no ``physdev`` match, and in the ``ip``/``ip6``
families a bridged frame only shows the bridge, never the tap it came in by
or goes out of; in the bridge family ``iifname``/``oifname`` *are* the bridge
ports, so the tap identifies the NIC as ``--physdev-in/out`` does for
iptables. ``ct state`` works there through ``nf_conntrack_bridge``.

Layout (names as :mod:`.layout`'s, so admins find the same chains)::

    table bridge vnm
      map nic_in  { ifname : verdict }   tap -> jump one-<vm>-<nic>-i  (to the VM)
      map nic_out { ifname : verdict }   tap -> jump one-<vm>-<nic>-o  (from the VM)
      chain forward  (hook forward)  jump opennebula
      chain input    (hook input)    iifname vmap @nic_out   VM -> host (#6704)
      chain opennebula               oifname vmap @nic_in; iifname vmap @nic_out; accept
      chain one-<vm>-<nic>-i / -o    the NIC's IPv4 and IPv6 rules, each rule
                                     behind ``meta protocol ip`` / ``ip6``
      map routed_in { ifname : verdict }   routed NICs (elastic, nodeport) only
      chain output   (hook output)   oifname vmap @routed_in   host-routed -> VM

A routed NIC's traffic is routed by the host, not bridged: what it sends is
delivered to the bridge itself (the ``input`` hook, by its tap, as VM -> host
traffic), and what the host routes to it leaves through the bridge's
``output`` hook by its tap; VM to VM on its bridge is bridged (``forward``).
So the tap identifies a routed NIC too (restore's routed jumps matched its
addresses instead), and one transaction still holds every NIC.

A NIC chain's rules are :class:`.layout.NicFirewall`'s, translated one by one:
the same conntrack RETURN first (an INVALID packet meets the rules, as with
restore), the same order, the same final DROP per family; frames of other
protocols (ARP) return, as iptables never saw them. Its ipsets become
anonymous sets inside the rules that match them (intervals for networks and
port ranges, concatenations for net+port), each such rule commented with the
ipset's name; made disjoint here since nft refuses overlapping intervals where
ipset took any. Everything, both families and all sets, is one transaction.

**What nft fetches first.** Before a transaction nft 1.0.6 fills a cache from
the kernel, by the kinds of command in it: ``add rule``, ``add element``, a
table block or any ``delete`` make it fetch every chain and set of every table
(2,000 chains and 5,000 sets at 1,000 NICs: 76 ms of a transaction under QEMU,
one that only adds takes 4 ms), ``flush set`` every set of the table. Declaring
needs only the tables: ``add chain`` with its rules in the declaration, ``add
map`` with its elements, ``add set``. So a NIC's rules are declared with its
chain and its sets live in them (a named set could not be emptied without
``flush set``): protecting a NIC fetches nothing that grows with the others.
Removals still delete, and pay the fetch.

Every value in the script is rendered from its parsed form (addresses by
:mod:`ipaddress`, numbers by ``int``, names checked against a closed pattern).
"""

import ipaddress
import re

from vnmlib.errors import InputError
from vnmlib.firewall.layout import FAMILIES, GLOBAL_CHAIN

FAMILY = "bridge"
TABLE = "vnm"
MAP_IN, MAP_OUT = "nic_in", "nic_out"
MAP_ROUTED = "routed_in"  # host-routed traffic to a routed NIC, by its tap
MAPS = (MAP_IN, MAP_OUT, MAP_ROUTED)
_PROTO = {4: "ip", 6: "ip6"}
_ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
_L4 = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "ipv6-icmp", "esp": "esp"}
# names nft takes unquoted (chains, sets): what layout builds (one-<vm>-<nic>-…)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,255}")
# interface names IFNAMSIZ - 1, without quotes or escapes inside nft's string
_IFNAME = re.compile(r"[A-Za-z0-9_.+@-]{1,15}")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")


class TableState:
    """What ``table bridge vnm`` holds that an update depends on (read under the lock)."""

    __slots__ = ("exists", "chains", "sets", "dispatch", "whole")

    def __init__(self, exists=False, chains=(), sets=(), dispatch=None, whole=False):
        self.exists = exists
        self.chains = set(chains)
        self.sets = set(sets)
        # {map: {tap: chain}}
        self.dispatch = dispatch or {m: {} for m in MAPS}
        # the dispatch maps read whole (not only the updated NICs' entries)
        self.whole = whole


def name(text):
    if not _NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not an nft chain or set name vnm makes")
    return text


def ifname(label, text):
    if not _IFNAME.fullmatch(text or ""):
        raise InputError(f"{label}: tap {text!r} cannot be matched by the nft backend "
                         "(letters, digits and _.+@- only, 15 at most)")
    return f'"{text}"'


def _where(kind, *parts):
    return " ".join([f"{kind} {FAMILY} {TABLE}", *parts])


def bootstrap():
    """The table, its dispatch maps and base chains, for a host without them (each
    chain's rules in its declaration, the maps declared before)."""
    return [
        f"add table {FAMILY} {TABLE}",
        _where("add map", MAP_IN, "{ type ifname : verdict; }"),
        _where("add map", MAP_OUT, "{ type ifname : verdict; }"),
        # a tap's inbound chain, then (VM to VM on one bridge) the sender's outbound
        # one: each returns, so both must pass; the rest is not vnm's (reference)
        _where("add chain", GLOBAL_CHAIN, f"{{ oifname vmap @{MAP_IN}; "
                                          f"iifname vmap @{MAP_OUT}; accept; }}"),
        _where("add chain", "forward", "{ type filter hook forward priority filter; "
                                       f"policy accept; jump {GLOBAL_CHAIN}; }}"),
        # VM -> host: frames the bridge delivers to itself pass its input hook
        _where("add chain", "input", "{ type filter hook input priority filter; "
                                     f"policy accept; iifname vmap @{MAP_OUT}; }}"),
    ]


def routed_bootstrap():
    """The output hook's lookup, added with the first routed NIC (bridged-only hosts
    keep their host -> VM traffic unfiltered, as restore's bridged jumps do)."""
    return [
        _where("add map", MAP_ROUTED, "{ type ifname : verdict; }"),
        # routed to a VM: the host's IP stack hands it to the bridge, which sends it
        # out of the VM's tap through this hook (never through forward)
        _where("add chain", "output", "{ type filter hook output priority filter; "
                                      f"policy accept; oifname vmap @{MAP_ROUTED}; }}"),
    ]


# -- rules ------------------------------------------------------------------

def _icmp(kind, text):
    value, _, code = text.partition("/")
    out = f"{kind} type {int(value)}"
    return out + (f" {kind} code {int(code)}" if code else "")


def _ports(text):
    items = []
    for item in text.split(","):
        low, _, high = item.partition(":")
        items.append(f"{int(low)}-{int(high)}" if high else str(int(low)))
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _set_match(family, ipset, directions, negate):
    """The match of ``ipset`` as an anonymous set; "" when it holds for every packet
    (an empty set negated), None when for none (an empty set)."""
    ip = _PROTO[family]
    first = f"{ip} {'saddr' if directions[0] == 'src' else 'daddr'}"
    elements = set_elements(ipset)
    if not elements:
        return "" if negate else None
    members = "{ " + ", ".join(elements) + " }"
    neg = "!= " if negate else ""
    if ipset.kind in ("hash:ip", "hash:net"):
        return f"{first} {neg}{members}"
    if ipset.kind == "hash:net,port" and _is_icmp_set(ipset):
        kind = "icmp" if family == 4 else "icmpv6"
        return f"{first} . {kind} type . {kind} code {neg}{members}"
    if ipset.kind == "hash:net,port":
        return f"{first} . meta l4proto . th dport {neg}{members}"
    raise ValueError(f"ipset type {ipset.kind} has no nft translation")


def rule(family, tokens, sets):
    """One of layout's iptables rules (its token tuple) -> the nft rule, for ``family``;
    None for a rule no packet can match (its set is empty).

    Layout writes a closed vocabulary; anything else is a programming error.
    """
    matches, verdict, negate, i = [], None, False, 0
    proto = comment = None
    while i < len(tokens):
        token = tokens[i]
        value = tokens[i + 1] if i + 1 < len(tokens) else None
        step = 2
        if token == "!":
            negate, step = True, 1
        elif token == "-m":
            pass  # the module's options say everything
        elif token == "-p":
            proto = _L4[value]
            matches.append(f"meta l4proto {proto}")
        elif token == "--state":
            states = [s.lower() for s in value.split(",")]
            if not set(states) <= {"related", "established"}:
                raise ValueError(f"state {value!r} has no nft translation")
            matches.append(f"ct state {','.join(sorted(states))}")
        elif token in ("--icmp-type", "--icmpv6-type"):
            matches[-1:] = [_icmp("icmp" if token == "--icmp-type" else "icmpv6", value)]
        elif token == "--dports":
            matches[-1:] = [f"{proto} dport {_ports(value)}"]
        elif token in ("--sport", "--dport"):
            if matches and matches[-1] == f"meta l4proto {proto}":
                matches.pop()
            matches.append(f"{proto} {token[2:]} {int(value)}")
        elif token in ("-s", "-d"):
            net = ipaddress.ip_network(value)
            shown = net.network_address if net.prefixlen == net.max_prefixlen else net
            matches.append(f"{_PROTO[family]} {'saddr' if token == '-s' else 'daddr'} {shown}")
        elif token == "--mac-source":
            if not _MAC.fullmatch(value.lower()):
                raise ValueError(f"MAC {value!r}")
            matches.append(f"ether saddr {'!= ' if negate else ''}{value.lower()}")
            negate = False
        elif token == "--match-set":
            directions = tokens[i + 2].split(",")
            found = _set_match(family, sets[value], directions, negate)
            if found is None:
                return None
            if found:
                matches.append(found)
            # the ipset's name, which vnm verify/why and admins look for
            comment = name(value)
            negate, step = False, 3
        elif token == "--connlimit-above":
            matches.append(f"ct count over {int(value)}")
        elif token == "--connlimit-mask":
            if value != "0":
                raise ValueError("connlimit mask other than 0")
        elif token == "--connlimit-saddr":
            step = 1  # the count is the chain's own (mask 0): one group
        elif token == "-j":
            verdict = {"RETURN": "return", "DROP": "drop", "ACCEPT": "accept"}[value]
        else:
            raise ValueError(f"iptables token {token!r} has no nft translation")
        i += step
    if verdict is None:
        raise ValueError(f"rule {' '.join(tokens)!r} has no verdict")
    text = " ".join([f"meta protocol {_PROTO[family]}", *matches, verdict])
    return f'{text} comment "{comment}"' if comment else text


# -- sets -------------------------------------------------------------------

def _is_icmp_set(ipset):
    return ipset.name.endswith(("-ni", "-ni6"))


def _disjoint_boxes(boxes):
    """(net, low, high) boxes -> disjoint ones covering the same (address, port) pairs.

    The port axis is cut at every box's edge; each piece gets the union of the
    nets covering it (collapsed, so disjoint); equal neighbours are joined again.
    """
    cuts = sorted({low for _, low, _ in boxes} | {high + 1 for _, _, high in boxes})
    pieces = []
    for low, end in zip(cuts, cuts[1:]):
        nets = tuple(ipaddress.collapse_addresses(
            [net for net, b_low, b_high in boxes if b_low <= low and end - 1 <= b_high]))
        if not nets:
            continue
        if pieces and pieces[-1][0] == nets and pieces[-1][2] == low - 1:
            pieces[-1] = (nets, pieces[-1][1], end - 1)
        else:
            pieces.append((nets, low, end - 1))
    return [(net, low, high) for nets, low, high in pieces for net in nets]


def _net_text(net):
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def set_elements(ipset):
    """The set's members as nft elements, disjoint."""
    members = list(ipset.members)
    if ipset.kind == "hash:ip":
        return [str(a) for a in dict.fromkeys(ipaddress.ip_address(m) for m in members)]
    if ipset.kind == "hash:net":
        return [_net_text(n) for n in
                ipaddress.collapse_addresses(ipaddress.ip_network(m) for m in members)]
    by_key = {}
    for member in members:
        net_text, _, entry = member.partition(",")
        net = ipaddress.ip_network(net_text)
        proto, _, value = entry.partition(":")
        by_key.setdefault(proto, []).append((net, value))
    out = []
    for proto, entries in sorted(by_key.items()):
        if _is_icmp_set(ipset):
            by_type = {}
            for net, value in entries:
                icmp_type, _, code = value.partition("/")
                by_type.setdefault((int(icmp_type), int(code)), []).append(net)
            out += [f"{_net_text(n)} . {t} . {c}" for (t, c), nets in sorted(by_type.items())
                    for n in ipaddress.collapse_addresses(nets)]
            continue
        if proto not in ("tcp", "udp"):
            raise ValueError(f"protocol {proto!r} in a net,port set")
        boxes = []
        for net, value in entries:
            low, _, high = value.partition("-")
            boxes.append((net, int(low), int(high or low)))
        for net, low, high in _disjoint_boxes(boxes):
            ports = str(low) if low == high else f"{low}-{high}"
            out.append(f"{_net_text(net)} . {proto} . {ports}")
    return out


# -- the transaction ----------------------------------------------------------

def _nic_chains(base):
    return (f"{base}-i", f"{base}-o")


def render(state, install=(), remove=()):
    """The text of the one transaction protecting ``install`` (NicFirewalls) and
    removing the bases ``remove``, given the table's ``state``."""
    lines = bootstrap() if install and not state.exists else []
    if any(not nf.bridged for nf in install) and "output" not in state.chains:
        lines += routed_bootstrap()
    affected = set()
    for nf in install:
        affected |= set(_nic_chains(nf.chain))
    for base in remove:
        affected |= set(_nic_chains(base))
    wanted = _wanted_dispatch(install)
    # 1. no dispatch to a chain about to go or change hands, nor from a tap about to be
    # claimed; one already as wanted stays (an update_sg): while the chain is refilled in
    # this transaction nothing sees it half-way
    for map_name in MAPS:
        entries = state.dispatch.get(map_name, {})
        going = [tap for tap, chain in sorted(entries.items())
                 if wanted[map_name].get(tap) != chain
                 and (chain in affected or tap in wanted[map_name])]
        if going and state.whole:
            # a "delete element" makes nft 1.0.6 fetch every element of every set of the
            # table (2.2 s under QEMU for a NIC's two with 1,000 NICs); with the whole map
            # known it is emptied and declared again without them (0.19 s), in the batch
            lines.append(_where("flush map", map_name))
            kept = [f"{ifname(chain, tap)} : jump {name(chain)}"
                    for tap, chain in sorted(entries.items()) if tap not in going]
            if kept:
                lines.append(_where("add map", map_name, "{ type ifname : verdict; "
                                                         f"elements = {{ {', '.join(kept)} }}; }}"))
        else:
            lines += [_where("delete element", map_name, f"{{ {ifname(entries[tap], tap)} }}")
                      for tap in going]
    # 2. the NICs' chains empty (created when new)
    for nf in install:
        for chain in _nic_chains(nf.chain):
            lines += [_where("add chain", name(chain)), _where("flush chain", chain)]
    for base in remove:
        lines += [_where("flush chain", name(c)) for c in _nic_chains(base)
                  if c in state.chains]
    # 3. named sets of these NICs (an older vnm's layout): nothing references them now
    # (one with a name vnm never makes is left for vnm gc to report)
    prefixes = tuple(f"{nf.chain}-" for nf in install) + tuple(f"{b}-" for b in remove)
    lines += [_where("delete set", s) for s in sorted(state.sets)
              if s.startswith(prefixes) and _NAME.fullmatch(s)]
    # 4. the rules, in their chain's declaration with their sets in them
    for nf in install:
        for chain in _nic_chains(nf.chain):
            rules = [rule(family, tokens, nf.sets) for family in FAMILIES
                     for tokens in nf.rules[family][chain]]
            rules = [r for r in rules if r is not None]
            if rules:
                lines.append(_where("add chain", chain, "{ " + "; ".join(rules) + "; }"))
    lines += [_where("delete chain", c) for base in remove for c in _nic_chains(base)
              if c in state.chains]
    # 5. the dispatch to the new chains, last: a packet meets them filled. Declared (as
    # sets) even when the state has it: declaring an element that is there is no change,
    # and one the state only believes there (a footprint's word) is there afterwards
    for nf in install:
        tap = ifname(nf.label, nf.tap)
        for map_name, chain in dispatch_of(nf):
            lines.append(_where("add map", map_name, f"{{ type ifname : verdict; "
                                                     f"elements = {{ {tap} : jump {chain} }}; }}"))
    return "".join(f"{line}\n" for line in lines)


def dispatch_of(nf):
    """(map, chain) of each lookup reaching ``nf``'s chains by its tap."""
    found = [(MAP_IN, nf.chain_in), (MAP_OUT, nf.chain_out)]
    return found if nf.bridged else found + [(MAP_ROUTED, nf.chain_in)]


def _wanted_dispatch(install):
    wanted = {m: {} for m in MAPS}
    for nf in install:
        for map_name, chain in dispatch_of(nf):
            wanted[map_name][nf.tap] = chain
    return wanted


# -- nat (elastic, nodeport) ------------------------------------------------------

# vnm's own nat table: the hook chains keep iptables' names, so the operations of
# :func:`vnmlib.elastic.nat.operations` (jumps from them to one-<vm>-<nic>-dnat/-snat)
# mean the same here as in iptables' nat table
NAT_FAMILY, NAT_TABLE = "ip", "vnm_nat"
# hook chain -> (hook, priority): iptables' nat priorities (dstnat -100, srcnat 100)
NAT_HOOKS = {"PREROUTING": ("prerouting", -100), "OUTPUT": ("output", -100),
             "POSTROUTING": ("postrouting", 100)}
_NAT_VERBS = {"DNAT": "--to-destination", "SNAT": "--to-source"}


def _nat_where(kind, *parts):
    return " ".join([f"{kind} {NAT_FAMILY} {NAT_TABLE}", *parts])


def nat_bootstrap():
    """The nat table and its hook chains; each ``add`` leaves an existing one as it is."""
    lines = [f"add table {NAT_FAMILY} {NAT_TABLE}"]
    for chain, (hook, priority) in NAT_HOOKS.items():
        lines.append(_nat_where("add chain", chain, f"{{ type nat hook {hook} priority "
                                                    f"{priority}; policy accept; }}"))
    return lines


def _ipv4(text):
    net = ipaddress.IPv4Network(text)
    return _net_text(net)


def _port_range(text):
    low, _, high = text.partition(":")
    low, high = int(low), int(high or low)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {text!r}")
    return low, high


def _dnat_target(target, dports):
    """``--to-destination`` (``IP``, ``IP:port``, ``IP:first-last/base``) -> nft's target.

    iptables' ``/base`` maps each matched port to ``first + (port - base)``; nft has no
    such offset, so the matched range becomes an explicit port map."""
    address, _, ports = target.partition(":")
    address = str(ipaddress.IPv4Address(address))
    if not ports:
        return address
    span, _, base = ports.partition("/")
    first, _, last = span.partition("-")
    first, last = int(first), int(last or first)
    if not base:
        return f"{address}:{first}" if first == last else f"{address}:{first}-{last}"
    if dports is None or last - first != dports[1] - dports[0]:
        raise ValueError(f"DNAT {target!r} without a matching --dport range")
    shift = first - int(base)
    if shift == 0:
        return address  # port for port, unchanged: dnat keeps the destination port
    pairs = ", ".join(f"{port} : {port + shift}" for port in range(dports[0], dports[1] + 1))
    return f"{address} : tcp dport map {{ {pairs} }}"


def nat_rule(tokens):
    """One of the nat chains' iptables rules (elastic's hostops, nodeport's) -> nft.

    A closed vocabulary, as :func:`rule`'s: anything else is a programming error."""
    matches, verdict, proto, dports, i = [], None, None, None, 0
    while i < len(tokens):
        token = tokens[i]
        value = tokens[i + 1] if i + 1 < len(tokens) else None
        if token in ("-d", "-s"):
            matches.append(f"ip {'daddr' if token == '-d' else 'saddr'} {_ipv4(value)}")
        elif token == "-o":
            if not _IFNAME.fullmatch(value or ""):
                raise ValueError(f"interface {value!r}")
            matches.append(f'oifname "{value}"')
        elif token == "-p":
            if value not in ("tcp", "udp"):
                raise ValueError(f"protocol {value!r} in a nat rule")
            proto = value
            matches.append(f"meta l4proto {proto}")
        elif token == "-m":
            pass  # the module's options say everything
        elif token == "--dst-type":
            if value != "LOCAL":
                raise ValueError(f"addrtype {value!r}")
            matches.append("fib daddr type local")
        elif token == "--dport":
            dports = _port_range(value)
            low, high = dports
            matches.remove(f"meta l4proto {proto}")
            matches.append(f"{proto} dport {low}" if low == high else
                           f"{proto} dport {low}-{high}")
        elif token == "-j" and value in _NAT_VERBS:
            option = tokens[i + 2] if i + 2 < len(tokens) else None
            if option != _NAT_VERBS[value] or i + 3 >= len(tokens):
                raise ValueError(f"{value} without {_NAT_VERBS[value]}")
            target = tokens[i + 3]
            verdict = (f"dnat to {_dnat_target(target, dports)}" if value == "DNAT"
                       else f"snat to {_ipv4(target)}")
            i += 2
        elif token == "-j" and value == "MASQUERADE":
            verdict = "masquerade"
        elif token == "-j":
            verdict = f"jump {name(value)}"
        else:
            raise ValueError(f"iptables token {token!r} has no nft nat translation")
        i += 2
    if verdict is None:
        raise ValueError(f"nat rule {' '.join(tokens)!r} has no verdict")
    return " ".join([*matches, verdict])


def nat_script(ops, handles):
    """The transaction of :mod:`vnmlib.elastic.nat`'s operations in vnm's nat table.

    ``handles``: {(hook chain, target chain): rule handle} of the jumps present, the
    ones a ``delete`` operation names."""
    lines = nat_bootstrap()
    for op in ops:
        kind, chain = op[0], name(op[1])
        if kind == "chain":  # declaring creates or flushes it, as in restore
            lines += [_nat_where("add chain", chain), _nat_where("flush chain", chain)]
        elif kind == "append":
            lines.append(_nat_where("add rule", chain, nat_rule(op[2])))
        elif kind == "delete" and op[2][:1] == ("-j",):
            handle = handles.get((chain, op[2][1]))
            if handle is None:
                raise ValueError(f"no jump from {chain} to {op[2][1]} to delete")
            lines.append(_nat_where("delete rule", chain, f"handle {int(handle)}"))
        elif kind == "delete_chain":
            lines.append(_nat_where("delete chain", chain))
        else:
            raise ValueError(f"nat operation {kind!r} has no nft translation")
    return "".join(f"{line}\n" for line in lines)
