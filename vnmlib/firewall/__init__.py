"""Security groups on iptables + ipset: the engine every Linux-bridge driver uses.

fw, 802.1Q and vxlan call :func:`pre` (protection before the tap exists),
:func:`post`, :func:`clean` and :func:`update_sg` (bridged mode); elastic
calls them with ``bridged=False`` (routed mode, reference §7.4). The flow is
one way:

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

from vnmlib.host import port_owner, steps, sysfs
from vnmlib.model.config import DEFAULTS, nic_conf, protects_in_pre
from vnmlib.model.numbers import decimal
from vnmlib.errors import InputError, VnmError
from vnmlib.host.locks import FirewallLock
from vnmlib.firewall import in_place, ipsets, l2guard, recency, transaction
from vnmlib.firewall.layout import FAMILIES, NicFirewall
from vnmlib.firewall.sg_rules import nic_groups, rules_by_group

BACKENDS = ("restore", "iptc", "nft")
TAP_TIMEOUT = 3.0  # the reference's wait_for_interface


def backend_of(conf):
    """The netfilter backend ``conf`` selects: every rule vnm reads or writes goes through it."""
    name = str(conf.get("firewall_backend") or "restore")
    if name == "restore":
        from vnmlib.firewall import backend_restore as backend
    elif name == "iptc":
        from vnmlib.firewall import backend_iptc as backend
    elif name == "nft":
        from vnmlib.firewall import backend_nft as backend
    else:
        raise InputError(f"firewall_backend {name!r} in OpenNebulaNetwork.conf is not one of "
                         f"{', '.join(BACKENDS)}")
    return backend


def _maxelem(conf, nic):
    value = nic_conf(conf, nic).get("ipset_maxelem")
    number = decimal(str(value).strip(), digits=10)
    if number is None or not 1 <= number <= 2 ** 32 - 1:  # the kernel's maxelem is a u32
        raise InputError(f"{nic.label}: ipset_maxelem {value!r} is not a positive integer")
    return number


def _limit(conf, nic, key):
    """A wire limit (``conntrack_limit``: layout.connlimit; ``learned_mac_limit``: l2guard)
    for ``nic``, its network's CONF over the conf file: a count, 0 = none."""
    value = nic_conf(conf, nic).get(key, DEFAULTS[key])
    number = decimal(str(value).strip(), digits=10)
    if number is None or number > 2 ** 32 - 1:  # a u32: what connlimit and nft set sizes hold
        raise InputError(f"{nic.label}: {key} {value!r} is not a non-negative integer")
    return number


def _switch(conf, nic, key):
    """A yes/no setting for ``nic`` (its network's CONF over the conf file); a guard
    is never turned off by a value that is not plainly "no"."""
    value = nic_conf(conf, nic).get(key, DEFAULTS[key])
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise InputError(f"{nic.label}: {key} {value!r} is not true or false")


def plan(ctx, nics, bridged, leaving=None):
    """Validated NicFirewalls for ``nics``; raises before anything is touched."""
    vm = ctx.vm
    groups = rules_by_group(rule.attrs for rule in vm.rules)
    # a NIC's aliases' addresses join its sets and routed jumps
    install = [NicFirewall(vm, nic, vm.aliases_of(nic, leaving), nic_groups(nic, groups),
                           _maxelem(ctx.conf, nic), bridged, vm.tap_name(nic),
                           _limit(ctx.conf, nic, "conntrack_limit"),
                           _limit(ctx.conf, nic, "learned_mac_limit"),
                           (_switch(ctx.conf, nic, "dhcp_server_guard"),
                            _switch(ctx.conf, nic, "ra_guard"))) for nic in nics]
    ipsets.check_sizes(install)  # "Hash is full" would otherwise fail half-way
    return install


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


def _refuse_foreign_taps(vm, nics):
    """A jump matching ``--physdev-in/out <TARGET>`` would put this NIC's chains on the
    traffic of whatever port TARGET (the user's) names: refuse a provably foreign one."""
    for nic in nics:
        port_owner.refuse_foreign_tap(vm, nic, vm.tap_name(nic))


