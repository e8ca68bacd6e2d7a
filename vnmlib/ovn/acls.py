"""Security-group rules -> OVN ACLs of the group's Port_Group.

OpenNebula's model is "deny, except what a rule allows, replies included":

* every vnm port is in :data:`~vnmlib.ovn.names.DROP_GROUP`, whose ACLs drop
  IP to and from it (priority 1001), except DHCP requests to OVN's own DHCP
  server (a NIC of OpenNebula gets its lease on any driver);
* each security group is a Port_Group whose ACLs allow its rules at priority
  1002 with ``allow-related``: the replies of an allowed connection pass
  both ways (conntrack), as the fw driver's ESTABLISHED,RELATED rule.

ARP and IPv6 neighbour discovery never meet an ACL (OVN lets them through
its ACL stage), as the Linux drivers let ARP through.

Every match is written from parsed values (:mod:`vnmlib.firewall.sg_rules`):
integers, ``ipaddress`` networks and fixed words, never the user's text.
"""

from vnmlib.ovn import names

DROP_PRIORITY = 1001
ALLOW_PRIORITY = 1002

_IP = {4: "ip4", 6: "ip6"}
_ICMP = {"icmp": (4, "icmp4"), "icmpv6": (6, "icmp6")}


class Acl:
    """One ACL row's content; equal contents are the same ACL."""

    __slots__ = ("direction", "priority", "match", "action")

    def __init__(self, direction, priority, match, action):
        self.direction, self.priority, self.match, self.action = direction, priority, match, action

    def key(self):
        return (self.direction, self.priority, self.match, self.action)


def drop_acls():
    """The ACLs of the group every vnm port is in."""
    group = f"@{names.DROP_GROUP}"
    return [
        Acl("from-lport", DROP_PRIORITY, f"inport == {group} && ip", "drop"),
        Acl("to-lport", DROP_PRIORITY, f"outport == {group} && ip", "drop"),
        # the guest's DHCP requests reach OVN's DHCP responder (after the ACL stage)
        Acl("from-lport", ALLOW_PRIORITY,
            f"inport == {group} && ip4 && udp.src == 68 && udp.dst == 67", "allow"),
        Acl("from-lport", ALLOW_PRIORITY,
            f"inport == {group} && ip6 && udp.src == 546 && udp.dst == 547", "allow"),
    ]


def _families(rule):
    if rule.protocol in _ICMP:
        family = _ICMP[rule.protocol][0]
        return [family] if not rule.nets or rule.nets_of(family) else []
    return sorted({n.version for n in rule.nets}) if rule.nets else [4, 6]


def _ports(protocol, items):
    terms = [f"{protocol}.dst == {low}" if low == high else f"{low} <= {protocol}.dst <= {high}"
             for low, high in items]
    return terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"


def _protocol_terms(rule):
    if rule.protocol in ("tcp", "udp"):
        return [rule.protocol] + ([_ports(rule.protocol, rule.port_items)]
                                  if rule.port_items else [])
    if rule.protocol in _ICMP:
        word = _ICMP[rule.protocol][1]
        terms = [word]
        if rule.icmp_type is not None:
            icmp_type, code = rule.icmp_type
            terms.append(f"{word}.type == {icmp_type}")
            if code is not None:
                terms.append(f"{word}.code == {code}")
        return terms
    if rule.protocol == "esp":
        return ["ip.proto == 50"]
    return []  # all


def rule_acls(sg_id, rule):
    """The ACLs of one rule (:class:`~vnmlib.firewall.sg_rules.SgRule`), one per family."""
    inbound = rule.direction == "i"
    side = "outport" if inbound else "inport"
    peer = "src" if inbound else "dst"
    out = []
    for family in _families(rule):
        ip = _IP[family]
        terms = [f"{side} == @{names.group(sg_id)}", ip]
        if rule.nets:
            nets = ", ".join(str(net) for net in rule.nets_of(family))
            terms.append(f"{ip}.{peer} == {{{nets}}}")
        terms += _protocol_terms(rule)
        out.append(Acl("to-lport" if inbound else "from-lport", ALLOW_PRIORITY,
                       " && ".join(terms), "allow-related"))
    return out


def group_acls(sg_id, rules):
    """Every ACL of security group ``sg_id``, duplicates removed, in rule order."""
    seen = {}
    for rule in rules:
        for acl in rule_acls(sg_id, rule):
            seen.setdefault(acl.key(), acl)
    return list(seen.values())
