"""A walk of the bridge family's nft chains for one packet: which rule decides it, and the path.

The nft backend's counterpart of :mod:`.netfilter`. Pure: rules come from a
``rules_of(table, chain)`` callable and sets from ``set_of(table, name)`` (both
nft's JSON, :mod:`vnmlib.firewall.nft_read`), so the evaluation is the kernel's
data with nftables' semantics, for what vnm's table and common rules hold:
``match`` on ``meta protocol/l4proto/iifname/oifname``, ``ct state``, the
``ether``/``ip``/``ip6``/``tcp``/``udp``/``th``/``icmp``/``icmpv6`` fields vnm
uses, anonymous and named sets (prefixes, ranges, concatenations), verdict maps,
``jump``/``goto``/``return``/``accept``/``drop``/``reject``, ``counter`` and
``log``. A payload match needs its header (nft adds that dependency to the
rule), so an IPv6 packet never matches an ``ip saddr`` rule, whatever its
operator. Every base chain on the hook is walked in priority order, other
tables' too: ``accept`` ends one base chain, ``drop`` the packet. The packet is
the first of a new connection. Anything else makes the answer UNDETERMINED with
the rule named, never a guess.
"""

import ipaddress
import json

from vnmlib.ops.why.netfilter import MAX_DEPTH, PROTO_NUMBERS, Undetermined, Verdict

ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
              "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10,
              "time-exceeded": 11, "parameter-problem": 12, "timestamp-request": 13,
              "timestamp-reply": 14, "info-request": 15, "info-reply": 16,
              "address-mask-request": 17, "address-mask-reply": 18}
ICMP_CODES = {"net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2,
              "port-unreachable": 3, "frag-needed": 4, "net-prohibited": 9,
              "host-prohibited": 10, "admin-prohibited": 13}
ICMPV6_TYPES = {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
                "mld-listener-query": 130, "mld-listener-report": 131,
                "mld-listener-done": 132, "mld-listener-reduction": 132,
                "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
                "nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
                "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142,
                "mld2-listener-report": 143}
ICMPV6_CODES = {"no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3,
                "port-unreachable": 4, "policy-fail": 5, "reject-route": 6}
ETHER_TYPES = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "vlan": 0x8100, "8021ad": 0x88A8}
L4_NAMES = dict(PROTO_NUMBERS, **{"ipv6-icmp": 58, "icmpv6": 58})
_NAMES = {"icmp_type": ICMP_TYPES, "icmp_code": ICMP_CODES, "icmpv6_type": ICMPV6_TYPES,
          "icmpv6_code": ICMPV6_CODES, "ethertype": ETHER_TYPES, "l4proto": L4_NAMES}
_TERMINAL = {"accept": "accept", "drop": "drop", "reject": "drop"}
_GOING_ON = ("counter", "log", "continue")


class Context:
    """The packet and what the bridge knows of it: the ports it came in by and goes out
    of (None: a port vnm does not protect, the uplink's side) and its source MAC."""

    def __init__(self, packet, hook, iifname=None, oifname=None, src_mac=None):
        self.packet, self.hook = packet, hook
        self.iifname, self.oifname, self.src_mac = iifname, oifname, src_mac


class _Placed(Undetermined):
    """Undetermined, with the rule that could not be evaluated named."""


class _Absent(Exception):
    """The packet has no such header: the rule's implicit dependency fails."""


