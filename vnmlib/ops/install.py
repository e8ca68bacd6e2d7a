"""Lay out the remotes tree as oned and ``onehost sync`` expect it (``vnm install``).

::

    <remotes>/vnm/run-action              the one entry script (vnmlib/shipped/run-action)
    <remotes>/vnm/<driver>/<action>       symlinks to ../run-action, one per action
    <remotes>/vnm/<driver>/<action>.d/    admins' hooks: created when missing, never touched
    <remotes>/vnm/vnmlib/                 this package, byte-compiled
    <remotes>/etc/vnm/OpenNebulaNetwork.conf   written when missing; an edited one is kept
    <remotes>/etc/vnm/elastic.yaml.example

``plan_install`` computes the changes, ``apply`` makes them; ``--dry-run``
prints the first only. vnmlib is byte-compiled with hash-checked .pyc files:
``onehost sync`` need not keep modification times for the hosts to use them,
and a host runs no compiler on its first action.
"""

import difflib
import filecmp
import os
import shutil

import vnmlib
from vnmlib.contract.context import REQUIRED_ARGS
from vnmlib.drivers import DRIVER_MODULES, load_driver

PACKAGE = os.path.dirname(os.path.abspath(vnmlib.__file__))
SHIPPED = os.path.join(PACKAGE, "shipped")


class Change:
    """One thing install does: ``kind`` (create, update, keep…), the path, and a detail."""

    __slots__ = ("kind", "path", "detail")

    def __init__(self, kind, path, detail=""):
        self.kind, self.path, self.detail = kind, path, detail

    def as_dict(self):
        return {"change": self.kind, "path": self.path, "detail": self.detail}


def _actions(driver):
    """(actions, hook directory names) of ``driver``; see :func:`vnmlib.contract.action.hooks_dir`.

    elastic's front-end ``clean`` runs no hooks, its host's ``remote_clean``
    runs ``clean.d``: the directories are those the handlers name.
    """
    handlers = {a: h for a, h in load_driver(driver).ACTIONS.items() if a in REQUIRED_ARGS}
    hooks = {getattr(h, "hooks", a) for a, h in handlers.items()} - {None}
    return list(handlers), sorted(hooks)


def _library_differs(target):
    """True when ``target`` (an installed vnmlib) is not this package's sources."""
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        relative = os.path.relpath(root, PACKAGE)
        for name in files:
            if name.endswith((".pyc", ".pyo")):
                continue
            theirs = os.path.join(target, relative, name)
            if not os.path.isfile(theirs) or not filecmp.cmp(os.path.join(root, name), theirs,
                                                              shallow=False):
                return True
    return False


def _conf_change(path, shipped):
    if not os.path.exists(path):
        return Change("create", path)
    if filecmp.cmp(path, shipped, shallow=False):
        return Change("same", path)
    with open(path, encoding="utf-8") as mine, open(shipped, encoding="utf-8") as theirs:
        diff = "".join(difflib.unified_diff(mine.readlines(), theirs.readlines(),
                                            "yours: " + path, "shipped", n=1))
    return Change("keep", path, "edited by an admin, kept; the shipped file differs:\n" + diff)


def plan_install(remotes):
    """The changes installing into ``remotes`` makes (a list of :class:`Change`)."""
    tree = os.path.join(remotes, "vnm")
    changes = []
    entry = os.path.join(tree, "run-action")
    shipped_entry = os.path.join(SHIPPED, "run-action")
    if not os.path.isfile(entry):
        changes.append(Change("create", entry))
    elif not filecmp.cmp(entry, shipped_entry, shallow=False):
        changes.append(Change("update", entry))
    for driver in DRIVER_MODULES:
        actions, hook_dirs = _actions(driver)
        for action in actions:
            link = os.path.join(tree, driver, action)
            if os.path.islink(link) and os.readlink(link) == "../run-action":
                continue
            changes.append(Change("update" if os.path.lexists(link) else "create", link,
                                  "-> ../run-action"))
        for name in hook_dirs:
            hooks = os.path.join(tree, driver, name + ".d")
            if not os.path.isdir(hooks):
                changes.append(Change("create", hooks + "/"))
                continue
            kept = sorted(n for n in os.listdir(hooks) if not n.startswith("."))
            if kept:
                changes.append(Change("keep", hooks + "/", f"hooks: {', '.join(kept)}"))
    library = os.path.join(tree, "vnmlib")
    if not os.path.isdir(library):
        changes.append(Change("create", library + "/", "and byte-compiled"))
    elif _library_differs(library):
        changes.append(Change("update", library + "/", "replaced, and byte-compiled"))
    etc = os.path.join(remotes, "etc", "vnm")
    changes.append(_conf_change(os.path.join(etc, "OpenNebulaNetwork.conf"),
                                os.path.join(SHIPPED, "OpenNebulaNetwork.conf")))
    example = os.path.join(etc, "elastic.yaml.example")
    if not os.path.exists(example) or not filecmp.cmp(
            example, os.path.join(SHIPPED, "elastic.yaml.example"), shallow=False):
        changes.append(Change("create" if not os.path.exists(example) else "update", example))
    return [c for c in changes if c.kind != "same"]