def apply(ctx, install=(), remove=(), started=None, still_unused=None, early=False):
    """Protect ``install`` (NicFirewalls) and drop the chains/sets of ``remove`` bases.

    ``started`` (:func:`.recency.now`, taken before the rules were built): a NIC
    whose applied protection started later is left as it is. ``still_unused``
    (``vnm gc``): asked under the lock about each base to remove, which is kept
    when it says no (its VM came back meanwhile). ``early`` (``pre``): a failed
    commit also takes back the wire guards it added, so nothing is left.
    """
    install, remove = list(install), list(remove)
    if not install and not remove:
        return
    backend = backend_of(ctx.conf)
    log = ctx.log
    with FirewallLock():
        if started is not None:
            install = recency.superseded(install, started, log)
        if still_unused is not None:
            remove = [base for base in remove if still_unused(base)]
        if not install and not remove:
            return
        if getattr(backend, "NATIVE", False):
            # nft: one transaction of its own table (sets included), planned from what it
            # reads of the table (backend_nft.plan)
            planned = transaction.plan_native(backend, install, remove)
            steps.apply([ProtectionChange(ctx, backend, planned, None, install, remove, None,
                                          [], started, early)], log)
            return
        snapshots = transaction.read(backend, transaction.own_chains(install, remove))
        done, guard_only, digests = [], [], {}
        if install and not remove:
            done, guard_only, digests = in_place.check(install, snapshots,
                                                       recency.digests(install))
        if done or guard_only:
            # pre's protection (or an update's unchanged one) is there: nothing rewritten
            steps.apply([ProtectionInPlace(done, guard_only, started, digests)], log)
            return
        existing = ipsets.list_names()
        changes = {f: transaction.plan_family(f, snapshots[f], install, remove)
                   for f in FAMILIES}
        stale = transaction.stale_sets(existing, install, remove)
        # a step like the links' ones: vnm plan shows it, and only steps.apply applies it
        steps.apply([ProtectionChange(ctx, backend, changes, snapshots, install, remove,
                                      existing, stale, started, early, digests)], log)


class ProtectionChange(steps.Step):
    """The firewall's part of an action as one step: L2 guards, sets and rules of both
    families committed together (:func:`.commit.run`), recency records, conntrack cut.

    It undoes itself when it fails (the commit rolls back from its snapshot), so
    it has no :meth:`undo` of its own.
    """

    def __init__(self, ctx, backend, changes, snapshots, install, remove, existing, stale,
                 started, early=False, digests=None):
        self.ctx, self.backend, self.changes, self.snapshots = ctx, backend, changes, snapshots
        self.install, self.remove, self.existing, self.stale = install, remove, existing, stale
        self.started, self.early = started, early
        # {chain: digest} recorded once the commit went in (:mod:`.in_place`)
        self.digests = digests or {}

    def apply(self, nl):
        # imported here: a post that finds pre's protection in place needs neither
        from vnmlib.firewall import commit, conntrack_cut

        install, remove = self.install, self.remove
        guards = [nf.guard for nf in install if nf.guard]
        absent = [g for g in guards if not sysfs.exists(g.tap)]
        with recency.recorded(install, remove, self.started or recency.now(), self.digests):
            if getattr(self.backend, "NATIVE", False) and not absent:
                # nft: the wire guards go in the table's own transaction, so they and the
                # chains go in together (only those not already as wanted: see
                # guards_script)
                commit.run(self.backend, self.changes, None, install, remove, None, [],
                           self.ctx.log, guards=self.backend.guards_script(guards, remove))
            else:
                self._guarded_commit(commit, guards, absent)
                l2guard.apply(remove=remove)
        # under the lock: a later update's wider rules must not be cut by ours
        conntrack_cut.after_commit(self.ctx, install, remove)

    def _guarded_commit(self, commit, guards, absent):
        """The guards, then the commit: the wire guard first and gone last, never chains
        without it. A guard whose tap is ``absent`` may go in its interim table
        (:func:`.l2guard.apply`), which needs its own transaction."""
        added = l2guard.missing(guards) if self.early and guards else []
        l2guard.apply(install=guards, absent=absent)
        try:
            commit.run(self.backend, self.changes, self.snapshots, self.install, self.remove,
                       self.existing, self.stale, self.ctx.log)
        except BaseException:
            # the commit put the rules back as they were: the guards too
            l2guard.apply(remove=[g.table for g in added])
            raise

    def describe(self):
        lines = []
        for nf in self.install:
            rules = sum(len(r) for f in FAMILIES for r in nf.rules[f].values())
            lines.append(f"{nf.label}: protection of {nf.tap} applied ({nf.chain_in}/-o: "
                         f"{rules} rules, {len(nf.sets)} ipsets)")
        lines += [f"{base}: protection removed (chains, jumps, ipsets)" for base in self.remove]
        return "\n".join(lines)


