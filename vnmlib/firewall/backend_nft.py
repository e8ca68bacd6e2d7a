"""The native nftables backend (``:firewall_backend: nft``, opt-in).

Security groups, bridged (fw, 802.1Q, vxlan) and routed (elastic, nodeport),
live in vnm's own ``table bridge vnm`` (:mod:`.nft_render` says why the
bridge family), written by libnftables in-process (Debian's python3-nftables)
or, without the binding, by ``nft -f -``: one transaction for both families
and every set, so there is no per-family rollback and no ipset. elastic's and
nodeport's nat chains live in vnm's own ``table ip vnm_nat``, with iptables'
names (:func:`list_rules` and :func:`apply_tables` speak their operations).
The host's iptables rules and other nft tables are not touched.

An update that only protects NICs plans from their footprints
(:mod:`.nft_footprint`) without listing the table; one that removes NICs, or a
table vnm has no footprints for, reads the table whole.
"""

import json

from vnmlib.errors import InputError, VnmError
from vnmlib.firewall import l2guard, libnft, nft_footprint, nft_render
from vnmlib.firewall.libnft import run
from vnmlib.firewall.layout import GLOBAL_CHAIN
from vnmlib.firewall.nft_render import (FAMILY, MAP_IN, MAP_OUT, MAP_ROUTED, NAT_FAMILY,
                                        NAT_HOOKS, NAT_TABLE, TABLE)

NATIVE = True
_MISSING = "No such file or directory"


