"""Sending scapy frames from a VM's namespace and counting them in another (wire_frames.py)."""

import importlib.util
import os
import subprocess
import sys

from support.commands import sh, stop
from support.paths import REPO

FRAMES = os.path.join(REPO, "tests", "support", "wire_frames.py")
# the frames are made by the test's interpreter when it has scapy (the venv's
# test extra), else by Debian's python3-scapy (tools/install-deps)
SCAPY_PYTHON = (sys.executable if importlib.util.find_spec("scapy") else "/usr/bin/python3")


def send(guest, kind, **args):
    """``kind`` of wire_frames.py sent from ``guest``'s interface (its side of the tap)."""
    sh("ip", "netns", "exec", guest.name, SCAPY_PYTHON, FRAMES, "send", guest.dev, kind,
       *(f"{k}={v}" for k, v in args.items()))


class Sniffer:
    """wire_frames.py sniff in ``guest``: started (socket open) on entry; :meth:`count` ends it."""

    def __init__(self, guest, *match, grace=0.5):
        self.proc = subprocess.Popen(["ip", "netns", "exec", guest.name, SCAPY_PYTHON, FRAMES,
                                      "sniff", guest.dev, str(grace), *match],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __enter__(self):
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def count(self):
        """How many matching frames arrived (after ``grace`` seconds more)."""
        out, _ = self.proc.communicate("done\n", timeout=60)
        return int(out)

    def __exit__(self, *exc):
        if self.proc.returncode is None:
            stop(self.proc)


def arrivals(sender, receiver, kind, sniff=(), **args):
    """How many of ``kind`` sent by ``sender`` reached ``receiver``'s interface."""
    with Sniffer(receiver, *sniff) as sniffer:
        send(sender, kind, **args)
        return sniffer.count()
