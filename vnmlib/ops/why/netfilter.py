"""A walk of iptables chains for one packet: which rule decides it, and the path there.

Pure: the chains come from a ``list_chain(name)`` callable (the configured
backend's ``list_rules``) and ipset membership from ``in_set(name, element)``
(the kernel's ``ipset test``), so the evaluation is the kernel's data with
netfilter's semantics, written for the matches vnm and the reference use:
``-s -d -p -i -o``, ``physdev``, ``mac``, ``state``/``conntrack``, ``multiport``,
``tcp``/``udp`` ports, ``icmp``/``icmp6`` types, ``set``, ``connlimit`` and
``comment``; ``ACCEPT DROP REJECT RETURN`` and jumps to chains (``LOG`` and
other non-terminating targets go on). The packet is the first of a new
connection (conntrack state NEW). A rule with anything else, in vnm's chains
or another program's, makes the answer "undetermined" with the rule named,
never a guess.
"""

import ipaddress

TERMINAL = {"ACCEPT": "ACCEPT", "DROP": "DROP", "REJECT": "DROP"}
GOING_ON = ("LOG", "NFLOG", "NOTRACK", "MARK", "CONNMARK", "TRACE")
MAX_DEPTH = 32  # netfilter's own limit on nested jumps is the stack; ours a sane bound
PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "esp": 50}
# ICMP type names iptables may print instead of numbers (iptables -S prints numbers for
# vnm's rules; an admin's rule may use these)
ICMP_NAMES = {"any": None, "echo-reply": (0, None), "echo-request": (8, None),
              "destination-unreachable": (3, None), "time-exceeded": (11, None),
              "router-advertisement": (134, None), "router-solicitation": (133, None),
              "neighbour-solicitation": (135, None), "neighbour-advertisement": (136, None),
              "neighbor-solicitation": (135, None), "neighbor-advertisement": (136, None),
              "redirect": (137, None)}


class Undetermined(Exception):
    """A rule whose effect on the packet this walk cannot tell."""


class Context:
    """What netfilter knows about the packet besides its headers: its interfaces."""

    def __init__(self, packet, in_iface=None, out_iface=None, physdev_in=None,
                 physdev_out=None, bridged=False, src_mac=None):
        self.packet = packet
        self.in_iface, self.out_iface = in_iface, out_iface
        self.physdev_in, self.physdev_out, self.bridged = physdev_in, physdev_out, bridged
        self.src_mac = src_mac  # lower case, or None: unknown


class Verdict:
    """The outcome: ``ACCEPT``, ``DROP`` or ``UNDETERMINED``, what decided it, the path."""

    def __init__(self, verdict, reason, path):
        self.verdict, self.reason, self.path = verdict, reason, path

    def as_dict(self):
        return {"verdict": self.verdict, "reason": self.reason, "path": self.path}


def _iface_matches(pattern, name):
    if name is None:
        raise Undetermined(f"interface {pattern} (the packet's interface is not known here)")
    return pattern == name or (pattern.endswith("+") and name.startswith(pattern[:-1]))


def _in_ports(spec, port):
    """``22,80:90`` or ``80:90`` holds ``port``."""
    for item in spec.split(","):
        low, _, high = item.partition(":")
        if int(low) <= port <= int(high or low):
            return True
    return False


def _icmp_matches(spec, packet):
    if spec in ICMP_NAMES:
        wanted = ICMP_NAMES[spec]
        if wanted is None:
            return True
        icmp_type, code = wanted
    else:
        value, _, code_text = spec.partition("/")
        if not value.isdigit() or (code_text and not code_text.isdigit()):
            raise Undetermined(f"ICMP type {spec}")
        icmp_type, code = int(value), int(code_text) if code_text else None
    return packet.icmp_type == icmp_type and (code is None or packet.icmp_code == code)


