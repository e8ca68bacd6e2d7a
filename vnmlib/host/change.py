"""The one shape of a change to the host: lock, read, plan, apply.

Every action that changes links does the same four things in this order:
take the :class:`~vnmlib.host.locks.LinkLocks` of every link it names, read the
host *under those locks* (so what it read stays true), plan steps from that
reading, apply them (undoing on failure). Writing it once keeps the order
from being got wrong at one of many call sites: a read before the lock is a
race with a concurrent action on the same bridge.
"""

import contextlib

from vnmlib.host import steps
from vnmlib.host.locks import BridgeUsers, LinkLocks
from vnmlib.host.view import LinkView


def change_links(log, names, plan, read=LinkView, users=(), records="users"):
    """Lock ``names``, call ``plan(read())`` and apply the steps it returns.

    ``read`` builds the host view once the locks are held (default: the links,
    :class:`LinkView`). ``users`` are ``[(key, user)]`` records of the kind
    ``records`` (bridge users; elastic's "proxy-arp") written before anything
    is built and removed again if planning or applying fails
    (:meth:`BridgeUsers.recorded`). Returns the applied steps.
    """
    with LinkLocks(names):
        recorded = (BridgeUsers(records).recorded(users) if users
                    else contextlib.nullcontext())
        with recorded:
            planned = plan(read())
            steps.apply(planned, log)
    return planned
