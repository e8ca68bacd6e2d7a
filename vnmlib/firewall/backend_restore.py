"""The default backend: ``iptables -S`` to read, ``iptables-restore -n`` to write.

Works on nft- and legacy-backed hosts alike: it uses whichever ``iptables``
the host's alternatives select. Each family's operations become one restore
file, which the kernel applies as one transaction (an nf_tables batch, or one
table replacement with libiptc). ``-n`` keeps every chain we do not name;
declaring one of our chains (``:one-7-1-i - [0:0]``) creates or flushes it.
"""

from vnmlib.host import process
from vnmlib.errors import VnmError
from vnmlib.firewall.layout import FAMILIES, GLOBAL_CHAIN
from vnmlib.firewall.transaction import TableSnapshot

_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}
_READ_CHAINS = (GLOBAL_CHAIN, "FORWARD", "INPUT")
# How iptables says a listed chain does not exist. iptables-nft 1.8.9 reports
# a missing chain as "incompatible"; should the chain really exist in a form
# iptables cannot show, the bootstrap's "-N opennebula" fails the transaction
# before anything changes, so reading it as missing is safe.
_NO_CHAIN = ("No chain/target/match by that name", "is incompatible, use 'nft' tool")


def _rules_of(result, chain, family):
    """``-A <chain> tokens…`` lines -> [tokens]; None when the chain does not exist."""
    if not result.ok:
        if any(text in result.stderr for text in _NO_CHAIN):
            return None
        raise VnmError(f"reading the IPv{family} {chain} chain: {result.error_line()}")
    prefix = f"-A {chain} "
    return [tuple(line[len(prefix):].split()) for line in result.stdout.splitlines()
            if line.startswith(prefix)]


def read(own_chains=()):
    """{family: TableSnapshot}: the global chains and ``own_chains`` (the NICs'),
    every listing running at once."""
    names = _READ_CHAINS + tuple(own_chains)
    commands = [([process.which(_TOOLS[f][0]), *process.xtables_wait(), "-S", chain], None)
                for f in FAMILIES for chain in names]
    results = iter(process.run_all(commands))
    snapshots = {}
    for family in FAMILIES:
        listed = {chain: _rules_of(next(results), chain, family) for chain in names}
        if listed["FORWARD"] is None or listed["INPUT"] is None:
            raise VnmError(f"the IPv{family} filter table has no FORWARD or INPUT chain")
        jumps = [(chain, tokens, tokens) for chain in (GLOBAL_CHAIN, "INPUT")
                 for tokens in (listed[chain] or ())]
        snapshots[family] = TableSnapshot(listed[GLOBAL_CHAIN] is not None,
                                          listed["FORWARD"], jumps,
                                          {chain: listed[chain] for chain in own_chains})
    return snapshots


# operation -> restore command; rule operations are followed by the rule's tokens
_COMMANDS = {"chain": ":{} - [0:0]", "new_chain": "-N {}", "append": "-A {}", "insert": "-I {}",
             "delete": "-D {}", "delete_chain": "-X {}"}


def render(ops):
    """Operations -> the text of one restore transaction."""
    lines = ["*filter"]
    for op in ops:
        command = _COMMANDS.get(op[0])
        if command is None:
            raise ValueError(f"unknown firewall operation {op[0]!r}")
        lines.append(" ".join([command.format(op[1]), *(op[2] if len(op) > 2 else ())]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def commit(changes):
    """Apply {family: ops}, the families' transactions concurrently.

    {family: None when committed, else why not}: the caller undoes the
    families that went in when another did not.
    """
    families = [f for f in FAMILIES if changes.get(f)]
    commands = [([process.which(_TOOLS[f][1]), *process.xtables_wait(), "-n"], render(changes[f]))
                for f in families]
    return {family: None if result.ok else
            f"applying the IPv{family} rules: {_TOOLS[family][1]} failed: {result.error_line()}"
            for family, result in zip(families, process.run_all(commands))}
