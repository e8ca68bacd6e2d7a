"""The contract with oned: argv, stdin, exit code, log lines, hooks (SPEC §2).

``vnm/<driver>/<action>`` scripts call :func:`main` with their own path. The
driver is the script's directory name, the action its file name. The flow is
one way: stdin bytes -> typed VM -> the driver's planned steps -> applied ->
hooks -> exit code. Any failure is one ``ERROR: <action>: …`` line and exit 1.
"""

import os
import sys

from vnmlib.errors import VnmError
from vnmlib.log import Log
from vnmlib.contract.context import (ACTIONS, REQUIRED_ARGS, Context, check_argv, handler_of, read_stdin,
                                     reporting_errors)


def hooks_dir(script, handler):
    """``<action>.d`` beside the script, or the directory of the action the handler names.

    A handler's ``hooks`` attribute moves them (elastic's front-end ``clean``
    leaves them to the host's ``remote_clean``, which runs ``clean.d``); None
    means this action runs none.
    """
    name = getattr(handler, "hooks", os.path.basename(script))
    return None if name is None else os.path.join(os.path.dirname(script), name + ".d")


def run_driver_action(ctx, handler):
    """Run the driver's own work for ``ctx`` (as root, or via the sudo helper).

    A handler's ``as_caller`` attribute, a function of ``ctx``, is the part of
    the action that runs as the caller, never as root (``update_nic``'s
    ``virsh domiftune``: libvirt decides what oneadmin may do, as in the
    reference). It is called first and validates all it needs, so that a bad
    value fails the action before anything changes; it returns the work to run
    once the privileged part has succeeded (None: nothing to do).
    """
    as_caller = getattr(handler, "as_caller", None)
    later = as_caller(ctx) if as_caller else None
    if getattr(handler, "privileged", False) and os.geteuid() != 0:
        from vnmlib.contract.privileged import run_through_sudo

        run_through_sudo(ctx, handler)
    else:
        handler(ctx)
    if later is not None:
        later()


def main(script_path, argv=None):
    """Entry point of every ``vnm/<driver>/<action>`` script; returns the exit code."""
    script = os.path.abspath(script_path)
    action = os.path.basename(script)
    driver = os.path.basename(os.path.dirname(script))
    argv = list(sys.argv[1:] if argv is None else argv)
    log = Log(action)

    def work():
        if action not in REQUIRED_ARGS:
            raise VnmError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        check_argv(action, argv)
        stdin = read_stdin()
        ctx = Context(driver, action, argv, stdin, os.path.dirname(os.path.dirname(script)), log)
        handler = handler_of(driver, action)
        run_driver_action(ctx, handler)
        hooks = hooks_dir(script, handler)
        if hooks is not None:
            from vnmlib.contract.hooks import run_hooks

            run_hooks(hooks, argv, stdin, log, stdout_passthrough=(driver == "dummy"))

    return reporting_errors(log, work)
