"""The default backend: ``iptables-restore -n`` to read (``-S`` lines) and to write.

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


def _table_args(table):
    # the filter table is iptables' default: its commands stay as the reference ran them
    return [] if table == "filter" else ["-t", table]


def _tokens_of(listing, chain):
    prefix = f"-A {chain} "
    return [tuple(line[len(prefix):].split()) for line in listing.splitlines()
            if line.startswith(prefix)]


def _listing_script(table, chains):
    """One restore file that only lists ``chains``: iptables-restore runs ``-S`` as
    iptables does, printing each chain in turn, and its COMMIT commits nothing."""
    return "".join([f"*{table}\n", *(f"-S {chain}\n" for chain in chains), "COMMIT\n"])


# How a listing run says which chain it stopped at: iptables-nft names the chain (as
# iptables -S does), iptables-legacy only gives the line, and nothing else (patterns
# compiled on first use: most runs list every chain, and an import-time compile costs
# a warm action 1 ms)
_NAMED = r"chain `([^']*)' in table `[^']*' is incompatible"
_FAILED_LINE = r"\S+-restore: line (\d+) failed"


def _missing_at(result, chains):
    """The index in ``chains`` of the chain a failed listing run stopped at because it
    does not exist; None when it failed for any other reason."""
    import re

    named = re.search(_NAMED, result.stderr)
    if named:
        return chains.index(named.group(1)) if named.group(1) in chains else None
    said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    failed = re.fullmatch(_FAILED_LINE, said[0]) if len(said) == 1 else None
    index = int(failed.group(1)) - 2 if failed else -1  # line 1 is "*table"
    return index if 0 <= index < len(chains) else None


def list_rules(wanted):
    """{(family, table, chain): [tokens], or None for a missing chain} of ``wanted``.

    One ``iptables-restore`` run per family and table lists all its chains (one
    process instead of one ``iptables -S`` per chain: the reads are most of a
    warm action's time); the runs go at once. A missing chain stops a run at its
    line: it is recorded as missing and the next run lists the rest.
    """
    pending = {}
    for family, table, chain in dict.fromkeys(wanted):
        pending.setdefault((family, table), []).append(chain)
    found = {}
    while pending:
        keys = list(pending)
        commands = [([process.which(_TOOLS[family][1]), *process.xtables_wait(), "-n"],
                     _listing_script(table, pending[(family, table)]))
                    for family, table in keys]
        for (family, table), result in zip(keys, process.run_all(commands)):
            chains = pending.pop((family, table))
            missing = None if result.ok else _missing_at(result, chains)
            if not result.ok and missing is None:
                where = "" if table == "filter" else f" {table}"
                raise VnmError(f"reading the IPv{family}{where} chains: "
                               f"{_TOOLS[family][1]} failed: {result.error_line()}")
            listed = chains if missing is None else chains[:missing]
            found.update({(family, table, chain): _tokens_of(result.stdout, chain)
                          for chain in listed})
            if missing is not None:
                found[(family, table, chains[missing])] = None
                if chains[missing + 1:]:
                    pending[(family, table)] = chains[missing + 1:]
    return {key: found[key] for key in wanted}


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
