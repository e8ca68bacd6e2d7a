"""Read-only views of the bridge family's nftables objects, as nft's JSON says them.

For ``vnm why`` and ``vnm verify`` with ``:firewall_backend: nft``: one chain's
rules, one set's or map's elements, and which base chains sit on a hook (vnm's
``table bridge vnm`` and any other program's bridge tables, which see the same
frames). Each is one small ``list`` through :func:`.libnft.run` (libnftables
in-process, or ``nft -j``), never the whole ruleset: with 1,000 NICs protected
``list table`` takes seconds, ``list chain`` milliseconds. Nothing is changed.
"""

import json
import re

from vnmlib.errors import VnmError
from vnmlib.firewall import libnft
from vnmlib.firewall.nft_render import FAMILY

# chain, set and table names taken from the kernel's listing go back into a ``list``
# command: only names nft prints unquoted (anything else is reported, not listed)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,255}")
_MISSING = "No such file or directory"


class Unreadable(VnmError):
    """An object whose name or listing vnm cannot read safely."""


def _list(what):
    """The objects of ``list <what>`` as JSON items (metainfo left out); None if absent."""
    ok, out, err = libnft.run(f"list {what}", as_json=True)
    if not ok:
        if _MISSING in err:
            return None
        first = next((line.strip() for line in err.splitlines() if line.strip()), "failed")
        raise VnmError(f"reading nft {what}: {first}")
    return [i for i in json.loads(out or "{}").get("nftables", []) if "metainfo" not in i]


def checked(name):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Unreadable(f"nft object name {name!r} is not one vnm reads")
    return name


class BaseChain:
    """A chain hooked into the bridge family: where, in which order, with which policy."""

    __slots__ = ("table", "name", "hook", "prio", "policy")

    def __init__(self, table, name, hook, prio, policy):
        self.table, self.name, self.hook, self.prio, self.policy = table, name, hook, prio, policy


def base_chains(hook):
    """The bridge family's base chains on ``hook`` (every table's), in the order the
    kernel runs them (priority, lowest first)."""
    found = []
    for item in _list(f"chains {FAMILY}") or ():
        chain = item.get("chain") or {}
        if chain.get("hook") == hook:
            found.append(BaseChain(chain["table"], chain["name"], hook,
                                   int(chain.get("prio", 0)), chain.get("policy", "accept")))
    return sorted(found, key=lambda c: c.prio)


def chain_rules(table, chain):
    """[(handle, [expression…], comment or None)] of ``chain`` in ``table bridge
    <table>``, or None when the chain does not exist. vnm's rules that match a set
    carry its ipset's name as their comment."""
    items = _list(f"chain {FAMILY} {checked(table)} {checked(chain)}")
    if items is None:
        return None
    return [(i["rule"].get("handle"), i["rule"].get("expr", []), i["rule"].get("comment"))
            for i in items if "rule" in i]


def set_of(table, name):
    """(type, elements) of the set or map ``name``: ``type`` a name or a list of them
    (a concatenation), ``elements`` as nft's JSON has them (maps: [key, data] pairs)."""
    items = _list(f"set {FAMILY} {checked(table)} {checked(name)}")
    if items is None:
        items = _list(f"map {FAMILY} {checked(table)} {checked(name)}")
    if items is None:
        raise Unreadable(f"nft set {name} of table {FAMILY} {table} does not exist")
    for item in items:
        found = item.get("set") or item.get("map")
        if found:
            return found.get("type"), found.get("elem", [])
    raise Unreadable(f"nft set {name}: nothing listed")


def dispatch(table, map_name):
    """{tap: chain} of a verdict map (vnm's ``nic_in``/``nic_out``): the chain each
    tap's element jumps (or goes) to."""
    _, elements = set_of(table, map_name)
    found = {}
    for key, verdict in elements:
        target = (verdict.get("jump") or verdict.get("goto") or {}).get("target")
        if isinstance(key, str) and target:
            found[key] = target
    return found
