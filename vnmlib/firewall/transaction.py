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

from .layout import GLOBAL_CHAIN, forward_jump

ACCEPT = ("-j", "ACCEPT")


class TableSnapshot:
    """The parts of one family's filter table a NIC update depends on."""

    __slots__ = ("global_chain", "forward", "jumps")

    def __init__(self, global_chain, forward, jumps):
        self.global_chain = global_chain  # does "opennebula" exist?
        self.forward = forward  # [tokens] of FORWARD's rules
        self.jumps = jumps  # [(chain, tokens, handle)] of opennebula's and INPUT's rules


def plan_family(family, snapshot, install, remove_chains):
    """Operations for ``family``: protect ``install`` (NicFirewalls), drop ``remove_chains``.

    ``remove_chains`` are ``one-<vm>-<nic>`` bases whose ``-i``/``-o`` chains
    and jumps go away (clean / detach).
    """
    ops = []
    if install:
        ops += _bootstrap(snapshot, {nf.bridged for nf in install})
    affected = set()
    for nf in install:
        affected |= {nf.chain_in, nf.chain_out}
    for base in remove_chains:
        affected |= {f"{base}-i", f"{base}-o"}
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
