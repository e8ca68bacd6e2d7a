"""The host side of an elastic IP: ``remote_post`` and ``remote_clean`` (reference §6, §2.8).

``up`` protects first and exposes after: the routed security groups (§7.4)
are in place before the ``<IP>/32`` route, the proxy-ARP entry for the
``GATEWAY`` and the provider's operations make the VM reachable; if any of
those fails, what was applied is undone and the security groups removed, so
a failed ``remote_post`` leaves nothing behind. ``down`` goes the other way:
unreachable first, then unprotected.

A gateway's proxy-ARP entry on a bridge is shared by every elastic NIC
behind it: each NIC records itself (:class:`vnmlib.host.locks.BridgeUsers`, kind
"proxy-arp"), and the entry goes with the last record (the reference deleted
it with the first VM to leave, cutting the others off from their gateway).
"""

from vnmlib import firewall
from vnmlib.host import steps
from vnmlib.errors import VnmError
from vnmlib.host.change import change_links
from vnmlib.host.locks import BridgeUsers
from vnmlib.host.netlink import reader, routing
from vnmlib.elastic import hostops, nat


def _index(device):
    link = reader.link(device)
    if link is None:
        raise VnmError(f"link {device} does not exist")
    return link.index


# kind -> (iproute2's word for it, add, delete): the three things remote_post adds
_KINDS = {
    "route": ("route", routing.add_host_route, routing.del_host_route),
    "proxy": ("neigh", routing.add_proxy, routing.del_proxy),
    "address": ("addr", routing.add_address, routing.del_address),
}


class Routing(steps.Step):
    """A host route, proxy-ARP entry or address added (or deleted) on ``device``.

    ``args`` are the routing function's leading arguments, ``shown`` the object
    as ``ip`` writes it (``10.9.0.10/32``, ``proxy 10.9.0.1``).
    """

    def __init__(self, kind, add, args, shown, device, origin):
        self.kind, self.add, self.args, self.shown = kind, add, args, shown
        self.device, self.origin = device, origin

    def describe(self):
        word = _KINDS[self.kind][0]
        return f"ip {word} {'add' if self.add else 'del'} {self.shown} dev {self.device}"

    def apply(self, nl):
        change = _KINDS[self.kind][1 if self.add else 2]
        change(*self.args, _index(self.device), self.device)

    def undo(self):
        if not self.add:
            return None
        return Routing(self.kind, False, self.args, self.shown, self.device, self.origin)


def host_route(address, device, origin, add=True):
    return Routing("route", add, (address,), f"{address}/32", device, origin)


def proxy_arp(address, device, origin, add=True):
    return Routing("proxy", add, (address,), f"proxy {address}", device, origin)


def interface_address(op, origin, add=True):
    return Routing("address", add, (op.address, op.prefixlen), f"{op.address}/{op.prefixlen}",
                   op.device, origin)


class ReplaceNat(steps.Step):
    """The NIC's nat chains set to ``rules`` (empty: removed)."""

    def __init__(self, base, rules, origin, backend):
        self.base, self.rules, self.origin = base, rules, origin
        self.backend = backend  # the security groups' own: one VM's rules in one place
        self.changed = None  # unknown until applied

    def describe(self):
        if self.changed is False:
            return f"nat chains {self.base}-dnat/-snat: none present, nothing to change"
        counts = ", ".join(f"{len(r)} {kind}" for kind, r in self.rules.items() if r)
        return (f"nat chains {self.base}-dnat/-snat: {counts}" if counts
                else f"nat chains {self.base}-dnat/-snat removed")

    def apply(self, nl):
        self.changed = nat.replace(self.base, self.rules, self.backend)

    def undo(self):
        return ReplaceNat(self.base, {}, self.origin, self.backend) if self.changed else None


class _HostView:
    """The namespace's routes, proxy entries and addresses, read once per action."""

    def __init__(self):
        self.routes = routing.host_routes()
        self.proxies = routing.proxy_neighbours()
        self.addresses = routing.addresses()
        self._links = {}

    def index(self, device):
        if device not in self._links:
            link = reader.link(device)
            self._links[device] = link.index if link else None
        return self._links[device]


