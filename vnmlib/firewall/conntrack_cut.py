"""Cut the connections a NIC's new rules no longer admit.

Both chains of a NIC start with ``-m state --state RELATED,ESTABLISHED -j
RETURN``: once a connection has a conntrack entry, its packets never meet the
security-group rules again. Narrowing a group (update_sg without the port-22
rule) would leave an open SSH session open for as long as it lasts (the
reference does the same: OpenNebula #4123). So after each successful commit
(:func:`vnmlib.firewall.apply`: update_sg, post, clean, alias hot-plug) the
entries of the NIC's addresses whose first packet the NIC's new rules would
drop are deleted, as Neutron does, and the others stay: the next packet of a
cut connection is then a new one, judged (and dropped) by the rules. A removed
NIC (clean) and a detached alias lose every entry of their addresses: a VM
that gets the address next must not inherit them.

Admission is decided from the typed rules (:mod:`.sg_rules`) with the matches
:mod:`.layout` renders them to, for the entry's original direction (the one
its first packet took): to one of the NIC's addresses is inbound (the peer is
the source), from one is outbound (the peer is the destination); the port is
the original destination port in both (``--dports``, ``hash:net,port``).
The evaluator is pure (``tests/unit/test_conntrack_cut.py``); the table is
read and changed through :mod:`vnmlib.host.netlink.conntrack`.
"""

import ipaddress

from vnmlib.host.netlink import conntrack
from vnmlib.firewall.sg_rules import ICMP_CODES, ICMPV6_CODES, nic_groups, rules_by_group

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "esp": 50}
# the NIC's (and its aliases') addresses whose connections its chains filter
ADDRESS_FIELDS = (("IP", 4), ("IP6", 6), ("IP6_GLOBAL", 6), ("IP6_ULA", 6))


class Flow:
    """An entry seen from the NIC: its first packet's direction, protocol, peer, port."""

    __slots__ = ("direction", "family", "protocol", "peer", "port", "icmp")

    def __init__(self, direction, family, protocol, peer, port=None, icmp=None):
        self.direction = direction  # "i" (to the NIC) or "o" (from it), as SgRule
        self.family = family
        self.protocol = protocol    # IP protocol number
        self.peer = peer            # ipaddress object
        self.port = port            # original destination port, None without ports
        self.icmp = icmp            # (type, code) of ICMP / ICMPv6, else None


def flow_of(entry, addresses):
    """The :class:`Flow` of a :class:`vnmlib.host.netlink.conntrack.Entry` for a NIC
    with ``addresses`` (packed bytes); None when the entry is not the NIC's."""
    if entry.dst in addresses:
        direction, peer = "i", entry.src
    elif entry.src in addresses:
        direction, peer = "o", entry.dst
    else:
        return None
    icmp = (entry.icmp_type, entry.icmp_code) if entry.icmp_type is not None else None
    return Flow(direction, entry.family, entry.protocol, ipaddress.ip_address(peer),
                entry.dport, icmp)


def _protocol(rule, flow):
    return rule.protocol == "all" or PROTOCOL_NUMBERS[rule.protocol] == flow.protocol


def _port(rule, flow):
    return (PROTOCOL_NUMBERS[rule.protocol] == flow.protocol and flow.port is not None
            and any(low <= flow.port <= high for low, high in rule.port_items))


def _peer(rule, flow):
    return any(flow.peer in net for net in rule.nets_of(flow.family))


def _icmp(rule, flow, family, protocol):
    """``--icmp-type T[/C]``: without a code, any code of T."""
    if flow.family != family or flow.protocol != PROTOCOL_NUMBERS[protocol] or not flow.icmp:
        return False
    icmp_type, code = rule.icmp_type
    return flow.icmp[0] == icmp_type and code in (None, flow.icmp[1])


def _net_icmp(rule, flow, family, protocol, codes):
    """``hash:net,port`` members ``net,icmp:T/C``: without a code, T's listed codes."""
    if flow.family != family or flow.protocol != PROTOCOL_NUMBERS[protocol] or not flow.icmp:
        return False
    icmp_type, code = rule.icmp_type
    wanted = (code,) if code is not None else codes.get(icmp_type, (0,))
    return flow.icmp[0] == icmp_type and flow.icmp[1] in wanted and _peer(rule, flow)


def _family_of_protocol_rule(rule, flow):
    # layout puts an ICMP rule in the IPv4 chain only, an ICMPv6 one in the IPv6 chain only
    return {"icmp": 4, "icmpv6": 6}.get(rule.protocol, flow.family) == flow.family


