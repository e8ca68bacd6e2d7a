"""Running the host's tools (iptables-restore, ipset…): argv lists, never a shell.

Several independent commands can run at once (:func:`run_all`): reading the
IPv4 and IPv6 tables in parallel halves the wait on a two-core host.
"""

import os

from .errors import VnmError

# subprocess and shutil are imported when first used: together ~8 ms, a sixth
# of a warm action's budget, and an Open vSwitch ``pre`` with nothing to
# change runs no tool at all.

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
        import shutil

        path = shutil.which(program, path=_env()["PATH"])
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


def finish(started):
    proc, stdin_text = started
    out, err = proc.communicate(stdin_text)
    return Result(proc.args, proc.returncode, out, err)


def run(argv, stdin_text=None):
    return finish(start(argv, stdin_text))


def run_all(commands):
    """Run ``[(argv, stdin_text)]`` concurrently; results in the same order."""
    started = [start(argv, stdin_text) for argv, stdin_text in commands]
    return [finish(s) for s in started]
