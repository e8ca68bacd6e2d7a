"""Connection-tracking entries over ctnetlink, standard library only.

The firewall cuts the connections a NIC's new rules no longer admit
(:mod:`vnmlib.firewall.conntrack_cut`): it dumps the table, keeps the entries
of the NIC's addresses and deletes some. pyroute2 speaks ctnetlink too, but
importing it costs ~100 ms, more than a warm ``update_sg``'s whole budget; the
messages are small, so they are spoken here (layouts of <linux/netlink.h>,
<linux/netfilter/nfnetlink.h> and <linux/netfilter/nfnetlink_conntrack.h>).
``tests/functional/netlink/test_conntrack_netlink.py`` checks them against the
``conntrack`` tool (``-L``, ``-I``).
"""

import errno
import os
import struct

import _socket as socket

from vnmlib.errors import VnmError
from vnmlib.host.netlink import describe_errno
from vnmlib.host.netlink.reader import (NLA_TYPE_MASK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, _rtattr)
from vnmlib.host.netlink.routing import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL

COUNT_PATH = "/proc/sys/net/netfilter/nf_conntrack_count"

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NFNETLINK_V0 = 0
NLA_F_NESTED = 0x8000

# enum ctattr_type / ctattr_tuple / ctattr_ip / ctattr_l4proto / ctattr_protoinfo(_tcp)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO, CTA_TIMEOUT, CTA_ZONE = 1, 2, 4, 7, 18
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE = 4, 5, 6
CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE = 7, 8, 9
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
TCP_CONNTRACK_ESTABLISHED = 3

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_ICMPV6 = 1, 6, 58
# an echo request's answer, for the reply tuple of a made entry (<linux/icmp(v6).h>)
ICMP_ANSWER = {IPPROTO_ICMP: {8: 0, 13: 14, 15: 16, 17: 18}, IPPROTO_ICMPV6: {128: 129, 139: 140}}
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big endian; 0)
_NLATTR = struct.Struct("=HH")
_ERR = struct.Struct("=i")
_BE16 = struct.Struct("!H")
# Messages sent at once, each batch ending with the one that asks for an
# acknowledgement: errors of the others arrive before it, in order, and a
# batch's answers fit the socket's default receive buffer.
BATCH = 256
RECV_SIZE = 1 << 20

_HINTS = {
    errno.ENOENT: "entry not found",
    errno.EPROTONOSUPPORT: "kernel lacks nfnetlink (module nfnetlink)",
    errno.EOPNOTSUPP: "kernel lacks ctnetlink (module nf_conntrack_netlink)",
    errno.EPERM: "operation not permitted (needs CAP_NET_ADMIN)",
    errno.ENOBUFS: "netlink answer lost (receive buffer full)",
    errno.EEXIST: "entry already exists",
}


def _describe(code):
    return _HINTS.get(code) or describe_errno(code)


class Entry:
    """One conntrack entry: its original tuple and zone.

    Addresses are packed bytes (4 or 16), compared as they come; ports and ICMP
    fields are None when the protocol has none. ``raw`` is the kernel's
    CTA_TUPLE_ORIG payload, sent back as is to delete the entry.
    """

    __slots__ = ("family", "protocol", "src", "dst", "sport", "dport", "icmp_type",
                 "icmp_code", "icmp_id", "zone", "raw")

    def __init__(self, family, protocol, src, dst, sport=None, dport=None, icmp_type=None,
                 icmp_code=None, icmp_id=None, zone=0, raw=None):
        self.family = family
        self.protocol = protocol
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.icmp_type = icmp_type
        self.icmp_code = icmp_code
        self.icmp_id = icmp_id
        self.zone = zone
        self.raw = raw if raw is not None else _tuple_payload(self)

    def key(self):
        """What identifies the entry, comparable with what ``conntrack -L`` prints."""
        return (self.family, self.protocol, socket.inet_ntop(FAMILY[self.family], self.src),
                socket.inet_ntop(FAMILY[self.family], self.dst), self.sport, self.dport,
                self.icmp_type, self.icmp_code, self.icmp_id, self.zone)

    def __repr__(self):
        return f"<conntrack {self.key()}>"


