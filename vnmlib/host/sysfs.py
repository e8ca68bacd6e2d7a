"""Cheap reads of link state from /sys/class/net (no netlink, no pyroute2).

A warm ``pre`` (bridge there, uplink enslaved) must finish in a few times the
interpreter's start-up, so every question the planners ask is answered from
sysfs: a stat or a readlink each. Writes always go through netlink.
"""

import os
import time

from vnmlib.errors import VnmError

SYS_NET = "/sys/class/net"
IFF_UP = 0x1


def check_same_namespace():
    """Refuse to plan from a sysfs that belongs to another network namespace.

    sysfs shows the links of the namespace it was mounted in; a process that
    entered a namespace with setns(2) alone (not ``ip netns exec``, which
    remounts /sys) would read the wrong host's state. /proc/self/net always
    follows the caller's namespace, so the two must list the same links.

    Other actions create and delete links meanwhile, and the kernel lists a
    link in sysfs a little before /proc/net/dev shows it (and after it stopped
    showing it), so sysfs may hold extra links for a moment: the check is that
    every link /proc shows is in sysfs (listed before and after /proc), and,
    for a namespace with only ``lo``, that sysfs has no lasting other link.
    (Comparing the two lists for equality failed under the torture test's 20
    concurrent actions.)
    """
    for _ in range(5):
        before = set(os.listdir(SYS_NET))
        with open("/proc/self/net/dev", encoding="ascii") as handle:
            proc = {line.split(":", 1)[0].strip() for line in handle.readlines()[2:]}
        after = set(os.listdir(SYS_NET))
        if proc <= before | after and (proc - {"lo"} or not (before & after) - proc):
            return
        time.sleep(0.01)
    raise VnmError("/sys/class/net does not show this network namespace's links; "
                   "enter namespaces with 'ip netns exec', which remounts /sys")


def exists(name):
    return os.path.exists(f"{SYS_NET}/{name}")


def is_bridge(name):
    return os.path.isdir(f"{SYS_NET}/{name}/bridge")


def is_up(name):
    with open(f"{SYS_NET}/{name}/flags", encoding="ascii") as handle:
        return bool(int(handle.read(), 16) & IFF_UP)


def master(name):
    """Name of the bridge (or bond…) ``name`` is enslaved to, or None."""
    try:
        return os.path.basename(os.readlink(f"{SYS_NET}/{name}/master"))
    except OSError:
        return None


def bridge_ports(bridge):
    try:
        return sorted(os.listdir(f"{SYS_NET}/{bridge}/brif"))
    except OSError:
        return []


def bridge_option(bridge, sysfs_name):
    try:
        with open(f"{SYS_NET}/{bridge}/bridge/{sysfs_name}", encoding="ascii") as handle:
            return int(handle.read().strip(), 0)
    except FileNotFoundError:
        if not os.path.isdir(f"{SYS_NET}/{bridge}/bridge"):
            raise
        # the bridge is there, the option is not: a kernel built without it
        need = (" (CONFIG_BRIDGE_VLAN_FILTERING): VLAN_TAGGED_ID and CVLANS need it"
                if sysfs_name == "vlan_filtering" else "")
        raise VnmError(f"bridge {bridge}: this kernel's bridges have no {sysfs_name}"
                       f"{need}") from None


def link_kind(name):
    """``DEVTYPE`` from uevent (bridge, vlan, vxlan, …); "" for plain devices like veth."""
    try:
        with open(f"{SYS_NET}/{name}/uevent", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("DEVTYPE="):
                    return line[8:].strip()
    except OSError:
        pass
    return ""
