"""A NIC's NAT rules in the nat table: its own chains, replaced in one transaction.

``one-<vm>-<nic>-dnat`` is jumped to from PREROUTING (traffic arriving for the
external address) and OUTPUT (the host itself connecting to it);
``one-<vm>-<nic>-snat`` from POSTROUTING. One transaction of the configured
firewall backend (the security groups' own, so a VM's rules never land in
two: ``iptables-restore -n``, or one libiptc commit) declares (creates or
flushes) and fills them and adds the missing jumps at once, so a re-run
converges and a removal takes chains and jumps in one step.
"""

from vnmlib.errors import VnmError
from vnmlib.host.locks import FirewallLock

JUMPS = {"dnat": ("PREROUTING", "OUTPUT"), "snat": ("POSTROUTING",)}
HOOK_CHAINS = ("PREROUTING", "OUTPUT", "POSTROUTING")


def chain(base, kind):
    return f"{base}-{kind}"


def read_jumps(backend):
    """{(hook chain, target)} of the nat table's plain ``-j`` rules in the hook chains."""
    listed = backend.list_rules([(4, "nat", hook) for hook in HOOK_CHAINS])
    return {(hook, tokens[1]) for (_f, _t, hook), rules in listed.items()
            for tokens in rules or () if len(tokens) == 2 and tokens[0] == "-j"}


def operations(base, rules, jumps):
    """The nat table operations making ``base``'s chains hold ``rules``
    ({kind: [tokens]}, empty: none), in the backends' vocabulary."""
    ops = []
    for kind, hooks in JUMPS.items():
        name = chain(base, kind)
        ops.append(("chain", name))  # declaring creates or flushes it
        wanted = rules.get(kind) or []
        ops += [("append", name, tuple(tokens)) for tokens in wanted]
        for hook in hooks:
            present = (hook, name) in jumps
            if wanted and not present:
                ops.append(("append", hook, ("-j", name)))
            elif not wanted and present:
                ops.append(("delete", hook, ("-j", name)))
        if not wanted:
            ops.append(("delete_chain", name))
    return ops


def _commit(backend, plan, what):
    """``plan(jumps)``'s operations, read and committed under the firewall lock: one
    transaction; False when there was nothing to do."""
    with FirewallLock():
        ops = plan(read_jumps(backend))
        if not ops:
            return False
        why = backend.apply_tables({(4, "nat"): ops})[(4, "nat")]
    if why:
        raise VnmError(f"{what}: {why}")
    return True


def replace(base, rules, backend):
    """Make the NIC's nat chains hold ``rules``; no rules and no chains: nothing runs."""
    def plan(jumps):
        if not any(rules.values()) and not any(t.startswith(f"{base}-") for _, t in jumps):
            return []
        return operations(base, rules, jumps)

    return _commit(backend, plan, base)


def remove(bases, backend, still_unused):
    """``vnm gc``: the nat chains and jumps of those ``bases`` that ``still_unused(base)``
    says, under the lock, no action has taken back since gc looked; one transaction."""
    return _commit(backend, lambda jumps: [op for base in bases if still_unused(base)
                                           for op in operations(base, {}, jumps)],
                   f"removing the nat chains of {', '.join(bases)}")
