#!/usr/bin/env python3
"""Reference-style baseline for bench_fw.py: replay the reference's own commands.

``../shared/golden/A/02-post-fw.cmds`` is the trace of the Ruby fw/post for vm7:
one iptables / ip6tables / ipset process per rule and per question. Running
those commands one after the other (virsh left out: no libvirt here) does
the reference's work in the reference's way. Failures are ignored, as the
reference ignores the ones it expects. Not a driver: only a yardstick.
"""
import os
import subprocess
import sys

trace = sys.argv[1]
with open(trace, encoding="utf-8") as handle:
    for line in handle:
        argv = line.split()
        if argv and argv[0] != "virsh":
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=False, env=dict(os.environ, LC_ALL="C"))
