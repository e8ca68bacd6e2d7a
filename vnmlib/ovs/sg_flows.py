"""Security groups of a VM port as OpenFlow: conntrack after the anti-spoofing tables (issue 18).

Opt-in (``:ovs_security_groups:``, or ``CONF="ovs_security_groups=yes"`` on a
network): without it a port keeps exactly the reference's pipeline. With it:

- from the VM: table 20's ``normal`` becomes ``resubmit(,30)``. Table 30 lets
  neighbour discovery (RS/NS/NA) and the DHCP client through, sends IPv4 and
  IPv6 to ``ct()`` in the port's zone, other frames (ARP, already checked by
  tables 10/20) to table 40; table 31 drops invalid packets, passes established
  and related ones, and commits a new connection an OUTBOUND rule allows.
- table 40: a frame for a protected NIC's MAC goes to that NIC's inbound
  tables (a VM-to-VM frame passes both VMs' groups); any other goes ``normal``.
- to the VM: frames for the NIC's MAC from any other port (table 0) or from a
  protected VM (table 40) go to table 50 (RA/NS/NA/redirect pass, IP to
  ``ct()``) and 51 (INBOUND rules), then ``normal``.

Rules are :mod:`vnmlib.firewall.sg_rules`' typed rules, the ones vnm's
iptables firewall renders. OVS has no ipsets: a port range becomes
``tp_dst`` value/mask pairs, networks are CIDR matches, and a rule with
several networks *and* several ports/masks becomes a conjunction instead of
their product.

A connection committed by a rule carries the rules' digest in ``ct_mark``:
after ``update_sg`` an established connection's packets in its original
direction are checked against the new rules again (re-marked if still
allowed, dropped if not), which is what the iptables firewall's conntrack cut
achieves; replies always pass, so an allowed connection never stalls.
"""

import re
import zlib

from vnmlib.errors import InputError
from vnmlib.model.config import is_true, nic_conf
from vnmlib.ovs import tools as ovs
from vnmlib.ovs.flows import MAC, ids_of

EGRESS, EGRESS_CT, DISPATCH, INGRESS, INGRESS_CT = 30, 31, 40, 50, 51
ENTER = f"resubmit(,{EGRESS})"  # what table 20 does instead of normal
ACCEPT_OUT = f"resubmit(,{DISPATCH})"  # what table 30/31 do with a packet they let through
PIPELINE = (f"table=20 -> table={EGRESS}/{EGRESS_CT} (ct, OUTBOUND) -> table={DISPATCH} -> "
            f"table={INGRESS}/{INGRESS_CT} of a protected MAC (ct, INBOUND) -> normal")

TO_NIC = 90  # table 0: a frame for the NIC's MAC from another port (below the VM ports' 100)
PASS = 200  # neighbour discovery, DHCP client: before conntrack, as the iptables chains
TRACK = 100
INVALID = 200
STATE = 190
RULE = 100
CONJ = 90  # conjunctions apart from plain rules: OVS wants no overlap at one priority
OTHER = 10
DROP = 1

# as vnmlib.firewall.layout: ND must pass or the VM has no IPv6
ND_IN = (134, 135, 136, 137)
ND_OUT = (133, 135, 136)
BOOTP = "udp,nw_src=0.0.0.0,tp_src=68,nw_dst=255.255.255.255,tp_dst=67"

# a rule's protocol as an OpenFlow match, per family (no entry: not in that family)
BASE = {("all", 4): "ip", ("all", 6): "ipv6", ("tcp", 4): "tcp", ("tcp", 6): "tcp6",
        ("udp", 4): "udp", ("udp", 6): "udp6", ("icmp", 4): "icmp", ("icmpv6", 6): "icmp6",
        ("esp", 4): "ip,nw_proto=50", ("esp", 6): "ipv6,nw_proto=50"}
ADDRESS = {(4, "i"): "nw_src", (4, "o"): "nw_dst", (6, "i"): "ipv6_src", (6, "o"): "ipv6_dst"}


def enabled(conf, nic):
    return is_true(nic_conf(conf, nic).get("ovs_security_groups"))


