"""The default backend: ``iptables -S`` to read, ``iptables-restore -n`` to write.

A backend is the one way vnm reads and writes netfilter rules: the security
groups' filter chains (:mod:`.transaction` builds its snapshots and
operations on :func:`list_rules` and :func:`apply_tables`) and elastic's nat
chains (:mod:`vnmlib.elastic.nat`) alike, so one VM's rules never land in two.

Works on nft- and legacy-backed hosts alike: it uses whichever ``iptables``
the host's alternatives select. Each family's operations become one restore
file, which the kernel applies as one transaction (an nf_tables batch, or one
table replacement with libiptc). ``-n`` keeps every chain we do not name;
declaring one of our chains (``:one-7-1-i - [0:0]``) creates or flushes it.
"""

from vnmlib.host import process
from vnmlib.firewall import ipsets
from vnmlib.errors import VnmError

_TOOLS = {4: ("iptables", "iptables-restore"), 6: ("ip6tables", "ip6tables-restore")}
# How iptables says a listed chain does not exist. iptables-nft 1.8.9 reports
# a missing chain as "incompatible"; should the chain really exist in a form
# iptables cannot show, the bootstrap's "-N opennebula" fails the transaction
# before anything changes, so reading it as missing is safe.
_NO_CHAIN = ("No chain/target/match by that name", "is incompatible, use 'nft' tool")


def _table_args(table):
    # the filter table is iptables' default: its commands stay as the reference ran them
    return [] if table == "filter" else ["-t", table]


def _rules_of(result, family, table, chain):
    """``-A <chain> tokens…`` lines -> [tokens]; None when the chain does not exist."""
    if not result.ok:
        if any(text in result.stderr for text in _NO_CHAIN):
            return None
        where = "" if table == "filter" else f" {table}"
        raise VnmError(f"reading the IPv{family}{where} {chain} chain: {result.error_line()}")
    prefix = f"-A {chain} "
    return [tuple(line[len(prefix):].split()) for line in result.stdout.splitlines()
            if line.startswith(prefix)]


def list_rules(wanted):
    """{(family, table, chain): [tokens], or None for a missing chain} of ``wanted``,
    every listing running at once."""
    wanted = list(wanted)
    commands = [([process.which(_TOOLS[family][0]), *process.xtables_wait(),
                  *_table_args(table), "-S", chain], None) for family, table, chain in wanted]
    return {key: _rules_of(result, *key)
            for key, result in zip(wanted, process.run_all(commands))}


def list_tables(families=(4, 6)):
    """{family: the filter table as ``iptables -S`` lines} (``vnm status`` and ``gc``);
    a family whose tool fails (no netfilter here) is left out: nothing of ours is in it."""
    families = list(families)
    commands = [([process.which(_TOOLS[family][0]), *process.xtables_wait(), "-S"], None)
                for family in families]
    return {family: result.stdout.splitlines()
            for family, result in zip(families, process.run_all(commands)) if result.ok}


def list_nat():
    """The IPv4 nat table as ``iptables -t nat -S`` lines (``vnm status`` and ``gc``: the
    NICs' nat chains of nodeport and elastic); none when the tool fails (no netfilter
    here: nothing of ours either)."""
    result = process.run([process.which(_TOOLS[4][0]), *process.xtables_wait(),
                          *_table_args("nat"), "-S"])
    return result.stdout.splitlines() if result.ok else []


def list_sets():
    """The names of the sets the rules match on: the host's ipsets."""
    return ipsets.list_names()


# operation -> restore command; rule operations are followed by the rule's tokens
_COMMANDS = {"chain": ":{} - [0:0]", "new_chain": "-N {}", "append": "-A {}", "insert": "-I {}",
             "delete": "-D {}", "delete_chain": "-X {}"}


def render(ops, table="filter"):
    """Operations -> the text of one restore transaction of ``table``."""
    lines = [f"*{table}"]
    for op in ops:
        command = _COMMANDS.get(op[0])
        if command is None:
            raise ValueError(f"unknown firewall operation {op[0]!r}")
        lines.append(" ".join([command.format(op[1]), *(op[2] if len(op) > 2 else ())]))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply_tables(changes):
    """Apply {(family, table): ops}, one restore run each, all at once.

    {(family, table): None when committed, else why not}: the caller undoes
    what went in when another did not. ``-n`` keeps every chain not named.
    """
    keys = [key for key, ops in changes.items() if ops]
    commands = [([process.which(_TOOLS[family][1]), *process.xtables_wait(), "-n"],
                 render(changes[(family, table)], table)) for family, table in keys]
    return {(family, table): None if result.ok else
            f"applying the IPv{family}{'' if table == 'filter' else ' ' + table} rules: "
            f"{_TOOLS[family][1]} failed: {result.error_line()}"
            for (family, table), result in zip(keys, process.run_all(commands))}
