"""Opt-in backend (``:firewall_backend: iptc``): python-iptables, i.e. libiptc.

For hosts on iptables-legacy only: libiptc cannot see nf_tables rules. It
runs no process for the rules: the table is read once, changed in memory
with autocommit off and written back with one ``commit()``, which replaces
the whole table in the kernel at once (the same atomicity as a restore).
The operations are the ones :mod:`vnmlib.firewall.transaction` plans for the
restore backend; rule tokens are turned into python-iptables objects here.
"""

from vnmlib.errors import VnmError
from vnmlib.firewall.layout import FAMILIES, GLOBAL_CHAIN
from vnmlib.firewall.transaction import TableSnapshot


def _iptc():
    try:
        import iptc
    except (ImportError, OSError) as exc:
        raise VnmError(f"firewall backend iptc needs python-iptables (python3-iptables): {exc}") \
            from None
    return iptc


def _table(family):
    iptc = _iptc()
    table = iptc.Table(iptc.Table.FILTER) if family == 4 else iptc.Table6(iptc.Table6.FILTER)
    table.autocommit = False
    table.refresh()
    return table


def _tokens(rule, family):
    """An iptc rule -> our tokens, enough to recognise our jumps and FORWARD jumps."""
    tokens = []
    address, mask = rule.dst.split("/")
    length = _prefix_len(mask, 32 if family == 4 else 128)
    if length:  # /0: no -d
        tokens += ["-d", f"{address}/{length}"]
    for match in rule.matches:
        tokens += ["-m", match.name]
        if match.name == "physdev":
            params = match.get_all_parameters()
            for name in ("physdev-in", "physdev-out"):
                if name in params:
                    tokens += [f"--{name}", params[name][0]]
            if "physdev-is-bridged" in params:
                tokens.append("--physdev-is-bridged")
    tokens += ["-j", rule.target.name]
    return tuple(tokens)


def _prefix_len(mask, bits):
    if mask.isdigit():
        return int(mask)
    import ipaddress

    return ipaddress.ip_network(f"0.0.0.0/{mask}" if bits == 32 else f"::/{mask}").prefixlen


def read(own_chains=()):
    iptc = _iptc()
    snapshots = {}
    for family in FAMILIES:
        table = _table(family)
        chains = {name: [_tokens(rule, family) for rule in iptc.Chain(table, name).rules]
                  if table.is_chain(name) else None for name in own_chains}
        has_global = table.is_chain(GLOBAL_CHAIN)
        jumps = []
        for name in (GLOBAL_CHAIN, "INPUT") if has_global else ("INPUT",):
            # rules are views into libiptc's handle, which a refresh frees:
            # keep their tokens and find them again when deleting
            jumps += [(name, tokens, tokens) for tokens in
                      (_tokens(rule, family) for rule in iptc.Chain(table, name).rules)]
        forward = [_tokens(rule, family) for rule in iptc.Chain(table, "FORWARD").rules]
        snapshots[family] = TableSnapshot(has_global, forward, jumps, chains)
    return snapshots


def _rule(iptc, family, tokens):
    """Our canonical tokens (``-s -d -p``, ``-m`` blocks, ``-j``) -> an iptc rule."""
    rule = iptc.Rule() if family == 4 else iptc.Rule6()
    match, negate, i = None, False, 0
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate, i = True, i + 1
        elif token in ("-s", "-d", "-p"):
            # python-iptables names ICMPv6 "icmpv6" where iptables -S prints "ipv6-icmp"
            value = "icmpv6" if tokens[i + 1] == "ipv6-icmp" else tokens[i + 1]
            setattr(rule, {"-s": "src", "-d": "dst", "-p": "protocol"}[token], value)
            i += 2
        elif token == "-m":
            match = rule.create_match(tokens[i + 1])
            i += 2
        elif token == "-j":
            rule.create_target(tokens[i + 1])
            i += 2
        elif token.startswith("--"):
            values = []
            i += 1
            while i < len(tokens) and not tokens[i].startswith("-") and tokens[i] != "!":
                values.append(tokens[i])
                i += 1
            value = values[0] if len(values) == 1 else values
            if negate:
                value = ["!"] + values if isinstance(value, list) else "!" + value
            match.parse(token[2:], value if values else "")
            negate = False
        else:
            raise ValueError(f"cannot translate token {token!r} of {tokens}")
    return rule


def commit(changes):
    """Apply {family: ops}: both tables are changed in memory first, then committed.

    Rules are built while applying because python-iptables recognises a jump
    to a user chain only once the chain exists in the table being edited.
    {family: None when committed, else why not} (as the restore backend): a
    family after a failed one is not committed either.
    """
    iptc = _iptc()
    tables, outcome = [], {}
    family = None
    try:
        for family in FAMILIES:
            if not changes.get(family):
                continue
            table = _table(family)
            tables.append((family, table))
            for op in changes[family]:
                _apply(iptc, table, family, op)
        for family, table in tables:
            table.commit()
            outcome[family] = None
    except (ValueError, AttributeError, iptc.IPTCError, iptc.XTablesError) as exc:
        for other, _table_ in tables:
            outcome.setdefault(other, f"applying the IPv{family} rules with libiptc: {exc}")
    finally:
        for _family, table in tables:
            table.refresh()  # drop whatever was not committed
    return outcome


def _apply(iptc, table, family, op):
    kind, name = op[0], op[1]
    chain_type = iptc.Chain
    if kind == "chain":
        if table.is_chain(name):
            table.flush_entries(name)
        else:
            table.create_chain(name)
    elif kind == "new_chain":
        table.create_chain(name)
    elif kind == "append":
        chain_type(table, name).append_rule(_rule(iptc, family, op[2]))
    elif kind == "insert":
        chain_type(table, name).insert_rule(_rule(iptc, family, op[2]))
    elif kind == "delete":
        chain = chain_type(table, name)
        found = [rule for rule in chain.rules if _tokens(rule, family) == op[2]]
        if found:
            chain.delete_rule(found[0])
    elif kind == "delete_chain":
        table.delete_chain(name)
    else:
        raise ValueError(f"unknown firewall operation {kind!r}")
