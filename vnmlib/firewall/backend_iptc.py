"""Opt-in backend (``:firewall_backend: iptc``): python-iptables, i.e. libiptc.

For hosts on iptables-legacy only: libiptc cannot see nf_tables rules. It
runs no process for the rules: the table is read once, changed in memory
with autocommit off and written back with one ``commit()``, which replaces
the whole table in the kernel at once (the same atomicity as a restore).
The operations are the ones :mod:`vnmlib.firewall.transaction` plans for the
restore backend; rule tokens are turned into python-iptables objects here.
"""

from vnmlib.errors import VnmError
from vnmlib.firewall import ipsets


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
    """An iptc rule -> its tokens as ``iptables -S`` prints them (``-s -d -i -o -p``, each
    match's ``-m`` block, ``-j`` with the target's options).

    Every option is kept: a deletion finds a rule again by its tokens, nodeport
    reads the ``--dport`` of other NICs' DNAT rules to refuse overlapping host
    ports, and ``vnm status`` checks what another rule accepts.
    """
    bits = 32 if family == 4 else 128
    tokens = []
    for option, value in (("-s", rule.src), ("-d", rule.dst)):
        negated, address = _negation(value)
        address, mask = address.split("/")
        length = _prefix_len(mask, bits)
        if length or negated:  # /0: no option
            tokens += [*negated, option, f"{address}/{length}"]
    for option, value in (("-i", rule.in_interface), ("-o", rule.out_interface)):
        if value:
            negated, name = _negation(value)
            tokens += [*negated, option, name]
    if rule.protocol and rule.protocol not in ("ip", "all", "0"):
        negated, protocol = _negation(rule.protocol)
        # python-iptables names ICMPv6 "icmpv6" where iptables -S prints "ipv6-icmp"
        tokens += [*negated, "-p", "ipv6-icmp" if protocol == "icmpv6" else protocol]
    for match in rule.matches:
        tokens += ["-m", match.name, *_options(match)]
    tokens += ["-j", rule.target.name, *_options(rule.target)]
    return tuple(tokens)


def _negation(value):
    """``"!10.0.0.0/8"`` -> (("!",), "10.0.0.0/8"); python-iptables prefixes a negated field."""
    return (("!",), value[1:]) if value.startswith("!") else ((), value)


def _options(module):
    """A match's or target's options in the order iptables prints them; a negated
    one's values start with "!", which iptables prints before the option."""
    tokens = []
    for name, values in module.get_all_parameters().items():
        values = list(values)
        if values[:1] == ["!"]:
            tokens.append("!")
            values = values[1:]
        tokens += [f"--{name}", *values]
    return tokens


def _prefix_len(mask, bits):
    if mask.isdigit():
        return int(mask)
    import ipaddress

    return ipaddress.ip_network(f"0.0.0.0/{mask}" if bits == 32 else f"::/{mask}").prefixlen


def list_tables(families=(4, 6)):
    """{family: the filter table as ``iptables -S`` lines} (``vnm status`` and ``gc``)."""
    iptc = _iptc()
    return {family: _lines(iptc, family, "filter") for family in families}


def list_nat():
    """The IPv4 nat table as ``iptables -t nat -S`` lines (``vnm status`` and ``gc``: the
    NICs' nat chains of nodeport and elastic)."""
    return _lines(_iptc(), 4, "nat")


def _lines(iptc, family, name):
    """Table ``name`` of ``family`` as ``iptables -S`` prints it: policies, chains, rules."""
    table = _table(family, name)
    policies, chains, rules = [], [], []
    for chain in table.chains:
        if chain.is_builtin():
            policy = chain.get_policy()
            policies.append(f"-P {chain.name} {policy.name if policy else 'ACCEPT'}")
        else:
            chains.append(f"-N {chain.name}")
        rules += [" ".join(("-A", chain.name) + _tokens(rule, family))
                  for rule in iptc.Chain(table, chain.name).rules]
    return policies + chains + rules


def list_sets():
    """The names of the sets the rules match on (ipsets, as the restore backend)."""
    return ipsets.list_names()


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
            setattr(rule, _RULE_FIELDS[token], "!" + value if negate else value)
            negate, i = False, i + 2
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