def _field(left, ctx):
    """(kind, value) of the packet for a left-hand expression; _Absent, Undetermined."""
    pkt = ctx.packet
    if "payload" in left:
        proto, field = left["payload"].get("protocol"), left["payload"].get("field")
        if proto == "ether" and field == "saddr":
            if ctx.src_mac is None:
                raise Undetermined("ether saddr (the packet's source MAC is not known: --mac)")
            return "mac", ctx.src_mac
        if proto in ("ip", "ip6") and field in ("saddr", "daddr"):
            if pkt.family != (4 if proto == "ip" else 6):
                raise _Absent()
            return "addr", pkt.src if field == "saddr" else pkt.dst
        if proto in ("tcp", "udp") and field in ("sport", "dport"):
            if pkt.protocol != proto:
                raise _Absent()
            return "port", pkt.sport if field == "sport" else pkt.dport
        if proto == "th" and field in ("sport", "dport"):
            if pkt.protocol not in ("tcp", "udp"):
                raise Undetermined(f"th {field} of a {pkt.protocol} packet (not a port)")
            return "port", pkt.sport if field == "sport" else pkt.dport
        if proto in ("icmp", "icmpv6") and field in ("type", "code"):
            if pkt.protocol != proto:
                raise _Absent()
            return f"{proto}_{field}", pkt.icmp_type if field == "type" else pkt.icmp_code
        raise Undetermined(f"payload {proto} {field}")
    if "meta" in left:
        key = left["meta"].get("key")
        if key == "protocol":
            return "ethertype", ETHER_TYPES["ip" if pkt.family == 4 else "ip6"]
        if key == "l4proto":
            return "l4proto", PROTO_NUMBERS[pkt.protocol]
        if key in ("iifname", "oifname"):
            name = ctx.iifname if key == "iifname" else ctx.oifname
            if name is None:
                raise Undetermined(f"meta {key} (the bridge port is not known here)")
            return "ifname", name
        raise Undetermined(f"meta {key}")
    if "ct" in left and left["ct"].get("key") == "state" and "dir" not in left["ct"]:
        return "ctstate", "new"
    raise Undetermined(f"expression {json.dumps(left, sort_keys=True)}")


def _number(kind, raw):
    if isinstance(raw, bool):
        raise Undetermined(f"{kind} value {raw!r}")
    if isinstance(raw, int):
        return raw
    names = _NAMES.get(kind, {})
    if raw in names:
        return names[raw]
    raise Undetermined(f"{kind} value {raw!r}")


def _covers(kind, element, value):
    """Whether one element (a value, prefix or range) holds ``value`` of ``kind``."""
    if isinstance(element, dict) and "elem" in element:
        element = element["elem"].get("val")
    if kind == "addr":
        if isinstance(element, dict) and "prefix" in element:
            prefix = element["prefix"]
            net = ipaddress.ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False)
            return value.version == net.version and value in net
        if isinstance(element, dict) and "range" in element:
            low, high = (ipaddress.ip_address(a) for a in element["range"])
            return value.version == low.version and low <= value <= high
        if isinstance(element, str):
            address = ipaddress.ip_address(element)
            return address == value
        raise Undetermined(f"address element {json.dumps(element)}")
    if kind in ("mac", "ctstate"):
        if isinstance(element, str):
            return element.lower() == value
        raise Undetermined(f"{kind} element {json.dumps(element)}")
    if kind == "ifname":
        if isinstance(element, str):
            if element.endswith("*") and not element.endswith("\\*"):
                return value.startswith(element[:-1])
            return element == value
        raise Undetermined(f"ifname element {json.dumps(element)}")
    if isinstance(element, dict) and "range" in element:
        low, high = (_number(kind, v) for v in element["range"])
        return low <= value <= high
    return _number(kind, element) == value


def _in_elements(fields, elements):
    """Whether a (possibly concatenated) key is among ``elements``: the components are
    compared in order, so an element whose protocol differs is left before its port."""
    for element in elements:
        if isinstance(element, dict) and "elem" in element:
            element = element["elem"].get("val")
        if isinstance(element, list):  # a map's [key, data]
            element = element[0]
        parts = element["concat"] if isinstance(element, dict) and "concat" in element \
            else [element]
        if len(parts) != len(fields):
            raise Undetermined(f"a {len(parts)}-part element for a {len(fields)}-part key")
        if all(_covers(field()[0], part, field()[1]) for field, part in zip(fields, parts)):
            return True
    return False


def _shown(fields):
    def one(field):
        try:
            return str(field()[1])
        except (_Absent, Undetermined):
            return "?"  # a part no element got as far as
    return " . ".join(one(f) for f in fields)


