"""Host routes, proxy-ARP entries and addresses over rtnetlink, standard library only.

The elastic driver's host side (``remote_post``/``remote_clean``) has a budget
of 0.15 s, and importing pyroute2 alone takes ~0.15 s with a hypervisor's
Debian python3. Its work is three small kinds of objects, so it speaks the
messages itself (layouts of <linux/rtnetlink.h>, <linux/neighbour.h>,
<linux/if_addr.h>); ``tests/functional/netlink/test_netlink_routing.py`` checks them against
``ip -j route`` / ``ip -j neigh show proxy`` / ``ip -j addr``. Links stay with
pyroute2 (:class:`vnmlib.host.netlink.Netlink`).
"""

import struct

import _socket as socket

from vnmlib.errors import VnmError
from vnmlib.host.netlink import describe_errno
from vnmlib.host.netlink.reader import NLM_F_DUMP, NLM_F_REQUEST, _attrs, _ip, _request, _rtattr, _u32

NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30

_RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
_NDMSG = struct.Struct("=BxxxiHBB")   # family ifindex state flags type
_IFADDRMSG = struct.Struct("=BBBBI")  # family prefixlen flags scope index

RTA_DST, RTA_OIF, RTA_TABLE = 1, 4, 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3        # what `ip route add` sets: the reference's routes look the same
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
RTN_UNICAST = 1
NDA_DST = 1
NTF_PROXY = 0x08
NUD_PERMANENT = 0x80
IFA_ADDRESS, IFA_LOCAL = 1, 2

_WRITE = NLM_F_REQUEST | NLM_F_ACK


def _family(address):
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _packed(address):
    return socket.inet_pton(_family(address), address)


def _change(what, msg_type, flags, body):
    try:
        _request(msg_type, flags, body)
    except OSError as exc:
        raise VnmError(f"{what}: {describe_errno(exc.errno)}") from None


def _dump(what, msg_type, body):
    try:
        return _request(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body)
    except OSError as exc:
        raise VnmError(f"cannot read {what}: {describe_errno(exc.errno)}") from None


# -- routes -------------------------------------------------------------------

def host_routes():
    """{address: ifindex} of the IPv4 main table's /32 routes through a device."""
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    found = {}
    for kind, payload in _dump("routes", RTM_GETROUTE, body):
        if kind != RTM_NEWROUTE:
            continue
        _fam, dst_len, _src, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(payload)
        attrs = dict(_attrs(payload, _RTMSG.size, len(payload)))
        if RTA_TABLE in attrs:
            table = _u32(attrs[RTA_TABLE])
        if table == RT_TABLE_MAIN and dst_len == 32 and RTA_DST in attrs and RTA_OIF in attrs:
            found[_ip(attrs[RTA_DST])] = _u32(attrs[RTA_OIF])
    return found


def _route_body(address, ifindex, scope=RT_SCOPE_LINK):
    return (_RTMSG.pack(socket.AF_INET, 32, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope,
                        RTN_UNICAST, 0)
            + _rtattr(RTA_DST, _packed(address)) + _rtattr(RTA_OIF, struct.pack("=I", ifindex)))


def add_host_route(address, ifindex, device):
    """``ip route add <address>/32 dev <device>`` (scope link: the VM is on the wire)."""
    _change(f"cannot add route {address}/32 dev {device}", RTM_NEWROUTE,
            _WRITE | NLM_F_CREATE | NLM_F_EXCL, _route_body(address, ifindex))


def del_host_route(address, ifindex, device):
    # scope "nowhere" as `ip route del` sends: the kernel then matches any scope
    _change(f"cannot delete route {address}/32 dev {device}", RTM_DELROUTE, _WRITE,
            _route_body(address, ifindex, scope=255))


# -- proxy ARP entries -----------------------------------------------------------

def proxy_neighbours():
    """{(address, ifindex)} of the IPv4 proxy entries (``ip neigh show proxy``)."""
    body = _NDMSG.pack(socket.AF_INET, 0, 0, NTF_PROXY, 0)
    found = set()
    for kind, payload in _dump("proxy neighbours", RTM_GETNEIGH, body):
        if kind != RTM_NEWNEIGH:
            continue
        _fam, ifindex, _state, flags, _type = _NDMSG.unpack_from(payload)
        attrs = dict(_attrs(payload, _NDMSG.size, len(payload)))
        if flags & NTF_PROXY and NDA_DST in attrs:
            found.add((_ip(attrs[NDA_DST]), ifindex))
    return found


def _proxy_body(address, ifindex):
    return (_NDMSG.pack(_family(address), ifindex, NUD_PERMANENT, NTF_PROXY, 0)
            + _rtattr(NDA_DST, _packed(address)))


def add_proxy(address, ifindex, device):
    """``ip neigh add proxy <address> dev <device>``: the host answers ARP for it there."""
    _change(f"cannot add proxy ARP entry {address} dev {device}", RTM_NEWNEIGH,
            _WRITE | NLM_F_CREATE | NLM_F_EXCL, _proxy_body(address, ifindex))


def del_proxy(address, ifindex, device):
    _change(f"cannot delete proxy ARP entry {address} dev {device}", RTM_DELNEIGH, _WRITE,
            _proxy_body(address, ifindex))


# -- addresses -------------------------------------------------------------------

def addresses():
    """{(address, prefixlen, ifindex)} of every IPv4 and IPv6 address of the namespace."""
    found = set()
    for kind, payload in _dump("addresses", RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0)):
        if kind != RTM_NEWADDR:
            continue
        _fam, prefixlen, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(payload)
        attrs = dict(_attrs(payload, _IFADDRMSG.size, len(payload)))
        raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
        if raw is not None:
            found.add((_ip(raw), prefixlen, ifindex))
    return found


def _address_body(address, prefixlen, ifindex):
    packed = _packed(address)
    return (_IFADDRMSG.pack(_family(address), prefixlen, 0, RT_SCOPE_UNIVERSE, ifindex)
            + _rtattr(IFA_LOCAL, packed) + _rtattr(IFA_ADDRESS, packed))


def add_address(address, prefixlen, ifindex, device):
    _change(f"cannot add address {address}/{prefixlen} to {device}", RTM_NEWADDR,
            _WRITE | NLM_F_CREATE | NLM_F_EXCL, _address_body(address, prefixlen, ifindex))


def del_address(address, prefixlen, ifindex, device):
    _change(f"cannot remove address {address}/{prefixlen} from {device}", RTM_DELADDR, _WRITE,
            _address_body(address, prefixlen, ifindex))
