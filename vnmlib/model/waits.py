"""How long vnm waits: for a lock, a tool, the xtables lock, a deploying VM (the conf file).

Nothing an action does may wait forever: a hung ``ipset``, a stopped
``ovs-vswitchd`` or another action stopped while holding a lock would
otherwise block every later action on the host (issue 28). Each wait has a
bound, configurable with these keys (documented in the shipped
OpenNebulaNetwork.conf); the action that hits one fails with one line naming
what it waited for, and rolls back as on any failure.

The values are set once per process when the action's configuration is read
(:func:`configure`); until then, and in the ``vnm`` command without a tree,
the defaults apply.
"""

from vnmlib.errors import InputError

DEFAULTS = {
    # an action holds a link lock for a few milliseconds, at most for its tools'
    # bounded runs; a queue of 50 VMs' actions on one lock stays well below this
    "lock_timeout": 60,
    # the longest a healthy iptables-restore / ipset restore of thousands of
    # rules or entries takes is a few seconds
    "tool_timeout": 30,
    # iptables -w: how long to wait for the xtables lock another program holds
    # (iptables-legacy hosts); the reference's iptables calls gave up after 3 s
    "xtables_wait": 3,
    # vnm gc: a bridge-user record younger than this is a VM being deployed
    # (pre ran, its domain not started yet): alive although virsh does not list it
    "gc_record_grace": 3600,
}

_current = dict(DEFAULTS)


def configure(conf):
    """Take the bounds from a loaded configuration; a bad value is an input error."""
    for key, default in DEFAULTS.items():
        value = conf.get(key, default)
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        if isinstance(value, bool) or not number > 0:
            raise InputError(f"{key} {value!r} in OpenNebulaNetwork.conf is not a positive "
                             "number of seconds")
        _current[key] = number


def seconds(key):
    return _current[key]


def shown(value):
    """3.0 -> "3", 2.5 -> "2.5": for messages and tool arguments."""
    return f"{value:g}"
