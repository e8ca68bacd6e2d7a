"""Running the host's tools (iptables-restore, ipset…): argv lists, never a shell.

Several independent commands can run at once (:func:`run_all`): reading the
IPv4 and IPv6 tables in parallel halves the wait on a two-core host.

Every run is bounded (:mod:`vnmlib.model.waits`, ``tool_timeout``): a tool still
running then is killed and the action fails naming it. A killed tool may
have made its change already, so the error is :class:`OutcomeUnknown` and
the step that ran it is undone too.
"""

import os
import time

from vnmlib.model import waits
from vnmlib.errors import OutcomeUnknown, VnmError

# subprocess is imported when first used (2.5 ms of a warm action's ~25 ms budget):
# an Open vSwitch ``pre`` with nothing to change runs no tool at all.

# oned reaches hosts over ssh and sudo; root's PATH may lack the sbin dirs.
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
_ENV = None
_FOUND = {}


def _env():
    global _ENV
    if _ENV is None:
        env = dict(os.environ)
        env["LC_ALL"] = "C"  # error texts we match on are the untranslated ones
        env["PATH"] = f"{env.get('PATH', '')}:{_SBIN}".strip(":")
        _ENV = env
    return _ENV


def which(program):
    """Absolute path of ``program`` on PATH or the sbin dirs, else a clear error."""
    if program not in _FOUND:
        # shutil.which's lookup without its import (1.4 ms), and only absolute
        # directories: an empty or relative PATH entry would name the working one
        found = (os.path.join(folder, program) for folder in _env()["PATH"].split(os.pathsep)
                 if os.path.isabs(folder))
        path = next((p for p in found if os.path.isfile(p) and os.access(p, os.X_OK)), None)
        if path is None:
            raise VnmError(f"{program} is not installed on this host")
        _FOUND[program] = path
    return _FOUND[program]


class Result:
    __slots__ = ("argv", "returncode", "stdout", "stderr")

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        return self.returncode == 0

    def error_line(self):
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit code {self.returncode}"

    def check(self, what):
        if not self.ok:
            raise VnmError(f"{what}: {os.path.basename(self.argv[0])} failed: "
                           f"{self.error_line()}")
        return self


def start(argv, stdin_text=None):
    import subprocess

    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_text is not None else
                            subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), text=True, close_fds=True)
    return proc, stdin_text


def finish(started, deadline):
    """Wait for a started tool until ``deadline`` (time.monotonic()); kill it after."""
    import subprocess

    proc, stdin_text = started
    try:
        out, err = proc.communicate(stdin_text, timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        _kill(proc)
        limit = waits.shown(waits.seconds("tool_timeout"))
        raise OutcomeUnknown(f"{tool_name(proc.args)} did not finish within {limit} s "
                             "(tool_timeout): killed") from None
    return Result(proc.args, proc.returncode, out, err)


def tool_name(argv):
    """``ipset restore``, ``ovs-vsctl``…: the program and its subcommand, for messages."""
    words = [os.path.basename(argv[0])]
    if len(argv) > 1 and not argv[1].startswith("-"):
        words.append(argv[1])
    return " ".join(words)


def _deadline():
    return time.monotonic() + waits.seconds("tool_timeout")


def run(argv, stdin_text=None):
    return finish(start(argv, stdin_text), _deadline())


def run_all(commands):
    """Run ``[(argv, stdin_text)]`` concurrently; results in the same order."""
    deadline = _deadline()
    started = [start(argv, stdin_text) for argv, stdin_text in commands]
    try:
        return [finish(s, deadline) for s in started]
    finally:
        for proc, _ in started:  # one timed out: stop the others too, nobody reads them
            if proc.returncode is None:
                _kill(proc)


def _kill(proc):
    """Kill a tool that overran its time, without waiting for the end of its output.

    The tool stays in the action's process group (killing the action's group
    still stops its tools); a child it started may hold its pipes open, so
    they are closed, not read to their end.
    """
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            stream.close()


def xtables_wait():
    """``-w SECONDS`` for iptables tools: a bounded wait for the xtables lock."""
    return ["-w", waits.shown(waits.seconds("xtables_wait"))]
