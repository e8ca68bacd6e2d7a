"""oneadmin on a host, for tests: a throwaway user owning a synced tree, a root-owned
sudo helper (vnm-action with its own vnmlib) and a sudoers drop-in for exactly
that helper; all removed afterwards."""

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from support.commands import sh
from support.paths import PYTHON, REPO
from support.remotes import copy_tree

USER = "vnmtest"


@contextlib.contextmanager
def unprivileged_user(name=USER):
    """A system user standing in for oneadmin (made if missing, removed after) and a
    0755 directory under /var/tmp for what it owns; yields the directory."""
    created = False
    try:
        pwd.getpwnam(name)
    except KeyError:
        sh("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
        created = True
    base = tempfile.mkdtemp(prefix="vnm-user-", dir="/var/tmp")
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if created:
            sh("userdel", name, check=False)


@pytest.fixture
def oneadmin():
    sudoers = f"/etc/sudoers.d/vnm-test-{os.getpid()}"
    with unprivileged_user(USER) as base:
        try:
            yield base, sudoers
        finally:
            if os.path.exists(sudoers):
                os.unlink(sudoers)


def install(base, sudoers, allow=True):
    user = pwd.getpwnam(USER)
    # what onehost sync leaves on a host: a tree owned by oneadmin
    tree = copy_tree(os.path.join(base, "one"))
    for root, dirs, files in os.walk(os.path.join(base, "one")):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    os.lchown(os.path.join(base, "one"), user.pw_uid, user.pw_gid)
    # what the admin installs as root, outside the tree
    helper_dir = os.path.join(base, "sbin")
    shutil.copytree(os.path.join(REPO, "vnmlib"), os.path.join(helper_dir, "vnmlib"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    helper = os.path.join(helper_dir, "vnm-action")
    with open(helper, "w", encoding="ascii") as handle:
        handle.write(f"#!{PYTHON} -I\nimport sys\nsys.path.insert(0, {helper_dir!r})\n"
                     "from vnmlib.contract.privileged import helper_main\nsys.exit(helper_main())\n")
    os.chmod(helper, 0o755)
    if allow:
        with open(sudoers, "w", encoding="ascii") as handle:
            handle.write(f"{USER} ALL=(root) NOPASSWD: {helper}\n")
        os.chmod(sudoers, 0o440)
        sh("visudo", "-c", "-f", sudoers)
    return tree, helper


def run_as_user(ns, tree, helper, driver, action, *args, stdin=b""):
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, "sudo", "-u", USER, "env", f"VNM_SUDO_HELPER={helper}",
         PYTHON, os.path.join(tree, driver, action), *args],
        input=stdin, capture_output=True, check=False)
