"""A VM reached through the host's routing: what elastic and nodeport share.

Both drivers route ``<IP>/32`` to the NIC's bridge and proxy-ARP its
``GATEWAY`` there (reference §2.8), keep the NIC's NAT in its own chains
(:mod:`vnmlib.elastic.nat`) and put the routed security groups (§7.4) in
place before the VM becomes reachable. The steps, the host view they plan
from and the shared proxy-ARP records live here; each driver adds its own
NAT rules.

A gateway's proxy-ARP entry on a bridge is shared by every routed NIC
behind it, whichever of the two drivers it belongs to: each NIC records
itself (:class:`vnmlib.host.locks.BridgeUsers`, kind "proxy-arp"), and the
entry goes with the last record (the reference deleted it with the first VM
to leave, cutting the others off from their gateway).

A target is any object with ``label``, ``base`` (``one-<vm>-<nic>``),
``user`` (``<vm>-<nic>``), ``bridge``, ``ip`` and ``gateway``.
"""

from vnmlib import firewall
from vnmlib.errors import VnmError
from vnmlib.host import steps
from vnmlib.host.change import change_links
from vnmlib.host.locks import BridgeUsers
from vnmlib.host.netlink import reader, routing
from vnmlib.elastic import nat

RECORDS = "proxy-arp"


def _index(device):
    link = reader.link(device)
    if link is None:
        raise VnmError(f"link {device} does not exist")
    return link.index


# kind -> (iproute2's word for it, add, delete): what a routed NIC adds to the host
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


class HostView:
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


def proxy_key(target):
    return f"{target.gateway}%{target.bridge}"


def plan_reach(view, target):
    """The route to ``target.ip`` through its bridge and the gateway's proxy-ARP entry."""
    t, planned = target, []
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
    return planned


def plan_unreach(view, users, target):
    """The route removed, and the proxy-ARP entry with the last NIC recorded behind it;
    drops ``target``'s record."""
    t, planned = target, []
    index = view.index(t.bridge)
    if index is not None and view.routes.get(t.ip) == index:
        planned.append(host_route(t.ip, t.bridge, t.label, add=False))
        del view.routes[t.ip]
    users.remove(proxy_key(t), t.user)
    if index is not None and (t.gateway, index) in view.proxies \
            and not users.users(proxy_key(t)):
        planned.append(proxy_arp(t.gateway, t.bridge, t.label, add=False))
        view.proxies.discard((t.gateway, index))
    return planned


def _protected(backend, bases):
    """Those of ``bases`` (``one-<vm>-<nic>``) whose security-group chains exist: a
    read of these chains only, whatever else the host protects."""
    if getattr(backend, "NATIVE", False):  # nft: its footprints, or the table's chain names
        return backend.protected(bases)
    keys = {base: (4, "filter", f"{base}-o") for base in bases}
    listed = backend.list_rules(keys.values())
    return {base for base, key in keys.items() if listed[key] is not None}


def up(ctx, targets, devices, plan, what):
    """Routed security groups, then ``plan(view)``'s steps under the ``devices``' locks
    with the targets' proxy-ARP records written.

    A failure undoes only what this action added: the groups of NICs that had none
    before are removed; a NIC ``pre`` protected keeps its protection (the VM exists
    and may run; oned's clean removes it), as it does after any failed ``post``.
    """
    backend = firewall.backend_of(ctx.conf)
    bases = [f"one-{ctx.vm.id}-{nic.nic_id}" for nic in ctx.vm.driver_nics(ctx.driver)]
    before = _protected(backend, bases)
    firewall.post(ctx, bridged=False)
    try:
        change_links(ctx.log, devices, plan, read=HostView,
                     users=[(proxy_key(t), t.user) for t in targets], records=RECORDS)
    except BaseException:
        added = sorted(_protected(backend, bases) - before)
        if added:
            firewall.apply(ctx, remove=added)
            ctx.log.info(f"rolled back: security groups of the {what} NICs "
                         f"{', '.join(added)} removed")
        raise


def down(ctx, devices, plan):
    """Unreachable first (``plan(view, users)``'s steps), then the security groups removed."""
    change_links(ctx.log, devices, lambda view: plan(view, BridgeUsers(RECORDS)), read=HostView)
    firewall.clean(ctx, bridged=False)
