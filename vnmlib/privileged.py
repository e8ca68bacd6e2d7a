"""Running the privileged part of an action for a non-root caller (oned runs as oneadmin).

The synced remotes tree belongs to oneadmin, so nothing in it may ever run as
root: oneadmin could edit it and own the host. Instead an action started by a
non-root user does its privileged work by running a *root-owned* helper,
``vnm-action``, through ``sudo -n``; the helper imports its own root-owned copy
of vnmlib (never the tree's), reads the VM from stdin and the configuration
from the tree (data, parsed with yaml.safe_load), and changes the host. The
admins' hooks then run back in the caller's process, as oneadmin, as in the
reference. sudoers needs one line (README, "Running as oneadmin"):

    oneadmin ALL=(root) NOPASSWD: /usr/local/sbin/vnm-action
"""

import os
import sys

from .errors import VnmError

DEFAULT_HELPER = "/usr/local/sbin/vnm-action"


def helper_path():
    # sudoers decides what may run as root, so choosing another path here
    # cannot grant anything; the variable exists for tests and odd layouts.
    return os.environ.get("VNM_SUDO_HELPER") or DEFAULT_HELPER


def run_through_sudo(ctx):
    import subprocess

    helper = helper_path()
    command = ["sudo", "-n", helper, "--tree", ctx.tree, ctx.driver, ctx.action, *ctx.argv]
    try:
        done = subprocess.run(command, input=ctx.stdin, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise VnmError(f"cannot run sudo: {exc.strerror}") from None
    lines = done.stderr.decode(errors="replace").splitlines()
    for line in lines:
        sys.stderr.write(line + "\n")
    if done.returncode != 0:
        if any(line.startswith("ERROR:") for line in lines):
            raise VnmError("", done.returncode)  # the helper already said why
        raise VnmError(f"cannot run {helper} through 'sudo -n' as root "
                       f"(exit {done.returncode}); see README 'Running as oneadmin'")


def helper_main(argv=None):
    """``vnm-action --tree DIR DRIVER ACTION [ARGS…]``: the root side of an action."""
    from .action import REQUIRED_ARGS, Context, check_argv, handler_of, read_stdin, reporting_errors
    from .log import Log

    argv = list(sys.argv[1:] if argv is None else argv)
    action = argv[3] if len(argv) > 3 else "vnm-action"
    log = Log(action)

    def work():
        if len(argv) < 4 or argv[0] != "--tree":
            raise VnmError("usage: vnm-action --tree DIR DRIVER ACTION [ARGS...]")
        tree, driver = argv[1], argv[2]
        if not os.path.isabs(tree) or not os.path.isdir(tree):
            raise VnmError(f"--tree {tree!r} is not an absolute directory")
        if action not in REQUIRED_ARGS:
            raise VnmError(f"unknown action {action!r}")
        if os.geteuid() != 0:
            raise VnmError("vnm-action must run as root (through sudo)")
        args = argv[4:]
        check_argv(action, args)
        handler = handler_of(driver, action)
        handler(Context(driver, action, args, read_stdin(), tree, log))

    return reporting_errors(log, work)
