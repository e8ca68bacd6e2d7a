"""Security groups on iptables + ipset: the engine every Linux-bridge driver uses.

fw, 802.1Q and vxlan call :func:`post`, :func:`clean` and :func:`update_sg`
(bridged mode); elastic calls them with ``bridged=False`` (routed mode,
reference §7.4). The flow is one way:

1. every rule of the VM and every NIC attribute is validated and each NIC's
   wanted protection built (:mod:`.layout`), before anything changes;
2. under the namespace's firewall lock: the relevant chains are read, one
   transaction per family planned (:mod:`.transaction`), ipsets loaded
   (:mod:`.ipsets`), the transactions committed by the configured backend
   (``restore`` or ``iptc``), and ipsets nothing references any more destroyed.

So a bad rule fails the action with the rule named and the previous
protection untouched (the reference tore it down first and left the VM open,
#6759), and at no instant is a NIC's traffic unfiltered.
"""

import time

from .. import sysfs
from ..config import nic_conf
from ..errors import InputError, VnmError
from ..locks import FirewallLock
from . import ipsets, transaction
from .layout import FAMILIES, NicFirewall
from .sg_rules import nic_groups, rules_by_group

BACKENDS = ("restore", "iptc")
TAP_TIMEOUT = 3.0  # the reference's wait_for_interface


def _backend(conf):
    name = str(conf.get("firewall_backend") or "restore")
    if name == "restore":
        from . import backend_restore as backend
    elif name == "iptc":
        from . import backend_iptc as backend
    else:
        raise InputError(f"firewall_backend {name!r} in OpenNebulaNetwork.conf is not one of "
                         f"{', '.join(BACKENDS)}")
    return backend


def _maxelem(conf, nic):
    value = nic_conf(conf, nic).get("ipset_maxelem")
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise InputError(f"{nic.label}: ipset_maxelem {value!r} is not a positive integer")
    return number


def _aliases(vm, nic, leaving=None):
    """The NIC's aliases (their addresses join its sets and routed jumps)."""
    parent = str(nic.nic_id)
    return [a for a in vm.aliases if a.get("PARENT_ID") == parent and a is not leaving]


def plan(ctx, nics, bridged, leaving=None):
    """Validated NicFirewalls for ``nics``; raises before anything is touched."""
    vm = ctx.vm
    groups = rules_by_group(rule.attrs for rule in vm.rules)
    return [NicFirewall(vm, nic, _aliases(vm, nic, leaving), nic_groups(nic, groups),
                        _maxelem(ctx.conf, nic), bridged, vm.tap_name(nic)) for nic in nics]


def _wait_for_taps(install):
    """post runs right after the hypervisor made the taps; give a slow one 3 s."""
    deadline = time.monotonic() + TAP_TIMEOUT
    for nf in install:
        delay = 0.01
        while not sysfs.exists(nf.tap):
            if time.monotonic() >= deadline:
                raise VnmError(f"{nf.label}: tap {nf.tap} does not exist; cannot apply its "
                               "security groups")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def apply(ctx, install=(), remove=()):
    """Protect ``install`` (NicFirewalls) and drop the chains/sets of ``remove`` bases."""
    install, remove = list(install), list(remove)
    if not install and not remove:
        return
    backend = _backend(ctx.conf)
    log = ctx.log
    with FirewallLock():
        snapshots = backend.read()
        existing = ipsets.list_names()
        changes = {f: transaction.plan_family(f, snapshots[f], install, remove)
                   for f in FAMILIES}
        stale = transaction.stale_sets(existing, install, remove)
        from .. import plan

        if plan.active():  # vnm plan: the lines below are the plan, nothing is done
            log = _PlanLog()
        else:
            ipsets.load(install, existing)
            backend.commit(changes)
            ipsets.destroy(stale, ctx.log)
    _log_applied(log, install, remove)


class _PlanLog:
    def info(self, line):
        from .. import plan

        plan.record(line)


def _log_applied(log, install, remove):
    for nf in install:
        rules = sum(len(r) for f in FAMILIES for r in nf.rules[f].values())
        log.info(f"{nf.label}: protection of {nf.tap} applied ({nf.chain_in}/-o: "
                 f"{rules} rules, {len(nf.sets)} ipsets)")
    for base in remove:
        log.info(f"{base}: protection removed (chains, jumps, ipsets)")


def _own_nic(vm, driver, nic_id):
    for nic in vm.driver_nics(driver):
        if nic.get("NIC_ID") == nic_id:
            return nic
    return None


def _hotplug(ctx, driver):
    """(kind, element, parent NIC) of an ATTACH=YES element concerning ``driver``.

    A hot-plugged alias of one of our NICs changes its parent's protection;
    anything else hot-plugged (another driver's NIC, a PCI device) is not
    ours: nothing to do (reference SGDriver, §5.4).
    """
    plugged = ctx.vm.hotplugged()
    if plugged is None:
        return None, None, None
    if plugged.kind == "NIC":
        return ("nic", plugged, None) if plugged.vn_mad == driver else ("other", None, None)
    if plugged.kind == "NIC_ALIAS":
        parent = _own_nic(ctx.vm, driver, plugged.get("PARENT_ID"))
        if parent is not None:
            return "alias", plugged, parent
    return "other", None, None


def post(ctx, bridged=True):
    """Protect the driver's NICs (only the hot-plugged one, or an alias's parent)."""
    kind, plugged, parent = _hotplug(ctx, ctx.driver)
    if kind == "other":
        return
    nics = ctx.vm.driver_nics(ctx.driver) if kind is None else [parent or plugged]
    install = plan(ctx, nics, bridged)
    if bridged:
        _wait_for_taps(install)
    apply(ctx, install=install)


def clean(ctx, bridged=True):
    """Remove the protection of the driver's NICs; a detached alias leaves its parent's."""
    kind, plugged, parent = _hotplug(ctx, ctx.driver)
    if kind == "other":
        return
    if kind == "alias":
        apply(ctx, install=plan(ctx, [parent], bridged, leaving=plugged))
        return
    nics = ctx.vm.driver_nics(ctx.driver) if kind is None else [plugged]
    apply(ctx, remove=[f"one-{ctx.vm.id}-{nic.nic_id}" for nic in nics])


def update_sg(ctx, bridged=True):
    """Rebuild every NIC of the driver, hot-plug or not (reference ``activate(true)``)."""
    install = plan(ctx, ctx.vm.driver_nics(ctx.driver), bridged)
    if bridged:
        _wait_for_taps(install)
    apply(ctx, install=install)
