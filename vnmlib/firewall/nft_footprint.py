"""What each NIC has in ``table bridge vnm``, so an update reads only its own objects.

Listing the table's chains, sets and dispatch maps grows with every NIC the
host protects (nft 1.0.6 fetches all of them: 0.5 s under QEMU at 1,000 NICs,
most of a ``post``). An update needs only its NICs' objects, so after every
commit vnm records each NIC's *footprint*: the taps that dispatch to its chains,
its wire guard's text (an unchanged guard is not rewritten: rewriting is a
delete, which makes nft fetch every chain and set first) and its named sets
(``<run>/nft-footprint/<netns>/one-<vm>-<nic>``; vnm's
rules carry their sets in them now, so only a table an older vnm wrote has
named ones, deleted by the NIC's next update). A ``table`` record says every
NIC of the table has one (written when vnm reads the table whole: at its
bootstrap, or adopting a table an older vnm made).

The records are never taken for the kernel's state where it matters: a NIC's
dispatch is declared and its chains flushed and declared with their rules
whether recorded or not, so an element gone behind vnm's back is back and a
rule vnm does not know is gone; only deletions follow the records, and a transaction
planned from records the table does not match (the kernel refuses it) is
planned again from the whole table (:func:`.backend_nft.commit`). A record is
written before its commit as the union of the old and new footprints and
narrowed after it, so an interrupted commit leaves at most names that are
gone, never objects without a name. The run directory is on tmpfs: a reboot
empties it together with the table.
"""

import json
import os

from vnmlib.errors import VnmError
from vnmlib.host import locks

_DIR = "nft-footprint"
_TABLE = "table"  # not a NIC base (those are one-<vm>-<nic>)


def _dir():
    return os.path.join(locks.run_dir(), _DIR, locks.netns_key())


def _path(name):
    return os.path.join(_dir(), name)


def _read(name):
    try:
        with open(_path(name), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        locks.warn(f"{_path(name)} is unreadable ({getattr(exc, 'strerror', None) or exc}): "
                   "the table is read whole")
        return None
    return data if isinstance(data, dict) else None


def _write(name, data):
    locks.ensure_dir(_dir())
    path = _path(name)
    temporary = f"{path}.{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(temporary, path)
    except OSError as exc:
        raise VnmError(f"cannot record the nft objects of {name} in {path}: "
                       f"{exc.strerror}") from None


def table():
    """{"routed": bool} when every NIC of the table has a footprint, else None."""
    found = _read(_TABLE)
    return found if found is not None and isinstance(found.get("routed"), bool) else None


def known(base):
    """Has NIC ``base`` a footprint (its protection was committed)?"""
    return os.path.exists(_path(base))


def of(base):
    """{"sets": [named sets], "taps": {map: [taps]}, "guard": text or None} of NIC
    ``base``; empty when unknown. ``guard``: its wire guard's nft text as its last
    commit wrote it (None when not known to be in the kernel)."""
    found = _read(base) or {}
    sets = [s for s in found.get("sets", ()) if isinstance(s, str)]
    taps = {m: [t for t in ts if isinstance(t, str)]
            for m, ts in (found.get("taps") or {}).items() if isinstance(ts, list)}
    guard = found.get("guard")
    return {"sets": sets, "taps": taps, "guard": guard if isinstance(guard, str) else None}


def wanted(nf, dispatch):
    """The footprint ``nf`` (a NicFirewall) has once committed (no named set: its sets
    are in its rules); ``dispatch``: its [(map, chain)] (:func:`.nft_render.dispatch_of`)."""
    taps = {}
    for map_name, _chain in dispatch:
        taps.setdefault(map_name, []).append(nf.tap)
    return {"sets": [], "taps": taps, "guard": guard_text(nf.guard)}


def guard_text(guard):
    """What a footprint keeps of a wire guard (:class:`.l2guard.WireGuard` or None)."""
    return "\n".join(guard.script()) if guard is not None else None


def union(old, new):
    """The record while a commit goes in: every name either has, and no guard (which
    of the two is in the kernel is not known until the commit is done)."""
    return {"sets": sorted(set(old["sets"]) | set(new["sets"])),
            "taps": {m: sorted(set(old["taps"].get(m, ())) | set(new["taps"].get(m, ())))
                     for m in set(old["taps"]) | set(new["taps"])},
            "guard": None}


def save(footprints):
    """Write {base: footprint}."""
    for base, footprint in footprints.items():
        _write(base, footprint)


def forget(bases):
    for base in bases:
        try:
            os.unlink(_path(base))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise VnmError(f"cannot forget the nft objects of {base}: {exc.strerror}") \
                from None


def adopt(footprints, routed):
    """The table as read whole: every NIC's footprint, then the record that they are all
    there (``routed``: the output hook's lookup exists)."""
    save(footprints)
    _write(_TABLE, {"routed": routed})


def table_routed(routed):
    """Keep the table record's word on the output hook after a commit from footprints."""
    _write(_TABLE, {"routed": routed})


def drop_table():
    """The records no longer describe the table (a transaction planned from them was
    refused): the next update reads it whole and adopts it again."""
    forget([_TABLE])
