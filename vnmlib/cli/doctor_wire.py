"""``vnm doctor``'s checks of what VMs could do to the host on the wire (issue 27).

The bridges vnm creates get no IPv6 life of their own (:class:`vnmlib.host.steps.Ipv6Quiet`);
bridges made before, or by the operator, may still accept a VM's router
advertisement (an address in the VM's prefix, a default route through the VM)
and hold a link-local address every VM reaches. Read from ``/proc`` and
``/sys`` of the namespace doctor runs in: nothing is changed.
"""

import os

WARN, OK = "warn", "ok"
SYS_NET = "/sys/class/net"


def _knob(dev, name):
    try:
        with open(f"/proc/sys/net/ipv6/conf/{dev}/{name}", encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _ipv6_devices():
    """Devices holding an IPv6 address (``/proc/net/if_inet6``: address … name)."""
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as handle:
            return {line.split()[-1] for line in handle if line.strip()}
    except OSError:
        return set()


def bridges():
    """One finding per Linux bridge that a VM's RA could configure, or that holds an address."""
    try:
        names = sorted(n for n in os.listdir(SYS_NET) if os.path.isdir(f"{SYS_NET}/{n}/bridge"))
    except OSError:
        return []
    addressed = _ipv6_devices()
    found = []
    for name in names:
        accept_ra, forwarding = _knob(name, "accept_ra"), _knob(name, "forwarding")
        if accept_ra is None:
            continue  # no IPv6 on this kernel or device
        problems = []
        # the kernel honours RAs with accept_ra 1 unless the device forwards, always with 2
        if accept_ra == 2 or (accept_ra == 1 and not forwarding):
            problems.append(f"accept_ra={accept_ra}")
        if _knob(name, "autoconf"):
            problems.append("autoconf=1")
        if name in addressed:
            problems.append("has IPv6 addresses (a link-local one at least)")
        if problems:
            found.append((f"bridge {name} IPv6", WARN,
                          f"{', '.join(problems)}: a VM's router advertisement can configure the "
                          "host and VMs reach it here; vnm's own bridges get "
                          f"net.ipv6.conf.{name}.accept_ra=0, autoconf=0, addr_gen_mode=1"))
    if names and not found:
        found.append(("bridges IPv6", OK, f"{len(names)} bridge(s): no RA, no autoconf, no address"))
    return found
