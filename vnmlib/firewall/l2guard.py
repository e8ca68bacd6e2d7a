"""The wire guard of a protected NIC: what its tap may send, checked before the bridge sees it.

iptables sees only what br_netfilter hands it: untagged IPv4/IPv6 (and tagged
frames only with ``bridge-nf-filter-vlan-tagged``, one tag deep). A VM could
therefore send VID-0 priority-tagged, double-tagged or 802.1ad frames, other
EtherTypes, or ARP and neighbour discovery with forged addresses past every
rule, and the bridge learned any source MAC before iptables dropped the frame
(learning runs in br_handle_frame_finish, before FORWARD).

Each protected NIC gets one nftables table ``netdev one-<vm>-<nic>`` whose
base chain hooks the tap's **ingress** — the first thing a frame from the VM
meets, before the bridge's rx handler, so before MAC learning, the bridge's
own netfilter hooks and any VLAN handling. Why this hook rather than the
alternatives the host offers:

- ``bridge`` family prerouting (or ebtables' broute/nat) also runs before
  learning, but is one hook for every port of every bridge: each frame would
  walk a dispatch on its input port, and ebtables-nft shares its tables with
  the admin's own rules;
- tc ingress (u32/flower) could drop by EtherType, VLAN and MAC, but not look
  into ARP/ND fields with sets, and has no atomic replace of a filter list;
- a netdev table is per device (no lookup on other NICs' frames), is replaced
  atomically by one ``nft -f`` transaction, and carries the NIC's name, so
  ``clean`` and ``vnm gc`` find it by the ``one-<vm>-<nic>`` prefix.

What passes (everything else is dropped, and counted):

- untagged IPv4, IPv6, ARP and RARP (live migration's announce); tagged frames
  only in the NIC's ``VLAN_TAGGED_ID`` / ``CVLANS`` VIDs, one tag deep, with
  the same checks inside — never VID 0, a second tag or an 802.1ad tag;
- ``FILTER_MAC_SPOOFING``: only the NIC's MAC as Ethernet source, as ARP/RARP
  sender hardware address and in the NS/NA link-layer address option; without
  it, besides the NIC's MAC at most ``:learned_mac_limit:`` source MACs at a
  time (a dynamic set), so a VM cannot fill the bridge's forwarding table;
- ``FILTER_IP_SPOOFING``: ARP sender IP only the NIC's (and its aliases')
  IPv4 addresses or 0.0.0.0 (an RFC 5227 probe); NS and NA only from the
  NIC's IPv6 addresses (plus the EUI-64 link-local of its MAC, as OpenNebula
  computes IP6_LINK) or, for duplicate address detection, ``::``; an NA may
  claim only those addresses as its target.

- no server side of host configuration (``:dhcp_server_guard:``,
  ``:ra_guard:``, per network ``CONF="ra_guard=false"`` for a router VM):
  DHCP server replies (UDP 67 → 68), DHCPv6 server replies (UDP 547 → 546)
  and router advertisements (ICMPv6 134) are dropped, so a VM cannot hand
  its neighbours addresses, a gateway or a DNS server (RFC 6105's RA guard,
  a switch's DHCP snooping). nft finds the transport header behind IPv6
  extension headers, so an RA behind a hop-by-hop header is caught too.

The frame's IP payload is left to the iptables chains (security groups,
IP anti-spoofing), which run after this.

**Before the tap exists** (``pre``, :attr:`WireGuard.before_tap`): a netdev
chain names its device, and older kernels refuse a device that does not
exist (ENOENT: Debian 12's 6.1 does; 6.18, this project's CI kernel, binds
the chain when the device appears). There the guard is written, until
``post`` replaces it, as a ``bridge`` family table of the same name whose
prerouting chain (also before MAC learning) matches the tap by name
(``iifname``): the same checks, paid by every bridged frame on the host for
the seconds between ``pre`` and ``post`` only.
"""

import ipaddress

from vnmlib.firewall import libnft
from vnmlib.model.naming import parse_vlan_ranges

FAMILY = "netdev"
INTERIM_FAMILY = "bridge"  # the guard before the tap exists, where netdev cannot be bound yet
FAMILIES = (FAMILY, INTERIM_FAMILY)
# ICMPv6 ND: type(8) code(8) checksum(16) reserved/flags(32), target(128), then
# options; the only option Linux, Windows and BSD put into an NS or NA is the
# source (type 1) or target (type 2) link-layer address, 8 bytes for Ethernet.
ND_HEADER = 24
ND_WITH_LLADDR = 32
_ETHER_TYPES = "ip : jump ipv4, ip6 : jump ipv6, arp : jump arp_check"
LEARNED_TIMEOUT = "300s"  # the bridge's default ageing_time: a MAC forgotten there frees its place


def _mac_int(mac):
    return "0x" + mac.replace(":", "")


def _eui64_link_local(mac):
    """fe80::/64 with the modified EUI-64 of ``mac`` (RFC 4291 appendix A)."""
    octets = bytes(int(part, 16) for part in mac.split(":"))
    eui = bytes([octets[0] ^ 0x02]) + octets[1:3] + b"\xff\xfe" + octets[3:]
    return ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui)


