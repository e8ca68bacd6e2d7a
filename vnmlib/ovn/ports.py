"""A VM's NICs -> the logical switch ports they need, validated before NB is contacted.

Nothing here talks to OVN: a bad MAC, address, security group or host name
fails the action with the NIC and attribute named, before any transaction.
"""

import re

from vnmlib.errors import InputError, shown
from vnmlib.firewall.sg_rules import nic_groups, rules_by_group
from vnmlib.ovn import names

# oned's host names: DNS names or addresses; OVN matches them against Chassis
# name and hostname
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,252})")
_ADDRESSES = (("IP", 4), ("IP6", 6), ("IP6_GLOBAL", 6), ("IP6_ULA", 6))


class Floating:
    """A floating IP: ``external`` (EXTERNAL_IP or EXTERNAL_IP6 of a NIC or alias) maps to
    ``internal``, that element's address of the same family."""

    __slots__ = ("label", "what", "external", "internal")

    def __init__(self, label, what, external, internal):
        self.label, self.what, self.external, self.internal = label, what, external, internal


class WantedPort:
    """The Logical_Switch_Port of one NIC, and the security groups it is in."""

    __slots__ = ("nic", "name", "vnet_id", "mac", "ips", "chassis", "groups", "external_ids",
                 "floating")

    def __init__(self, nic, name, vnet_id, mac, ips, chassis, groups, external_ids,
                 floating=()):
        self.nic, self.name, self.vnet_id, self.mac = nic, name, vnet_id, mac
        self.ips, self.chassis, self.groups = ips, chassis, groups
        self.external_ids = external_ids
        self.floating = list(floating)  # [Floating] of the NIC and its aliases

    @property
    def addresses(self):
        """``addresses`` and ``port_security``: the MAC and every address of the NIC and its
        aliases; OVN then drops any other source MAC or IP from the VM."""
        return " ".join([self.mac, *self.ips])


def last_host(stdin_root):
    """The VM's host: HOSTNAME of its last history record (oned sends the current one
    last), validated; what ``requested-chassis`` names."""
    hosts = [(e.text or "").strip()
             for e in stdin_root.iterfind("HISTORY_RECORDS/HISTORY/HOSTNAME")]
    if not hosts or not hosts[-1]:
        raise InputError("HISTORY_RECORDS/HISTORY/HOSTNAME is missing: the VM's host is "
                         "needed to bind its ports (requested-chassis)")
    if not _HOST.fullmatch(hosts[-1]):
        raise InputError(f"HISTORY_RECORDS/HISTORY/HOSTNAME {shown(hosts[-1])} is not a host name")
    return hosts[-1]


def _ips(elements):
    found = []
    for element in elements:
        for name, version in _ADDRESSES:
            address = element.ip_address(name, version)
            if address is not None:
                found.append(str(address))
    return list(dict.fromkeys(found))


def _floating(element):
    """[Floating] of a NIC or alias: EXTERNAL_IP to its IP, EXTERNAL_IP6 to its first IPv6
    address (IP6, IP6_GLOBAL, IP6_ULA)."""
    found = []
    for name, version, targets in (("EXTERNAL_IP", 4, ("IP",)),
                                   ("EXTERNAL_IP6", 6, ("IP6", "IP6_GLOBAL", "IP6_ULA"))):
        external = element.ip_address(name, version)
        if external is None:
            continue
        internal = next((a for a in (element.ip_address(t, version) for t in targets)
                         if a is not None), None)
        if internal is None:
            raise InputError(f"{element.label}: {name} {external} needs "
                             f"{' or '.join(targets)} (the address it maps to)")
        found.append(Floating(element.label, name, external, internal))
    return found


def wanted(vm, nics, driver, host, leaving=None):
    """[WantedPort] for ``nics`` of ``vm`` on ``host``, without the alias ``leaving`` (being
    detached); raises on any bad value."""
    groups = rules_by_group(rule.attrs for rule in vm.rules)
    ports = []
    for nic in nics:
        mac = nic.mac_attr()
        if not mac:
            raise InputError(f"{nic.label}: MAC is missing: OVN's port security needs it")
        vnet_id = nic.network_id
        if vnet_id is None:
            raise InputError(f"{nic.label}: NETWORK_ID is missing: its logical switch is unknown")
        elements = [nic, *vm.aliases_of(nic, leaving, driver)]
        ports.append(WantedPort(nic, names.port(vm.id, nic.nic_id), vnet_id, mac,
                                _ips(elements), host, nic_groups(nic, groups),
                                names.tags(vnet_id=vnet_id, vm_id=vm.id, nic_id=nic.nic_id),
                                [f for element in elements for f in _floating(element)]))
    return ports
