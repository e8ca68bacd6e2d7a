"""Opening files as root without following another user's symlinks (SPEC §7).

The remotes tree and its configuration belong to ``oneadmin``. When root reads
something there (``vnm gc``, ``vnm doctor``, an action a root oned runs), a
symlink oneadmin planted must not lead root to a file oneadmin cannot read
(``OpenNebulaNetwork.conf -> /etc/shadow``: YAML's error messages quote the
text they choose on). So, for root, every component of the path is opened
relative to its parent with ``O_NOFOLLOW``, and a symlink is followed only when
root owns it (the checkout's own ``etc/vnm`` links, made by whoever installed
vnm as root). Anyone else opens paths as usual: the kernel's permissions
already apply to them.
"""

import os
import stat

from vnmlib.errors import VnmError

_MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_fd(path, flags=os.O_RDONLY):
    """An fd of ``path`` opened with ``flags``; as root, through root-owned links only."""
    if os.geteuid() != 0:
        return os.open(path, flags | os.O_CLOEXEC)
    return _walk(path, flags)


def read_bytes(path):
    """The contents of ``path`` (see :func:`open_fd`)."""
    with os.fdopen(open_fd(path), "rb") as handle:
        return handle.read()


def _walk(path, flags):
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    pending = [part for part in path.split("/") if part not in ("", ".")]
    if not pending:
        return os.open("/", flags | os.O_CLOEXEC)
    fd = os.open("/", _DIR_FLAGS)
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                if info.st_uid != 0:
                    raise VnmError(f"{path}: {name!r} is a symbolic link owned by uid "
                                   f"{info.st_uid}; root follows no link another user owns")
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(40, "Too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", _DIR_FLAGS)
                pending[:0] = [part for part in target.split("/") if part not in ("", ".")]
                continue
            # O_NOFOLLOW: a link swapped in since the stat above fails the open
            # instead of being followed
            last = not pending
            child = os.open(name, (flags | os.O_NOFOLLOW | os.O_CLOEXEC) if last else _DIR_FLAGS,
                            dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise
