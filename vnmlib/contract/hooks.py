"""Admins' hooks: ``<action>.d/*`` run after a successful action (reference §5.2).

Every executable regular file, dotfiles excepted, in byte order of its name;
argv is the action's argv as a list (the reference joined it into one shell
string and re-split it); stdin is exactly the bytes the action read. The first
hook that fails fails the action and its stderr is relayed. Non-executable
entries are skipped, for every driver (the reference's dummy loop stopped at
the first one: SPEC decision 8).
"""

import os
import stat
import sys

from vnmlib.errors import VnmError


def hook_programs(directory):
    try:
        names = sorted(os.listdir(directory), key=os.fsencode)
    except (FileNotFoundError, NotADirectoryError):
        return []
    programs = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            programs.append(path)
    return programs


def run_hooks(directory, argv, stdin_bytes, log, stdout_passthrough=False):
    """Run the hooks of ``directory``; raise VnmError on the first failure.

    Hook stdout becomes INFO lines, except with ``stdout_passthrough`` (the
    dummy driver, whose hooks' stdout the reference sent straight to oned).
    """
    programs = hook_programs(directory)
    if not programs:
        return
    import subprocess

    for path in programs:
        name = os.path.basename(path)
        log.info(f"running hook {name}")
        try:
            done = subprocess.run(
                [path, *argv], input=stdin_bytes, capture_output=True, check=False
            )
        except OSError as exc:
            raise VnmError(f"hook {name} could not be started: {exc.strerror}") from None
        if stdout_passthrough:
            sys.stdout.buffer.write(done.stdout)
            sys.stdout.flush()
        else:
            for line in done.stdout.decode(errors="replace").splitlines():
                log.info(f"{name}: {line}")
        errors = done.stderr.decode(errors="replace").splitlines()
        for line in errors:
            log.info(f"{name}: {line}")
        if done.returncode != 0:
            last = next((line for line in reversed(errors) if line.strip()), "")
            raise VnmError(f"hook {name} failed with exit code {done.returncode}"
                           + (f": {last}" if last else ""))