class Matcher:
    """Evaluates one rule's matches against a packet (``in_set``: set membership)."""

    def __init__(self, ctx, in_set):
        self.ctx, self.in_set = ctx, in_set

    def matches(self, tokens):
        """(matched, notes) of ``tokens`` without their target; Undetermined when unknown."""
        notes = []
        i, module, negate = 0, None, False
        while i < len(tokens):
            token = tokens[i]
            if token == "!":
                negate, i = True, i + 1
                continue
            if token in ("-j", "-g"):
                break
            if token == "-m":
                module, i = tokens[i + 1], i + 2
                continue
            values, j = [], i + 1
            while j < len(tokens) and not tokens[j].startswith("-") and tokens[j] != "!":
                values.append(tokens[j])
                j += 1
            try:
                result = self._option(module, token, values, notes)
            except (ValueError, IndexError):  # a value iptables -S would not print: a name
                raise Undetermined(f"{token} {' '.join(values)}") from None
            if result is not None and result == negate:
                return False, notes
            negate, i = False, j
        return True, notes

    def _option(self, module, option, values, notes):
        """True/False: the option matches; None: it does not restrict (a comment)."""
        pkt, ctx = self.ctx.packet, self.ctx
        value = values[0] if values else None
        if option == "-s":
            return pkt.src in ipaddress.ip_network(value, strict=False)
        if option == "-d":
            return pkt.dst in ipaddress.ip_network(value, strict=False)
        if option == "-p":
            number = PROTO_NUMBERS.get(value, int(value) if value.isdigit() else None)
            if number is None:
                raise Undetermined(f"protocol {value}")
            return number == PROTO_NUMBERS[pkt.protocol]
        if option == "-i":
            return _iface_matches(value, ctx.in_iface)
        if option == "-o":
            return _iface_matches(value, ctx.out_iface)
        handler = getattr(self, f"_m_{(module or '').replace('-', '_')}", None)
        if handler is None:
            raise Undetermined(f"match {module or '?'} {option}")
        return handler(option, values, notes)

    def _m_comment(self, option, values, notes):
        return None

    def _m_physdev(self, option, values, notes):
        ctx = self.ctx
        if option == "--physdev-in":
            return ctx.physdev_in is not None and _iface_matches(values[0], ctx.physdev_in)
        if option == "--physdev-out":
            return ctx.physdev_out is not None and _iface_matches(values[0], ctx.physdev_out)
        if option == "--physdev-is-bridged":
            return ctx.bridged
        if option == "--physdev-is-in":
            return ctx.physdev_in is not None
        if option == "--physdev-is-out":
            return ctx.physdev_out is not None
        raise Undetermined(f"physdev {option}")

    def _m_mac(self, option, values, notes):
        if option != "--mac-source" or self.ctx.src_mac is None:
            raise Undetermined(f"mac {option} (the packet's source MAC is not known: --mac)")
        return values[0].lower() == self.ctx.src_mac

    def _m_state(self, option, values, notes):
        if option not in ("--state", "--ctstate"):
            raise Undetermined(f"state {option}")
        return "NEW" in values[0].split(",")

    _m_conntrack = _m_state

    def _ports(self, option, values):
        pkt = self.ctx.packet
        if pkt.sport is None:
            return False  # a port match on a packet without ports never matches
        if option in ("--dports", "--dport", "--destination-ports", "--destination-port"):
            return _in_ports(values[0], pkt.dport)
        if option in ("--sports", "--sport", "--source-ports", "--source-port"):
            return _in_ports(values[0], pkt.sport)
        if option == "--ports":
            return _in_ports(values[0], pkt.dport) or _in_ports(values[0], pkt.sport)
        raise Undetermined(f"port option {option}")

    def _m_multiport(self, option, values, notes):
        return self._ports(option, values)

    def _m_tcp(self, option, values, notes):
        return self.ctx.packet.protocol == "tcp" and self._ports(option, values)

    def _m_udp(self, option, values, notes):
        return self.ctx.packet.protocol == "udp" and self._ports(option, values)

    def _m_icmp(self, option, values, notes):
        if option != "--icmp-type":
            raise Undetermined(f"icmp {option}")
        return self.ctx.packet.protocol == "icmp" and _icmp_matches(values[0], self.ctx.packet)

    def _m_icmp6(self, option, values, notes):
        if option != "--icmpv6-type":
            raise Undetermined(f"icmp6 {option}")
        return self.ctx.packet.protocol == "icmpv6" and _icmp_matches(values[0],
                                                                        self.ctx.packet)

    def _m_connlimit(self, option, values, notes):
        if option == "--connlimit-above":
            notes.append(f"connlimit: taken as at most {values[0]} connections open")
            return False
        if option in ("--connlimit-mask", "--connlimit-saddr", "--connlimit-daddr"):
            return None
        raise Undetermined(f"connlimit {option}")

    def _m_set(self, option, values, notes):
        if option != "--match-set":
            raise Undetermined(f"set {option}")
        name, dims = values[0], values[1].split(",")
        member, shown = self.in_set(name, dims, self.ctx.packet)
        notes.append(f"{shown} {'in' if member else 'not in'} ipset {name}")
        return member


