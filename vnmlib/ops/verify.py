"""``vnm verify``: what a VM NIC's protection really enforces on this host, check by check.

No probe can stand in the VM's place: the NIC's rules are keyed on its tap
(``--physdev-in one-7-1``, the wire guard on the tap's ingress), and a second
device of that name cannot exist while the VM runs. So each check says how
it knows:

- **evaluated**: a packet as if from the VM goes through the NIC's live rules
  by :mod:`vnmlib.ops.why` (the configured backend's listing, the kernel's
  ``ipset test``, the tap's wire-guard table): spoofed source IP (IPv4,
  IPv6), spoofed source MAC, ARP sender check, router advertisements and
  DHCP-server replies from the VM; plus ``vnm status``'s check that the
  NIC's traffic reaches its chains at all;
- **live**: a throwaway port on the VM's bridge (:mod:`.verify_probe`) sends a
  TCP SYN to a port the rules deny and one they allow, and the tap shows
  whether the bridge delivered it: the NIC's real ``-i`` chain, the kernel's
  bridge netfilter hook and everything before vnm's jump, on real frames.

Results: ``enforced``; ``off`` (not configured for this NIC, e.g. no
``FILTER_IP_SPOOFING``, or a router VM allowed to send RAs); ``HOLE``
(configured, yet the packet passes: the rules, their path or the kernel let it
through); ``FAIL`` (the rules allow a packet that is not delivered); ``not
run`` with the reason. Open vSwitch NICs are checked by ``ofproto/trace``
(evaluated only). With ``:firewall_backend: nft`` the same checks read vnm's
bridge table: its chains walked by :mod:`vnmlib.ops.why.nft_walk`, the NIC's
own addresses from the anti-spoofing rule (its set in it) as nft lists it.
"""

import ipaddress
import json

from vnmlib.errors import VnmError
from vnmlib.firewall.layout import GLOBAL_CHAIN
from vnmlib.firewall.nft_render import TABLE
from vnmlib.host import process
from vnmlib.ops.why import nic as why_nic
from vnmlib.ops.why.packet import parse

SPOOFED_MAC = "02:76:6e:6d:00:02"
# tried in order for a denied port: services no security group is likely to open
DENIED_CANDIDATES = (9, 7, 13, 19, 1, 23, 135, 445, 3389, 65000)
ALLOWED_CANDIDATES = (22, 80, 443, 8080)


class Check:
    def __init__(self, nic, name, how, result, detail):
        self.nic, self.name, self.how, self.result, self.detail = nic, name, how, result, detail

    @property
    def bad(self):
        return self.result in ("HOLE", "FAIL")

    def as_dict(self):
        return {"nic": self.nic, "check": self.name, "how": self.how, "result": self.result,
                "detail": self.detail}


def set_members(name):
    """The addresses in hash:ip set ``name`` (empty when it does not exist)."""
    result = process.run([process.which("ipset"), "list", name])
    if not result.ok:
        return []
    lines = result.stdout.splitlines()
    start = lines.index("Members:") + 1 if "Members:" in lines else len(lines)
    # in address order: the kernel lists a hash set in no stable order
    return sorted((line.split()[0] for line in lines[start:] if line.strip()),
                  key=ipaddress.ip_address)


def guard_text(base):
    result = process.run([process.which("nft"), "list", "table", "netdev", base])
    return result.stdout if result.ok else None


def nft_spoofing(rules, name):
    """(filtered, addresses) of the NIC's anti-spoofing rule in its ``-o`` chain's nft
    ``rules``: the one commented ``name`` (the ipset it stands for), whose set is the
    addresses the NIC may send from (none: the family is dropped whole)."""
    for _, exprs, comment in rules or ():
        if comment != name:
            continue
        found = []
        for expr in exprs:
            body = expr.get("match") or {}
            if body.get("op") != "!=" or "payload" not in (body.get("left") or {}):
                continue
            right = body.get("right")
            found += right["set"] if isinstance(right, dict) and "set" in right else [right]
        return True, sorted((a for a in found if isinstance(a, str)), key=ipaddress.ip_address)
    return False, []


