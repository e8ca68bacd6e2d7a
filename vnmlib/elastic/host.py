"""The host side of an elastic IP: ``remote_post`` and ``remote_clean`` (reference §6, §2.8).

``up`` protects first and exposes after: the routed security groups (§7.4)
are in place before the ``<IP>/32`` route, the proxy-ARP entry for the
``GATEWAY`` and the provider's operations make the VM reachable; if any of
those fails, what was applied is undone, and the security groups too unless
``pre`` installed them (:func:`vnmlib.elastic.routed.up`): a failed
``remote_post`` leaves only what was there before it. ``down`` goes the other way:
unreachable first, then unprotected.

The routes, the shared proxy-ARP entries and the nat chains are the
routed mechanism elastic shares with nodeport (:mod:`vnmlib.elastic.routed`).
"""

from vnmlib import firewall
from vnmlib.errors import VnmError
from vnmlib.elastic import hostops, routed
from vnmlib.elastic.routed import ReplaceNat, interface_address


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


def plan_up(view, targets, ops_of, backend):
    """Steps making ``targets`` reachable (their proxy-ARP records are written by the caller)."""
    planned = []
    for t in targets:
        planned += routed.plan_reach(view, t)
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
        planned += routed.plan_unreach(view, users, t)
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
    routed.up(ctx, targets, _devices(targets, ops_of),
              lambda view: plan_up(view, targets, ops_of, backend), "elastic")


def down(ctx, targets, provider):
    """remote_clean: unreachable first (nat, route, proxy ARP, addresses), then the SGs."""
    ops_of = {t.base: _host_ops(provider, t) for t in targets}
    backend = firewall.backend_of(ctx.conf)
    routed.down(ctx, _devices(targets, ops_of),
                lambda view, users: plan_down(view, users, targets, ops_of, backend))