def _host_ops(provider, target):
    """The provider's operations for ``target``, type-checked."""
    activate = getattr(provider, "activate", None)
    ops = list(activate(target.ip, target.external_ip, target.opts()) or []) if activate else []
    for op in ops:
        if not isinstance(op, (hostops.Address, hostops.Dnat, hostops.Snat)):
            raise VnmError(f"{target.label}: provider {provider.name!r} asked for {op!r}, "
                           "which is not a vnmlib.elastic.hostops operation")
    return ops


def _nat_rules(ops):
    return {"dnat": [op.rule() for op in ops if isinstance(op, hostops.Dnat)],
            "snat": [op.rule() for op in ops if isinstance(op, hostops.Snat)]}


def _devices(targets, ops_of):
    return [t.bridge for t in targets] + [op.device for t in targets for op in ops_of[t.base]
                                          if isinstance(op, hostops.Address)]


def _proxy_key(target):
    return f"{target.gateway}%{target.bridge}"


def plan_up(view, targets, ops_of, backend):
    """Steps making ``targets`` reachable (their proxy-ARP records are written by the caller)."""
    planned = []
    for t in targets:
        index = view.index(t.bridge)
        if index is None:
            raise VnmError(f"{t.label}: bridge {t.bridge} does not exist (pre has not run?)")
        through = view.routes.get(t.ip)
        if through is None:
            planned.append(host_route(t.ip, t.bridge, t.label))
            view.routes[t.ip] = index
        elif through != index:
            raise VnmError(f"{t.label}: a route to {t.ip}/32 already goes through another "
                           f"device (ifindex {through}), not {t.bridge}")
        if (t.gateway, index) not in view.proxies:
            planned.append(proxy_arp(t.gateway, t.bridge, t.label))
            view.proxies.add((t.gateway, index))
        for op in ops_of[t.base]:
            if not isinstance(op, hostops.Address):
                continue
            device = view.index(op.device)
            if device is None:
                raise VnmError(f"{t.label}: provider interface {op.device} does not exist")
            if (op.address, op.prefixlen, device) not in view.addresses:
                planned.append(interface_address(op, t.label))
                view.addresses.add((op.address, op.prefixlen, device))
        rules = _nat_rules(ops_of[t.base])
        if any(rules.values()):
            planned.append(ReplaceNat(t.base, rules, t.label, backend))
    return planned


def plan_down(view, users, targets, ops_of, backend):
    """Steps making ``targets`` unreachable; drops their proxy-ARP records."""
    planned = []
    for t in targets:
        planned.append(ReplaceNat(t.base, {}, t.label, backend))
        index = view.index(t.bridge)
        if index is not None and view.routes.get(t.ip) == index:
            planned.append(host_route(t.ip, t.bridge, t.label, add=False))
            del view.routes[t.ip]
        users.remove(_proxy_key(t), t.user)
        if index is not None and (t.gateway, index) in view.proxies \
                and not users.users(_proxy_key(t)):
            planned.append(proxy_arp(t.gateway, t.bridge, t.label, add=False))
            view.proxies.discard((t.gateway, index))
        for op in ops_of[t.base]:
            device = view.index(op.device) if isinstance(op, hostops.Address) else None
            if device is not None and (op.address, op.prefixlen, device) in view.addresses:
                planned.append(interface_address(op, t.label, add=False))
                view.addresses.discard((op.address, op.prefixlen, device))
    return planned


def up(ctx, targets, provider):
    """remote_post: routed security groups, then routes, proxy ARP, provider operations."""
    ops_of = {t.base: _host_ops(provider, t) for t in targets}
    backend = firewall.backend_of(ctx.conf)
    firewall.post(ctx, bridged=False)
    try:
        change_links(ctx.log, _devices(targets, ops_of),
                     lambda view: plan_up(view, targets, ops_of, backend), read=_HostView,
                     users=[(_proxy_key(t), t.user) for t in targets], records="proxy-arp")
    except BaseException:
        firewall.clean(ctx, bridged=False)
        ctx.log.info("rolled back: security groups of the elastic NICs removed")
        raise


def down(ctx, targets, provider):
    """remote_clean: unreachable first (nat, route, proxy ARP, addresses), then the SGs."""
    ops_of = {t.base: _host_ops(provider, t) for t in targets}
    backend = firewall.backend_of(ctx.conf)
    change_links(ctx.log, _devices(targets, ops_of),
                 lambda view: plan_down(view, BridgeUsers("proxy-arp"), targets, ops_of, backend),
                 read=_HostView)
    firewall.clean(ctx, bridged=False)
