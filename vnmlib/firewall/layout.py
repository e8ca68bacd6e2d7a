"""One NIC's protection as data: chains, jumps and ipsets (reference §7.1–7.4).

Names and order are the reference's, which admins' scripts rely on:
``opennebula`` global chain, per NIC ``one-<vm>-<nic>-i`` (to the VM) and
``-o`` (from the VM) in IPv4 and IPv6, jumps inserted at the top of
``opennebula`` plus an ``INPUT`` jump for VM→host traffic, ipsets
``one-<vm>-<nic>-ip-spoofing`` … Rules are token tuples written the way
``iptables -S`` prints them (``-p ipv6-icmp -m icmp6``, ``/32`` added…), so
what we apply reads back identically from the kernel.

Everything here is pure: building a :class:`NicFirewall` validates every
value of the NIC and of its rules, and touches nothing.
"""

from vnmlib.errors import InputError
from vnmlib.firewall.l2guard import WireGuard
from vnmlib.firewall.sg_rules import ICMP_CODES, ICMPV6_CODES

GLOBAL_CHAIN = "opennebula"
FAMILIES = (4, 6)
SET_FAMILY = {4: "inet", 6: "inet6"}
IPSET_NAME_MAX = 31  # IPSET_MAXNAMELEN 32, with the terminating NUL

# -j targets that route traffic into the global chain (reference global_bootstrap)
BRIDGED_FORWARD = ("-m", "physdev", "--physdev-is-bridged", "-j", GLOBAL_CHAIN)
ROUTED_FORWARD = ("-j", GLOBAL_CHAIN)

CONNTRACK = ("-m", "state", "--state", "RELATED,ESTABLISHED", "-j", "RETURN")
DROP = ("-j", "DROP")
# IPv6 neighbour discovery must pass or the VM has no IPv6 at all:
# in: RA 134, NS 135, NA 136, redirect 137; out: RS 133, NS 135, NA 136.
ND_IN = (134, 135, 136, 137)
ND_OUT = (133, 135, 136)
# vnm's own (not in the reference): the connections a NIC may have open that it
# started. After the conntrack RETURN only a new connection's first packet gets
# here; the -o chain is the NIC's own, so with mask 0 every connection it opens
# counts in one group of this rule, and a flooding VM fills its own quota, not
# the host's shared table (dropped packets never confirm a conntrack entry).
def connlimit(limit):
    return ("-m", "connlimit", "--connlimit-above", str(limit), "--connlimit-mask", "0",
            "--connlimit-saddr", "-j", "DROP")


# DHCP discover/request leave before the VM has an address (reference "bootp")
BOOTP = ("-s", "0.0.0.0/32", "-d", "255.255.255.255/32", "-p", "udp", "-m", "udp",
         "--sport", "68", "--dport", "67", "-j", "RETURN")

SPOOF_FIELDS = {4: ("IP", "VROUTER_IP"),
                6: ("IP6", "IP6_GLOBAL", "IP6_LINK", "IP6_ULA", "VROUTER_IP6",
                    "VROUTER_IP6_GLOBAL", "VROUTER_IP6_LINK", "VROUTER_IP6_ULA")}
# addresses that get a routed-mode "-d <ip> -j <chain>-i" jump (reference §7.4)
ROUTED_FIELDS = {4: ("IP",), 6: ("IP6", "IP6_GLOBAL", "IP6_ULA")}


class IpSet:
    """An ipset we own: name, type, family, options and members in order."""

    __slots__ = ("name", "kind", "family", "maxelem", "members")

    def __init__(self, name, kind, family, maxelem=None):
        self.name = name
        self.kind = kind
        self.family = family
        self.maxelem = maxelem
        self.members = {}  # ordered, unique

    def create_args(self):
        args = f"{self.kind} family {SET_FAMILY[self.family]}"
        return args + (f" maxelem {self.maxelem}" if self.maxelem else "")


def proto_tokens(protocol):
    """``-p`` as iptables prints it: nothing for all, ``ipv6-icmp`` for icmpv6."""
    if protocol == "all":
        return ()
    return ("-p", "ipv6-icmp" if protocol == "icmpv6" else protocol)


def host_net(address):
    return f"{address}/{address.max_prefixlen}"


