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
"""

import re

from vnmlib import firewall
from vnmlib.errors import VnmError
from vnmlib.host.locks import FirewallLock
from vnmlib.elastic import nat, routed
from vnmlib.elastic.routed import ReplaceNat
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


def claimed(backend, skip):
    """[(chain, Ports)] forwarded by the NICs' dnat chains other than ``skip``."""
    chains = sorted({hook_target for hook, hook_target in nat.read_jumps(backend)
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


def check_free(backend, targets):
    """Refuse a target whose host ports another NIC (or another target) forwards already."""
    ours = {nat.chain(t.base, "dnat") for t in targets}
    with FirewallLock():
        taken = claimed(backend, ours)
    for t in targets:
        for chain, ports in taken:
            if ports.overlaps(t.external):
                raise VnmError(f"{t.label}: EXTERNAL_PORT_RANGE {t.external} overlaps the "
                               f"host ports {ports}, forwarded to {_owner(chain)} already")
        taken.append((nat.chain(t.base, "dnat"), t.external))


def plan_up(view, targets, backend):
    planned = []
    for t in targets:
        planned += routed.plan_reach(view, t)
        planned.append(ReplaceNat(t.base, rules(t), t.label, backend))
    return planned


def plan_down(view, users, targets, backend):
    planned = []
    for t in targets:
        planned.append(ReplaceNat(t.base, {}, t.label, backend))
        planned += routed.plan_unreach(view, users, t)
    return planned


def up(ctx, targets):
    """post: no host port taken twice, then routed security groups, route, proxy ARP, nat."""
    backend = firewall.backend_of(ctx.conf)
    check_free(backend, targets)
    routed.up(ctx, targets, [t.bridge for t in targets],
              lambda view: plan_up(view, targets, backend), "nodeport")


def down(ctx, targets):
    """clean: unreachable first (nat, route, proxy ARP when last), then the security groups."""
    backend = firewall.backend_of(ctx.conf)
    routed.down(ctx, [t.bridge for t in targets],
                lambda view, users: plan_down(view, users, targets, backend))