def vm_groups(vm):
    """Every rule of the VM, validated (a bad one: InputError naming it)."""
    # imported here: the firewall package costs ~13 ms to import, and an action on
    # ports without security groups (every OVS action by default) must not pay it
    from vnmlib.firewall.sg_rules import rules_by_group

    return rules_by_group(rule.attrs for rule in vm.rules)


def port_masks(low, high):
    """[low, high] as ``(value, mask)`` pairs of 16-bit ports, largest aligned blocks first."""
    pairs = []
    while low <= high:
        size = (low & -low) or 0x10000
        while size > high - low + 1:
            size >>= 1
        pairs.append((low, 0xFFFF & ~(size - 1)))
        low += size
    return pairs


def _port_match(value, mask):
    if mask == 0:
        return ""  # every port
    return f"tp_dst={value}" if mask == 0xFFFF else f"tp_dst={value:#x}/{mask:#x}"


def _icmp_match(icmp_type):
    value, code = icmp_type
    return f"icmp_type={value}" + (f",icmp_code={code}" if code is not None else "")


def _dimensions(rule, family):
    """(base, nets, details) of ``rule`` in ``family``, or None: the rule matches
    ``base`` and one of ``nets`` and one of ``details`` ("" matches anything)."""
    kind = rule.kind.removeprefix("net_") if rule.kind != "net" else "protocol"
    if rule.kind.startswith("net"):
        nets = [f"{ADDRESS[family, rule.direction]}={net}" for net in rule.nets_of(family)]
        if not nets:
            return None
    else:
        nets = [""]
    if kind == "icmp_type":
        base, details = (BASE["icmp", 4] if family == 4 else None), [_icmp_match(rule.icmp_type)]
    elif kind == "icmpv6_type":
        base, details = (BASE["icmpv6", 6] if family == 6 else None), [_icmp_match(rule.icmp_type)]
    else:
        base = BASE.get((rule.protocol, family))
        details = [_port_match(v, m) for low, high in rule.port_items
                   for v, m in port_masks(low, high)] or [""]
    if base is None:
        return None
    return base, nets, list(dict.fromkeys(details))


def _join(*parts):
    return ",".join(p for p in parts if p)


class _Table:
    """The rule flows of one direction: plain flows, and conjunction clauses merged
    by match (OVS keeps one flow per match and priority: the clauses of two rules on
    one network are one flow with two ``conjunction`` actions)."""

    def __init__(self, table, at, port, accept):
        self.table, self.at, self.port, self.accept = table, at, port, accept
        self.plain, self.clauses, self.conj_ids = [], {}, []

    def add(self, family, base, nets, details):
        where = f"table={self.table},{self.at},ct_state=+trk-inv-rel-rpl"
        if len(nets) > 1 and len(details) > 1:
            # ids per table: the port number, then the rule's place
            conj_id = (self.port << 16) | (len(self.conj_ids) + 1)
            self.conj_ids.append((conj_id, "ip" if family == 4 else "ipv6"))
            for position, matches in ((1, nets), (2, details)):
                for match in matches:
                    key = f"{where},{_join(base, match)},priority={CONJ}"
                    self.clauses.setdefault(key, []).append(f"conjunction({conj_id},{position}/2)")
            return
        for net in nets:
            for detail in details:
                self.plain.append(f"{where},{_join(base, net, detail)},priority={RULE},"
                                  f"actions={self.accept}")

    def flows(self):
        flows = list(dict.fromkeys(self.plain))
        flows += [f"{key},actions={','.join(actions)}" for key, actions in self.clauses.items()]
        # ct() needs the family in the match
        flows += [f"table={self.table},conj_id={conj_id},{family},priority={CONJ},"
                  f"actions={self.accept}" for conj_id, family in self.conj_ids]
        return flows


def _digest(groups):
    """The rules as a ``ct_mark``: equal rules, equal mark (never 0, an unmarked entry's)."""
    text = "|".join(f"{r.direction}:{_dimensions(r, f)}" for _sg, rules in groups
                    for r in rules for f in (4, 6))
    return zlib.crc32(text.encode()) or 1


