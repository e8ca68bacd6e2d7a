"""What one firewall update changes, per address family, as backend-neutral operations.

Input: a :class:`TableSnapshot` of the relevant chains (read under the
firewall lock), the NICs to (re)protect and the chain prefixes to remove.
Output: the operations of **one** transaction per family. The backends apply
each list atomically (one ``iptables-restore`` run or one libiptc commit), so
a packet sees either the old protection or the new one, never a NIC's chain
half-filled or without its jumps.

Operations (tuples):

- ``("chain", name)``: create the chain, or flush it if it exists;
- ``("new_chain", name)``: create a chain that must not exist (the global one:
  flushing it would drop every other NIC's jumps);
- ``("append", chain, tokens)`` / ``("insert", chain, tokens)`` (at the top);
- ``("delete", chain, handle)``: delete one rule found in the snapshot;
- ``("delete_chain", name)``: delete a chain emptied earlier in the transaction.

Only rules whose target is one of the NICs' own chains are deleted, and only
our own chains are flushed; nothing is ever addressed by line number.
"""

from vnmlib.errors import VnmError
from vnmlib.firewall.layout import FAMILIES, GLOBAL_CHAIN, forward_jump

ACCEPT = ("-j", "ACCEPT")
_READ_CHAINS = (GLOBAL_CHAIN, "FORWARD", "INPUT")


class TableSnapshot:
    """The parts of one family's filter table a NIC update depends on."""

    __slots__ = ("global_chain", "forward", "jumps", "chains")

    def __init__(self, global_chain, forward, jumps, chains=None):
        self.global_chain = global_chain  # does "opennebula" exist?
        self.forward = forward  # [tokens] of FORWARD's rules
        self.jumps = jumps  # [(chain, tokens, handle)] of opennebula's and INPUT's rules
        # {chain: [tokens] or None (no such chain)} of the NICs' own chains: what
        # undo() puts back when the other family's commit fails
        self.chains = chains or {}


def read(backend, own_chains=()):
    """{family: TableSnapshot}: the global chains and ``own_chains`` (the NICs'),
    read through ``backend`` in one go."""
    names = _READ_CHAINS + tuple(own_chains)
    listed = backend.list_rules([(family, "filter", chain)
                                 for family in FAMILIES for chain in names])
    snapshots = {}
    for family in FAMILIES:
        chains = {chain: listed[(family, "filter", chain)] for chain in names}
        if chains["FORWARD"] is None or chains["INPUT"] is None:
            raise VnmError(f"the IPv{family} filter table has no FORWARD or INPUT chain")
        jumps = [(chain, tokens, tokens) for chain in (GLOBAL_CHAIN, "INPUT")
                 for tokens in (chains[chain] or ())]
        snapshots[family] = TableSnapshot(chains[GLOBAL_CHAIN] is not None, chains["FORWARD"],
                                          jumps, {chain: chains[chain] for chain in own_chains})
    return snapshots


def plan_native(backend, install, remove_chains):
    """A native backend's (nft) whole update: what it reads of its table, one transaction
    rendered (committed by ``backend.commit``)."""
    return backend.plan(install, remove_chains)


def commit(backend, changes):
    """Apply {family: ops} to the filter tables; {family: None, or why it did not go in}."""
    outcome = backend.apply_tables({(family, "filter"): ops for family, ops in changes.items()})
    return {family: why for (family, _table), why in outcome.items()}


def own_chains(install, remove_chains):
    """The NICs' own chains a transaction changes (snapshot these before it)."""
    names = set()
    for nf in install:
        names |= {nf.chain_in, nf.chain_out}
    for base in remove_chains:
        names |= {f"{base}-i", f"{base}-o"}
    return sorted(names)


def plan_family(family, snapshot, install, remove_chains):
    """Operations for ``family``: protect ``install`` (NicFirewalls), drop ``remove_chains``.

    ``remove_chains`` are ``one-<vm>-<nic>`` bases whose ``-i``/``-o`` chains
    and jumps go away (clean / detach).
    """
    ops = []
    if install:
        ops += _bootstrap(snapshot, {nf.bridged for nf in install})
    affected = set(own_chains(install, remove_chains))
    ops += [("delete", chain, handle) for chain, tokens, handle in snapshot.jumps
            if tokens[-2:-1] == ("-j",) and tokens[-1] in affected]
    for nf in install:
        for chain, rules in nf.rules[family].items():
            ops.append(("chain", chain))
            ops += [("append", chain, tokens) for tokens in rules]
    for nf in install:
        ops += [("insert", chain, tokens) for chain, tokens in nf.jumps[family]]
    for base in remove_chains:
        for chain in (f"{base}-i", f"{base}-o"):
            # declaring flushes (or creates) it, so deleting works either way
            ops += [("chain", chain), ("delete_chain", chain)]
    return ops


def plan_undo(family, snapshot, install, remove_chains):
    """Operations that put back what :func:`plan_family` changed, from ``snapshot``.

    For a family whose transaction went in when the other family's failed:
    the NICs' chains get their old rules again (or go, if they did not exist),
    the jumps inserted go and the jumps that were there return. The global
    chain and the FORWARD jump a first NIC created stay: they accept all
    traffic, as the host did before them.
    """
    affected = own_chains(install, remove_chains)
    ops = [("delete", chain, tokens) for nf in install for chain, tokens in nf.jumps[family]]
    for chain in affected:
        ops.append(("chain", chain))
        ops += [("append", chain, tokens) for tokens in snapshot.chains.get(chain) or ()]
    targets = set(affected)
    old_jumps = [(chain, tokens) for chain, tokens, _ in snapshot.jumps
                 if tokens[-2:-1] == ("-j",) and tokens[-1] in targets]
    ops += [("insert", chain, tokens) for chain, tokens in reversed(old_jumps)]
    ops += [("delete_chain", chain) for chain in affected if snapshot.chains.get(chain) is None]
    return ops


def _bootstrap(snapshot, modes):
    """The global chain and the FORWARD jump each mode needs (reference §7.1).

    The reference let the first user decide between the bridged (physdev) and
    the routed FORWARD jump, leaving the other mode's VMs unfiltered on a mixed
    host; here each mode adds its own jump when it is missing.
    """
    ops = []
    if not snapshot.global_chain:
        ops.append(("new_chain", GLOBAL_CHAIN))
    for bridged in sorted(modes, reverse=True):
        jump = forward_jump(bridged)
        if jump not in snapshot.forward:
            ops.append(("append", "FORWARD", jump))
    if not snapshot.global_chain:
        ops.append(("append", GLOBAL_CHAIN, ACCEPT))
    return ops


def stale_sets(existing, install, remove_chains):
    """Our ipsets that nothing will reference after the transaction."""
    wanted = {name for nf in install for name in nf.sets}
    prefixes = tuple(f"{nf.chain}-" for nf in install) + tuple(f"{b}-" for b in remove_chains)
    return sorted(name for name in existing if name.startswith(prefixes) and name not in wanted)
