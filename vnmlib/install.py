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

from .action import REQUIRED_ARGS
from .drivers import DRIVER_MODULES, load_driver

PACKAGE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(PACKAGE, "shipped")


class Change:
    """One thing install does: ``kind`` (create, update, keep…), the path, and a detail."""

    __slots__ = ("kind", "path", "detail")

    def __init__(self, kind, path, detail=""):
        self.kind, self.path, self.detail = kind, path, detail

    def as_dict(self):
        return {"change": self.kind, "path": self.path, "detail": self.detail}


def _actions(driver):
    """(actions, hook directory names) of ``driver``; see :func:`vnmlib.action.hooks_dir`.

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


def apply(remotes, changes):
    """Make ``changes`` (from :func:`plan_install`) in ``remotes``."""
    tree = os.path.join(remotes, "vnm")
    for change in changes:
        path = change.path.rstrip("/")
        if change.kind == "keep":
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if path == os.path.join(tree, "run-action"):
            shutil.copyfile(os.path.join(SHIPPED, "run-action"), path)
            os.chmod(path, 0o755)
        elif path == os.path.join(tree, "vnmlib"):
            _copy_library(path)
        elif path.endswith(".d"):
            os.makedirs(path, exist_ok=True)
        elif os.path.dirname(path) == os.path.join(remotes, "etc", "vnm"):
            shutil.copyfile(os.path.join(SHIPPED, os.path.basename(path)), path)
        else:  # an action: the symlink to the entry script
            if os.path.lexists(path):
                os.unlink(path)
            os.symlink("../run-action", path)


def install(remotes):
    """Plan and apply; the changes made."""
    changes = plan_install(remotes)
    apply(remotes, changes)
    return changes


SUDOERS = "oneadmin ALL=(root) NOPASSWD: /usr/local/sbin/vnm-action"
