"""For one NIC, the firewall change that *started* last wins (issue 28, point 7).

An action builds a NIC's rules before it takes the firewall lock, so of two
``update_sg`` of one VM sent 0.2 s apart, a large older one can reach the lock
after a small newer one and overwrite it. So each action takes its start time
before it reads the VM; under the lock it compares that with the start of the
change last applied to each NIC (``<run>/sg-started/<netns>/one-<vm>-<nic>``),
and an older one leaves that NIC alone. ``clean`` removes the NIC's file with
its chains.

Beside it, ``<run>/sg-applied/<netns>/one-<vm>-<nic>`` keeps the digest of the
protection that change wrote (:func:`.in_place.digest`), once its commit went
in: removed before a commit starts and not put back when it fails, so a
digest always describes a completed commit, and :mod:`.in_place` can trust it.

The clock is CLOCK_MONOTONIC: one clock for every process of the host, which
wall-clock steps (NTP) do not move; the run directory is on tmpfs, emptied by
the reboot that restarts the clock.
"""

import contextlib
import os
import time

from vnmlib.host import locks
from vnmlib.errors import VnmError

DIGESTS = "sg-applied"


def now():
    return time.monotonic_ns()


def _dir(kind="sg-started"):
    return os.path.join(locks.run_dir(), kind, locks.netns_key())


def applied(base):
    """Start time (ns) of the change last applied to NIC ``base``; None when unknown."""
    path = os.path.join(_dir(), base)
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        locks.warn(f"{path} is unreadable ({getattr(exc, 'strerror', None) or exc}): ignored")
        return None
    if not text.isdigit():
        locks.warn(f"{path} does not hold a start time: ignored")
        return None
    return int(text)


def digests(install):
    """{chain: digest of its last completed commit, or None} of ``install`` (NicFirewalls).

    None too when the NIC's start time is not readable: a run directory that
    lost one record may have lost the other, so the NIC is committed whole."""
    found = {}
    for nf in install:
        if applied(nf.chain) is None:
            found[nf.chain] = None
            continue
        try:
            with open(os.path.join(_dir(DIGESTS), nf.chain), encoding="ascii") as handle:
                found[nf.chain] = handle.read().strip()
        except (OSError, UnicodeDecodeError):  # none (or unreadable): the full commit
            found[nf.chain] = None
    return found


def superseded(install, started, log):
    """``install`` without the NICs whose applied change started after ``started``."""
    kept = []
    for nf in install:
        last = applied(nf.chain)
        if last is not None and last > started:
            log.info(f"{nf.label}: not applied: a later update of its protection (started "
                     f"{(last - started) / 1e9:.3f} s after this one) is already in place")
        else:
            kept.append(nf)
    return kept


def _write(base, value, kind="sg-started"):
    directory = _dir(kind)
    locks.ensure_dir(directory)
    path = os.path.join(directory, base)
    try:
        if value is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        tmp = f"{path}.{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as handle:
            handle.write(f"{value}\n")
        os.replace(tmp, path)
    except IsADirectoryError:  # applied() has warned of it: replaced
        try:
            os.rmdir(path)
        except OSError as exc:
            raise VnmError(f"{path} is a directory and cannot be removed: {exc.strerror}") \
                from None
        _write(base, value, kind)
    except OSError as exc:
        raise VnmError(f"cannot record the start of this firewall change in {path}: "
                       f"{exc.strerror}") from None


@contextlib.contextmanager
def recorded(install, remove, started, done=None):
    """Record ``started`` for ``install``, forget ``remove``, before the block commits.

    Written first, so a full run directory fails the action before anything
    changes; put back as it was when the block fails. The NICs' digests go
    before it and come back only as ``done`` ({chain: digest}) once the block
    succeeded: what a failed or interrupted commit left is not known.
    """
    previous = {nf.chain: applied(nf.chain) for nf in install}
    previous.update((base, applied(base)) for base in remove)
    try:
        for base in previous:
            _write(base, None, DIGESTS)
        for nf in install:
            _write(nf.chain, started)
        for base in remove:
            _write(base, None)
        yield
    except BaseException:
        for base, value in previous.items():
            with contextlib.suppress(VnmError):
                _write(base, value)
        raise
    _write_digests(install, done or {})


def confirm(install, started, done):
    """Record ``started`` and the digest in ``done`` ({chain: digest}) of each of
    ``install``: its protection was found in the kernel, whole."""
    for nf in install:
        _write(nf.chain, started)
    _write_digests(install, done)


def _write_digests(install, done):
    for nf in install:
        if done.get(nf.chain):
            _write(nf.chain, done[nf.chain], DIGESTS)
