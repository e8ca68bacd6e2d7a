"""What a provider's ``activate`` may ask the host for: a small, typed vocabulary.

vnm applies these itself (netlink, one iptables-restore transaction), plans
them like every other change, and removes them on ``remote_clean``; a
provider never runs commands on the host. The NAT rules of a NIC live in its
own chains of the nat table, ``one-<vm>-<nic>-dnat`` (jumped to from
PREROUTING and OUTPUT) and ``one-<vm>-<nic>-snat`` (from POSTROUTING), so
removing them never needs the provider's help.
"""

import ipaddress

from vnmlib.model.naming import check_ifname


def _ip(value, what):
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from None


class Address:
    """``address/prefixlen`` on the host interface ``device`` (the host answers for it)."""

    def __init__(self, device, address, prefixlen=32):
        # a name for netlink, a lock file and the iptables "-o" of the rules
        self.device = check_ifname(str(device), "provider interface")
        self.address = _ip(address, "Address")
        self.prefixlen = int(prefixlen)
        if not 0 < self.prefixlen <= 32:
            raise ValueError(f"Address prefix length {prefixlen!r} is not 1..32")

    def __repr__(self):
        return f"Address({self.device!r}, {self.address!r}, {self.prefixlen})"


class Dnat:
    """Traffic to ``external_ip`` goes to the VM's ``ip`` (PREROUTING and host OUTPUT)."""

    def __init__(self, external_ip, ip):
        self.external_ip = _ip(external_ip, "Dnat external_ip")
        self.ip = _ip(ip, "Dnat ip")

    def rule(self):
        return ("-d", f"{self.external_ip}/32", "-j", "DNAT", "--to-destination", self.ip)


class Snat:
    """The VM's traffic leaves with ``external_ip`` as source (through ``device`` when given)."""

    def __init__(self, ip, external_ip, device=None):
        self.ip = _ip(ip, "Snat ip")
        self.external_ip = _ip(external_ip, "Snat external_ip")
        self.device = check_ifname(str(device), "provider interface") if device else None

    def rule(self):
        out = ("-o", self.device) if self.device else ()
        return ("-s", f"{self.ip}/32", *out, "-j", "SNAT", "--to-source", self.external_ip)