def nft_dports(rules):
    """The TCP destination ports (a range's first) an nft chain's rules name."""
    ports = []
    for _, exprs, _ in rules or ():
        for expr in exprs:
            body = expr.get("match") or {}
            if (body.get("left") or {}).get("payload") != {"protocol": "tcp", "field": "dport"}:
                continue
            right = body.get("right")
            for item in right["set"] if isinstance(right, dict) and "set" in right else [right]:
                first = item["range"][0] if isinstance(item, dict) and "range" in item else item
                if isinstance(first, int):
                    ports.append(first)
    return ports


class NicChecks:
    """The checks of one NIC protected by iptables chains, or with ``:firewall_backend:
    nft`` by vnm's bridge table (the same checks, its chains and sets read from nft)."""

    def __init__(self, backend, inv_nic, tables, ipset_names, path_problems):
        self.backend, self.inv_nic = backend, inv_nic
        self.native = getattr(backend, "NATIVE", False)
        self._nft = why_nic.NftRules() if self.native else None  # each chain listed once
        self.path_problems = path_problems
        self.label = f"{inv_nic.vm_id}/{inv_nic.nic_id}"
        self.base = inv_nic.base
        self.tables, self.ipset_names = tables, ipset_names
        if self.native:
            self.fnic = why_nic.find_nft_nic(inv_nic.vm_id, inv_nic.nic_id)
        else:
            self.fnic = why_nic.find_firewall_nic(backend, inv_nic.vm_id, inv_nic.nic_id)
        self.checks = []
        self.guard = guard_text(self.base)
        # {family: (anti-spoofing on, the NIC's own addresses)}
        self.spoofing = {family: self._spoofing(f"{self.base}-{suffix}")
                         for family, suffix in ((4, "ip-spoofing"), (6, "ip6-spoofing"))}
        self.own4 = self.spoofing[4][1]
        self.own6 = self.spoofing[6][1]
        # the only MAC the NIC may send from, when a MAC filter says so
        self.mac_filter = why_nic.guard_mac(self.base) or self._chain_mac()
        self.mac = self.mac_filter or self._learned_mac()

    def _spoofing(self, name):
        """(filtered, addresses) of ipset ``name``: its members, or the addresses of the
        nft rule standing for it. Without that rule (deleted: nft has no set left to
        show the filter was wanted) the wire guard's ARP sender check says it was."""
        if self.native:
            found, own = nft_spoofing(self._rules(f"{self.base}-o"), name)
            return found or "arp saddr ip != " in (self.guard or ""), own
        own = set_members(name)
        return bool(own) or name in self.ipset_names, own

    def _rules(self, chain):
        """The NIC's chain as the backend lists it: nft's JSON rules, or iptables' tokens."""
        if self.native:
            return self._nft.rules_of(TABLE, chain)
        key = (4, "filter", chain)
        return self.backend.list_rules([key])[key]

    def _chain_mac(self):
        rules = self._rules(f"{self.base}-o")
        return why_nic.nft_own_mac(rules) if self.native else why_nic.own_mac(rules)

    def _learned_mac(self):
        """The one MAC the bridge learned on the NIC's tap (the VM's), or None."""
        if self.fnic is None or self.fnic.bridge is None:
            return None
        out = process.run([process.which("bridge"), "-j", "fdb", "show", "br", self.fnic.bridge,
                           "brport", self.fnic.tap])
        learned = [e["mac"] for e in json.loads(out.stdout or "[]") if out.ok
                   and e.get("state") != "permanent" and "self" not in e.get("flags", [])]
        return learned[0] if len(learned) == 1 else None  # several: which is the VM's?

    def _guard_drops(self, word):
        """Whether a rule of the wire guard naming ``word`` drops."""
        return any(word in line and line.rstrip().endswith("drop")
                   for line in (self.guard or "").splitlines())

    def add(self, name, how, result, detail):
        self.checks.append(Check(self.label, name, how, result, detail))

    def evaluate(self, text, mac=None, chain=None):
        if self.native:
            return why_nic.explain_nft(self.fnic, parse(text), mac, chain)
        return why_nic.explain_firewall(self.backend, self.fnic, parse(text), mac, chain)

    def run(self, live):
        problems = self.path_problems(self.tables, self.base, self.inv_nic.master,
                                      self.ipset_names)
        self.add("reaches its chains", "evaluated", "HOLE" if problems else "enforced",
                 "; ".join(problems) or f"FORWARD -> {GLOBAL_CHAIN} -> {self.base}-i/-o")
        if self.fnic is None:
            self.add("protection", "evaluated", "HOLE", f"{GLOBAL_CHAIN} has no jump naming "
                     "the NIC's tap: none of its rules applies")
            return self.checks
        self._ip_spoofing(4, "198.51.100.77", "192.0.2.1")
        self._ip_spoofing(6, "2001:db8:76:6e6d::77", "2001:db8::1")
        self._mac_spoofing()
        self._arp()
        self._from_vm_only("router advertisement", 6,
                           f"icmpv6:134 {self._link_local()} -> ff02::1 out")
        if self.own4:
            self._from_vm_only("DHCP server reply", 4,
                               f"udp {self.own4[0]}:67 -> 255.255.255.255:68 out")
        if live:
            self._ports()
        return self.checks

    def _ip_spoofing(self, family, spoofed, peer):
        name = f"IPv{family} source spoofing"
        if not self.spoofing[family][0]:
            self.add(name, "evaluated", "off", "no anti-spoofing set (FILTER_IP_SPOOFING off)")
            return
        proto_packet = f"udp {spoofed}:40000 -> {peer}:53 out" if family == 4 else \
            f"udp [{spoofed}]:40000 -> [{peer}]:53 out"
        verdict = self.evaluate(proto_packet)
        # dropped by the anti-spoofing rule itself: a security group's final DROP
        # stops this packet, but would let the same source through to a port it opens
        by_filter = verdict.verdict == "DROP" and "-spoofing" in verdict.reason
        self.add(name, "evaluated", "enforced" if by_filter else "HOLE",
                 f"{spoofed} (not the NIC's): {verdict.verdict} by {verdict.reason}"
                 + ("" if by_filter else "; no anti-spoofing rule decides it"))

    def _mac_spoofing(self):
        if self.guard is None:
            self.add("MAC spoofing", "evaluated", "HOLE" if self.fnic.bridged else "off",
                     f"no wire guard (nft table netdev {self.base}) on {self.fnic.tap}")
            return
        if self.mac_filter is None:
            self.add("MAC spoofing", "evaluated", "off", "any source MAC allowed "
                     "(FILTER_MAC_SPOOFING off; the learned-MAC limit applies)")
            return
        verdict = self.evaluate(f"udp {self.own4[0] if self.own4 else '192.0.2.9'}:40000 -> "
                                "192.0.2.1:53 out", SPOOFED_MAC)
        # by the MAC filter itself, not only because a security group denies this packet
        by_filter = verdict.verdict == "DROP" and any(
            word in verdict.reason for word in ("wire guard", "--mac-source", "ether saddr"))
        self.add("MAC spoofing", "evaluated", "enforced" if by_filter else "HOLE",
                 f"{SPOOFED_MAC} (not {self.mac_filter}): {verdict.verdict} by {verdict.reason}"
                 + ("" if by_filter else "; no MAC filter decides it"))

    def _arp(self):
        if self.guard is None:
            return  # reported with the MAC check
        if self._guard_drops("arp saddr ip != "):
            self.add("ARP sender spoofing", "evaluated", "enforced",
                     f"wire guard: ARP sender IP only the NIC's ({', '.join(self.own4) or '-'})")
        elif self.own4:
            self.add("ARP sender spoofing", "evaluated", "HOLE",
                     "IP anti-spoofing is on but the wire guard does not check ARP senders")
        else:
            self.add("ARP sender spoofing", "evaluated", "off", "FILTER_IP_SPOOFING off")

    def _link_local(self):
        return next((a for a in self.own6 if a.startswith("fe80:")), None) or \
            (self.own6[0] if self.own6 else "fe80::76:6e6d")

    def _from_vm_only(self, name, family, text):
        verdict = self.evaluate(text)
        guarded = self._guard_drops("nd-router-advert" if family == 6 else "sport 67")
        if verdict.verdict == "DROP" or guarded:
            where = verdict.reason if verdict.verdict == "DROP" else "the wire guard"
            self.add(name, "evaluated", "enforced", f"dropped by {where}")
        else:
            self.add(name, "evaluated", "off", f"{verdict.verdict}: the NIC may send them "
                     f"({verdict.reason})")

    # -- live ---------------------------------------------------------------

    def _ports(self):
        from vnmlib.ops import verify_probe

        if not self.fnic.bridged or self.fnic.bridge is None:
            self.add("inbound ports", "live", "not run", "routed NIC: no bridge to probe from")
            return
        if self.mac is None:
            self.add("inbound ports", "live", "not run", "the VM's MAC is unknown here (no MAC "
                     "filter names it, the bridge learned none on its tap): a probe would have "
                     "to flood the bridge")
            return
        targets = [(4, self.own4[0] if self.own4 else "192.0.2.1")]
        global6 = [a for a in self.own6 if not a.startswith("fe80:")]
        if global6:
            targets.append((6, global6[0]))
        with verify_probe.Probe(self.fnic.bridge, self.fnic.tap) as probe:
            for family, vm_ip in targets:
                self._port_pair(probe, family, vm_ip)

    def _candidates(self):
        rules = self._rules(f"{self.base}-i")
        if self.native:
            ports = nft_dports(rules)
        else:
            ports = [int(item.split(":")[0]) for tokens in rules or ()
                     if "--dports" in tokens and "tcp" in tokens
                     for item in tokens[tokens.index("--dports") + 1].split(",")]
        return list(dict.fromkeys(ports + list(ALLOWED_CANDIDATES)))

    def _port_pair(self, probe, family, vm_ip):
        from vnmlib.ops import verify_probe

        src = verify_probe.PROBE_IP[family]

        def packet(port):
            if family == 4:
                return f"tcp {src}:40001 -> {vm_ip}:{port} in"
            return f"tcp [{src}]:40001 -> [{vm_ip}]:{port} in"

        # ports chosen by what the NIC's own -i chain says (its security groups); the
        # whole path's verdict is shown beside, and the tap tells what really happens
        for wanted, candidates in (("DROP", DENIED_CANDIDATES), ("ACCEPT", self._candidates())):
            name = f"IPv{family} {'denied' if wanted == 'DROP' else 'allowed'} TCP port"
            chosen = undetermined = None
            for port in candidates:
                said = self.evaluate(packet(port), chain=f"{self.base}-i")
                if said.verdict == wanted:
                    chosen = (port, self.evaluate(packet(port)))
                    break
                if said.verdict == "UNDETERMINED":
                    undetermined = said.reason
            if chosen is None and undetermined:
                self.add(name, "live", "not run", f"its rules cannot be evaluated: {undetermined}")
                continue
            if chosen is None:
                self.add(name, "live", "off", f"no port of {', '.join(map(str, candidates))} "
                         f"is {'denied' if wanted == 'DROP' else 'allowed'} from {src}")
                continue
            port, verdict = chosen
            frame = verify_probe.tcp_syn(self.mac, ipaddress.ip_address(src),
                                         ipaddress.ip_address(vm_ip), 40001, port)
            seen = probe.send_and_watch(frame, lambda f, p=port: verify_probe.is_syn(f, 40001, p))
            shown = (f"SYN {src} -> {vm_ip}:{port}, {'denied' if wanted == 'DROP' else 'allowed'} "
                     f"by {self.base}-i; the whole path says {verdict.verdict} ({verdict.reason})")
            if wanted == "DROP":
                self.add(name, "live", "HOLE" if seen else "enforced",
                         shown + ("; it reached the tap" if seen else "; not delivered"))
            else:
                self.add(name, "live", "enforced" if seen else "FAIL",
                         shown + ("; delivered" if seen else "; NOT delivered"))