def _set(items):
    return "{ " + ", ".join(items) + " }"


class WireGuard:
    """The wanted guard of one NIC's tap (pure: building it touches nothing)."""

    def __init__(self, table, tap, nic, addresses, mac_limit=0, dhcp_server_guard=True,
                 ra_guard=True):
        self.table = table
        self.tap = tap
        # set by the caller: the tap does not exist yet, and this kernel cannot
        # hook a missing device (then the guard is the interim bridge table)
        self.before_tap = False
        self.dhcp_server_guard = dhcp_server_guard
        self.ra_guard = ra_guard
        self.mac = nic.mac_attr() if nic.get("FILTER_MAC_SPOOFING").upper() == "YES" else ""
        self.own_mac = nic.mac_attr()
        # without MAC filtering: at most this many other source MACs at a time
        self.mac_limit = 0 if self.mac else mac_limit
        self.ip_filter = nic.get("FILTER_IP_SPOOFING").upper() == "YES"
        self.vids = self._vids(nic)
        self.own4 = list(dict.fromkeys(str(a) for a in addresses[4]))
        own6 = list(addresses[6])
        if self.ip_filter and self.own_mac:
            own6.append(_eui64_link_local(self.own_mac))
        self.own6 = list(dict.fromkeys(own6))

    @staticmethod
    def _vids(nic):
        vids = []
        for name in ("VLAN_TAGGED_ID", "CVLANS"):
            text = nic.get(name)
            if text:
                vids += parse_vlan_ranges(text, f"{nic.label}: {name}")
        return sorted(set(vids))

    # -- the table ------------------------------------------------------------

    @property
    def family(self):
        return INTERIM_FAMILY if self.before_tap else FAMILY

    def _ingress(self):
        if self.before_tap:
            # every bridged frame of the host passes here: all but the tap's go on
            rules = ["type filter hook prerouting priority -200; policy accept;",
                     f'iifname != "{self.tap}" accept']
        else:
            rules = [f'type filter hook ingress device "{self.tap}" priority 0; policy drop;']
        if self.mac:
            rules.append(f"ether saddr != {self.mac} counter drop")
        if self.mac_limit:
            # a MAC the set has no room for is not added (the update breaks off),
            # so the next rule drops its frames before the bridge could learn it
            other = f"ether saddr != {self.own_mac} " if self.own_mac else ""
            rules.append(f"{other}update @learned {{ ether saddr }}")
            rules.append(f"{other}ether saddr != @learned counter drop")
        types = _ETHER_TYPES + ", 0x8035 : jump rarp_check"
        if self.vids:
            types += ", 8021q : jump tagged"
        rules.append(f"ether type vmap {{ {types} }}")
        rules.append("counter drop")
        return rules

    def _tagged(self):
        vids = _set(str(v) for v in self.vids)
        # the inner EtherType must be a payload one: a second 802.1Q or an
        # 802.1ad tag inside is dropped like any other type
        return [f"vlan id {vids} vlan type vmap {{ {_ETHER_TYPES} }}", "counter drop"]

    def _arp(self):
        rules = ["arp htype != 1 counter drop", "arp ptype != ip counter drop",
                 "arp hlen != 6 counter drop", "arp plen != 4 counter drop"]
        if self.mac:
            rules.append(f"arp saddr ether != {self.mac} counter drop")
        if self.ip_filter:
            rules.append(f"arp saddr ip != {_set(self.own4 + ['0.0.0.0'])} counter drop")
        rules.append("accept")
        return rules

    def _rarp(self):
        # RARP has ARP's layout: sender hardware address at byte 8
        rules = []
        if self.mac:
            rules.append(f"@nh,64,48 != {_mac_int(self.mac)} counter drop")
        rules.append("accept")
        return rules

    def _ipv4(self):
        rules = []
        if self.dhcp_server_guard:
            rules.append("udp sport 67 udp dport 68 counter drop")
        rules.append("accept")
        return rules

    def _ipv6(self):
        rules = []
        if self.ra_guard:
            rules.append("icmpv6 type nd-router-advert counter drop")
        if self.dhcp_server_guard:
            rules.append("udp sport 547 udp dport 546 counter drop")
        return rules + ["icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } jump nd_check",
                        "accept"]

    def _nd(self):
        rules = [
            # extension headers before ND would move the fields checked below
            "ip6 nexthdr != ipv6-icmp counter drop",
            # DAD's solicitation from :: cannot carry a link-layer address (RFC 4861
            # 7.1.1: receivers drop it), so it claims nothing
            "icmpv6 type nd-neighbor-solicit ip6 saddr :: accept",
        ]
        if self.ip_filter:
            sources = _set(str(a) for a in self.own6) if self.own6 else None
            targets = _set(f"{int(a):#034x}" for a in self.own6) if self.own6 else None
            if sources is None:
                rules.append("counter drop")
                return rules
            rules.append(f"ip6 saddr != {sources} counter drop")
            rules.append(f"icmpv6 type nd-neighbor-advert @th,64,128 != {targets} counter drop")
        if self.mac:
            rules.append(f"ip6 length {ND_HEADER} accept")
            for icmp_type, option in (("nd-neighbor-solicit", "0x0101"),
                                      ("nd-neighbor-advert", "0x0201")):
                rules.append(f"icmpv6 type {icmp_type} ip6 length {ND_WITH_LLADDR} "
                             f"@th,192,16 {option} @th,208,48 {_mac_int(self.mac)} accept")
            rules.append("counter drop")
        else:
            rules.append("accept")
        return rules

    def chains(self):
        """[(name, [rule text])] in the order nft must declare them (jump targets first)."""
        chains = [("arp_check", self._arp()), ("rarp_check", self._rarp()),
                  ("nd_check", self._nd()), ("ipv4", self._ipv4()), ("ipv6", self._ipv6())]
        if self.vids:
            chains.append(("tagged", self._tagged()))
        chains.append(("ingress", self._ingress()))
        return chains

    def script(self):
        """The table as ``add`` commands, each chain with its rules in its declaration:
        nft 1.0.6 fetches nothing from the kernel before them (a table block makes it
        fetch every chain and set of every table, 2,000 and 5,000 at 1,000 NICs)."""
        where = f"{self.family} {self.table}"
        lines = [f"add table {where}"]
        if self.mac_limit:
            # as long as the bridge remembers a MAC (its default ageing time)
            lines.append(f"add set {where} learned {{ type ether_addr; size {self.mac_limit}; "
                         f"flags dynamic,timeout; timeout {LEARNED_TIMEOUT}; }}")
        for name, rules in self.chains():
            if name == "ingress":  # the table's own line in nft list (a table comment
                rules = [f'comment "vnm: what {self.tap} may send"'] + rules  # would fetch)
            body = "; ".join(rule.rstrip(";") for rule in rules)
            lines.append(f"add chain {where} {name} {{ {body}; }}")
        return lines


