"""Which NIC ``vnm why`` asks about, and how its packet meets netfilter (read-only).

A NIC is found by vnm's names: chains ``one-<vm>-<nic>-i``/``-o`` and the
jumps ``opennebula`` has to them, which name its tap (``--physdev-out TAP``
bridged; ``-d ADDR`` routed); else an Open vSwitch port whose mark (or tap
name) is the NIC's (:mod:`.ovs_trace`). Nothing is changed: chains are
listed with the configured backend, ipsets asked with ``ipset list -t`` and
``ipset test``. With ``:firewall_backend: nft`` the NIC is found in ``table
bridge vnm``'s dispatch maps and :mod:`.nft_walk` walks the bridge family's
chains, with the sets' elements as nft lists them.
"""

import ipaddress
import json
import re

from vnmlib.errors import VnmError
from vnmlib.firewall import nft_read
from vnmlib.firewall.layout import GLOBAL_CHAIN
from vnmlib.firewall.nft_render import MAP_IN, MAP_OUT, MAP_ROUTED, TABLE
from vnmlib.host import process, sysfs
from vnmlib.ops.why import netfilter, nft_walk


class FirewallNic:
    """A NIC protected by iptables chains: its tap, bridge and whether it is bridged."""

    def __init__(self, base, tap, bridged, bridge):
        self.base, self.tap, self.bridged, self.bridge = base, tap, bridged, bridge


def _opt(tokens, option):
    return tokens[tokens.index(option) + 1] if option in tokens else None


def find_firewall_nic(backend, vm_id, nic_id):
    """The :class:`FirewallNic` of ``one-<vm>-<nic>``, or None when it has no chains."""
    base = f"one-{vm_id}-{nic_id}"
    listed = backend.list_rules([(f, "filter", GLOBAL_CHAIN) for f in (4, 6)])
    tap, bridged = None, False
    for rules in listed.values():
        for tokens in rules or ():
            target = _opt(tokens, "-j")
            if target == f"{base}-i" and "--physdev-out" in tokens:
                tap, bridged = _opt(tokens, "--physdev-out"), True
            elif target == f"{base}-o" and tap is None and "--physdev-in" in tokens:
                tap = _opt(tokens, "--physdev-in")
    if tap is None:
        return None
    bridge = sysfs.master(tap) if sysfs.exists(tap) else None
    return FirewallNic(base, tap, bridged, bridge)


def _local_addresses():
    out = process.run([process.which("ip"), "-j", "address", "show"]).check(
        "reading the host's addresses").stdout
    return {ipaddress.ip_address(a["local"]) for link in json.loads(out or "[]")
            for a in link.get("addr_info", ()) if "local" in a}


class SetTester:
    """``in_set`` of :func:`.netfilter.walk`: membership as the kernel's ``ipset test`` says."""

    def __init__(self):
        self.kinds = {}

    def _kind(self, name):
        if name not in self.kinds:
            result = process.run([process.which("ipset"), "list", "-t", name])
            if not result.ok:
                raise netfilter.Undetermined(f"ipset {name} ({result.error_line()})")
            lines = [line for line in result.stdout.splitlines() if line.startswith("Type: ")]
            self.kinds[name] = lines[0][len("Type: "):].strip() if lines else "?"
        return self.kinds[name]

    def __call__(self, name, dims, packet):
        element = netfilter.element(packet, dims, self._kind(name))
        result = process.run([process.which("ipset"), "test", name, element])
        if result.ok:
            return True, element
        if "is NOT in set" in result.stderr:
            return False, element
        raise netfilter.Undetermined(f"ipset test {name} {element}: {result.error_line()}")


def start_and_context(nic, packet, local=None):
    """(built-in chain the packet enters, :class:`.netfilter.Context`) for ``packet``.

    Bridged: to the VM, FORWARD with the tap as bridge output port (the sender
    taken as the uplink's side, not another protected VM); from the VM,
    FORWARD with the tap as input port, or INPUT when the destination is an
    address of this host. Routed: the kernel has no bridge ports for it.
    """
    local = _local_addresses() if local is None else local
    to_host = packet.direction == "out" and packet.dst in local
    if nic.bridged:
        bridge = nic.bridge
        if packet.direction == "in":
            return "FORWARD", netfilter.Context(packet, bridge, bridge, None, nic.tap, True)
        if to_host:
            return "INPUT", netfilter.Context(packet, bridge, None, nic.tap, None, False)
        return "FORWARD", netfilter.Context(packet, bridge, bridge, nic.tap, None, True)
    if packet.direction == "in":
        return "FORWARD", netfilter.Context(packet, None, nic.tap)
    return ("INPUT" if to_host else "FORWARD"), netfilter.Context(packet, nic.tap, None)