def _ovs_own_ipv4(port, vm_id, nic_id):
    """An IPv4 source the NIC's table-20 flows let through, or None (no IP filter)."""
    import re

    from vnmlib.ovs import flows, tools

    dump = tools.ofctl(["dump-flows", port.bridge, f"cookie={flows.cookie_of(vm_id, nic_id)}/-1"],
                       f"reading the flows of {port.name}")
    found = re.findall(r"table=20,.*\bip,.*nw_src=([0-9.]+) .*actions=NORMAL", dump)
    return min(found, key=ipaddress.ip_address, default=None)


def ovs_checks(inv_nic):
    """Spoofing by ``ofproto/trace`` on an Open vSwitch NIC (evaluated only).

    A control packet (the NIC's own MAC and address) is traced first: a port that
    drops even that (its VLAN settings, STP) tells nothing about spoofing.
    """
    from vnmlib.ops.why import ovs_trace

    label = f"{inv_nic.vm_id}/{inv_nic.nic_id}"
    port = ovs_trace.find_port(inv_nic.vm_id, inv_nic.nic_id)
    if port is None:
        return [Check(label, "protection", "evaluated", "not run", "no OVS port found")]
    own = _ovs_own_ipv4(port, inv_nic.vm_id, inv_nic.nic_id) or "192.0.2.9"
    how = "evaluated (ofproto/trace)"

    def trace(source, mac=None):
        return ovs_trace.explain(port, parse(f"udp {source}:40000 -> 192.0.2.1:53 out"), None,
                                 mac)

    control = trace(own)
    if control.verdict != "ACCEPT":
        return [Check(label, "spoofing", how, "not run", f"the NIC's own packet from {own} "
                      f"({port.mac or 'MAC unknown'}) is not forwarded either: {control.reason}")]
    checks = []
    for name, verdict, shown in (
            ("MAC spoofing", trace(own, SPOOFED_MAC), SPOOFED_MAC),
            ("IPv4 source spoofing", trace("198.51.100.77"), "198.51.100.77")):
        # without the VM's template vnm cannot tell "filter off" from a hole here
        checks.append(Check(label, name, how, "enforced" if verdict.verdict == "DROP" else "off",
                            f"{shown} (own: {own}, {port.mac}): {verdict.verdict}, "
                            f"{verdict.reason}"))
    return checks


def verify(conf, vm_id, nic_id, live, path_problems):
    """[Check] of every protected NIC of ``vm_id`` (or only ``nic_id``) on this host;
    ``path_problems``: ``vnm status``'s check that a NIC's traffic reaches its chains
    (:func:`vnmlib.cli.status_protection.nic_problems`)."""
    from vnmlib.firewall import backend_of
    from vnmlib.ops import inventory

    backend = backend_of(conf)
    inv = inventory.read(backend)
    nics = [n for (vm, nic), n in sorted(inv.nics.items())
            if vm == vm_id and (nic_id is None or nic == nic_id)]
    if not nics:
        raise VnmError(f"verify: VM {vm_id}{'' if nic_id is None else f' NIC {nic_id}'}: "
                       "nothing of it on this host")
    checks = []
    for found in nics:
        if found.rules:
            checks += NicChecks(backend, found, inv.tables, inv.ipset_names,
                                path_problems).run(live)
        elif found.ovs_port:
            checks += ovs_checks(found)
        else:
            checks.append(Check(f"{found.vm_id}/{found.nic_id}", "protection", "evaluated",
                                "off", "no security-group chains and no OVS port"))
    return checks
