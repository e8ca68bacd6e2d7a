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


def replace(base, rules, backend):
    """Make the NIC's nat chains hold ``rules``; no rules and no chains: nothing runs."""
    with FirewallLock():
        jumps = read_jumps(backend)
        if not any(rules.values()) and not any(t.startswith(f"{base}-") for _, t in jumps):
            return False
        why = backend.apply_tables({(4, "nat"): operations(base, rules, jumps)})[(4, "nat")]
        if why:
            raise VnmError(f"{base}: {why}")
    return True