def _policy(family, chain):
    result = process.run([process.which("iptables" if family == 4 else "ip6tables"),
                          *process.xtables_wait(), "-S", chain])
    for line in result.stdout.splitlines() if result.ok else ():
        words = line.split()
        if words[:2] == ["-P", chain] and len(words) == 3:
            return words[2]
    return "ACCEPT"


def own_mac(rules):
    """The MAC the NIC's ``-o`` chain allows (its MAC anti-spoofing rule), or None."""
    for tokens in rules or ():
        if "--mac-source" in tokens and tokens[-2:] == ("-j", "DROP"):
            return _opt(tokens, "--mac-source").lower()
    return None


def explain_firewall(backend, nic, packet, mac=None, chain=None):
    """:class:`.netfilter.Verdict` of ``packet`` through the NIC's chains; ``mac`` the
    source MAC of a packet from the VM (default: the NIC's own, as its rules name it).

    ``chain``: walk only that chain of the NIC (what its own rules say, whatever
    comes before them); a packet it returns goes on to ``opennebula``'s ACCEPT."""
    cache = {}

    def list_chain(chain):
        if chain not in cache:
            key = (packet.family, "filter", chain)
            cache[chain] = backend.list_rules([key])[key]
        return cache[chain]

    start, ctx = start_and_context(nic, packet)
    assumed = []
    if packet.direction == "out":
        ctx.src_mac = mac or own_mac(list_chain(f"{nic.base}-o"))
        if mac is None and ctx.src_mac:
            assumed.append(f"source MAC taken as the NIC's own, {ctx.src_mac} (--mac to change)")
        guarded = guard_mac(nic.base)
        if guarded and ctx.src_mac != guarded:
            where = (f"wire guard (nft table netdev {nic.base}, ingress of {nic.tap}): "
                     f"ether saddr != {guarded} drop")
            return netfilter.Verdict("DROP", where, assumed + [where])
    policy = "ACCEPT" if chain else _policy(packet.family, start)
    verdict = netfilter.walk(chain or start, list_chain, ctx, SetTester(), policy)
    verdict.path[:0] = assumed
    return verdict


# the MAC filter's rule alone: "ether saddr != X … drop" with nothing else matched (the
# learned-MAC limit's rule, "ether saddr != X ether saddr != @learned … drop", is not one)
_GUARD_MAC = re.compile(r"^\s*ether saddr != ([0-9a-f:]{17})(?: counter packets [0-9]+ "
                        r"bytes [0-9]+)? drop$")


def guard_mac(base):
    """The only source MAC the NIC's wire guard (:mod:`vnmlib.firewall.l2guard`) lets
    its tap send, or None: no guard, or one without MAC filtering."""
    result = process.run([process.which("nft"), "list", "table", "netdev", base])
    if not result.ok:
        return None
    for line in result.stdout.splitlines():
        found = _GUARD_MAC.match(line)
        if found:
            return found.group(1)
    return None


# -- the nft backend: vnm's bridge table ---------------------------------------

def find_nft_nic(vm_id, nic_id):
    """The :class:`FirewallNic` of ``one-<vm>-<nic>`` in ``table bridge vnm``'s dispatch
    maps (the tap each jumps from), or None when it has no chains there."""
    base = f"one-{vm_id}-{nic_id}"
    try:
        maps = [(nft_read.dispatch(TABLE, m), f"{base}-{s}")
                for m, s in ((MAP_IN, "i"), (MAP_OUT, "o"))]
    except nft_read.Unreadable:  # no table: nothing protected by nft here
        return None
    taps = [tap for found, chain in maps for tap, target in sorted(found.items())
            if target == chain]
    if not taps:
        return None
    try:  # a routed NIC (elastic, nodeport): host-routed traffic meets it on output
        routed = nft_read.dispatch(TABLE, MAP_ROUTED).get(taps[0]) == f"{base}-i"
    except nft_read.Unreadable:  # no routed NIC on this host
        routed = False
    bridge = sysfs.master(taps[0]) if sysfs.exists(taps[0]) else None
    return FirewallNic(base, taps[0], not routed, bridge)


