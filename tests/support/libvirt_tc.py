"""``tc`` for a test's libvirtd on this machine's kernel, which lacks part of what libvirt uses.

libvirt shapes a NIC's bandwidth with ``tc``: an HTB class on the tap (the
guest's inbound) with an ``sfq`` leaf and an ``fw`` filter, and a ``u32`` filter
with a policer on its ingress qdisc (outbound). This kernel has HTB and the
ingress qdisc but not sch_sfq, any tc classifier or act_police, so libvirt's
``virsh domiftune`` fails. In the libvirtd's own mount namespace (and only
there), ``/usr/sbin/tc`` becomes a shim that runs the real one and, when the
kernel refuses an ``sfq`` leaf or a filter, records the command and lets it
pass. HTB's ``default 1`` still sends every frame through libvirt's class, so
inbound limits are real; the policer's command is what a test checks for outbound.
"""

import os
import shutil

from support.commands import sh

# DIR: the test's directory, which holds a copy of the real tc and the record
SHIM = """#!/bin/bash
DIR/tc.real "$@" && exit 0
status=$?
case " $* " in
  *" qdisc add "*" sfq "*|*" filter add "*) echo "$*" >> DIR/tc-shimmed.log; exit 0;;
esac
exit $status
"""


def install(workdir, host):
    """Shim ``tc`` for ``host``'s libvirtd (a :class:`support.libvirt_site.Host`)."""
    shutil.copy("/usr/sbin/tc", os.path.join(workdir, "tc.real"))
    shim = os.path.join(workdir, "tc")
    with open(shim, "w", encoding="utf-8") as handle:
        handle.write(SHIM.replace("DIR", workdir))
    os.chmod(shim, 0o755)
    # the daemon's pid is libvirtd's (libvirt_daemon.sh execs it)
    sh("nsenter", "-t", str(host.daemon.pid), "-m", "mount", "--bind", shim, "/usr/sbin/tc")


def shimmed(workdir):
    """The commands the shim let pass, one a line."""
    try:
        with open(os.path.join(workdir, "tc-shimmed.log"), encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
