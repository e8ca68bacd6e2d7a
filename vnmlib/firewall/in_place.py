"""Is a NIC's wanted protection already in the kernel, exactly? Then nothing is rewritten.

``pre`` protects a NIC before its tap exists, so the ``post`` that follows
finds every rule, set and guard it would write already there; an
``update_sg`` that changes nothing finds the same. Rewriting them costs two
restores, two ipset runs and an nft transaction, so under the firewall lock
the protection is checked instead, from reads the update needs anyway:

- both families' chains of the NIC hold exactly its rules (token by token as
  ``iptables -S`` prints them), its jumps are there once each and ahead of
  everything that is not another NIC's jump, and the global chain and the
  mode's FORWARD jump exist;
- the last commit of this NIC completed with exactly this protection: its
  digest (rules, jumps, sets with their type and members, the wire guard's
  text), recorded by :mod:`.recency` only once a commit went in and cleared
  before the next starts, so an interrupted or failed one never matches;
- the NIC's sets exist with the number of kernel entries its members make
  (one ``ipset restore`` listing them tersely): a member removed or added
  since is seen;
- its wire guard table is there, in the netdev family (:func:`.l2guard.present`).

Anything else, and the NIC takes the full transaction as before. A NIC whose
rules and sets are in place but whose guard is not (the interim bridge table
pre writes on kernels that cannot hook a missing device) gets the guard only.
"""

from vnmlib.firewall import ipsets, l2guard
from vnmlib.firewall.layout import FAMILIES, forward_jump

_NIC_JUMP_PREFIX = "one-"  # every NIC's chains are one-<vm>-<nic>-i/-o


def digest(nf):
    """A digest of everything ``nf`` (a NicFirewall) writes: what the recency record keeps."""
    import hashlib

    # taken when the rules are planned, before a kernel may have refused the netdev guard
    guard = nf.guard.script() if nf.guard is not None else None
    parts = (nf.bridged, sorted((f, chain, rules) for f in FAMILIES
                                for chain, rules in nf.rules[f].items()),
             [nf.jumps[f] for f in FAMILIES],
             [(s.name, s.create_args(), list(s.members)) for s in nf.sets.values()], guard)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _is_nic_jump(tokens):
    return tokens[-2:-1] == ("-j",) and tokens[-1].startswith(_NIC_JUMP_PREFIX)


def _jumps_in_place(snapshot, nf, family, ours):
    """The NIC's jumps, each once, each before any rule that is not a NIC's jump."""
    present = [(chain, tokens) for chain, tokens, _handle in snapshot.jumps
               if tokens[-2:-1] == ("-j",) and tokens[-1] in ours]
    wanted = [(chain, tuple(tokens)) for chain, tokens in nf.jumps[family]]
    if sorted(present) != sorted(wanted) or len(set(wanted)) != len(wanted):
        return False
    for chain in {chain for chain, _ in wanted}:
        rules = [tokens for name, tokens, _ in snapshot.jumps if name == chain]
        head = rules[:next((i for i, t in enumerate(rules) if not _is_nic_jump(t)), len(rules))]
        if any(tokens not in head for name, tokens in wanted if name == chain):
            return False
    return True


def rules_in_place(snapshots, nf):
    """Both families' chains, jumps and bootstrap of ``nf``, as :mod:`.transaction`
    would write them."""
    ours = {nf.chain_in, nf.chain_out}
    for family in FAMILIES:
        snapshot = snapshots[family]
        if not snapshot.global_chain or forward_jump(nf.bridged) not in snapshot.forward:
            return False
        for chain, rules in nf.rules[family].items():
            if snapshot.chains.get(chain) != [tuple(tokens) for tokens in rules]:
                return False
        if not _jumps_in_place(snapshot, nf, family, ours):
            return False
    return True


def check(install, snapshots, recorded):
    """(done, guard_only, digests): the NICs of ``install`` whose protection is wholly
    in place, those whose rules and sets are but whose wire guard must be written,
    and {chain: digest} of every NIC's wanted protection (recorded once it is in).

    ``recorded``: {chain: digest of its last completed commit} (:mod:`.recency`).
    Empty lists unless every NIC's rules and sets are in place: one NIC to
    rewrite takes the whole update through the transaction, as before.
    """
    wanted = {nf.chain: digest(nf) for nf in install}
    if any(recorded.get(nf.chain) != wanted[nf.chain] or not rules_in_place(snapshots, nf)
           for nf in install):
        return [], [], wanted
    if not ipsets.in_place(install):
        return [], [], wanted
    guards = [nf.guard for nf in install if nf.guard is not None]
    present = l2guard.present(guards)
    guard_only = [nf for nf in install
                  if nf.guard is not None and present[nf.guard.table] != {l2guard.FAMILY}]
    done = [nf for nf in install if nf not in guard_only]
    return done, guard_only, wanted