def element(packet, dims, kind):
    """The ``ipset test`` element of ``packet`` for a set of type ``kind`` looked up with
    ``dims`` (``src``, ``src,dst``…), or Undetermined."""
    def address(dim):
        return packet.src if dim == "src" else packet.dst

    if kind in ("hash:ip", "hash:net") and len(dims) == 1:
        return str(address(dims[0]))
    if kind in ("hash:ip,port", "hash:net,port") and len(dims) == 2:
        if packet.protocol in ("tcp", "udp"):
            port = packet.sport if dims[1] == "src" else packet.dport
            return f"{address(dims[0])},{packet.protocol}:{port}"
        if packet.protocol in ("icmp", "icmpv6"):
            return f"{address(dims[0])},{packet.protocol}:{packet.icmp_type}/{packet.icmp_code}"
        # other protocols are stored with port 0 (the kernel's ip_set_get_ip_port)
        return f"{address(dims[0])},{packet.protocol}:0"
    raise Undetermined(f"a {kind} set looked up by {','.join(dims)}")


def _target(tokens):
    for flag in ("-j", "-g"):
        if flag in tokens:
            index = tokens.index(flag)
            return flag, tokens[index + 1]
    return None, None


def walk(start, list_chain, ctx, in_set, policy="ACCEPT"):
    """The :class:`Verdict` of ``ctx.packet`` entering chain ``start`` (a built-in one,
    whose ``policy`` applies when every rule lets it through)."""
    path = []
    matcher = Matcher(ctx, in_set)

    def run(chain, depth):
        if depth > MAX_DEPTH:
            raise Undetermined(f"jumps nested deeper than {MAX_DEPTH}")
        rules = list_chain(chain)
        if rules is None:
            raise Undetermined(f"chain {chain} does not exist")
        for number, tokens in enumerate(rules, start=1):
            try:
                matched, notes = matcher.matches(tokens)
            except Undetermined as exc:
                raise Undetermined(f"{chain} rule {number} ({' '.join(tokens)}): cannot "
                                   f"evaluate {exc}") from None
            if not matched:
                continue
            flag, target = _target(tokens)
            where = f"{chain} rule {number}: {' '.join(tokens)}"
            path.append(where + (f"  [{'; '.join(notes)}]" if notes else ""))
            if target is None or target in GOING_ON:
                continue
            if target in TERMINAL:
                return TERMINAL[target], where
            if target == "RETURN":
                return None, None
            outcome = run(target, depth + 1)
            if outcome[0] is not None:
                return outcome
            if flag == "-g":
                return None, None  # goto: the calling chain does not resume
        return None, None

    try:
        verdict, where = run(start, 0)
    except Undetermined as exc:
        return Verdict("UNDETERMINED", str(exc), path)
    if verdict is None:
        path.append(f"{start} policy {policy}")
        return Verdict(TERMINAL.get(policy, policy), f"{start} policy {policy}", path)
    return Verdict(verdict, where, path)