class NftRules:
    """The chains and sets of the bridge family as the walk asks for them, each listed
    once; a name vnm cannot read makes the answer undetermined."""

    def __init__(self):
        self._read = {}

    def _once(self, reader, table, name):
        if (reader, table, name) not in self._read:
            try:
                self._read[(reader, table, name)] = reader(table, name)
            except nft_read.Unreadable as exc:
                raise netfilter.Undetermined(str(exc)) from None
        return self._read[(reader, table, name)]

    def rules_of(self, table, chain):
        return self._once(nft_read.chain_rules, table, chain)

    def set_of(self, table, name):
        return self._once(nft_read.set_of, table, name)


def nft_own_mac(rules):
    """The MAC the NIC's ``-o`` chain allows (``ether saddr != X … drop``), or None."""
    for _, exprs, _ in rules or ():
        for expr in exprs:
            body = expr.get("match") or {}
            if body.get("op") == "!=" and (body.get("left") or {}).get("payload") == \
                    {"protocol": "ether", "field": "saddr"} and {"drop": None} in exprs:
                return str(body.get("right")).lower()
    return None


def explain_nft(nic, packet, mac=None, chain=None, local=None):
    """:class:`.netfilter.Verdict` of ``packet`` through the bridge family's chains on
    its hook (vnm's table and any other); ``mac`` and ``chain`` as for
    :func:`explain_firewall`. A packet to the VM enters the forward hook by a port
    that is not a VM's (the uplink's side) and leaves by the tap (a routed NIC's by the
    output hook: the host routes it); one from the VM enters by the tap, to the input
    hook when this host is its destination."""
    local = _local_addresses() if local is None else local
    rules = NftRules()
    if packet.direction == "in":
        # to a routed NIC the host routes it: out of the bridge by the output hook
        ctx = nft_walk.Context(packet, "forward" if nic.bridged else "output", None, nic.tap)
    else:
        # a routed NIC's frames go to the host (its gateway) whatever their destination
        hook = "input" if packet.dst in local or not nic.bridged else "forward"
        ctx = nft_walk.Context(packet, hook, nic.tap, None)
    assumed = []
    if packet.direction == "out":
        try:
            own = nft_own_mac(rules.rules_of(TABLE, f"{nic.base}-o"))
        except netfilter.Undetermined:
            own = None
        ctx.src_mac = mac or own
        if mac is None and ctx.src_mac:
            assumed.append(f"source MAC taken as the NIC's own, {ctx.src_mac} (--mac to change)")
        guarded = guard_mac(nic.base)
        if guarded and ctx.src_mac != guarded:
            where = (f"wire guard (nft table netdev {nic.base}, ingress of {nic.tap}): "
                     f"ether saddr != {guarded} drop")
            return netfilter.Verdict("DROP", where, assumed + [where])
    if chain:
        verdict = nft_walk.walk_chain(TABLE, chain, rules.rules_of, rules.set_of, ctx)
    else:
        verdict = nft_walk.walk(nft_read.base_chains(ctx.hook), rules.rules_of, rules.set_of,
                                ctx)
    verdict.path[:0] = assumed
    return verdict


def explain(conf, vm_id, nic_id, packet, in_port=None, mac=None):
    """The verdict on ``packet`` for NIC ``nic_id`` of VM ``vm_id`` on this host."""
    from vnmlib.firewall import backend_of

    backend = backend_of(conf)
    if getattr(backend, "NATIVE", False):  # nft: vnm's bridge table
        nic = find_nft_nic(vm_id, nic_id)
        if nic is not None:
            return explain_nft(nic, packet, mac)
    else:
        nic = find_firewall_nic(backend, vm_id, nic_id)
        if nic is not None:
            return explain_firewall(backend, nic, packet, mac)
    from vnmlib.ops.why import ovs_trace

    port = ovs_trace.find_port(vm_id, nic_id)
    if port is None:
        raise VnmError(f"why: VM {vm_id} NIC {nic_id}: no security-group chains and no Open "
                       "vSwitch port of it on this host")
    return ovs_trace.explain(port, packet, in_port, mac)
