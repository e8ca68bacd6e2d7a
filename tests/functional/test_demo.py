"""The README's demo must keep working: it is the first thing a newcomer runs."""

import os
import subprocess

from helpers import PYTHON, REPO, sh


def test_demo_runs_and_leaves_no_namespace():
    before = sh("ip", "netns", "list")
    done = subprocess.run([PYTHON, os.path.join(REPO, "tools", "demo.py")], capture_output=True,
                          env=dict(os.environ, VNM_DEMO_PYTHON=PYTHON), check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert out.count(" 0% packet loss") == 3
    assert "delete onebr0" in out
    assert sh("ip", "netns", "list") == before
