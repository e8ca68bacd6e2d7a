"""The README's demo must keep working: it is the first thing a newcomer runs."""

import subprocess

from helpers import PYTHON, REPO, sh


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
