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

Every lock wait is bounded (``lock_timeout``, :mod:`vnmlib.model.waits`), and a
holder writes who it is (pid, action, VM, since when) into the lock file it
holds, so a timeout, ``vnm status`` and ``vnm doctor`` can name it.

The run directory is vnm's own, but a full disk, an admin's mistake or a
crash can leave a file where a directory belongs, a record with a name no
NIC has, or an unreadable entry. Each such entry is one ``WARN`` line naming
it and is repaired (a file where a directory belongs is replaced) or ignored
(a record that names no NIC keeps nothing), never a Python error.
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import sys
import time

from vnmlib.model import waits
from vnmlib.errors import VnmError
from vnmlib.host.sysfs import check_same_namespace

DEFAULT_RUN_DIR = "/run/vnm"
# <vm>-<nic> in ASCII digits (\d would take any script's): the names nic_user writes
RECORD_NAME = re.compile(r"^[0-9]+-[0-9]+$")

# Who this process is, written into the lock files it holds (see identify()).
_identity = {"action": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "vnm",
             "vm": None}
_warned = set()


def run_dir():
    """The run directory; ``VNM_RUN_DIR`` overrides it (tests give each test its own)."""
    return os.environ.get("VNM_RUN_DIR") or DEFAULT_RUN_DIR


def netns_key():
    return f"net{os.stat('/proc/self/ns/net').st_ino}"


def identify(action, vm_id=None):
    """Name this process's action (and VM) for lock holders and warnings."""
    _identity["action"] = action
    if vm_id is not None:
        _identity["vm"] = vm_id


def warn(message):
    """One ``WARN: <action>: …`` line per distinct problem in this process."""
    if message in _warned:
        return
    _warned.add(message)
    from vnmlib.log import Log

    Log(_identity["action"]).warning(message)


def _inside_run_dir(path):
    root = os.path.abspath(run_dir())
    path = os.path.abspath(path)
    return path == root or path.startswith(root + os.sep)


def _replace_non_directory(path):
    """The first component of ``path`` (inside the run directory) that is not a
    directory is removed, with a warning; False when there is none."""
    root = os.path.abspath(run_dir())
    current = root
    parts = os.path.relpath(os.path.abspath(path), root).split(os.sep)
    for part in [""] + parts:
        current = os.path.join(current, part) if part else current
        if os.path.lexists(current) and not os.path.isdir(current):
            os.unlink(current)
            warn(f"{current} is not a directory: replaced by one")
            return True
    return False


def ensure_dir(path):
    # 0755: root writes, oneadmin may read (`vnm status`); nothing here is secret.
    for _ in range(len(path.split(os.sep)) + 1):
        try:
            os.makedirs(path, mode=0o755, exist_ok=True)
            return
        except (FileExistsError, NotADirectoryError) as exc:
            error = exc
            try:
                if not (_inside_run_dir(path) and _replace_non_directory(path)):
                    break
            except OSError as repair:
                error = repair
                break
        except OSError as exc:
            error = exc
            break
    raise VnmError(f"cannot create run directory {path}: {error.strerror}")


# -- locks ---------------------------------------------------------------------------

class _Expired(Exception):
    pass