# -- reading --------------------------------------------------------------------

def count():
    """Entries in this namespace's table; 0 when conntrack is not loaded (no file)."""
    try:
        with open(COUNT_PATH, "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 0


def _table(buf, offset, end):
    """{type: (start, end)} of the attributes in ``buf[offset:end]`` (a plain loop:
    this runs for every attribute of every entry of the NIC's)."""
    found = {}
    unpack = _NLATTR.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(buf, offset)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return found


_FIRST_THREE = struct.Struct("=HHHHHH")  # the headers of orig tuple, its IP part, its source


def _passed_over(buf, start, end, wanted):
    """True when the kernel's usual layout shows at once that neither original
    address is wanted: CTA_TUPLE_ORIG first, CTA_TUPLE_IP first in it, source
    then destination. False decides nothing (:func:`_parse` reads it all)."""
    if end - start < 32:
        return False
    _ol, orig, _il, ip, src_len, src = _FIRST_THREE.unpack_from(buf, start)
    if (orig & NLA_TYPE_MASK != CTA_TUPLE_ORIG or ip & NLA_TYPE_MASK != CTA_TUPLE_IP
            or src not in (CTA_IP_V4_SRC, CTA_IP_V6_SRC)):
        return False
    dst_at = start + 8 + ((src_len + 3) & ~3)
    if dst_at + 4 > end:
        return False
    dst_len, dst = _NLATTR.unpack_from(buf, dst_at)
    if dst not in (CTA_IP_V4_DST, CTA_IP_V6_DST) or dst_at + dst_len > end:
        return False
    return (bytes(buf[start + 12:start + 8 + src_len]) not in wanted
            and bytes(buf[dst_at + 4:dst_at + dst_len]) not in wanted)


def _parse(buf, start, end, family, wanted):
    """The Entry of one IPCTNL_MSG_CT_NEW payload, or None when neither of its
    original addresses is in ``wanted`` (None: every entry).

    The kernel puts CTA_TUPLE_ORIG first, its addresses first in it: most
    entries (other VMs', the host's) are passed over after reading those
    (:func:`_passed_over`).
    """
    if wanted is not None and _passed_over(buf, start, end, wanted):
        return None
    top = _table(buf, start, end)
    if CTA_TUPLE_ORIG not in top:
        return None
    orig = top[CTA_TUPLE_ORIG]
    tuple_parts = _table(buf, *orig)
    if CTA_TUPLE_IP not in tuple_parts or CTA_TUPLE_PROTO not in tuple_parts:
        return None
    ip = _table(buf, *tuple_parts[CTA_TUPLE_IP])
    src = ip.get(CTA_IP_V4_SRC) or ip.get(CTA_IP_V6_SRC)
    dst = ip.get(CTA_IP_V4_DST) or ip.get(CTA_IP_V6_DST)
    if src is None or dst is None:
        return None
    src, dst = bytes(buf[src[0]:src[1]]), bytes(buf[dst[0]:dst[1]])
    if wanted is not None and src not in wanted and dst not in wanted:
        return None
    zone = _BE16.unpack_from(buf, top[CTA_ZONE][0])[0] if CTA_ZONE in top else 0
    proto = _table(buf, *tuple_parts[CTA_TUPLE_PROTO])

    def u8(kind, other=None):
        where = proto.get(kind) or proto.get(other)
        return buf[where[0]] if where else None

    def be16(kind, other=None):
        where = proto.get(kind) or proto.get(other)
        return _BE16.unpack_from(buf, where[0])[0] if where else None

    return Entry(family, u8(CTA_PROTO_NUM), src, dst, be16(CTA_PROTO_SRC_PORT),
                 be16(CTA_PROTO_DST_PORT), u8(CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_TYPE),
                 u8(CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMPV6_CODE),
                 be16(CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID), zone,
                 bytes(buf[orig[0]:orig[1]]))


def _open():
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as exc:
        raise VnmError(f"cannot open ctnetlink: {_describe(exc.errno)}") from None
    sock.bind((0, 0))
    return sock


def _header(length, msg_type, flags, seq):
    return _NLMSGHDR.pack(length, (NFNL_SUBSYS_CTNETLINK << 8) | msg_type, flags, seq, 0)


def _request(body, wanted):
    """One dump request (``body``: nfgenmsg and attributes); its entries of ``wanted``."""
    sock = _open()
    found = []
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    try:
        sock.send(_header(_NLMSGHDR.size + len(body), IPCTNL_MSG_CT_GET,
                          NLM_F_REQUEST | NLM_F_DUMP, 1) + body)
        while True:
            size = sock.recv_into(buf)
            offset = 0
            while offset + _NLMSGHDR.size <= size:
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, offset)
                if length < _NLMSGHDR.size or kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    code = -_ERR.unpack_from(buf, offset + _NLMSGHDR.size)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return found
                family = buf[offset + _NLMSGHDR.size]
                entry = _parse(view, offset + _NLMSGHDR.size + _NFGENMSG.size,
                               offset + length, 4 if family == socket.AF_INET else 6, wanted)
                if entry is not None:
                    found.append(entry)
                offset += (length + 3) & ~3
    except OSError as exc:
        raise VnmError(f"cannot read the conntrack table: {_describe(exc.errno)}") from None
    finally:
        sock.close()


