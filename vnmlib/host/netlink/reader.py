"""Read-only rtnetlink queries with the standard library only.

Why not pyroute2 here: importing any part of pyroute2 costs 90–110 ms, ten
times the interpreter's start-up, and a warm ``pre`` of the 802.1Q/vxlan
drivers must still check that ``<PHYDEV>.<VLAN_ID>`` is the device it should
be (kind, ID, lower device, group…) before saying "nothing to do". sysfs tells
the kind but not the VLAN ID or VNI. One RTM_GETLINK request answers it in well
under a millisecond. Everything that *changes* the kernel still goes through
pyroute2 (:class:`vnmlib.host.netlink.Netlink`); ``tests/functional/netlink/test_netlink_reader.py``
checks these answers against ``ip -d -j link`` / ``ip -j addr``.

Message layouts are those of <linux/netlink.h>, <linux/rtnetlink.h>,
<linux/if_link.h> and <linux/if_addr.h>.
"""

import os
import struct

# the C module under ``socket``: the Python wrapper pulls in selectors and enum
# (~5 ms, half a warm action); nothing here needs more than a raw socket
import _socket as socket

from vnmlib.errors import VnmError
from vnmlib.host.netlink import describe_errno

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")

# IFLA_*
IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_LINKINFO = 3, 4, 5, 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFF_UP = 0x1


def _u8(raw):
    return raw[0]


def _u16(raw):
    return struct.unpack("=H", raw[:2])[0]


def _be16(raw):
    return struct.unpack("!H", raw[:2])[0]


def _u32(raw):
    return struct.unpack("=I", raw[:4])[0]


def _ip(raw):
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, bytes(raw))


def _vlan_flags(raw):
    return struct.unpack("=II", raw[:8])[0]  # struct ifla_vlan_flags {flags, mask}


# IFLA_INFO_DATA members we compare, per kind: attribute type -> (name, decoder).
# Names are the pyroute2 keyword arguments without their kind prefix, so a
# planned device and a read one are compared key by key.
INFO_DATA = {
    "vlan": {
        1: ("id", _u16),
        2: ("flags", _vlan_flags),
        5: ("protocol", _be16),
    },
    "vxlan": {
        1: ("id", _u32), 2: ("group", _ip), 3: ("link", _u32), 4: ("local", _ip),
        5: ("ttl", _u8), 6: ("tos", _u8), 7: ("learning", _u8), 8: ("ageing", _u32),
        9: ("limit", _u32), 11: ("proxy", _u8), 12: ("rsc", _u8), 13: ("l2miss", _u8),
        14: ("l3miss", _u8), 15: ("port", _be16), 16: ("group6", _ip), 17: ("local6", _ip),
        18: ("udp_csum", _u8), 19: ("udp_zero_csum6_tx", _u8), 20: ("udp_zero_csum6_rx", _u8),
    },
}


class Link:
    """What RTM_GETLINK says about one link."""

    __slots__ = ("name", "index", "up", "mtu", "lower", "master", "kind", "data")

    def __init__(self, name, index, up, mtu, lower, master, kind, data):
        self.name = name
        self.index = index
        self.up = up
        self.mtu = mtu
        self.lower = lower    # IFLA_LINK: ifindex of the device a vlan sits on
        self.master = master  # ifindex of the bridge, or None
        self.kind = kind      # "vlan", "vxlan", "bridge", "veth", … ("" when none)
        self.data = data      # decoded IFLA_INFO_DATA (see INFO_DATA)

    def __repr__(self):
        return f"<Link {self.name} {self.kind} {self.data}>"


def _attrs(buf, offset, end):
    """Yield (type, payload memoryview) of the rtattrs in ``buf[offset:end]``."""
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(buf, offset)
        if length < _RTATTR.size:
            break
        yield kind & NLA_TYPE_MASK, buf[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3


def _request(msg_type, flags, body):
    """Send one request, return the (type, payload) of its answers (until DONE/ERROR)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, 1, 0) + body)
        messages = []
        while True:
            done = _read_messages(memoryview(sock.recv(1 << 16)), messages)
            if done or not flags & NLM_F_DUMP:
                return messages
    finally:
        sock.close()


def _read_messages(data, messages):
    """Append one datagram's messages to ``messages``; True at the end of the answer."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return True
        payload = data[offset + _NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", payload)[0]
            if code:
                raise OSError(code, os.strerror(code))
            return True
        messages.append((kind, payload))
    return False


def _rtattr(kind, payload):
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _parse_link(payload):
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    values = {}
    kind, data = "", {}
    for attr, raw in _attrs(payload, _IFINFOMSG.size, len(payload)):
        if attr == IFLA_LINKINFO:
            info = dict(_attrs(raw, 0, len(raw)))
            kind = bytes(info.get(IFLA_INFO_KIND, b"")).rstrip(b"\0").decode()
            decoders = INFO_DATA.get(kind, {})
            raw_data = info.get(IFLA_INFO_DATA)
            if raw_data is not None:
                for sub, sub_raw in _attrs(raw_data, 0, len(raw_data)):
                    if sub in decoders:
                        name, decode = decoders[sub]
                        data[name] = decode(sub_raw)
        else:
            values[attr] = raw
    name = bytes(values.get(IFLA_IFNAME, b"")).rstrip(b"\0").decode()
    master = _u32(values[IFLA_MASTER]) if IFLA_MASTER in values else None
    lower = _u32(values[IFLA_LINK]) if IFLA_LINK in values else None
    mtu = _u32(values[IFLA_MTU]) if IFLA_MTU in values else None
    return Link(name, index, bool(flags & IFF_UP), mtu, lower, master or None, kind, data)


def link(name):
    """The link called ``name``, or None when there is none."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rtattr(IFLA_IFNAME, name.encode() + b"\0")
    try:
        answers = _request(RTM_GETLINK, NLM_F_REQUEST, body)
    except OSError as exc:
        if exc.errno == 19:  # ENODEV
            return None
        raise VnmError(f"cannot read link {name}: {describe_errno(exc.errno)}") from None
    for kind, payload in answers:
        if kind == RTM_NEWLINK:
            return _parse_link(payload)
    return None


def addresses(index):
    """Addresses of the link with ``index``: [(family, address, scope)], kernel order."""
    body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    try:
        answers = _request(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, body)
    except OSError as exc:
        raise VnmError(f"cannot read addresses: {describe_errno(exc.errno)}") from None
    found = []
    for kind, payload in answers:
        if kind != RTM_NEWADDR:
            continue
        family, _prefix, _flags, scope, if_index = _IFADDRMSG.unpack_from(payload)
        if if_index != index:
            continue
        attrs = dict(_attrs(payload, _IFADDRMSG.size, len(payload)))
        raw = attrs.get(2, attrs.get(1))  # IFA_LOCAL, else IFA_ADDRESS
        if raw is not None:
            found.append((family, _ip(raw), scope))
    return found