class _Walk:
    def __init__(self, rules_of, set_of, ctx):
        self.rules_of, self.set_of, self.ctx = rules_of, set_of, ctx
        self.path, self.sets = [], {}

    def _set(self, table, name):
        if (table, name) not in self.sets:
            self.sets[(table, name)] = self.set_of(table, name)[1]
        return self.sets[(table, name)]

    def _key(self, left):
        """Lazy component readers of a match's key (concatenations in order)."""
        parts = left["concat"] if "concat" in left else [left]
        cache = {}

        def reader(index, part):
            def read():
                if index not in cache:
                    cache[index] = _field(part, self.ctx)
                return cache[index]
            return read

        return [reader(i, part) for i, part in enumerate(parts)]

    def match(self, table, expr, notes):
        """Whether one ``match`` statement holds for the packet."""
        op, left, right = expr.get("op"), expr.get("left") or {}, expr.get("right")
        fields = self._key(left)
        try:
            if isinstance(right, str) and right.startswith("@"):
                member = _in_elements(fields, self._set(table, right[1:]))
                notes.append(f"{_shown(fields)} {'in' if member else 'not in'} set {right[1:]}")
                found = member
            elif isinstance(right, dict) and "set" in right:
                found = _in_elements(fields, right["set"])
                # (vnm's own rules name the ipset the set stands for in their comment)
                notes.append(f"{_shown(fields)} {'in' if found else 'not in'} the rule's set")
            elif op in ("<", ">", "<=", ">="):
                kind, value = fields[0]()
                limit = _number(kind, right)
                found = {"<": value < limit, ">": value > limit, "<=": value <= limit,
                         ">=": value >= limit}[op]
                return found
            else:
                if isinstance(right, list):  # flags, as ct state established,related
                    found = any(_in_elements(fields, [v]) for v in right)
                else:
                    found = _in_elements(fields, [right])
        except _Absent:
            return False
        if op in ("==", "in"):
            return found
        if op == "!=":
            return not found
        raise Undetermined(f"operator {op}")

    def _lookup_verdict(self, table, vmap, notes):
        """The verdict a ``vmap`` gives the packet, or None (no element)."""
        key, data = vmap.get("key") or {}, vmap.get("data")
        fields = self._key(key)
        if isinstance(data, str) and data.startswith("@"):
            elements, shown = self._set(table, data[1:]), f"map {data[1:]}"
        elif isinstance(data, dict) and "set" in data:
            elements, shown = data["set"], "the rule's map"
        else:
            raise Undetermined(f"verdict map {json.dumps(data)}")
        try:
            if "concat" not in key:
                _field(key, self.ctx)
        except _Absent:
            return None
        except Undetermined:
            if key.get("meta", {}).get("key") in ("iifname", "oifname"):
                # a bridge port vnm does not protect (the uplink's side) has no element
                notes.append(f"{key['meta']['key']} (the uplink's side) not in {shown}")
                return None
            raise
        for pair in elements:
            if _in_elements(fields, [pair[0]]):
                notes.append(f"{_shown(fields)} in {shown}")
                return pair[1]
        notes.append(f"{_shown(fields)} not in {shown}")
        return None

    def run(self, table, chain, depth):
        """(``accept``/``drop``/None, where): None when the chain returns or ends."""
        if depth > MAX_DEPTH:
            raise Undetermined(f"jumps nested deeper than {MAX_DEPTH}")
        rules = self.rules_of(table, chain)
        if rules is None:
            raise Undetermined(f"chain {chain} of table bridge {table} does not exist")
        for number, (handle, exprs, comment) in enumerate(rules, start=1):
            where = f"{table} {chain} rule {number} (handle {handle}): {text(exprs)}"
            if comment:
                where += f' comment "{comment}"'  # vnm's: the ipset the rule stands for
            try:
                outcome = self._rule(table, exprs, where, depth)
            except _Placed:
                raise  # a rule of a chain jumped to, named already
            except Undetermined as exc:
                raise _Placed(f"{where}: cannot evaluate {exc}") from None
            if outcome is not None:
                return outcome
        return None, None

    def _rule(self, table, exprs, where, depth):
        """None: the rule lets the packet go on; else what the chain's walk returns."""
        notes = []
        for expr in exprs:
            (kind, body), = expr.items()
            if kind == "match":
                if not self.match(table, body, notes):
                    return None
            elif kind == "ct count":
                notes.append(f"ct count: taken as at most {body.get('val')} connections open")
                return None
            elif kind in _GOING_ON:
                continue
            else:
                verdict = self._lookup_verdict(table, body, notes) if kind == "vmap" \
                    else {kind: body}
                if verdict is None:
                    return None
                self.path.append(where + (f"  [{'; '.join(notes)}]" if notes else ""))
                return self._verdict(table, verdict, where, depth)
        if notes:
            self.path.append(where + f"  [{'; '.join(notes)}]")
        return None

    def _verdict(self, table, verdict, where, depth):
        (kind, body), = verdict.items()
        if kind in _TERMINAL:
            return _TERMINAL[kind], where
        if kind == "return":
            return None, None
        if kind in ("jump", "goto"):
            outcome = self.run(table, body["target"], depth + 1)
            if outcome[0] is not None or kind == "goto":
                return outcome  # goto: the calling chain does not resume
            return None
        raise Undetermined(f"statement {kind}")