def _acquire(fd, timeout):
    """Take the exclusive flock of ``fd``; False when ``timeout`` seconds pass first.

    flock(2) itself has no timeout: the wait is cut by SIGALRM, whose handler
    raises (Python would otherwise retry the interrupted call, PEP 475).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if timeout <= 0:
            return False
    waiting = [True]

    def expire(signum, frame):
        if waiting[0]:
            raise _Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    except _Expired:
        return False
    finally:
        waiting[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _open_lock_file(path):
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags, 0o600)
    except IsADirectoryError:
        # nobody can hold a directory's flock here: it is debris, not a lock
        remove_debris_directory(path, "lock file", "replaced")
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise VnmError(f"cannot open lock file {path}: {exc.strerror}") from None


def remove_debris_directory(path, what, outcome):
    """An empty directory where vnm keeps the file ``what`` (a crash's or a hand's
    debris, never vnm's own): removed with a WARN, or the action fails saying why."""
    try:
        os.rmdir(path)
    except OSError as exc:
        raise VnmError(f"{what} {path} is a directory and cannot be removed: "
                       f"{exc.strerror}") from None
    warn(f"{what} {path} was a directory: {outcome}")


def _lock_label(key):
    return f"link {key[5:]}" if key.startswith("link.") else key


def read_holder(path):
    """{"pid", "action", "vm", "since"} written by the lock's last holder, or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.loads(handle.read() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder):
    if not holder:
        return "a process that did not say who it is"
    what = ", ".join(str(x) for x in (holder.get("action"),
                                      holder.get("vm") is not None and f"VM {holder['vm']}")
                     if x)
    since = holder.get("since")
    age = f" for {time.time() - since:.0f} s" if isinstance(since, (int, float)) else ""
    return f"pid {holder.get('pid')} ({what or 'unknown action'}){age}"


class _FileLocks:
    """Exclusive flocks on files of this namespace's lock directory, in sorted order.

    Sorted acquisition gives every action the same global order, so two
    actions needing overlapping sets can never deadlock. The lock files stay
    (deleting a lock file another process waits on breaks mutual exclusion).
    The whole set is taken within one ``lock_timeout``.
    """

    def __init__(self, keys):
        self.keys = sorted(set(keys))
        self.fds = []

    def __enter__(self):
        directory = os.path.join(run_dir(), "locks", netns_key())
        ensure_dir(directory)
        limit = waits.seconds("lock_timeout")
        deadline = time.monotonic() + limit
        holder = json.dumps({"pid": os.getpid(), "action": _identity["action"],
                             "vm": _identity["vm"], "since": time.time()}).encode()
        try:
            for key in self.keys:
                path = os.path.join(directory, key)
                fd = _open_lock_file(path)
                try:
                    taken = _acquire(fd, deadline - time.monotonic())
                except BaseException:
                    os.close(fd)
                    raise
                if not taken:
                    os.close(fd)  # not ours: its holder's record stays as it is
                    raise VnmError(f"waited {waits.shown(limit)} s (lock_timeout) for the lock "
                                   f"of {_lock_label(key)}, held by "
                                   f"{describe_holder(read_holder(path))}")
                self.fds.append(fd)
                _write_holder(fd, holder)
            self.entered()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def entered(self):
        """Checks to run once every lock is held."""

    def __exit__(self, *exc):
        for fd in reversed(self.fds):
            try:
                os.ftruncate(fd, 0)  # released: nobody holds it (see held_locks)
            except OSError:
                pass
            os.close(fd)  # closing releases the flock
        self.fds = []
        return False


def _write_holder(fd, holder):
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder, 0)
    except OSError:
        # a full run directory: the lock is held all the same; only its holder
        # goes unnamed in timeouts and `vnm status`
        pass


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


def _flocked_inodes():
    """{(device, inode): pid} of the flocks held on this host (/proc/locks)."""
    held = {}
    try:
        with open("/proc/locks", encoding="ascii") as handle:
            lines = handle.readlines()
    except OSError:
        return held
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[3] == "WRITE":
            major, minor, inode = fields[5].split(":")
            held[(os.makedev(int(major, 16), int(minor, 16)), int(inode))] = int(fields[4])
    return held


def held_locks():
    """[{"lock", "pid", "action", "vm", "age"}] of this namespace's locks held right now."""
    directory = os.path.join(run_dir(), "locks", netns_key())
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    flocked = _flocked_inodes()
    found = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        pid = flocked.get((st.st_dev, st.st_ino))
        if pid is None:
            continue
        holder = read_holder(path) or {}
        since = holder.get("since")
        found.append({"lock": _lock_label(name), "pid": holder.get("pid", pid),
                      "action": holder.get("action"), "vm": holder.get("vm"),
                      "age": round(time.time() - since, 1)
                      if isinstance(since, (int, float)) else None})
    return found


# -- records ---------------------------------------------------------------------------

class BridgeUsers:
    """Files ``<run>/<kind>/<netns>/<key>/<vm>-<nic>``; callers hold the key's link lock.

    ``kind`` "users" keys by bridge; the elastic driver's shared proxy-ARP
    entries use "proxy-arp", keyed by gateway and bridge. A record's
    modification time is when its ``pre`` last ran (``vnm gc`` spares young
    ones: that VM's domain may not have started yet).
    """

    def __init__(self, kind="users"):
        self.base = os.path.join(run_dir(), kind, netns_key())

    def _dir(self, bridge):
        return os.path.join(self.base, bridge)

    def keys(self):
        """The bridges (keys) with records; entries that are not directories are warned."""
        return [key for key in _list(self.base) if _is_dir(os.path.join(self.base, key))]

    def users(self, bridge):
        from vnmlib.host import plan

        directory = self._dir(bridge)
        found = {user for user in _list(directory) if _valid_record(directory, user)}
        if plan.active():
            added, removed = plan.records(directory)
            found = (found | added) - removed
        return found

    def age(self, bridge, user):
        """Seconds since the record was written (or its ``pre`` re-ran); None without one."""
        try:
            return time.time() - os.lstat(os.path.join(self._dir(bridge), user)).st_mtime
        except OSError:
            return None

    def add(self, bridge, user):
        """Record ``user``; True when the record is new (so a rollback may remove it)."""
        from vnmlib.host import plan

        if plan.active():  # vnm plan: remembered for this action's later decisions only
            if user in self.users(bridge):
                return False
            added, removed = plan.records(self._dir(bridge))
            added.add(user)
            removed.discard(user)
            return True
        directory = self._dir(bridge)
        path = os.path.join(directory, user)
        ensure_dir(directory)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            _touch(path)  # pre ran again: the VM is being deployed now
            return False
        except OSError as exc:
            raise VnmError(f"cannot write the bridge-user record {path}: {exc.strerror}") \
                from None
        os.close(fd)
        return True

    @contextlib.contextmanager
    def recorded(self, pairs):
        """Record ``[(bridge, user)]`` before the block builds what they protect.

        A record written first keeps a concurrent ``clean`` or ``vnm gc`` off
        the bridge from the moment it exists, and a record that cannot be
        written (full run directory) fails ``pre`` before anything is built.
        When the block fails, the records it added are removed again.
        """
        added = []
        try:
            for bridge, user in pairs:
                if self.add(bridge, user):
                    added.append((bridge, user))
            yield
        except BaseException:
            for bridge, user in reversed(added):
                self.remove(bridge, user)
            raise

    def remove(self, bridge, user):
        from vnmlib.host import plan

        if plan.active():
            added, removed = plan.records(self._dir(bridge))
            added.discard(user)
            removed.add(user)
            return
        directory = self._dir(bridge)
        if os.path.lexists(directory) and not os.path.isdir(directory):
            os.unlink(directory)
            warn(f"{directory} is not a directory of records: removed")
            return
        _remove_entry(os.path.join(directory, user))
        try:
            os.rmdir(directory)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise VnmError(f"cannot remove {directory}: {exc.strerror}") from None


def _touch(path):
    try:
        os.utime(path)
    except OSError as exc:
        raise VnmError(f"cannot refresh the bridge-user record {path}: {exc.strerror}") \
            from None


def _remove_entry(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        remove_debris_directory(path, "bridge-user record", "removed")
    except OSError as exc:
        raise VnmError(f"cannot remove the bridge-user record {path}: {exc.strerror}") from None


def _list(directory):
    """Names in ``directory``; a missing one is empty, a bad one is warned and empty."""
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        warn(f"{directory} is not a directory: ignored")
        return []
    except OSError as exc:
        raise VnmError(f"cannot read {directory}: {exc.strerror}") from None


def _is_dir(path):
    if os.path.isdir(path):
        return True
    warn(f"{path} is not a directory of records: ignored")
    return False


def _valid_record(directory, name):
    if RECORD_NAME.match(name):
        return True
    warn(f"{os.path.join(directory, name)} is not a <vm>-<nic> record: ignored")
    return False


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


# -- checking the run directory (vnm doctor) ----------------------------------------------

# kind -> what its <kind>/<netns>/ directories hold: "files" (lock files or
# per-NIC files) or "records" (<key>/<vm>-<nic> record files)
RUN_LAYOUT = {"locks": "files", "users": "records", "proxy-arp": "records",
              "sg-started": "files"}


def run_dir_problems():
    """[(path, problem)] of the run directory's entries vnm cannot use (read-only)."""
    root = run_dir()
    problems = []

    def entries(path):
        if not os.path.lexists(path):
            return []
        if not os.path.isdir(path) or os.path.islink(path):
            problems.append((path, "not a directory"))
            return []
        try:
            return sorted(os.listdir(path))
        except OSError as exc:
            problems.append((path, f"unreadable: {exc.strerror}"))
            return []

    def regular_file(path):
        if os.path.islink(path) or not os.path.isfile(path):
            problems.append((path, "not a regular file"))

    if os.path.lexists(root) and not os.path.isdir(root):
        return [(root, "not a directory")]
    for kind, holds in RUN_LAYOUT.items():
        for netns in entries(os.path.join(root, kind)):
            for name in entries(os.path.join(root, kind, netns)):
                path = os.path.join(root, kind, netns, name)
                if holds == "files":
                    regular_file(path)
                    if kind == "sg-started" and os.path.isfile(path) and not _holds_number(path):
                        problems.append((path, "does not hold a start time"))
                    continue
                for user in entries(path):
                    if RECORD_NAME.match(user):
                        regular_file(os.path.join(path, user))
                    else:
                        problems.append((os.path.join(path, user), "not a <vm>-<nic> record"))
    return problems


def _holds_number(path):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip().isdigit()
    except (OSError, UnicodeDecodeError):
        return False