def render(install=(), remove=(), fresh=()):
    """One ``nft -f`` transaction: replace the guards of ``install``, delete the tables ``remove``.

    ``table X`` then ``delete table X`` makes deleting a missing table a no-op
    (nft 1.0.6 has no ``destroy``), so the transaction is idempotent; a guard
    is replaced by deleting and re-creating its table in the same transaction,
    which the kernel commits at once. Both families go: ``post``'s netdev guard
    replaces ``pre``'s interim bridge table in the same commit. ``fresh``: the
    tables of ``install`` that exist in neither family (:func:`fresh`), only
    added: any ``delete`` makes nft 1.0.6 fetch every chain and set of every
    table first.
    """
    lines = []
    for table in [g.table for g in install if g.table not in fresh] + list(remove):
        for family in FAMILIES:
            lines += [f"table {family} {table}", f"delete table {family} {table}"]
    for guard in install:
        lines += guard.script()
    return "\n".join(lines) + "\n" if lines else ""


def _exists(family, table):
    """Whether ``table`` exists in ``family`` (None: the kernel would not say): a dry run
    of ``create``, which the kernel refuses for a table that exists, and before which nft
    fetches nothing. A ``list table`` made nft 1.0.6 fetch every chain of every table
    first (a guard has 7): a cost that grew with the NICs protected."""
    ok, _out, error = libnft.run(f"create table {family} {table}\n", dry_run=True)
    return False if ok else (True if "File exists" in error else None)


def states(guards):
    """{table: {family: True (it exists), False (it does not) or None (the kernel would
    not say)}} of ``guards``' tables."""
    return {g.table: {family: _exists(family, g.table) for family in FAMILIES}
            for g in guards}


def present(guards):
    """{table: the families it exists in} of ``guards``' tables."""
    return {table: {family for family, there in found.items() if there}
            for table, found in states(guards).items()}


def fresh(found):
    """The tables of ``found`` (:func:`states`) known to exist in neither family: only
    added, then."""
    return {table for table, by_family in found.items()
            if all(there is False for there in by_family.values())}


def missing(guards):
    """The ``guards`` whose table does not exist yet, in either family."""
    tables = present(guards)
    return [g for g in guards if not tables[g.table]]


def apply(install=(), remove=(), absent=()):
    """Commit :func:`render`'s transaction (libnftables, or the host's ``nft``).

    ``absent``: the guards of ``install`` whose tap does not exist yet. They
    are tried as netdev chains first (newer kernels hook the device when it
    appears); a kernel that refuses them gets them as interim bridge tables.
    """
    from vnmlib.errors import VnmError

    text = render(install, remove)
    if not text:
        return
    try:
        ok, _out, error = libnft.run(text)
    except VnmError:  # no binding and no nft tool
        if install:
            raise
        return  # a host without nft has no guard to remove
    if not ok and absent:
        for guard in absent:
            guard.before_tap = True
        ok, _out, error = libnft.run(render(install, remove))
    if not ok:
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        raise VnmError("applying the wire guard (nftables netdev table): nft failed: "
                       f"{lines[-1] if lines else 'no reason given'}")
