#!/usr/bin/env python3
"""Reference-style baseline: replay the reference's own commands from a golden trace.

``replay_trace.py TRACE`` runs each line of a ``../shared/golden/*/*.cmds``
file (e.g. A/02-post-fw.cmds: one iptables / ip6tables / ipset process per
rule and per question; C/02-post-ovswitch.cmds: one ovs-vsctl / ovs-ofctl per
column and per flow) one after the other, virsh left out (no libvirt here):
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