def _first_error(text):
    """nft's first error line (the command it shows beside it is not reliably the one
    that failed when the script comes from a buffer, so it is left out)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("Error")),
                lines[0] if lines else "nft failed")


def _listing():
    """The objects of ``table bridge vnm`` (sets without their elements); [] when absent."""
    ok, out, err = run(f"list table {FAMILY} {TABLE}", as_json=True, terse=True)
    if not ok:
        if _MISSING in err:
            return []
        raise VnmError(f"reading nft table {FAMILY} {TABLE}: {_first_error(err)}")
    return json.loads(out or "{}").get("nftables", [])


def _dispatch(map_name):
    ok, out, err = run(f"list map {FAMILY} {TABLE} {map_name}", as_json=True)
    if not ok:
        raise VnmError(f"reading nft map {map_name}: {_first_error(err)}")
    found = {}
    for item in json.loads(out or "{}").get("nftables", []):
        for key, verdict in (item.get("map") or {}).get("elem", ()):
            target = (verdict.get("jump") or verdict.get("goto") or {}).get("target")
            found[key] = target
    return found


def _objects(what, kind):
    """The names of ``kind`` objects (``list <what> bridge``) in vnm's table, without
    their rules or elements: what an update must know, at a cost that does not grow
    with the rules of the other NICs."""
    ok, out, err = run(f"list {what} {FAMILY}", as_json=True, terse=True)
    if not ok:
        raise VnmError(f"reading the nft {what}: {_first_error(err)}")
    items = json.loads(out or "{}").get("nftables", [])
    return [i[kind]["name"] for i in items
            if kind in i and (kind == "table" or i[kind].get("table") == TABLE)]


def read_state():
    """:class:`.nft_render.TableState` of the whole table, read under the firewall lock.

    The table counts as there when its global chain is (the bootstrap makes both in
    one transaction): ``list tables`` makes nft 1.0.6 fetch every rule and set
    element of the family, 1.7 s with 1,000 NICs protected, ``list chains`` 10 ms.
    """
    chains = _objects("chains", "chain")
    if GLOBAL_CHAIN not in chains:
        return nft_render.TableState()
    maps = (MAP_IN, MAP_OUT, MAP_ROUTED) if "output" in chains else (MAP_IN, MAP_OUT)
    return nft_render.TableState(True, chains, _objects("sets", "set"),
                                 {m: _dispatch(m) for m in maps}, whole=True)


def _scoped_state(install, routed):
    """The table as far as ``install`` (NicFirewalls) is concerned, from their
    footprints: the taps that dispatched to their chains, their named sets (an older
    vnm's).

    Nothing is asked of the kernel: nft 1.0.6 answers a ``get element`` of a missing
    key by fetching the whole table (5 s under QEMU with 1,000 NICs). The transaction
    declares each wanted dispatch and chain whether the record says it is there or not,
    and deletes what the record names; a record the table does not match makes the
    kernel refuse it, and :func:`commit` plans it again from the whole table."""
    dispatch = {m: {} for m in ((MAP_IN, MAP_OUT, MAP_ROUTED) if routed else (MAP_IN, MAP_OUT))}
    sets = set()
    for nf in install:
        footprint = nft_footprint.of(nf.chain)
        sets.update(footprint["sets"])
        chains = dict(nft_render.dispatch_of(nf))
        for map_name, taps in footprint["taps"].items():
            if map_name in dispatch and map_name in chains:
                dispatch[map_name].update((tap, chains[map_name]) for tap in taps)
    return nft_render.TableState(True, [GLOBAL_CHAIN] + (["output"] if routed else []),
                                 sets, dispatch)


class Plan:
    """One transaction of the table and what it was planned from (:func:`plan`)."""

    def __init__(self, state, install, remove, scoped):
        self.state, self.install, self.remove, self.scoped = state, install, remove, scoped
        self.script = nft_render.render(state, install, remove)


def plan(install, remove):
    """The transaction protecting ``install`` and removing the bases ``remove``, under the
    firewall lock: from the NICs' footprints when only protecting NICs of a table whose
    every NIC has one, else from the whole table."""
    recorded = nft_footprint.table()
    if install and not remove and recorded is not None:
        return Plan(_scoped_state(install, recorded["routed"]), install, remove, True)
    return Plan(read_state(), install, remove, False)


def commit(planned, guards=""):
    """Apply one planned transaction, with ``guards`` (the wire guards' nft text) in it;
    it goes in whole or not at all. One planned from footprints that the kernel refuses
    is planned again from the whole table."""
    if not planned.script:
        if guards:
            _send(guards)
        nft_footprint.forget(planned.remove)  # nothing of these NICs in the table
        return
    wanted = {nf.chain: nft_footprint.wanted(nf, nft_render.dispatch_of(nf))
              for nf in planned.install}
    # before: old and new names, so an interrupted commit leaves no object unnamed
    nft_footprint.save({base: nft_footprint.union(nft_footprint.of(base), footprint)
                        for base, footprint in wanted.items()})
    ok, _, err = run(guards + planned.script)
    if not ok and planned.scoped:
        nft_footprint.drop_table()
        planned = Plan(read_state(), planned.install, planned.remove, False)
        ok, _, err = run(guards + planned.script)
    if not ok:
        _refused(err, guards)
    _record(planned, wanted)


def guards_script(guards, remove):
    """The wire guards' part of the table's transaction, for ``guards`` whose taps exist
    (their footprints say what their last commit wrote) and the NICs ``remove``.

    A guard whose table is in the netdev family only and whose text is the one its
    NIC's last commit recorded is left as it is: rewriting a table that exists means
    deleting it, for which nft 1.0.6 first fetches every chain and set of every table
    (an ``update_sg`` or a second ``post``). One in neither family is only added; any
    other (``pre``'s interim bridge table, a changed guard) deleted and written again."""
    found = l2guard.states(guards)
    netdev_only = {l2guard.FAMILY: True, l2guard.INTERIM_FAMILY: False}
    kept = {g.table for g in guards if found[g.table] == netdev_only
            and nft_footprint.of(g.table)["guard"] == nft_footprint.guard_text(g)}
    return l2guard.render([g for g in guards if g.table not in kept], remove,
                          l2guard.fresh(found))


def _send(guards):
    ok, _, err = run(guards)
    if not ok:
        _refused(err, guards)


def _refused(err, guards):
    # what a kernel without nf_conntrack_bridge / nft_meta_bridge answers
    hint = ("; vnm doctor checks the kernel's bridge-family support"
            if "Protocol error" in err or "Operation not supported" in err else "")
    what = " and the wire guards" if guards else ""
    raise VnmError(f"applying the nft table {FAMILY} {TABLE}{what}: {_first_error(err)} "
                   f"(nothing changed{hint})")


def _record(planned, wanted):
    """The footprints after a commit went in; a table read whole is adopted."""
    state = planned.state
    routed = "output" in state.chains or any(not nf.bridged for nf in planned.install)
    nft_footprint.save(wanted)
    nft_footprint.forget(planned.remove)
    recorded = nft_footprint.table()
    if recorded is not None:
        if recorded != {"routed": routed}:  # the first routed NIC made the output hook
            nft_footprint.table_routed(routed)
        return
    bases = {c[:-2] for c in state.chains if c.startswith("one-") and c.endswith(("-i", "-o"))}
    bases -= set(wanted) | set(planned.remove)
    others = {}
    for base in bases:
        ours = (f"{base}-i", f"{base}-o")
        others[base] = {
            "sets": sorted(s for s in state.sets if s.startswith(f"{base}-")),
            "taps": {m: sorted(t for t, c in entries.items() if c in ours)
                     for m, entries in state.dispatch.items()}}
    nft_footprint.adopt(others, routed)


def protected(bases):
    """Those of ``bases`` whose chains are in the table: their footprints say so, or,
    without footprints for the table, its chains' names."""
    if nft_footprint.table() is not None:
        return {base for base in bases if nft_footprint.known(base)}
    chains = set(_objects("chains", "chain"))
    return {base for base in bases if f"{base}-o" in chains}


# -- the backend interface the rest of vnm reads through ----------------------

def _family_of(rule):
    exprs = rule.get("expr", ())
    for expr in exprs:
        match = expr.get("match") if isinstance(expr, dict) else None
        if match and (match.get("left") or {}).get("meta", {}).get("key") == "protocol":
            return {"ip": 4, "ip6": 6}.get(match.get("right"))
    return None


def _calls(rule, *words):
    text = json.dumps(rule.get("expr", ()))
    return all(word in text for word in words)


def list_tables(families=(4, 6)):
    """{family: ``iptables -S``-like lines} of the table, for ``vnm status``, ``gc`` and
    ``doctor``: the NICs' chains with one ``-A`` line per rule of that family, and the
    dispatch said in restore's terms, from what is really there: the forward chain's
    jump as ``FORWARD … -j opennebula``, each ``nic_in``/``nic_out`` element as the
    ``--physdev-out/in <tap>`` jump it stands for, the input chain's lookup as the
    ``INPUT`` jumps. A missing piece is missing from the lines, so their checks see it."""
    items = _listing()
    rules = [i["rule"] for i in items if "rule" in i]
    chains = [i["chain"]["name"] for i in items if "chain" in i]
    lines = [f"-N {c}" for c in chains if c.startswith("one-") or c == GLOBAL_CHAIN]
    if any(r["chain"] == "forward" and _calls(r, '"jump"', GLOBAL_CHAIN) for r in rules):
        lines.append(f"-A FORWARD -m physdev --physdev-is-bridged -j {GLOBAL_CHAIN}")
    dispatch = {m: _dispatch(m) for m in (MAP_IN, MAP_OUT)} if items else {}
    def looks_up(chain, key, map_name):
        return any(r["chain"] == chain and _calls(r, key, f"@{map_name}") for r in rules)

    if not looks_up(GLOBAL_CHAIN, "oifname", MAP_IN):
        dispatch.pop(MAP_IN, None)
    if not looks_up(GLOBAL_CHAIN, "iifname", MAP_OUT):
        dispatch.pop(MAP_OUT, None)
    to_input = looks_up("input", "iifname", MAP_OUT)
    for tap, chain in dispatch.get(MAP_IN, {}).items():
        lines.append(f"-A {GLOBAL_CHAIN} -m physdev --physdev-out {tap} --physdev-is-bridged "
                     f"-j {chain}")
    for tap, chain in dispatch.get(MAP_OUT, {}).items():
        lines.append(f"-A {GLOBAL_CHAIN} -m physdev --physdev-in {tap} --physdev-is-bridged "
                     f"-j {chain}")
        if to_input:
            lines.append(f"-A INPUT -m physdev --physdev-in {tap} -j {chain}")
    if any(r["chain"] == GLOBAL_CHAIN and r.get("expr") == [{"accept": None}] for r in rules):
        lines.append(f"-A {GLOBAL_CHAIN} -j ACCEPT")
    out = {family: list(lines) for family in families}
    for rule in rules:
        family = _family_of(rule)
        if rule["chain"].startswith("one-") and family in out:
            out[family].append(f"-A {rule['chain']} (nft rule {rule.get('handle')})")
    return out


def list_sets():
    """The names of the table's named sets: none of vnm's (its rules carry their sets),
    so only an older vnm's, which ``vnm gc`` reports."""
    return [i["set"]["name"] for i in _listing() if "set" in i]


def _nat_listing():
    """{chain: [rule JSON]} of vnm's nat table; {} when it does not exist."""
    ok, out, err = run(f"list table {NAT_FAMILY} {NAT_TABLE}", as_json=True)
    if not ok:
        if _MISSING in err:
            return {}
        raise VnmError(f"reading nft table {NAT_FAMILY} {NAT_TABLE}: {_first_error(err)}")
    chains = {}
    for item in json.loads(out or "{}").get("nftables", []):
        if "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"])
    return chains


def _port_text(right):
    if isinstance(right, dict) and "range" in right:
        low, high = right["range"]
        return f"{low}:{high}"
    return str(right)


def nat_tokens(rule):
    """A nat rule read back as the ``iptables -S`` tokens that tell what it does: its TCP
    or UDP destination ports (nodeport's overlap check) and its target (a jump's target
    for :func:`vnmlib.elastic.nat.read_jumps`)."""
    tokens = []
    for expr in rule.get("expr", ()):
        match = expr.get("match") or {}
        payload = (match.get("left") or {}).get("payload") or {}
        if payload.get("field") == "dport" and payload.get("protocol") in ("tcp", "udp"):
            tokens += ["-p", payload["protocol"], "--dport", _port_text(match.get("right"))]
        elif payload.get("protocol") == "ip" and payload.get("field") in ("saddr", "daddr"):
            tokens += ["-s" if payload["field"] == "saddr" else "-d", str(match.get("right"))]
        elif "jump" in expr:
            tokens += ["-j", expr["jump"]["target"]]
        elif "dnat" in expr or "snat" in expr:
            tokens += ["-j", "DNAT" if "dnat" in expr else "SNAT"]
        elif "masquerade" in expr:
            tokens += ["-j", "MASQUERADE"]
    return tuple(tokens)


def list_nat():
    """vnm's nat table as ``iptables -t nat -S`` lines (``vnm status`` and ``gc``)."""
    lines = []
    for chain, rules in sorted(_nat_listing().items()):
        lines.append(f"-N {chain}" if chain not in NAT_HOOKS else f"-P {chain} ACCEPT")
        lines += [f"-A {chain} {' '.join(nat_tokens(r))}" for r in rules]
    return lines


NO_CHAINS = ("firewall_backend nft keeps no iptables filter chains: its rules are "
             "table bridge vnm's (nft list table bridge vnm; vnm why/verify walk them)")


def list_rules(wanted):
    """{(4, "nat", chain): [tokens] or None} of vnm's nat table (elastic and nodeport read
    their chains and jumps through this); filter chains are table bridge vnm's, which
    vnm why/verify read through :mod:`vnmlib.firewall.nft_read`."""
    wanted = list(wanted)
    if any(key[:2] != (4, "nat") for key in wanted):
        raise InputError(NO_CHAINS)
    listing = _nat_listing()
    return {key: ([nat_tokens(r) for r in listing[key[2]]] if key[2] in listing else None)
            for key in wanted}


def apply_tables(changes):
    """{(4, "nat"): operations} as one transaction of vnm's nat table; {key: None or why}."""
    outcome = {}
    for key, ops in changes.items():
        if key != (4, "nat"):
            raise InputError(NO_CHAINS)
        handles = {(chain, rule["expr"][0]["jump"]["target"]): rule["handle"]
                   for chain, rules in _nat_listing().items() if chain in NAT_HOOKS
                   for rule in rules
                   if len(rule.get("expr", ())) == 1 and "jump" in rule["expr"][0]}
        ok, _, err = run(nft_render.nat_script(ops, handles))
        outcome[key] = None if ok else f"nft table {NAT_FAMILY} {NAT_TABLE}: {_first_error(err)}"
    return outcome


PROBE_TABLE = "vnm_probe"


def probe():
    """None when this host can run the backend, else why not: a dry-run transaction
    (checked by the kernel, never committed) using ``ct state`` and an anonymous
    concatenated interval set in a chain's declaration in the bridge family (as a
    NIC's chains are written), and the nat table's hooks, ``fib`` and a port-mapped
    dnat (elastic, nodeport)."""
    script = "\n".join([
        f"add table {FAMILY} {PROBE_TABLE}",
        f"add chain {FAMILY} {PROBE_TABLE} c {{ type filter hook forward priority filter; "
        "ct state established,related accept; ip saddr . meta l4proto . th dport "
        "{ 192.0.2.0/24 . tcp . 22-80, 198.51.100.7 . udp . 53 } accept; }",
        f"delete table {FAMILY} {PROBE_TABLE}",
        f"add table {NAT_FAMILY} {PROBE_TABLE}",
        f"add chain {NAT_FAMILY} {PROBE_TABLE} n {{ type nat hook prerouting priority -100; }}",
        f"add rule {NAT_FAMILY} {PROBE_TABLE} n fib daddr type local tcp dport 9001-9002 "
        "dnat to 192.0.2.1 : tcp dport map { 9001 : 1, 9002 : 2 }",
        f"delete table {NAT_FAMILY} {PROBE_TABLE}",
    ]) + "\n"
    ok, _, err = run(script, dry_run=True)
    return None if ok else _first_error(err)


def binding():
    """How transactions are sent: libnftables in-process, or the nft tool."""
    return "python3-nftables (libnftables)" if libnft.binding() is not None else "nft -f - (no binding)"
