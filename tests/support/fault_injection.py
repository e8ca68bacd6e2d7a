"""Fault injection for the functional tests: tool wrappers first on PATH, the vnm command.

A wrapper stands in for one tool (``ip``, ``ipset``, ``ovs-vsctl``…) and
counts its calls in its directory; on the Nth call it does what the test
asks — hang before running the tool, fail without running it, run it and then
stall, or stop itself with SIGSTOP — and otherwise runs the real tool.
"""

import os
import re
import shutil
import subprocess

from support.paths import PYTHON, REPO

BEHAVIOURS = {
    # the tool never starts: what a hung daemon or a stuck lock looks like
    # exec: killing the tool's pid ends the wait itself (no orphaned sleep)
    "hang": 'exec sleep 3600\n',
    "fail": 'echo "{tool}: injected failure" >&2; exit 1\n',
    # the tool does its work, then does not return (ovs-vsctl waiting for a
    # stalled ovs-vswitchd after the database committed)
    "stall-after": '"{real}" "$@"; exec sleep 3600\n',
    # run the tool, then pause before returning (widens a race window)
    "pause-after": '"{real}" "$@"; rc=$?; sleep {seconds}; exit $rc\n',
    "stop": 'kill -STOP $$\n',
}


def wrap(bindir, tool, behaviour, nth=1, seconds=1):
    """Put a wrapper of ``tool`` in ``bindir``: ``behaviour`` on call ``nth`` (0: every call)."""
    real = shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    assert real, tool
    os.makedirs(bindir, exist_ok=True)
    counter = os.path.join(bindir, f"{tool}.calls")
    action = BEHAVIOURS[behaviour].format(tool=tool, real=real, seconds=seconds)
    script = (
        "#!/bin/sh\n"
        f'n=$(( $(cat "{counter}" 2>/dev/null || echo 0) + 1 ))\n'
        f'echo $n > "{counter}"\n'
        f'if [ {nth} -eq 0 ] || [ $n -eq {nth} ]; then\n{action}fi\n'
        f'exec "{real}" "$@"\n')
    path = os.path.join(bindir, tool)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(script)
    os.chmod(path, 0o755)
    return path


def calls(bindir, tool):
    try:
        with open(os.path.join(bindir, f"{tool}.calls"), encoding="ascii") as handle:
            return int(handle.read())
    except FileNotFoundError:
        return 0


def path_with(bindir):
    return f"{bindir}:{os.environ.get('PATH', '')}"


ANY_NTH_WRAPPER = """#!/usr/bin/python3
# fails the VNM_FAIL_AT-th call of any wrapped tool; the others run the real one
import fcntl, os, sys
tool = os.path.basename(sys.argv[0])
with open(os.environ["VNM_FAIL_COUNT"], "a+") as count:  # the families commit at once
    fcntl.flock(count, fcntl.LOCK_EX)
    count.seek(0)
    n = int(count.read() or 0) + 1
    count.seek(0)
    count.truncate()
    count.write(str(n))
if n == int(os.environ["VNM_FAIL_AT"]):
    sys.stderr.write(tool + ": injected failure\\n")
    sys.exit(1)
real = os.path.join("/usr/sbin", tool)
os.execv(real, [real] + sys.argv[1:])
"""


class FailingInTurn:
    """Wrappers of ``tools`` sharing one call counter, so a test can fail each call of
    an action in turn: ``env(n)`` fails the n-th call of any of them (0: none) and
    ``calls()`` says how many the last run made."""

    def __init__(self, workdir, tools):
        bindir = os.path.join(str(workdir), "fail-bin")
        os.makedirs(bindir)
        for tool in tools:
            path = os.path.join(bindir, tool)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(ANY_NTH_WRAPPER)
            os.chmod(path, 0o755)
        self.bindir = bindir
        self.count = os.path.join(str(workdir), "calls")

    def env(self, fail_at):
        with open(self.count, "w", encoding="ascii") as handle:
            handle.write("0")
        return {"PATH": path_with(self.bindir), "VNM_FAIL_AT": str(fail_at),
                "VNM_FAIL_COUNT": self.count}

    def calls(self):
        with open(self.count, encoding="ascii") as handle:
            return int(handle.read())


def vnm_argv(ns, *args):
    # ip by its path: a wrapped ip on the command's PATH is for vnm, not for entering the netns
    return [shutil.which("ip"), "netns", "exec", ns.name, PYTHON, "-m", "vnmlib.cli", *args]


def vnm_env(ns, **extra):
    return dict(os.environ, VNM_RUN_DIR=ns.run_dir, PYTHONPATH=REPO, **extra)


def vnm(ns, *args, env=None):
    """``vnm ARGS`` inside the namespace (the checkout's vnmlib, the suite's interpreter)."""
    return subprocess.run(vnm_argv(ns, *args), capture_output=True, text=True,
                          env=vnm_env(ns, **(env or {})), check=False)


def conf_tree(tmp_path, **keys):
    """A remotes tree whose OpenNebulaNetwork.conf is the shipped one with ``keys`` set."""
    from support.remotes import copy_tree

    with open(os.path.join(REPO, "etc", "vnm", "OpenNebulaNetwork.conf"), encoding="utf-8") as f:
        conf = f.read()
    for key, value in keys.items():
        line = f":{key}: {value}"
        conf, found = re.subn(rf"^:{key}:.*$", line, conf, flags=re.M)
        conf += "" if found else line + "\n"
    return copy_tree(os.path.join(str(tmp_path), "remotes"), conf)


def netns_dir(run_dir, kind):
    """``<run>/<kind>/net<inode>``: the one namespace directory a test's actions made."""
    [name] = os.listdir(os.path.join(run_dir, kind))
    return os.path.join(run_dir, kind, name)
