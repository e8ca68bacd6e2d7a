"""Plan mode: an action computes its changes with its own code and applies none.

``vnm plan`` runs a driver's handler inside :func:`recording`. The writers
(:func:`vnmlib.host.steps.apply`, the firewall's commit, the bridge-user records)
ask :func:`active` and, when it is on, :func:`record` what they would do and
return without doing it. Planning and applying are the same code, so they
cannot drift; the plan's lines are the INFO lines the real run logs.
"""

import contextlib

_lines = None
_records = {}


def active():
    return _lines is not None


def record(line):
    _lines.append(str(line))


def records(key):
    """(added, removed): the planned changes to one directory of records, so that
    later decisions of the same action (delete the bridge?) see them."""
    return _records.setdefault(key, (set(), set()))


@contextlib.contextmanager
def recording():
    """Collect the planned changes (a list, filled while the block runs)."""
    global _lines
    _lines = []
    _records.clear()
    try:
        yield _lines
    finally:
        _lines = None
        _records.clear()