class NicFirewall:
    """The wanted firewall state of one NIC (with its aliases' addresses)."""

    def __init__(self, vm, nic, aliases, groups, maxelem, bridged, tap, conntrack_limit=0,
                 mac_limit=0, server_guards=(True, True)):
        self.label = nic.label
        self.chain = f"one-{vm.id}-{nic.nic_id}"
        self.chain_in = f"{self.chain}-i"
        self.chain_out = f"{self.chain}-o"
        self.bridged = bridged
        self.tap = tap
        self.rules = {f: {self.chain_in: [], self.chain_out: []} for f in FAMILIES}
        self.jumps = {f: [] for f in FAMILIES}
        self.sets = {}
        self._maxelem = maxelem
        self._group_seen = set()
        addresses = {f: {field: self._addresses(nic, aliases, field, f)
                         for field in SPOOF_FIELDS[f]} for f in FAMILIES}
        self._nd()
        self._spoofing(nic, addresses)
        for family in FAMILIES:
            for chain in (self.chain_in, self.chain_out):
                self.rules[family][chain].append(CONNTRACK)
            if conntrack_limit:
                self.rules[family][self.chain_out].append(connlimit(conntrack_limit))
        for sg_id, rules in groups:
            self._security_group(sg_id, rules)
        for family in FAMILIES:
            for chain in (self.chain_in, self.chain_out):
                self.rules[family][chain].append(DROP)
        self._jumps(addresses)
        # what the tap may send at all, checked before the bridge (l2guard);
        # routed (elastic) NICs are not bridged by vnm's rules
        self.guard = WireGuard(self.chain, tap, nic, {
            f: [a for field in SPOOF_FIELDS[f] for a in addresses[f][field]]
            for f in FAMILIES}, mac_limit, *server_guards) if bridged else None

    # -- addresses ----------------------------------------------------------

    def _addresses(self, nic, aliases, field, family):
        """``field`` of the NIC then of its aliases, validated, without duplicates."""
        found = (element.ip_address(field, family) for element in [nic] + aliases)
        return list(dict.fromkeys(a for a in found if a is not None))

    # -- fixed parts --------------------------------------------------------

    def _append(self, family, direction, tokens):
        chain = self.chain_in if direction == "i" else self.chain_out
        key = (family, chain, tokens)
        if key not in self._group_seen:  # the reference uniq!s each group's commands
            self._group_seen.add(key)
            self.rules[family][chain].append(tokens)

    def _nd(self):
        for direction, types in (("i", ND_IN), ("o", ND_OUT)):
            for icmp_type in types:
                self._append(6, direction, ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type",
                                            str(icmp_type), "-j", "RETURN"))

    def _spoofing(self, nic, addresses):
        if nic.get("FILTER_MAC_SPOOFING").upper() == "YES":
            mac = nic.mac_attr(" (FILTER_MAC_SPOOFING needs it)")
            if not mac:
                raise InputError(f"{nic.label}: MAC is missing (FILTER_MAC_SPOOFING needs it)")
            for family in FAMILIES:
                self._append(family, "o", ("-m", "mac", "!", "--mac-source", mac,
                                           "-j", "DROP"))
        if nic.get("FILTER_IP_SPOOFING").upper() == "YES":
            self._append(4, "o", BOOTP)
            for family, suffix in ((4, "ip-spoofing"), (6, "ip6-spoofing")):
                ipset = self._set(f"{self.chain}-{suffix}", "hash:ip", family, None, self.label)
                for field in SPOOF_FIELDS[family]:
                    for address in addresses[family][field]:
                        ipset.members[str(address)] = None
                self._append(family, "o", ("-m", "set", "!", "--match-set", ipset.name, "src",
                                           "-j", "DROP"))

    def _jumps(self, addresses):
        input_jump = ("-m", "physdev", "--physdev-in", self.tap, "-j", self.chain_out)
        if self.bridged:
            out_jump = ("-m", "physdev", "--physdev-in", self.tap, "--physdev-is-bridged",
                        "-j", self.chain_out)
        else:
            # Routed mode: the reference kept "--physdev-is-bridged" here, so a
            # routed VM's traffic to the outside (which the host routes, not
            # bridges) skipped its -o chain: no anti-spoofing, no OUTBOUND
            # rules. Matching the tap alone covers bridged and routed traffic.
            out_jump = input_jump
        for family in FAMILIES:
            jumps = self.jumps[family]
            if self.bridged:
                jumps.append((GLOBAL_CHAIN, ("-m", "physdev", "--physdev-out", self.tap,
                                             "--physdev-is-bridged", "-j", self.chain_in)))
            else:
                # inbound traffic is routed to the VM: match its addresses (reference §7.4)
                for field in ROUTED_FIELDS[family]:
                    jumps += [(GLOBAL_CHAIN, ("-d", host_net(a), "-j", self.chain_in))
                              for a in addresses[family][field]]
                if not jumps:
                    continue  # no address of this family: no jump at all (reference)
            jumps.append((GLOBAL_CHAIN, out_jump))
            jumps.append(("INPUT", input_jump))  # VM -> host traffic (#6704)

    # -- security groups ----------------------------------------------------

    def _set(self, name, kind, family, maxelem, label):
        size = len(name.encode())  # IPSET_MAXNAMELEN counts bytes
        if size > IPSET_NAME_MAX:
            raise InputError(f"{label}: ipset name {name} is {size} bytes; ipset allows "
                             f"{IPSET_NAME_MAX} (VM ID, NIC_ID or SECURITY_GROUP_ID too long)")
        if name not in self.sets:
            self.sets[name] = IpSet(name, kind, family, maxelem)
        return self.sets[name]

    def _security_group(self, sg_id, rules):
        self._group_seen = set()
        for rule in rules:
            render = getattr(self, f"_rule_{rule.kind}")
            render(rule, f"{self.chain}-{sg_id}-{rule.direction}")

    def _rule_protocol(self, rule, _prefix):
        tokens = proto_tokens(rule.protocol) + ("-j", "RETURN")
        if rule.protocol != "icmpv6":
            self._append(4, rule.direction, tokens)
        if rule.protocol != "icmp":
            self._append(6, rule.direction, tokens)

    def _rule_portrange(self, rule, _prefix):
        for ports in rule.multiport_chunks():
            tokens = ("-p", rule.protocol, "-m", "multiport", "--dports", ports, "-j", "RETURN")
            for family in FAMILIES:
                self._append(family, rule.direction, tokens)

    def _rule_icmp_type(self, rule, _prefix):
        self._append(4, rule.direction, ("-p", "icmp", "-m", "icmp", "--icmp-type",
                                         _icmp_text(rule.icmp_type), "-j", "RETURN"))

    def _rule_icmpv6_type(self, rule, _prefix):
        self._append(6, rule.direction, ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type",
                                         _icmp_text(rule.icmp_type), "-j", "RETURN"))

    def _match_set(self, rule, ipset, dims):
        # traffic to the VM matches the peer as source, from the VM as destination
        where = ",".join(["src" if rule.direction == "i" else "dst"] + ["dst"] * (dims - 1))
        return ("-m", "set", "--match-set", ipset.name, where, "-j", "RETURN")

    def _rule_net(self, rule, prefix):
        for family in FAMILIES:
            nets = rule.nets_of(family)
            if not nets:
                continue
            ipset = self._set(f"{prefix}-{rule.protocol}-n-{SET_FAMILY[family]}", "hash:net",
                              family, None, rule.label)
            self._append(family, rule.direction,
                         proto_tokens(rule.protocol) + self._match_set(rule, ipset, 1))
            for net in nets:
                ipset.members[str(net)] = None

    def _rule_net_portrange(self, rule, prefix):
        for family in FAMILIES:
            nets = rule.nets_of(family)
            if not nets:
                continue
            ipset = self._set(f"{prefix}-nr-{SET_FAMILY[family]}", "hash:net,port", family,
                              self._maxelem, rule.label)
            self._append(family, rule.direction, self._match_set(rule, ipset, 2))
            for net in nets:
                for port in rule.port_entries():
                    ipset.members[f"{net},{port}"] = None

    def _net_icmp(self, rule, name, family, codes, proto):
        # the set and its rule exist even without a network of this family
        # (reference); only this family's networks go in (the reference put
        # IPv6 networks into the IPv4 set and failed)
        ipset = self._set(name, "hash:net,port", family, None, rule.label)
        self._append(family, rule.direction, self._match_set(rule, ipset, 2))
        for net in rule.nets_of(family):
            for entry in rule.icmp_entries(codes, proto):
                ipset.members[f"{net},{entry}"] = None

    def _rule_net_icmp_type(self, rule, prefix):
        self._net_icmp(rule, f"{prefix}-ni", 4, ICMP_CODES, "icmp")

    def _rule_net_icmpv6_type(self, rule, prefix):
        self._net_icmp(rule, f"{prefix}-ni6", 6, ICMPV6_CODES, "icmpv6")


def _icmp_text(icmp_type):
    value, code = icmp_type
    return str(value) if code is None else f"{value}/{code}"


def forward_jump(bridged):
    return BRIDGED_FORWARD if bridged else ROUTED_FORWARD