def _copy_library(target):
    """This package into ``target``, replaced as a whole, then byte-compiled."""
    import compileall
    import py_compile

    fresh = target + ".new"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(PACKAGE, fresh, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    compileall.compile_dir(fresh, quiet=1, ddir=target,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    old = target + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(target):
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)


def _replace_file(source, path, mode):
    """``path`` becomes a copy of ``source``: written beside it, then renamed over it,
    so whatever was at ``path`` (a symlink, say) is replaced, never written through."""
    fresh = f"{path}.vnm-new"
    if os.path.lexists(fresh):  # left by an interrupted install
        os.unlink(fresh)
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
        shutil.copyfileobj(data, out)
    os.chmod(fresh, mode)  # the umask may have narrowed it
    os.replace(fresh, path)


def apply(remotes, changes):
    """Make ``changes`` (from :func:`plan_install`) in ``remotes``."""
    tree = os.path.join(remotes, "vnm")
    for change in changes:
        path = change.path.rstrip("/")
        if change.kind == "keep":
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if path == os.path.join(tree, "run-action"):
            _replace_file(os.path.join(SHIPPED, "run-action"), path, 0o755)
        elif path == os.path.join(tree, "vnmlib"):
            _copy_library(path)
        elif path.endswith(".d"):
            os.makedirs(path, exist_ok=True)
        elif os.path.dirname(path) == os.path.join(remotes, "etc", "vnm"):
            _replace_file(os.path.join(SHIPPED, os.path.basename(path)), path, 0o644)
        else:  # an action: the symlink to the entry script
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink("../run-action", path)


def install(remotes):
    """Plan and apply; the changes made."""
    changes = plan_install(remotes)
    apply(remotes, changes)
    return changes


# --- run as root: never through another user's symlinks (SPEC §7) ------------

def tree_owner(remotes):
    """The uid that owns ``remotes`` (or its nearest existing ancestor).

    A symlink on the way that someone other than root owns is refused: root
    would otherwise write wherever that user points it.
    """
    path = os.path.abspath(remotes)
    while True:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            path = os.path.dirname(path)
            continue
        if os.path.islink(path):
            if info.st_uid != 0:
                raise InstallError(f"{path} is a symbolic link owned by uid {info.st_uid}; "
                                   "root follows no link another user owns")
            path = os.path.join(os.path.dirname(path), os.readlink(path))
            continue
        return info.st_uid, info.st_gid


def _foreign_paths(remotes, changes):
    """Existing paths install would write that are links, or owned by another user than root."""
    roots = [os.path.join(remotes, "vnm"), os.path.join(remotes, "etc")]
    paths = {c.path.rstrip("/") for c in changes} | set(roots) | {
        os.path.join(remotes, "etc", "vnm")}
    for change in changes:
        parent = os.path.dirname(change.path.rstrip("/"))
        while parent.startswith(remotes.rstrip("/") + "/"):
            paths.add(parent)
            parent = os.path.dirname(parent)
    found = []
    for path in sorted(paths):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        # the action symlinks are vnm's own: replaced, never followed
        ours = os.path.islink(path) and os.readlink(path) == "../run-action"
        if info.st_uid != 0 or (os.path.islink(path) and not ours):
            found.append(path)
    return found


class InstallError(Exception):
    pass


def install_as_owner(remotes, dry_run=False):
    """What ``vnm install`` does: plan (and unless ``dry_run`` apply) as the tree's owner.

    Run as root on a tree another user (oneadmin) owns, the work happens in a
    child process that has become that user, so a symlink planted in the tree
    can only lead to files the owner could write anyway. On a root-owned
    tree, root installs itself, and refuses when a path it would write is a
    link or belongs to someone else. The changes, as dicts.
    """
    uid, gid = tree_owner(remotes)
    if os.geteuid() != 0 or uid == 0:
        changes = plan_install(remotes)
        if os.geteuid() == 0:
            foreign = _foreign_paths(os.path.abspath(remotes), changes)
            if foreign:
                raise InstallError(f"{foreign[0]} is a link or belongs to another user than "
                                   "root; root writes through neither (fix the owner, or run "
                                   "vnm install as the tree's owner)")
        if not dry_run:
            apply(remotes, changes)
        return [c.as_dict() for c in changes]
    return _in_child_as(uid, gid, lambda: install_as_owner(remotes, dry_run))


def _in_child_as(uid, gid, work):
    """``work()``'s result (JSON-able), computed in a child that runs as ``uid``/``gid``."""
    import json

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root for good, then work
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                reply = {"ok": work()}
            except (InstallError, OSError) as exc:
                reply = {"error": str(exc)}
            with os.fdopen(write_end, "w", encoding="utf-8") as out:
                json.dump(reply, out)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as answer:
        text = answer.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not text:
        raise InstallError(f"the install as uid {uid} failed (status {status})")
    reply = json.loads(text)
    if "error" in reply:
        raise InstallError(reply["error"])
    return reply["ok"]


SUDOERS = "oneadmin ALL=(root) NOPASSWD: /usr/local/sbin/vnm-action"
