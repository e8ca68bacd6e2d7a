"""The native nftables backend (``:firewall_backend: nft``, opt-in): bridged NICs only.

Security groups live in vnm's own ``table bridge vnm`` (:mod:`.nft_render`
says why the bridge family), written by libnftables in-process (Debian's
python3-nftables) or, without the binding, by ``nft -f -``: one transaction
for both families and every set, so there is no per-family rollback and no
ipset. The host's iptables rules and other nft tables are not touched.

Routed mode (elastic, nodeport) needs iptables' nat and routed jumps: with this
backend their actions are refused with one line (:data:`ROUTED_REFUSED`), never
silently written with iptables.
"""

import json

from vnmlib.errors import InputError, VnmError
from vnmlib.host import process
from vnmlib.firewall import nft_render
from vnmlib.firewall.layout import GLOBAL_CHAIN
from vnmlib.firewall.nft_render import FAMILY, MAP_IN, MAP_OUT, TABLE

NATIVE = True
ROUTED_REFUSED = ("firewall_backend nft protects bridged NICs only (fw, 802.1Q, vxlan); "
                  "elastic and nodeport need firewall_backend restore or iptc")
_MISSING = "No such file or directory"


_CONTEXT = []  # the one libnftables context of this process, once made


def _binding():
    """libnftables through python3-nftables, or None (no binding, or no library)."""
    if not _CONTEXT:
        try:
            import nftables

            _CONTEXT.append(nftables.Nftables())
        except (ImportError, OSError):
            _CONTEXT.append(None)
    return _CONTEXT[0]


def run(script, as_json=False, terse=False, dry_run=False):
    """(ok, output, error) of ``script``: one nft transaction (or listing)."""
    nft = _binding()
    if nft is not None:
        nft.set_json_output(as_json)
        nft.set_terse_output(terse)
        nft.set_dry_run(dry_run)
        rc, out, err = nft.cmd(script)
        return rc == 0, out, err
    argv = [process.which("nft"), *(["-j"] if as_json else []), *(["-t"] if terse else []),
            *(["-c"] if dry_run else []), "-f", "-"]
    done = process.run(argv, script)
    return done.ok, done.stdout, done.stderr


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
    """:class:`.nft_render.TableState` of the table, read under the firewall lock.

    The table counts as there when its global chain is (the bootstrap makes both in
    one transaction): ``list tables`` makes nft 1.0.6 fetch every rule and set
    element of the family, 1.7 s with 1,000 NICs protected, ``list chains`` 10 ms.
    """
    chains = _objects("chains", "chain")
    if GLOBAL_CHAIN not in chains:
        return nft_render.TableState()
    return nft_render.TableState(True, chains, _objects("sets", "set"),
                                 {m: _dispatch(m) for m in (MAP_IN, MAP_OUT)})


def commit(script):
    """Apply one transaction; it goes in whole or not at all."""
    if not script:
        return  # nothing of these NICs in the table: nothing to do
    ok, _, err = run(script)
    if not ok:
        # what a kernel without nf_conntrack_bridge / nft_meta_bridge answers
        hint = ("; vnm doctor checks the kernel's bridge-family support"
                if "Protocol error" in err or "Operation not supported" in err else "")
        raise VnmError(f"applying the nft table {FAMILY} {TABLE}: {_first_error(err)} "
                       f"(nothing changed{hint})")


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
    """The names of the table's sets (the NICs' ipsets' counterparts)."""
    return [i["set"]["name"] for i in _listing() if "set" in i]


def list_nat():
    """No nat: routed mode is refused with this backend."""
    return []


NO_CHAINS = ("firewall_backend nft keeps no iptables chains: elastic and nodeport need "
             "restore or iptc, and vnm why/verify do not evaluate nft rules "
             "(nft list table bridge vnm shows them)")


def list_rules(_wanted):
    """Routed nat (elastic, nodeport) and why/verify read iptables chains: none here."""
    raise InputError(NO_CHAINS)


def apply_tables(_changes):
    raise InputError(ROUTED_REFUSED)


PROBE_TABLE = "vnm_probe"


def probe():
    """None when this host can run the backend, else why not: a dry-run transaction
    (checked by the kernel, never committed) using ``ct state`` and a concatenated
    interval set in the bridge family."""
    script = "\n".join([
        f"add table {FAMILY} {PROBE_TABLE}",
        f"add set {FAMILY} {PROBE_TABLE} s {{ type ipv4_addr . inet_proto . inet_service; "
        "flags interval; }",
        f"add chain {FAMILY} {PROBE_TABLE} c {{ type filter hook forward priority filter; }}",
        f"add rule {FAMILY} {PROBE_TABLE} c ct state established,related accept",
        f"add rule {FAMILY} {PROBE_TABLE} c ip saddr . meta l4proto . th dport @s accept",
        f"delete table {FAMILY} {PROBE_TABLE}",
    ]) + "\n"
    ok, _, err = run(script, dry_run=True)
    return None if ok else _first_error(err)


def binding():
    """How transactions are sent: libnftables in-process, or the nft tool."""
    return "python3-nftables (libnftables)" if _binding() is not None else "nft -f - (no binding)"
