"""The packet ``vnm why`` is asked about, parsed strictly from the command line.

Grammar (one packet, the first of a new connection)::

    PROTO SRC -> DST DIRECTION
    tcp 10.0.0.5:40000 -> 10.0.0.9:22 in
    udp [fd00::5]:5353 -> [fd00::9]:53 out
    icmp:8 10.0.0.5 -> 10.0.0.9 in          (ICMP type 8, code 0)
    icmpv6:1/4 fd00::5 -> fd00::9 in
    esp 10.0.0.9 -> 10.0.0.5 out

PROTO is ``tcp``, ``udp`` (with ports on both ends), ``icmp[:TYPE[/CODE]]``,
``icmpv6[:TYPE[/CODE]]`` (default: echo request, code 0) or ``esp`` (no
ports). DIRECTION is ``in`` (to the VM) or ``out`` (from the VM). The command
runs as root, so nothing here is trusted: every field is checked against its
range, and one InputError line says what is wrong.
"""

import ipaddress
import re

from vnmlib.errors import InputError

PROTOCOLS = ("tcp", "udp", "icmp", "icmpv6", "esp")
ECHO_REQUEST = {"icmp": 8, "icmpv6": 128}
DIRECTIONS = {"in": "to the VM", "out": "from the VM"}
_NUMBER = re.compile(r"[0-9]{1,5}")
_PROTO = re.compile(r"(tcp|udp|esp|icmpv6|icmp)(?::([0-9]{1,3})(?:/([0-9]{1,3}))?)?")
_ENDPOINT6 = re.compile(r"\[([0-9a-fA-F:.]{2,45})\]:([0-9]{1,5})")
_ENDPOINT4 = re.compile(r"([0-9.]{7,15}):([0-9]{1,5})")
_ADDRESS = re.compile(r"[0-9a-fA-F:.]{2,45}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
MAX_TEXT = 200  # a packet description is a short line


class Packet:
    """One packet: protocol, addresses, ports or ICMP type/code, direction, family."""

    __slots__ = ("protocol", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                 "direction", "family")

    def __init__(self, protocol, src, dst, direction, sport=None, dport=None, icmp_type=None,
                 icmp_code=None):
        self.protocol, self.src, self.dst, self.direction = protocol, src, dst, direction
        self.sport, self.dport = sport, dport
        self.icmp_type, self.icmp_code = icmp_type, icmp_code
        self.family = src.version

    def __str__(self):
        def end(address, port):
            if port is None:
                return str(address)
            return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        proto = self.protocol
        if self.icmp_type is not None:
            proto += f":{self.icmp_type}/{self.icmp_code}"
        return f"{proto} {end(self.src, self.sport)} -> {end(self.dst, self.dport)} " \
               f"{self.direction}"

    @property
    def vm_address(self):
        """The VM's end of the packet."""
        return self.dst if self.direction == "in" else self.src

    @property
    def peer_address(self):
        return self.src if self.direction == "in" else self.dst


def _fail(message):
    raise InputError(f"why: packet: {message}")


def _port(text, where):
    if not _NUMBER.fullmatch(text) or not 0 <= int(text) <= 65535:
        _fail(f"{where} port {text!r} is not 0..65535")
    return int(text)


def _address(text, where):
    if not _ADDRESS.fullmatch(text):
        _fail(f"{where} {text!r} is not an IPv4 or IPv6 address")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        _fail(f"{where} {text!r} is not an IPv4 or IPv6 address")


def _endpoint(text, where, with_port):
    """``ADDR:PORT`` / ``[ADDR6]:PORT`` (with_port) or a bare address -> (address, port)."""
    if not with_port:
        return _address(text, where), None
    match = _ENDPOINT6.fullmatch(text) or _ENDPOINT4.fullmatch(text)
    if not match:
        _fail(f"{where} {text!r} is not ADDRESS:PORT (an IPv6 address in brackets: "
              "[fd00::1]:22)")
    return _address(match.group(1), where), _port(match.group(2), where)


def parse(words):
    """The command line's words (or one string) -> :class:`Packet`, or InputError."""
    text = words if isinstance(words, str) else " ".join(words)
    if len(text) > MAX_TEXT or not text.isascii() or not text.isprintable():
        _fail(f"expected 'PROTO SRC -> DST in|out' in at most {MAX_TEXT} printable ASCII "
              "characters")
    parts = text.split()
    if len(parts) != 5 or parts[2] != "->":
        _fail(f"{text!r} is not 'PROTO SRC -> DST in|out' "
              "(e.g. 'tcp 10.0.0.5:40000 -> 10.0.0.9:22 in')")
    proto_text, src_text, _, dst_text, direction = parts
    match = _PROTO.fullmatch(proto_text.lower())
    if not match:
        _fail(f"protocol {proto_text!r} is not one of tcp, udp, icmp[:TYPE[/CODE]], "
              "icmpv6[:TYPE[/CODE]], esp")
    protocol = match.group(1)
    if match.group(2) is not None and not protocol.startswith("icmp"):
        _fail(f"protocol {proto_text!r}: only icmp and icmpv6 take a type")
    if direction not in DIRECTIONS:
        _fail(f"direction {direction!r} is not 'in' (to the VM) or 'out' (from the VM)")
    with_port = protocol in ("tcp", "udp")
    src, sport = _endpoint(src_text, "source", with_port)
    dst, dport = _endpoint(dst_text, "destination", with_port)
    if src.version != dst.version:
        _fail(f"{src} and {dst} are not of one IP version")
    if protocol == "icmp" and src.version == 6 or protocol == "icmpv6" and src.version == 4:
        _fail(f"{protocol} does not travel over IPv{src.version} (icmp is IPv4's, "
              "icmpv6 IPv6's)")
    icmp_type = icmp_code = None
    if protocol.startswith("icmp"):
        icmp_type = int(match.group(2)) if match.group(2) is not None else ECHO_REQUEST[protocol]
        icmp_code = int(match.group(3)) if match.group(3) is not None else 0
        if icmp_type > 255 or icmp_code > 255:
            _fail(f"{proto_text!r}: ICMP type and code are 0..255")
    return Packet(protocol, src, dst, direction, sport, dport, icmp_type, icmp_code)


def parse_mac(text):
    """``--mac``: six colon-separated hex bytes, lower-cased."""
    if not _MAC.fullmatch(text.lower()):
        raise InputError(f"why: --mac {text[:40]!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return text.lower()
