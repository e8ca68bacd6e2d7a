"""Opt-in backend (``:firewall_backend: iptc``): python-iptables, i.e. libiptc.

For hosts on iptables-legacy only: libiptc cannot see nf_tables rules. It
runs no process for the rules: the table is read once, changed in memory
with autocommit off and written back with one ``commit()``, which replaces
the whole table in the kernel at once (the same atomicity as a restore).
The operations are the ones :mod:`vnmlib.firewall.transaction` plans for the
restore backend; rule tokens are turned into python-iptables objects here.
"""

from vnmlib.errors import VnmError


def _iptc():
    try:
        import iptc
    except (ImportError, OSError) as exc:
        raise VnmError(f"firewall backend iptc needs python-iptables (python3-iptables): {exc}") \
            from None
    return iptc


def _table(family, name):
    iptc = _iptc()
    table = iptc.Table(name) if family == 4 else iptc.Table6(name)
    table.autocommit = False
    table.refresh()
    return table


def _tokens(rule, family):
    """An iptc rule -> our tokens, enough to recognise our jumps (filter's and nat's hooks)
    and FORWARD's jumps."""
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


def list_rules(wanted):
    """{(family, table, chain): [tokens], or None for a missing chain} of ``wanted``;
    each table is read once."""
    iptc = _iptc()
    tables, listed = {}, {}
    for family, name, chain in wanted:
        if (family, name) not in tables:
            tables[(family, name)] = _table(family, name)
        table = tables[(family, name)]
        # rules are views into libiptc's handle, which a refresh frees: keep
        # their tokens (a deletion finds the rule again by them)
        listed[(family, name, chain)] = ([_tokens(rule, family)
                                          for rule in iptc.Chain(table, chain).rules]
                                         if table.is_chain(chain) else None)
    return listed


_RULE_FIELDS = {"-s": "src", "-d": "dst", "-p": "protocol", "-i": "in_interface",
                "-o": "out_interface"}


def _rule(iptc, family, tokens):
    """Our canonical tokens (``-s -d -p``, ``-m`` blocks, ``-j``) -> an iptc rule."""
    rule = iptc.Rule() if family == 4 else iptc.Rule6()
    module, negate, i = None, False, 0  # the match or target the "--" options belong to
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate, i = True, i + 1
        elif token in _RULE_FIELDS:
            # python-iptables names ICMPv6 "icmpv6" where iptables -S prints "ipv6-icmp"
            value = "icmpv6" if tokens[i + 1] == "ipv6-icmp" else tokens[i + 1]
            setattr(rule, _RULE_FIELDS[token], value)
            i += 2
        elif token == "-m":
            module = rule.create_match(tokens[i + 1])
            i += 2
        elif token == "-j":
            module = rule.create_target(tokens[i + 1])  # DNAT/SNAT take --to-* options
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
            module.parse(token[2:], value if values else "")
            negate = False
        else:
            raise ValueError(f"cannot translate token {token!r} of {tokens}")
    return rule


def apply_tables(changes):
    """Apply {(family, table): ops}: every table is changed in memory first, then committed.

    Rules are built while applying because python-iptables recognises a jump
    to a user chain only once the chain exists in the table being edited.
    {(family, table): None when committed, else why not} (as the restore
    backend); a table after a failed one is not committed either.
    """
    iptc = _iptc()
    tables, outcome = [], {}
    key = None
    try:
        for key, ops in changes.items():
            if not ops:
                continue
            family = key[0]
            table = _table(*key)
            tables.append((key, table))
            for op in ops:
                _apply(iptc, table, family, op)
        for key, table in tables:
            table.commit()
            outcome[key] = None
    except (ValueError, AttributeError, iptc.IPTCError, iptc.XTablesError) as exc:
        family, name = key
        where = "" if name == "filter" else f" {name}"
        for other, _table_ in tables:
            outcome.setdefault(other, f"applying the IPv{family}{where} rules with libiptc: {exc}")
    finally:
        for _key, table in tables:
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
