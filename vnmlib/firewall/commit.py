"""Committing one firewall update: sets and both families' rules together, or nothing.

The order, under the firewall lock:

1. the ipsets are staged (:func:`.ipsets.stage`): new sets made, refilled ones
   swapped in, all or nothing;
2. the IPv4 and IPv6 transactions are committed (concurrently, by the backend);
3. if either family failed, the one that went in is undone from the snapshot
   taken before (:func:`.transaction.plan_undo`), and the sets are swapped back
   and the new ones destroyed: the NIC keeps exactly its old protection, and
   the action fails naming the family and the tool;
4. otherwise the temporaries (now holding the old members) are destroyed with
   the sets nothing references any more.

The reference, and vnm before this, left the IPv4 rules and the new set
members live when ``ip6tables-restore`` failed after ``iptables-restore``
succeeded: a VM open to a new network while its action reported failure.
"""

from vnmlib.errors import OutcomeUnknown, VnmError
from vnmlib.firewall import ipsets, transaction


def run(backend, changes, snapshots, install, remove, existing, stale, log, guards=""):
    """Apply ``changes`` ({family: ops}) with the sets of ``install``; see the module.

    A native backend (nft) gets ``changes`` as its one planned transaction, sets and both
    families together (with ``guards``, the wire guards' nft text, when given): it goes
    in whole or not at all, so nothing is rolled back here.
    """
    if getattr(backend, "NATIVE", False):
        backend.commit(changes, guards)
        return
    staged = ipsets.stage(install, existing, log)
    try:
        outcome = transaction.commit(backend, changes)
    except OutcomeUnknown as exc:
        # a tool killed at its time limit may or may not have committed: undo
        # every family (undoing one that did not go in fails, and says so)
        _roll_back(backend, snapshots, install, remove, staged,
                   [family for family in changes if changes[family]], str(exc), log)
    failures = [why for why in outcome.values() if why]
    if failures:
        committed = [family for family, why in outcome.items() if why is None]
        _roll_back(backend, snapshots, install, remove, staged, committed, failures[0], log)
    ipsets.destroy(staged.temporaries() + list(stale), log)


def _roll_back(backend, snapshots, install, remove, staged, committed, failure, log):
    """Put back what went in, then fail with ``failure`` (and what could not be put back)."""
    problems = []
    undo = {family: transaction.plan_undo(family, snapshots[family], install, remove)
            for family in committed}
    if undo:
        problems += [why for why in transaction.commit(backend, undo).values() if why]
    try:
        staged.undo(log)
    except VnmError as exc:
        problems.append(str(exc))
    if problems:
        raise VnmError(f"{failure}; rolling back failed too: {'; '.join(problems)} "
                       "(the NIC's protection may be incomplete: run the action again)")
    rules = "".join(f"the IPv{family} rules, " for family in committed)
    raise VnmError(f"{failure} ({rules}the ipsets put back as they were)")