def dump(addresses=None):
    """IPv4 and IPv6 entries whose original source or destination is one of
    ``addresses`` (packed bytes; None: all), as :class:`Entry`.

    One dump of both families, filtered here. Every dump walks the kernel's
    whole conntrack hash, shared by all namespaces (~20 ms at 262,144 buckets,
    even for an empty table), so the kernel's own filter (CTA_FILTER, 5.8+:
    one address and side per dump) would cost a walk per address and side;
    and for IPv6 it answers the opposite question (``!ipv6_addr_cmp`` in
    ctnetlink_filter_match_tuple, still in 6.18). Entries of other addresses
    are passed over after their first attribute (:func:`_passed_over`).
    """
    wanted = None if addresses is None else frozenset(addresses)
    return _request(_NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, 0), wanted)  # both families


# -- changing -------------------------------------------------------------------

def _nested(kind, payload):
    return _rtattr(kind | NLA_F_NESTED, payload)


def _tuple_payload(entry, reverse=False):
    """CTA_TUPLE_* payload of ``entry`` (its reply direction with ``reverse``)."""
    src, dst = (entry.dst, entry.src) if reverse else (entry.src, entry.dst)
    v4 = entry.family == 4
    ip = (_rtattr(CTA_IP_V4_SRC if v4 else CTA_IP_V6_SRC, src)
          + _rtattr(CTA_IP_V4_DST if v4 else CTA_IP_V6_DST, dst))
    proto = _rtattr(CTA_PROTO_NUM, bytes([entry.protocol]))
    if entry.sport is not None:
        sport, dport = (entry.dport, entry.sport) if reverse else (entry.sport, entry.dport)
        proto += _rtattr(CTA_PROTO_SRC_PORT, _BE16.pack(sport))
        proto += _rtattr(CTA_PROTO_DST_PORT, _BE16.pack(dport))
    if entry.icmp_type is not None:
        icmp_type = (ICMP_ANSWER[entry.protocol].get(entry.icmp_type, entry.icmp_type)
                     if reverse else entry.icmp_type)
        six = entry.protocol == IPPROTO_ICMPV6
        proto += _rtattr(CTA_PROTO_ICMPV6_ID if six else CTA_PROTO_ICMP_ID,
                         _BE16.pack(entry.icmp_id or 0))
        proto += _rtattr(CTA_PROTO_ICMPV6_TYPE if six else CTA_PROTO_ICMP_TYPE,
                         bytes([icmp_type]))
        proto += _rtattr(CTA_PROTO_ICMPV6_CODE if six else CTA_PROTO_ICMP_CODE,
                         bytes([entry.icmp_code or 0]))
    return _nested(CTA_TUPLE_IP, ip) + _nested(CTA_TUPLE_PROTO, proto)


