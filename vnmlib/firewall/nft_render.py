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

A NIC chain's rules are :class:`.layout.NicFirewall`'s, translated one by one:
the same conntrack RETURN first (an INVALID packet meets the rules, as with
restore), the same order, the same final DROP per family; frames of other
protocols (ARP) return, as iptables never saw them. Its ipsets become native
sets (intervals for networks and port ranges, concatenations for net+port),
made disjoint here since nft refuses overlapping intervals where ipset took
any. Everything, both families and all sets, is one transaction.

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
HOOKS = ("forward", "input")
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

    __slots__ = ("exists", "chains", "sets", "dispatch")

    def __init__(self, exists=False, chains=(), sets=(), dispatch=None):
        self.exists = exists
        self.chains = set(chains)
        self.sets = set(sets)
        # {map: {tap: chain}}
        self.dispatch = dispatch or {MAP_IN: {}, MAP_OUT: {}}


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
    """The table, its dispatch maps and base chains, for a host without them."""
    return [
        f"add table {FAMILY} {TABLE}",
        _where("add map", MAP_IN, "{ type ifname : verdict; }"),
        _where("add map", MAP_OUT, "{ type ifname : verdict; }"),
        _where("add chain", GLOBAL_CHAIN),
        # a tap's inbound chain, then (VM to VM on one bridge) the sender's outbound
        # one: each returns, so both must pass; the rest is not vnm's (reference)
        _where("add rule", GLOBAL_CHAIN, f"oifname vmap @{MAP_IN}"),
        _where("add rule", GLOBAL_CHAIN, f"iifname vmap @{MAP_OUT}"),
        _where("add rule", GLOBAL_CHAIN, "accept"),
        _where("add chain", "forward", "{ type filter hook forward priority filter; "
                                       "policy accept; }"),
        _where("add rule", "forward", f"jump {GLOBAL_CHAIN}"),
        # VM -> host: frames the bridge delivers to itself pass its input hook
        _where("add chain", "input", "{ type filter hook input priority filter; "
                                     "policy accept; }"),
        _where("add rule", "input", f"iifname vmap @{MAP_OUT}"),
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
    ip = _PROTO[family]
    first = f"{ip} {'saddr' if directions[0] == 'src' else 'daddr'}"
    neg = "!= " if negate else ""
    if ipset.kind in ("hash:ip", "hash:net"):
        return f"{first} {neg}@{name(ipset.name)}"
    if ipset.kind == "hash:net,port" and _is_icmp_set(ipset):
        kind = "icmp" if family == 4 else "icmpv6"
        return f"{first} . {kind} type . {kind} code {neg}@{name(ipset.name)}"
    if ipset.kind == "hash:net,port":
        return f"{first} . meta l4proto . th dport {neg}@{name(ipset.name)}"
    raise ValueError(f"ipset type {ipset.kind} has no nft translation")


def rule(family, tokens, sets):
    """One of layout's iptables rules (its token tuple) -> the nft rule, for ``family``.

    Layout writes a closed vocabulary; anything else is a programming error.
    """
    matches, verdict, negate, i = [], None, False, 0
    proto = None
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
            matches.append(_set_match(family, sets[value], directions, negate))
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
    return " ".join([f"meta protocol {_PROTO[family]}", *matches, verdict])


# -- sets -------------------------------------------------------------------

def _is_icmp_set(ipset):
    return ipset.name.endswith(("-ni", "-ni6"))


def set_declaration(ipset, elements=()):
    addr = _ADDR_TYPE[ipset.family]
    if ipset.kind == "hash:ip":
        body = f"type {addr};"
    elif ipset.kind == "hash:net":
        body = f"type {addr}; flags interval;"
    elif _is_icmp_set(ipset):
        kind = "icmp" if ipset.family == 4 else "icmpv6"
        body = f"type {addr} . {kind}_type . {kind}_code; flags interval;"
    else:
        body = f"type {addr} . inet_proto . inet_service; flags interval;"
    if elements:
        body += " elements = { " + ", ".join(elements) + " };"
    return f"{{ {body} }}"


def _merge_ports(ranges):
    """Disjoint, sorted (low, high) covering ``ranges``."""
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


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
    affected = set()
    for nf in install:
        affected |= set(_nic_chains(nf.chain))
    for base in remove:
        affected |= set(_nic_chains(base))
    wanted = _wanted_dispatch(install)
    # 1. no dispatch to a chain about to go or change hands, nor from a tap about to be
    # claimed; one already as wanted stays (an update_sg): while the chain is refilled in
    # this transaction nothing sees it half-way, and deleting a map element makes nft
    # fetch every set element of the table (0.6 s with 1,000 NICs)
    for map_name in (MAP_IN, MAP_OUT):
        for tap, chain in sorted(state.dispatch.get(map_name, {}).items()):
            if wanted[map_name].get(tap) == chain:
                continue
            if chain in affected or tap in wanted[map_name]:
                lines.append(_where("delete element", map_name,
                                    f"{{ {ifname(chain, tap)} }}"))
    # 2. the NICs' chains empty (created when new)
    for nf in install:
        for chain in _nic_chains(nf.chain):
            lines += [_where("add chain", name(chain)), _where("flush chain", chain)]
    for base in remove:
        lines += [_where("flush chain", name(c)) for c in _nic_chains(base)
                  if c in state.chains]
    # 3. the sets, then the rules matching them
    # (elements given in the set's declaration: "add element" makes nft 1.0.6 fetch every
    # element of the table first, 0.6 s with 1,000 NICs protected, a declaration 13 ms)
    for nf in install:
        for ipset in nf.sets.values():
            if ipset.name in state.sets:
                lines.append(_where("flush set", name(ipset.name)))
            lines.append(_where("add set", name(ipset.name),
                                set_declaration(ipset, set_elements(ipset))))
        for family in FAMILIES:
            for chain, rules in nf.rules[family].items():
                lines += [_where("add rule", chain, rule(family, tokens, nf.sets))
                          for tokens in rules]
    # 4. what nothing references any more
    wanted = {s for nf in install for s in nf.sets}
    prefixes = tuple(f"{nf.chain}-" for nf in install) + tuple(f"{b}-" for b in remove)
    lines += [_where("delete set", s) for s in sorted(state.sets)
              if s.startswith(prefixes) and s not in wanted]
    lines += [_where("delete chain", c) for base in remove for c in _nic_chains(base)
              if c in state.chains]
    # 5. the dispatch to the new chains, last: a packet meets them filled
    for nf in install:
        tap = ifname(nf.label, nf.tap)
        for map_name, chain in ((MAP_IN, nf.chain_in), (MAP_OUT, nf.chain_out)):
            if state.dispatch.get(map_name, {}).get(nf.tap) != chain:  # declared, as sets
                lines.append(_where("add map", map_name, f"{{ type ifname : verdict; "
                                                         f"elements = {{ {tap} : jump {chain} }}; }}"))
    return "".join(f"{line}\n" for line in lines)


def _wanted_dispatch(install):
    return {MAP_IN: {nf.tap: nf.chain_in for nf in install},
            MAP_OUT: {nf.tap: nf.chain_out for nf in install}}
