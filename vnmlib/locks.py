"""Host-wide serialisation and the record of which NICs use which bridge.

Everything lives under one root-owned run directory (``/run/vnm``, on tmpfs, so
it is empty after a reboot, when no VM is running either). The reference used
world-writable ``/tmp/onevnm-*-lock`` files, one per Ruby class, so the bridge
and 802.1Q drivers never excluded each other (§5.3); here the lock is per link
name, shared by every driver.

Names are scoped by the network namespace (its inode number) so that actions
in different namespaces (tests, nested hosts) never block or see each other.

Bridge users close the window the guests rule leaves open: between ``pre``
(bridge created) and the hypervisor attaching the tap, the bridge has no guest
port, and a concurrent ``clean`` of another VM would delete it. ``pre`` records
``<vm>-<nic>`` under the bridge; ``clean`` removes the record and deletes the
bridge only when no guest port *and* no other record remain.
"""

import errno
import fcntl
import os

from .errors import VnmError
from .sysfs import check_same_namespace

DEFAULT_RUN_DIR = "/run/vnm"


def run_dir():
    """The run directory; ``VNM_RUN_DIR`` overrides it (tests give each test its own)."""
    return os.environ.get("VNM_RUN_DIR") or DEFAULT_RUN_DIR


def _netns_key():
    return f"net{os.stat('/proc/self/ns/net').st_ino}"


def _ensure_dir(path):
    # 0755: root writes, oneadmin may read (`vnm status`); nothing here is secret.
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise VnmError(f"cannot create run directory {path}: {exc.strerror}") from None


class _FileLocks:
    """Exclusive flocks on files of this namespace's lock directory, in sorted order.

    Sorted acquisition gives every action the same global order, so two
    actions needing overlapping sets can never deadlock. The lock files stay
    (deleting a lock file another process waits on breaks mutual exclusion).
    """

    def __init__(self, keys):
        self.keys = sorted(set(keys))
        self.fds = []

    def __enter__(self):
        directory = os.path.join(run_dir(), "locks", _netns_key())
        _ensure_dir(directory)
        try:
            for key in self.keys:
                fd = os.open(os.path.join(directory, key),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self.fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            self.entered()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def entered(self):
        """Checks to run once every lock is held."""

    def __exit__(self, *exc):
        for fd in reversed(self.fds):
            os.close(fd)  # closing releases the flock
        self.fds = []
        return False


class LinkLocks(_FileLocks):
    """The locks of a set of link names (``link.<name>``).

    Holders go on to plan from /sys/class/net, so entering also checks that
    sysfs shows this namespace.
    """

    def __init__(self, names):
        super().__init__(f"link.{name}" for name in names)

    def entered(self):
        check_same_namespace()


class FirewallLock(_FileLocks):
    """The namespace's iptables/ipset state: read, planned and written under one lock.

    A firewall update reads the jumps and sets it replaces, so two updates
    must not interleave; each holds the lock for a few milliseconds. It is
    never taken while link locks are held, nor the other way round.
    """

    def __init__(self):
        super().__init__(["firewall"])


class BridgeUsers:
    """Files ``<run>/<kind>/<netns>/<key>/<vm>-<nic>``; callers hold the key's link lock.

    ``kind`` "users" keys by bridge; the elastic driver's shared proxy-ARP
    entries use "proxy-arp", keyed by gateway and bridge.
    """

    def __init__(self, kind="users"):
        self.base = os.path.join(run_dir(), kind, _netns_key())

    def _dir(self, bridge):
        return os.path.join(self.base, bridge)

    def users(self, bridge):
        from . import plan

        try:
            found = set(os.listdir(self._dir(bridge)))
        except FileNotFoundError:
            found = set()
        if plan.active():
            added, removed = plan.records(self._dir(bridge))
            found = (found | added) - removed
        return found

    def add(self, bridge, user):
        """Record ``user``; True when the record is new (so a rollback may remove it)."""
        from . import plan

        if plan.active():  # vnm plan: remembered for this action's later decisions only
            if user in self.users(bridge):
                return False
            added, removed = plan.records(self._dir(bridge))
            added.add(user)
            removed.discard(user)
            return True
        directory = self._dir(bridge)
        path = os.path.join(directory, user)
        if os.path.exists(path):
            return False
        _ensure_dir(directory)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        return True

    def remove(self, bridge, user):
        from . import plan

        if plan.active():
            added, removed = plan.records(self._dir(bridge))
            added.discard(user)
            removed.add(user)
            return
        try:
            os.unlink(os.path.join(self._dir(bridge), user))
        except FileNotFoundError:
            return
        try:
            os.rmdir(self._dir(bridge))
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise


def nic_user(vm_id, nic_id):
    return f"{vm_id}-{nic_id}"


def run_dir_if_writable():
    """The run directory when this process may write there (root), else None."""
    path = run_dir()
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None
