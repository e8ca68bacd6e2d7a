"""``SECURITY_GROUP_RULE`` elements -> typed, validated rules (reference §7.3).

The rule type follows the reference: it is decided by which fields are
present (ICMPv6 type, ICMP type, port range, else the whole protocol; the
``net_`` variants when the rule carries a network, i.e. ``IP``/``SIZE``).
Unlike the reference, every value is checked here, before any rule of any NIC
reaches the kernel: a reversed range, a bad address or an unknown protocol
fails the action with the rule named, and the previous protection stays.
"""

import ipaddress
import re

from vnmlib.model.addresses import parse_address
from vnmlib.errors import InputError, shown

# PROTOCOL -> the name iptables and the ipset names use; IPSEC is ESP (reference).
PROTOCOLS = {"ALL": "all", "TCP": "tcp", "UDP": "udp", "ICMP": "icmp",
             "ICMPV6": "icmpv6", "IPSEC": "esp"}
DIRECTIONS = {"INBOUND": "i", "OUTBOUND": "o"}

# Codes an ICMP type without code expands to in hash:net,port sets, as the
# reference does (IANA icmp-parameters; code 8 of type 3 is obsolete).
ICMP_CODES = {3: (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15),
              5: (0, 1, 2, 3), 9: (0, 16), 11: (0, 1), 12: (0, 1, 2)}
ICMPV6_CODES = {1: (0, 1, 2, 3, 4, 5, 6, 7), 3: (0, 1), 4: (0, 1, 2, 3),
                138: (0, 1, 255), 139: (0, 1, 2), 140: (0, 1, 2)}

# xt_multiport takes at most 15 ports per rule, a range counting as two.
# The reference passes RANGE verbatim and fails beyond that; we split it.
MULTIPORT_SLOTS = 15

# Where a rule's network comes from, in the reference's order.
# a rule's first address and its family; IP's is its own (None): oned accepts an IPv6
# address there, and the reference's to_nets puts its CIDRs in the IPv6 sets and chains
ADDRESS_FIELDS = (("IP", None), ("IP6_GLOBAL", 6), ("IP6_ULA", 6), ("IP6", 6))

# ASCII digits only (\d would take any script's digits into ipset names), and
# few of them: ports have 5, ICMP types 3, oned's ids 10 (they are ints), a
# SIZE no more than the IPv6 space's 39.
_PORT_ITEM = re.compile(r"([0-9]{1,6})(?::([0-9]{1,6}))?")
_ICMP_TYPE = re.compile(r"([0-9]{1,4})(?:/([0-9]{1,4}))?")
_SG_ID = re.compile(r"[0-9]{1,10}")
_SIZE = re.compile(r"[0-9]{1,40}")

# Rules of a NIC without SECURITY_GROUPS: security group 0, allow everything
# (the reference's EMPTY_RULES), for that NIC only (SPEC decision 5).
ALLOW_ALL = {"0": ({"PROTOCOL": "ALL", "RULE_TYPE": "OUTBOUND", "SECURITY_GROUP_ID": "0"},
                   {"PROTOCOL": "ALL", "RULE_TYPE": "INBOUND", "SECURITY_GROUP_ID": "0"})}


class SgRule:
    """One validated rule; ``kind`` is the reference's rule type."""

    __slots__ = ("sg_id", "label", "direction", "protocol", "kind", "port_items",
                 "icmp_type", "nets")

    def __init__(self, sg_id, label, direction, protocol, kind, port_items, icmp_type, nets):
        self.sg_id = sg_id
        self.label = label
        self.direction = direction  # "i" (to the VM) or "o" (from the VM)
        self.protocol = protocol
        self.kind = kind
        self.port_items = port_items  # [(low, high)]
        self.icmp_type = icmp_type  # (type, code or None)
        self.nets = nets  # [ipaddress network], IPv4 and IPv6 mixed, reference order

    def multiport_chunks(self):
        """RANGE as ``--dports`` values of at most 15 slots each, e.g. ``22,80:90``."""
        chunks, current, used = [], [], 0
        for low, high in self.port_items:
            slots = 1 if low == high else 2
            if used + slots > MULTIPORT_SLOTS:
                chunks.append(current)
                current, used = [], 0
            current.append(str(low) if low == high else f"{low}:{high}")
            used += slots
        chunks.append(current)
        return [",".join(chunk) for chunk in chunks]

    def port_entries(self):
        """RANGE as hash:net,port port parts: ``udp:53``, ``tcp:80-90``."""
        return [f"{self.protocol}:{low}" if low == high else f"{self.protocol}:{low}-{high}"
                for low, high in self.port_items]

    def icmp_entries(self, codes_table, proto):
        """ICMP_TYPE as hash:net,port parts: ``icmp:3/0`` … (codes expanded)."""
        icmp_type, code = self.icmp_type
        if code is not None:
            return [f"{proto}:{icmp_type}/{code}"]
        return [f"{proto}:{icmp_type}/{c}" for c in codes_table.get(icmp_type, (0,))]

    def nets_of(self, family):
        return [n for n in self.nets if n.version == family]


def to_nets(first, size):
    """``first`` + ``size`` addresses as aligned CIDR blocks (reference ``to_nets``)."""
    last = first + (size - 1)
    return list(ipaddress.summarize_address_range(first, last))


def _fail(label, message):
    raise InputError(f"{label}: {message}")