def walk(base_chains, rules_of, set_of, ctx):
    """The :class:`.netfilter.Verdict` of ``ctx.packet`` on its hook: every base chain
    (:class:`vnmlib.firewall.nft_read.BaseChain`) in order."""
    state = _Walk(rules_of, set_of, ctx)
    reason = None
    try:
        for base in base_chains:
            verdict, where = state.run(base.table, base.name, 0)
            if verdict is None:
                where = f"{base.table} {base.name} policy {base.policy}"
                state.path.append(where)
                verdict = "drop" if base.policy == "drop" else "accept"
            if verdict == "drop":
                return Verdict("DROP", where, state.path)
            reason = where if reason is None or base.table == "vnm" else reason
    except Undetermined as exc:
        return Verdict("UNDETERMINED", str(exc), state.path)
    return Verdict("ACCEPT", reason or f"no base chain on the {ctx.hook} hook", state.path)


def walk_chain(table, chain, rules_of, set_of, ctx):
    """The verdict of one chain alone: a packet it returns counts as accepted (vnm's
    ``opennebula`` accepts what a NIC's chain returns)."""
    state = _Walk(rules_of, set_of, ctx)
    try:
        verdict, where = state.run(table, chain, 0)
    except Undetermined as exc:
        return Verdict("UNDETERMINED", str(exc), state.path)
    if verdict is None:
        return Verdict("ACCEPT", f"{chain} returns it", state.path)
    return Verdict(verdict.upper(), where, state.path)


# -- the rules as text, for the path ------------------------------------------

def _value_text(value):
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return "-".join(str(v) for v in value["range"])
        if "set" in value:
            return "{ " + ", ".join(_value_text(v) for v in value["set"]) + " }"
        if "concat" in value:
            return " . ".join(_value_text(v) for v in value["concat"])
        if "payload" in value:
            return f"{value['payload'].get('protocol')} {value['payload'].get('field')}"
        if "meta" in value:
            return f"meta {value['meta'].get('key')}"
        if "ct" in value:
            return f"ct {value['ct'].get('key')}"
    if isinstance(value, list):
        return ",".join(_value_text(v) for v in value)
    return str(value)


def text(exprs):
    """One rule in nft's words (near enough to find it in ``nft list``)."""
    words = []
    for expr in exprs:
        (kind, body), = expr.items()
        if kind == "match":
            op = "" if body.get("op") in ("==", "in") else f"{body.get('op')} "
            words.append(f"{_value_text(body.get('left'))} {op}{_value_text(body.get('right'))}")
        elif kind == "vmap":
            words.append(f"{_value_text(body.get('key'))} vmap {_value_text(body.get('data'))}")
        elif kind in ("jump", "goto"):
            words.append(f"{kind} {body.get('target')}")
        elif kind == "ct count":
            words.append(f"ct count {'over ' if body.get('inv') else ''}{body.get('val')}")
        elif body is None or kind == "counter":
            words.append(kind)
        else:
            words.append(f"{kind} {json.dumps(body, sort_keys=True)}")
    return " ".join(words)