RULE_KINDS = {
    "protocol": lambda r, f: _family_of_protocol_rule(r, f) and _protocol(r, f),
    "portrange": _port,
    "icmp_type": lambda r, f: _icmp(r, f, 4, "icmp"),
    "icmpv6_type": lambda r, f: _icmp(r, f, 6, "icmpv6"),
    "net": lambda r, f: _protocol(r, f) and _peer(r, f),
    "net_portrange": lambda r, f: _port(r, f) and _peer(r, f),
    "net_icmp_type": lambda r, f: _net_icmp(r, f, 4, "icmp", ICMP_CODES),
    "net_icmpv6_type": lambda r, f: _net_icmp(r, f, 6, "icmpv6", ICMPV6_CODES),
}


def rule_admits(rule, flow):
    """Would ``rule`` (:class:`.sg_rules.SgRule`) RETURN the first packet of ``flow``?"""
    return rule.direction == flow.direction and RULE_KINDS[rule.kind](rule, flow)


def admitted(rules, flow):
    """Would the NIC's chain with ``rules`` let the first packet of ``flow`` through?

    Only connections that conntrack tracks have entries (ICMP only for queries
    such as echo), so the chains' fixed allowances (neighbour discovery, DHCP
    from 0.0.0.0) never decide an entry: the security-group rules do.
    """
    return any(rule_admits(rule, flow) for rule in rules)


def doomed(entries, addresses, rules):
    """The entries of ``addresses`` (packed) that ``rules`` would not admit; every
    entry of them when ``rules`` is None (the NIC or alias is gone)."""
    found = []
    for entry in entries:
        flow = flow_of(entry, addresses)
        if flow is not None and (rules is None or not admitted(rules, flow)):
            found.append(entry)
    return found


# -- the NICs of an apply ------------------------------------------------------

def addresses_of(elements):
    """Packed addresses of ADDRESS_FIELDS of the NIC and alias ``elements``."""
    found = (element.ip_address(field, family) for element in elements
             for field, family in ADDRESS_FIELDS)
    return frozenset(address.packed for address in found if address is not None)


def _nic(vm, chain):
    """The NIC of ``vm`` whose chains are ``one-<vm>-<nic>``, or None."""
    parts = chain.split("-")
    if len(parts) != 3 or parts[1] != str(vm.id) or not parts[2].isdigit():
        return None
    # by value: the chain's name comes from the parsed NIC_ID ("07" names one-<vm>-7)
    return next((nic for nic in vm.nics if nic.get("NIC_ID").isdigit()
                 and int(nic.get("NIC_ID")) == int(parts[2])), None)


def targets(ctx, install, remove):
    """(label, addresses, rules or None) of each NIC (and alias) whose rules changed."""
    vm = getattr(ctx, "vm", None)  # vnm gc removes chains of VMs it has no template of
    if vm is None:
        return []
    plugged = vm.hotplugged()
    # clean of a hot-detached alias re-applies its parent without it (firewall.clean)
    leaving = (plugged if getattr(ctx, "action", "") == "clean" and plugged is not None
               and plugged.kind == "NIC_ALIAS" else None)
    groups = None
    found = []
    for nf in install:
        nic = _nic(vm, nf.chain)
        if nic is None:
            continue
        if groups is None:
            groups = rules_by_group(rule.attrs for rule in vm.rules)
        rules = [rule for _sg, group in nic_groups(nic, groups) for rule in group]
        aliases = vm.aliases_of(nic)
        found.append((nf.label, addresses_of([nic] + [a for a in aliases if a is not leaving]),
                      rules))
        if leaving in aliases:
            found.append((leaving.label, addresses_of([leaving]), None))
    for base in remove:
        nic = _nic(vm, base)
        if nic is not None:
            found.append((nic.label, addresses_of([nic] + vm.aliases_of(nic)), None))
    return found


def after_commit(ctx, install, remove):
    """Delete the conntrack entries the committed rules of ``install``
    (NicFirewalls) no longer admit, and every entry of ``remove``'s NICs."""
    if not conntrack.count():
        return  # an empty table, or no conntrack in this kernel: nothing to cut
    changed = [t for t in targets(ctx, install, remove) if t[1]]
    if not changed:
        return
    entries = conntrack.dump(frozenset().union(*(addresses for _l, addresses, _r in changed)))
    cuts = [(label, rules, doomed(entries, addresses, rules))
            for label, addresses, rules in changed]
    doomed_all = list({id(e): e for _l, _r, cut in cuts for e in cut}.values())
    if not doomed_all:
        return
    conntrack.delete(doomed_all)
    for label, rules, cut in cuts:
        if cut:
            why = "its rules no longer admit" if rules is not None else "of its addresses"
            ctx.log.info(f"{label}: {len(cut)} tracked connection(s) {why} cut")