def _zone(entry):
    return _rtattr(CTA_ZONE, _BE16.pack(entry.zone)) if entry.zone else b""


def _delete_body(entry):
    return (_NFGENMSG.pack(FAMILY[entry.family], NFNETLINK_V0, 0)
            + _nested(CTA_TUPLE_ORIG, entry.raw) + _zone(entry))


def _new_body(entry, timeout):
    body = (_NFGENMSG.pack(FAMILY[entry.family], NFNETLINK_V0, 0)
            + _nested(CTA_TUPLE_ORIG, entry.raw)
            + _nested(CTA_TUPLE_REPLY, _tuple_payload(entry, reverse=True))
            + _rtattr(CTA_TIMEOUT, struct.pack("!I", timeout)) + _zone(entry))
    if entry.protocol == IPPROTO_TCP:
        state = _rtattr(CTA_PROTOINFO_TCP_STATE, bytes([TCP_CONNTRACK_ESTABLISHED]))
        body += _nested(CTA_PROTOINFO, _nested(CTA_PROTOINFO_TCP, state))
    return body


def _send_batched(msg_type, flags, bodies):
    """Send the messages; {index: errno} of those the kernel refused."""
    failed = {}
    sock = _open()
    try:
        for first in range(0, len(bodies), BATCH):
            batch = bodies[first:first + BATCH]
            last = first + len(batch)  # sequence numbers are index + 1
            packet = b"".join(
                _header(_NLMSGHDR.size + len(body), msg_type,
                        flags | (NLM_F_ACK if first + i + 1 == last else 0), first + i + 1) + body
                for i, body in enumerate(batch))
            sock.send(packet)
            answered = False
            while not answered:
                data = sock.recv(RECV_SIZE)
                offset = 0
                while offset + _NLMSGHDR.size <= len(data):
                    length, kind, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                    if length < _NLMSGHDR.size:
                        break
                    if kind == NLMSG_ERROR:
                        code = -_ERR.unpack_from(data, offset + _NLMSGHDR.size)[0]
                        if code:
                            failed[seq - 1] = code
                        answered = answered or seq == last
                    offset += (length + 3) & ~3
    except OSError as exc:
        raise VnmError(f"ctnetlink: {_describe(exc.errno)}") from None
    finally:
        sock.close()
    return failed


def delete(entries):
    """Delete ``entries`` (by original tuple and zone); how many the kernel removed.

    An entry already gone (its connection closed meanwhile) is not an error.
    """
    entries = list(entries)
    failed = _send_batched(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST,
                           [_delete_body(e) for e in entries])
    refused = {i: code for i, code in failed.items() if code != errno.ENOENT}
    if refused:
        index, code = min(refused.items())
        raise VnmError(f"cannot delete conntrack entry {_shown(entries[index])}: "
                       f"{_describe(code)} ({len(refused)} of {len(entries)} refused)")
    return len(entries) - len(failed)


def create(entries, timeout=600):
    """Insert ``entries`` (TCP ones ESTABLISHED), as ``conntrack -I`` does."""
    entries = list(entries)
    failed = _send_batched(IPCTNL_MSG_CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
                           [_new_body(e, timeout) for e in entries])
    if failed:
        index, code = min(failed.items())
        raise VnmError(f"cannot create conntrack entry {_shown(entries[index])}: "
                       f"{_describe(code)} ({len(failed)} of {len(entries)} refused)")


def _shown(entry):
    _family, protocol, src, dst, sport, dport, icmp_type, icmp_code, _id, zone = entry.key()
    text = f"proto {protocol} {src}"
    text += f" port {sport}" if sport is not None else ""
    text += f" -> {dst}" + (f" port {dport}" if dport is not None else "")
    text += f" icmp {icmp_type}/{icmp_code}" if icmp_type is not None else ""
    return text + (f" zone {zone}" if zone else "")