def nic_flows(port, nic, groups, bootp):
    """The security-group flows of ``nic`` on OpenFlow ``port`` (``groups``: its
    :func:`~vnmlib.firewall.sg_rules.nic_groups`); ``bootp``: the DHCP client may send."""
    mac = nic.get("MAC").lower()
    if not re.fullmatch(MAC, mac):
        raise InputError(f"{nic.label}: MAC {nic.get('MAC')!r} is not a MAC address "
                         "(security groups on Open vSwitch need it)")
    if not 0 < port < 0x10000:
        raise InputError(f"{nic.label}: OpenFlow port {port} does not fit a conntrack zone")
    zone, mark = port, _digest(groups)
    # a new connection's entry is committed with the rules' digest (module docstring)
    commit = f"ct(commit,zone={zone},exec(load:{mark:#x}->NXM_NX_CT_MARK[]))"
    out, to = f"in_port={port}", f"dl_dst={mac}"
    flows = [f"table={EGRESS},{out},icmp6,icmp_type={t},priority={PASS},actions={ACCEPT_OUT}"
             for t in ND_OUT]
    if bootp:
        flows.append(f"table={EGRESS},{out},{BOOTP},priority={PASS},actions={ACCEPT_OUT}")
    flows += [f"table={EGRESS},{out},{family},priority={TRACK},"
              f"actions=ct(table={EGRESS_CT},zone={zone})" for family in ("ip", "ipv6")]
    flows.append(f"table={EGRESS},{out},priority={OTHER},actions={ACCEPT_OUT}")
    flows.append(f"table={DISPATCH},{out},priority={DROP},actions=normal")

    flows += [f"table=0,{to},priority={TO_NIC},actions=resubmit(,{INGRESS})",
              f"table={DISPATCH},{to},priority={TO_NIC},actions=resubmit(,{INGRESS})"]
    flows += [f"table={INGRESS},{to},icmp6,icmp_type={t},priority={PASS},actions=normal"
              for t in ND_IN]
    flows += [f"table={INGRESS},{to},{family},priority={TRACK},"
              f"actions=ct(table={INGRESS_CT},zone={zone})" for family in ("ip", "ipv6")]
    flows.append(f"table={INGRESS},{to},priority={OTHER},actions=normal")

    tables = {"o": _Table(EGRESS_CT, out, port, f"{commit},{ACCEPT_OUT}"),
              "i": _Table(INGRESS_CT, to, port, f"{commit},normal")}
    for _sg, rules in groups:
        for rule in rules:
            for family in (4, 6):
                dimensions = _dimensions(rule, family)
                if dimensions is not None:
                    tables[rule.direction].add(family, *dimensions)
    for direction, table in tables.items():
        flows += _states(table.table, table.at, mark, ACCEPT_OUT if direction == "o" else "normal")
        flows += table.flows()
        flows.append(f"table={table.table},{table.at},priority={DROP},actions=drop")
    return flows


def _states(table, at, mark, accept):
    """Invalid: drop; replies and related: pass; the original direction of an established
    connection passes while its mark is the current rules' (else the rules decide again)."""
    where = f"table={table},{at}"
    return [f"{where},ct_state=+trk+inv,priority={INVALID},actions=drop",
            f"{where},ct_state=+trk+est+rpl-inv,priority={STATE},actions={accept}",
            f"{where},ct_state=+trk+rel-inv,priority={STATE},actions={accept}",
            f"{where},ct_state=+trk+est-rel-rpl-inv,ct_mark={mark:#x},priority={STATE},"
            f"actions={accept}"]


def protected_flows(port, nic, all_groups, bootp):
    """:func:`nic_flows` with the NIC's groups picked from the VM's (``all_groups``)."""
    from vnmlib.firewall.sg_rules import nic_groups  # as in vm_groups: only when enforced

    return nic_flows(port, nic, nic_groups(nic, all_groups), bootp)


def enforcing_nics(bridge):
    """{(vm_id, nic_id)} of the NICs with security-group flows on ``bridge`` (``vnm status``)."""
    out = ovs.ofctl(["--no-names", "dump-flows", bridge, f"table={EGRESS}"],
                    f"reading flows of {bridge}")
    found = (ids_of(int(match.group(1), 16)) for match in re.finditer(r"cookie=0x([0-9a-f]+)", out))
    return {ids for ids in found if ids is not None}
