"""The README's demo must keep working: it is the first thing a newcomer runs."""

import subprocess

from support.commands import sh
from support.paths import PYTHON, REPO


def test_demo_runs_and_leaves_no_namespace():
    before = sh("ip", "netns", "list")
    # as demo.sh runs it: `vnm demo` from the checkout
    done = subprocess.run([PYTHON, "-m", "vnmlib.cli", "demo"], capture_output=True, cwd=REPO,
                          check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert out.count(" 0% packet loss") == 3
    assert "delete onebr0" in out
    assert sh("ip", "netns", "list") == before


def test_readme_commands_work_as_root_where_sudo_is_not_installed(tmp_path):
    """The README's two commands are run as written; on a Debian host where one is root
    and sudo is not installed, a leading ``sudo`` was "command not found"."""
    import os
    import re

    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    section = readme.split("## Try it", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (\S.*)$", section, re.M)
    assert [c.split()[-1] for c in commands] == ["./demo.sh", "./test.sh"]
    absent = tmp_path / "no-sudo"
    absent.mkdir()
    fake = absent / "sudo"  # what a missing sudo looks like to the shell
    fake.write_text("#!/bin/sh\necho 'sudo: command not found' >&2\nexit 127\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{absent}:{os.environ['PATH']}")
    done = subprocess.run(["bash", "-c", commands[0]], cwd=REPO, env=env, capture_output=True,
                          check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert out.count(" 0% packet loss") == 3
