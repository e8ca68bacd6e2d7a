"""Plan mode: an action computes its changes with its own code and applies none.

``vnm plan`` runs a driver's handler inside :func:`recording`, with a
:class:`RecordingLog`. Every change to the host is a step (the firewall's
commit too), and :func:`vnmlib.host.steps.apply` is the one writer that asks
:func:`active`: it logs each step instead of applying it, and the recording
log's INFO lines are the plan. Planning and applying are the same code, so they
cannot drift. The bridge-user records keep their planned changes here
(:func:`records`), so that later decisions of the same action see them.
"""

import contextlib

_lines = None
_records = {}


def active():
    return _lines is not None


class RecordingLog:
    """An action's log while it is planned: INFO lines are the plan's lines;
    warnings and errors still reach the operator through ``log``."""

    def __init__(self, log):
        self._log = log

    def info(self, message):
        _lines.extend(str(message).rstrip("\n").split("\n"))

    def __getattr__(self, name):
        return getattr(self._log, name)


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