class ProtectionInPlace(steps.Step):
    """NICs whose protection :mod:`.in_place` found whole: their start time recorded
    (a later-started update still wins, an earlier one still loses), and the wire
    guard written for those whose rules and sets were there but not their guard."""

    def __init__(self, done, guard_only, started, digests):
        self.done, self.guard_only, self.started, self.digests = done, guard_only, started, digests

    def apply(self, nl):
        if self.guard_only:
            # one nft transaction: the old guard or the new one, never none
            guards = [nf.guard for nf in self.guard_only]
            l2guard.apply(install=guards, absent=[g for g in guards if not sysfs.exists(g.tap)])
        recency.confirm(self.done + self.guard_only, self.started or recency.now(),
                        self.digests)

    def describe(self):
        lines = [f"{nf.label}: protection of {nf.tap} in place" for nf in self.done]
        lines += [f"{nf.label}: protection of {nf.tap} in place, its wire guard written"
                  for nf in self.guard_only]
        return "\n".join(lines)


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
        parent = ctx.vm.alias_parent(plugged, driver)
        if parent is not None:
            return "alias", plugged, parent
    return "other", None, None


def post(ctx, bridged=True):
    """Protect the driver's NICs (only the hot-plugged one, or an alias's parent)."""
    started = recency.now()
    kind, plugged, parent = _hotplug(ctx, ctx.driver)
    if kind == "other":
        return
    nics = ctx.vm.driver_nics(ctx.driver) if kind is None else [parent or plugged]
    install = plan(ctx, nics, bridged)
    if bridged:
        _wait_for_taps(install)
        _refuse_foreign_taps(ctx.vm, nics)
    apply(ctx, install=install, started=started)


def pre(ctx, attach, release, bridged=True):
    """``pre`` of a protected driver: ``attach()`` the links, then protect the NICs at once.

    The rules match the tap by name (``--physdev-in/out``, the guard's device
    or ``iifname``), so they are in place before the hypervisor creates the
    tap and the VM's first frame meets them; ``post`` then only re-checks
    them. Live migration runs ``pre`` on the destination before the VM runs
    there, a hot-plug before the NIC is plugged: both are protected as early.
    Every rule is validated before anything changes; if protecting fails,
    ``release()`` undoes the links (the firewall commit undoes itself), so a
    failed ``pre`` leaves nothing. ``:protect_in_pre: false`` keeps the
    reference's timing (protection from ``post`` on).
    """
    if not protects_in_pre(ctx.conf):
        attach()
        return
    started = recency.now()
    kind, plugged, parent = _hotplug(ctx, ctx.driver)
    nics = [] if kind == "other" else (
        ctx.vm.driver_nics(ctx.driver) if kind is None else [parent or plugged])
    install = plan(ctx, nics, bridged)
    if bridged:
        # as in post: the jumps would match whatever TARGET names, existing or to come
        _refuse_foreign_taps(ctx.vm, nics)
    attach()
    if not install:
        return
    try:
        apply(ctx, install=install, started=started, early=True)
    except BaseException:
        try:
            release()
        except VnmError as exc:  # the protection's failure is the one to report
            ctx.log.warning(f"undoing pre's links failed too: {exc}")
        raise


def clean(ctx, bridged=True):
    """Remove the protection of the driver's NICs; a detached alias leaves its parent's."""
    started = recency.now()
    kind, plugged, parent = _hotplug(ctx, ctx.driver)
    if kind == "other":
        return
    if kind == "alias":
        apply(ctx, install=plan(ctx, [parent], bridged, leaving=plugged), started=started)
        return
    nics = ctx.vm.driver_nics(ctx.driver) if kind is None else [plugged]
    apply(ctx, remove=[f"one-{ctx.vm.id}-{nic.nic_id}" for nic in nics])


def update_sg(ctx, bridged=True):
    """Rebuild every NIC of the driver, hot-plug or not (reference ``activate(true)``).

    Of two updates of one NIC, the one that started last wins (:mod:`.recency`),
    whichever reaches the firewall lock first.
    """
    started = recency.now()  # before the VM is read and its rules built
    install = plan(ctx, ctx.vm.driver_nics(ctx.driver), bridged)
    if bridged:
        _wait_for_taps(install)
        _refuse_foreign_taps(ctx.vm, ctx.vm.driver_nics(ctx.driver))
    apply(ctx, install=install, started=started)