def _parse_ports(label, text):
    items = []
    for item in text.replace(" ", "").split(","):
        match = _PORT_ITEM.fullmatch(item)
        if not match:
            _fail(label, f"RANGE {shown(text)}: {shown(item)} is not a port or a low:high range")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high > 65535:
            _fail(label, f"RANGE {text!r}: ports are 0..65535")
        if low > high:
            _fail(label, f"RANGE {text!r}: {item!r} is reversed")
        items.append((low, high))
    return list(dict.fromkeys(items))


def _parse_icmp(label, name, text):
    match = _ICMP_TYPE.fullmatch(text)
    if not match:
        _fail(label, f"{name} {shown(text)} is not a type or type/code")
    icmp_type = int(match.group(1))
    code = int(match.group(2)) if match.group(2) is not None else None
    if icmp_type > 255 or (code is not None and code > 255):
        _fail(label, f"{name} {text!r}: type and code are 0..255")
    return icmp_type, code


def _parse_nets(label, get):
    size_text = get("SIZE")
    addresses = [(field, family, get(field)) for field, family in ADDRESS_FIELDS if get(field)]
    if not size_text and not addresses:
        return None  # not a network rule
    if not size_text:
        _fail(label, f"{addresses[0][0]} {shown(addresses[0][2])} has no SIZE")
    if not addresses:
        _fail(label, f"SIZE {shown(size_text)} has no IP, IP6, IP6_GLOBAL or IP6_ULA")
    if not _SIZE.fullmatch(size_text) or int(size_text) < 1:
        _fail(label, f"SIZE {shown(size_text)} is not a positive integer")
    size = int(size_text)
    nets = []
    for field, family, text in addresses:
        first = parse_address(text, family or (6 if ":" in text else 4), f"{label}: {field}")
        if int(first) + size - 1 > (2 ** first.max_prefixlen) - 1:
            _fail(label, f"{field} {text} + SIZE {size} runs past the end of the address space")
        nets += to_nets(first, size)
    return nets


def parse_rule(attrs, position):
    """``attrs`` ({NAME: text}) of rule number ``position`` -> :class:`SgRule`."""
    def get(name):
        return (attrs.get(name) or "").strip()

    sg_id = get("SECURITY_GROUP_ID")
    name = get("SECURITY_GROUP_NAME")
    valid_id = _SG_ID.fullmatch(sg_id)
    label = f"SECURITY_GROUP_RULE {position} (security group "
    label += f"{sg_id if valid_id else shown(sg_id) if sg_id else '?'}"
    label += f" {shown(name)})" if name else ")"
    if not valid_id:
        _fail(label, f"SECURITY_GROUP_ID {shown(sg_id)} is not an integer")

    # ASCII first: str.upper() turns e.g. a dotless "ı" into "I"
    protocol = PROTOCOLS.get(get("PROTOCOL").upper()) if get("PROTOCOL").isascii() else None
    if protocol is None:
        _fail(label, f"PROTOCOL {shown(get('PROTOCOL'))} is not one of {', '.join(PROTOCOLS)}")
    direction = DIRECTIONS.get(get("RULE_TYPE").upper()) if get("RULE_TYPE").isascii() else None
    if direction is None:
        _fail(label, f"RULE_TYPE {shown(get('RULE_TYPE'))} is not INBOUND or OUTBOUND")

    nets = _parse_nets(label, get)
    port_items, icmp_type = [], None
    if get("ICMPV6_TYPE"):
        kind = "icmpv6_type"
        icmp_type = _parse_icmp(label, "ICMPV6_TYPE", get("ICMPV6_TYPE"))
    elif get("ICMP_TYPE"):
        kind = "icmp_type"
        icmp_type = _parse_icmp(label, "ICMP_TYPE", get("ICMP_TYPE"))
    elif get("RANGE"):
        kind = "portrange"
        if protocol not in ("tcp", "udp"):
            _fail(label, f"RANGE {shown(get('RANGE'))} needs PROTOCOL TCP or UDP, not "
                         f"{get('PROTOCOL')}")
        port_items = _parse_ports(label, get("RANGE"))
    else:
        kind = "protocol"
    if nets is not None:
        kind = "net" if kind == "protocol" else f"net_{kind}"
    return SgRule(sg_id, label, direction, protocol, kind, port_items, icmp_type, nets or [])


def rules_by_group(rule_attrs):
    """Every rule of the VM, validated, grouped by security group in VM order."""
    groups = {}
    for position, attrs in enumerate(rule_attrs, start=1):
        rule = parse_rule(attrs, position)
        groups.setdefault(rule.sg_id, []).append(rule)
    return groups


def nic_groups(nic, groups):
    """The NIC's security groups, in ``SECURITY_GROUPS`` order, with their rules."""
    text = nic.get("SECURITY_GROUPS")
    if not text:
        allow_all = [parse_rule(attrs, i) for i, attrs in enumerate(ALLOW_ALL["0"], start=1)]
        return [("0", allow_all)]
    ids = [part.strip() for part in text.split(",")]
    for sg_id in ids:
        if not _SG_ID.fullmatch(sg_id):
            raise InputError(f"{nic.label}: SECURITY_GROUPS {shown(text)}: {shown(sg_id)} "
                             "is not an id")
    return [(sg_id, groups.get(sg_id, [])) for sg_id in dict.fromkeys(ids)]
