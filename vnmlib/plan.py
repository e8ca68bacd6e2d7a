"""Plan mode: an action computes its changes with its own code and applies none.

``vnm plan`` runs a driver's handler inside :func:`recording`. The writers
(:func:`vnmlib.steps.apply`, the firewall's commit, the bridge-user records)
ask :func:`active` and, when it is on, :func:`record` what they would do and
return without doing it. Planning and applying are the same code, so they
cannot drift; the plan's lines are the INFO lines the real run logs.
"""

import contextlib

_lines = None


def active():
    return _lines is not None


def record(line):
    _lines.append(str(line))


@contextlib.contextmanager
def recording():
    """Collect the planned changes (a list, filled while the block runs)."""
    global _lines
    _lines = []
    try:
        yield _lines
    finally:
        _lines = None
