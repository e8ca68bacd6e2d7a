"""The nodeport NICs an action handles, with their addresses and port ranges checked.

oned writes, for an address range with ``PORT_START`` and ``PORT_SIZE``,
``EXTERNAL_PORT_RANGE="<first>:<last>"`` (host ports) and
``INTERNAL_PORT_RANGE="1-<size>/<first>"`` (VM ports, shifted from the
external first port: host port ``first + 21`` reaches the VM's port 22).
Written by hand, ``A``, ``A:B`` and ``A-B`` are accepted for both; the
``/base`` of the internal range, when given, must be the external first port.
"""

import re

from vnmlib.errors import InputError, shown

DRIVER = "nodeport"
_RANGE = re.compile(r"([0-9]{1,5})(?:[:-]([0-9]{1,5}))?")
_INTERNAL = re.compile(r"([0-9]{1,5}(?:[:-][0-9]{1,5})?)(?:/([0-9]{1,5}))?")


class Ports:
    """An inclusive range of TCP ports."""

    __slots__ = ("first", "last")

    def __init__(self, first, last):
        self.first, self.last = first, last

    def __len__(self):
        return self.last - self.first + 1

    def overlaps(self, other):
        return self.first <= other.last and other.first <= self.last

    def __str__(self):
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


def _port(text, label, name, value):
    port = int(text)
    if not 1 <= port <= 65535:
        raise InputError(f"{label}: {name} {shown(value)}: port {port} is not 1..65535")
    return port


def parse_range(text, label, name):
    """``A``, ``A:B`` or ``A-B`` -> :class:`Ports`, else one error naming the NIC."""
    match = _RANGE.fullmatch(text)
    if match is None:
        raise InputError(f"{label}: {name} {shown(text)} is not a port range "
                         "(PORT, FIRST:LAST or FIRST-LAST)")
    first = _port(match.group(1), label, name, text)
    last = _port(match.group(2), label, name, text) if match.group(2) else first
    if last < first:
        raise InputError(f"{label}: {name} {shown(text)} ends before it starts")
    return Ports(first, last)


def _internal(text, external, label):
    name = "INTERNAL_PORT_RANGE"
    match = _INTERNAL.fullmatch(text)
    if match is None:
        raise InputError(f"{label}: {name} {shown(text)} is not a port range "
                         "(PORT, FIRST-LAST or FIRST-LAST/BASE)")
    internal = parse_range(match.group(1), label, name)
    if match.group(2) and int(match.group(2)) != external.first:
        raise InputError(f"{label}: {name} {shown(text)}: its base {match.group(2)} is not "
                         f"the first port of EXTERNAL_PORT_RANGE ({external.first})")
    if len(internal) != len(external):
        # port for port: iptables would otherwise spread the external ports over the
        # internal ones at random
        raise InputError(f"{label}: {name} {shown(text)} holds {len(internal)} ports, "
                         f"EXTERNAL_PORT_RANGE {external} holds {len(external)}")
    return internal


class Target:
    """One nodeport NIC: host ports ``external`` forwarded to ``ip``'s ``internal`` ones.

    ``ports`` False (clean) leaves the ranges unread: removing a NIC's rules
    needs only its chains' names, so a template whose ranges went bad can
    still be cleaned.
    """

    __slots__ = ("label", "base", "bridge", "ip", "gateway", "external", "internal")

    def __init__(self, vm, nic, ports=True):
        self.label = nic.label
        self.base = f"one-{vm.id}-{nic.nic_id}"
        self.bridge = nic.bridge
        self.ip = _address(nic, "IP")
        self.gateway = _address(nic, "GATEWAY")
        self.external = self.internal = None
        if ports:
            self.external = parse_range(_text(nic, "EXTERNAL_PORT_RANGE"), self.label,
                                        "EXTERNAL_PORT_RANGE")
            self.internal = _internal(_text(nic, "INTERNAL_PORT_RANGE"), self.external,
                                      self.label)

    @property
    def user(self):
        return self.base[len("one-"):]


def _text(nic, name):
    text = nic.get(name)
    if not text:
        raise InputError(f"{nic.label}: {name} is missing (the nodeport driver needs "
                         "EXTERNAL_PORT_RANGE and INTERNAL_PORT_RANGE)")
    return text


def _address(nic, name):
    address = nic.ip_address(name, 4)
    if address is None:
        raise InputError(f"{nic.label}: {name} is missing (the nodeport driver needs "
                         "IP and GATEWAY)")
    return str(address)


def scoped(vm, ports=True):
    """Targets of post/clean: every nodeport NIC, or only the hot-plugged one.

    Like the reference, a hot-plugged alias or another driver's NIC is nobody's
    here (its parent's security groups are the firewall's business).
    """
    nics = vm.driver_nics(DRIVER)
    plugged = vm.hotplugged()
    if plugged is not None:
        nics = [nic for nic in nics if nic is plugged]
    return [Target(vm, nic, ports) for nic in nics]
