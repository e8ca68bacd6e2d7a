"""nodeport's ``post`` and ``clean`` on the host (reference §2.8).

Per NIC: ``<IP>/32`` routed to the bridge, the ``GATEWAY`` proxy-ARPed on it
(shared with every routed NIC behind it), and two nat chains written in one
transaction of the configured firewall backend (:mod:`vnmlib.elastic.nat`):
``one-<vm>-<nic>-dnat`` forwards the host's ``EXTERNAL_PORT_RANGE`` (TCP, as
the reference) to ``IP:INTERNAL_PORT_RANGE``, ``one-<vm>-<nic>-snat``
masquerades what the VM sends. Only connections addressed to the host itself
are forwarded (the reference's rule took any packet with that destination
port, the VMs' own connections to other hosts included).

Protect first, expose after, as elastic: the routed security groups (§7.4)
go in before the route; a failure removes what was applied and the groups.
The nat chains of all the action's NICs are one step (:class:`ForwardPorts`):
one read of the nat table's jumps, one transaction.
"""

import re

from vnmlib import firewall
from vnmlib.errors import VnmError
from vnmlib.elastic import nat, routed
from vnmlib.host import steps
from vnmlib.host.locks import FirewallLock
from vnmlib.nodeport.targets import Ports

_DNAT_CHAIN = re.compile(r"one-([0-9]+)-([0-9]+)-dnat")


def rules(target):
    """{"dnat": [tokens], "snat": [tokens]} of ``target``, as ``iptables -S`` prints them."""
    external, internal = target.external, target.internal
    # a range maps port for port: "/<external first>" shifts each host port onto its
    # own VM port (iptables' DNAT base port)
    to = (f"{target.ip}:{internal.first}" if len(internal) == 1 else
          f"{target.ip}:{internal.first}-{internal.last}/{external.first}")
    dnat = ("-p", "tcp", "-m", "addrtype", "--dst-type", "LOCAL", "-m", "tcp",
            "--dport", str(external), "-j", "DNAT", "--to-destination", to)
    return {"dnat": [dnat], "snat": [("-s", f"{target.ip}/32", "-j", "MASQUERADE")]}


def _forwarded(tokens):
    """The TCP host ports a listed DNAT rule forwards, or None."""
    if "DNAT" not in tokens or "--dport" not in tokens or "tcp" not in tokens:
        return None
    at = tokens.index("--dport") + 1
    first, _, last = tokens[at].partition(":") if at < len(tokens) else ("", "", "")
    if not (first.isdigit() and (last or first).isdigit()):
        return None  # not a rule nodeport writes
    return Ports(int(first), int(last or first))


def claimed(backend, jumps, skip):
    """[(chain, Ports)] forwarded by the NICs' dnat chains other than ``skip``
    (their names from ``jumps``, the nat table's jumps)."""
    chains = sorted({hook_target for hook, hook_target in jumps
                     if hook == "PREROUTING" and _DNAT_CHAIN.fullmatch(hook_target)
                     and hook_target not in skip})
    listed = backend.list_rules([(4, "nat", name) for name in chains]) if chains else {}
    found = []
    for (_family, _table, name), listing in sorted(listed.items()):
        for tokens in listing or ():
            ports = _forwarded(tokens)
            if ports is not None:
                found.append((name, ports))
    return found


def _owner(chain):
    vm_id, nic_id = _DNAT_CHAIN.fullmatch(chain).groups()
    return f"VM {vm_id} NIC {nic_id}"


def check_free(backend, jumps, targets):
    """Refuse a target whose host ports another NIC (or another target) forwards already."""
    taken = claimed(backend, jumps, {nat.chain(t.base, "dnat") for t in targets})
    for t in targets:
        for chain, ports in taken:
            if ports.overlaps(t.external):
                raise VnmError(f"{t.label}: EXTERNAL_PORT_RANGE {t.external} overlaps the "
                               f"host ports {ports}, forwarded to {_owner(chain)} already")
        taken.append((nat.chain(t.base, "dnat"), t.external))


class ForwardPorts(steps.Step):
    """Every target's nat chains set (``expose``) or removed, in one transaction.

    Under one firewall lock the nat table's jumps are read once: they name the
    other NICs' dnat chains for the check that no host port is forwarded twice,
    and tell the operations which jumps exist. The check is part of the step,
    so it holds until the rules are written; refused, the steps before it
    (route, proxy ARP) are undone and the security groups removed.
    """

    def __init__(self, targets, backend, expose=True):
        self.targets, self.backend, self.expose = targets, backend, expose
        self.changed = None  # unknown until applied

    def describe(self):
        if self.expose:
            return "; ".join(f"nat chains {t.base}-dnat/-snat: TCP host ports {t.external} -> "
                             f"{t.ip}:{t.internal.first}-{t.internal.last}, masquerade"
                             for t in self.targets)
        if self.changed is False:
            return "nat chains: none present, nothing to change"
        return "; ".join(f"nat chains {t.base}-dnat/-snat removed" for t in self.targets)

    def apply(self, nl):
        with FirewallLock():
            jumps = nat.read_jumps(self.backend)
            if self.expose:
                check_free(self.backend, jumps, self.targets)
            ops = []
            for t in self.targets:
                if self.expose or any(name.startswith(f"{t.base}-") for _, name in jumps):
                    ops += nat.operations(t.base, rules(t) if self.expose else {}, jumps)
            self.changed = bool(ops)
            if not ops:
                return
            why = self.backend.apply_tables({(4, "nat"): ops})[(4, "nat")]
        if why:
            raise VnmError(f"nat chains of {', '.join(t.label for t in self.targets)}: {why}")

    def undo(self):
        return ForwardPorts(self.targets, self.backend, expose=False) if self.expose else None


def plan_up(view, targets, backend):
    planned = []
    for t in targets:
        planned += routed.plan_reach(view, t)
    return planned + [ForwardPorts(targets, backend)]


def plan_down(view, users, targets, backend):
    planned = [ForwardPorts(targets, backend, expose=False)]
    for t in targets:
        planned += routed.plan_unreach(view, users, t)
    return planned


def up(ctx, targets):
    """post: routed security groups, route, proxy ARP, then the nat chains once no host
    port is taken twice (else all of it undone)."""
    backend = firewall.backend_of(ctx.conf)
    routed.up(ctx, targets, [t.bridge for t in targets],
              lambda view: plan_up(view, targets, backend), "nodeport")


def down(ctx, targets):
    """clean: unreachable first (nat, route, proxy ARP when last), then the security groups."""
    backend = firewall.backend_of(ctx.conf)
    routed.down(ctx, [t.bridge for t in targets],
                lambda view, users: plan_down(view, users, targets, backend))
