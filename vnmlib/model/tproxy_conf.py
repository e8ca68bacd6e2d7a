"""``:tproxy:`` of OpenNebulaNetwork.conf: the services VMs reach at 169.254.16.9 (reference §2.9).

Each entry is a mapping::

    :tproxy:
    - :service_port: 5030          # the port VMs connect to on 169.254.16.9
      :remote_addr: onegate.lan    # an IPv4 address or a host name
      :remote_port: 5030
      :networks: [0, vnet1]        # optional: network IDs or names, default all

The file is oneadmin's, so to root it is data: every value is checked by type
here and only the parsed values (ints, an address or a DNS name) go on. A
malformed entry is an error, not a skipped entry as in the reference: a
silently missing OneGate is harder to diagnose than one line naming the entry.
"""

import re

from vnmlib.errors import InputError

SOURCE = "OpenNebulaNetwork.conf: :tproxy:"
KEYS = ("service_port", "remote_addr", "remote_port", "networks")
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class Service:
    """One proxied service: VMs' ``169.254.16.9:service_port`` -> ``remote_addr:remote_port``."""

    __slots__ = ("service_port", "remote_addr", "remote_port", "networks")

    def __init__(self, service_port, remote_addr, remote_port, networks):
        self.service_port = service_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        self.networks = networks  # frozenset of str (IDs and names), empty = every network

    def applies_to(self, nic):
        if not self.networks:
            return True
        return bool(self.networks & {str(nic.network_id), nic.get("NETWORK")} - {"", "None"})

    def as_list(self):
        return [self.service_port, self.remote_addr, self.remote_port]


def services(conf):
    """Every entry of ``conf['tproxy']`` parsed and checked (an empty list when absent)."""
    entries = conf.get("tproxy")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise InputError(f"{SOURCE} must be a list of services, got {entries!r}")
    return [_service(entry, f"{SOURCE} entry {index}")
            for index, entry in enumerate(entries, 1)]


def nic_services(parsed, nic, log):
    """The services a NIC's bridge offers: those whose ``networks`` take the NIC,
    the first of each ``service_port`` (the reference's rule, with its warning)."""
    chosen = {}
    for service in parsed:
        if not service.applies_to(nic):
            continue
        if service.service_port in chosen:
            log.warning(f"{nic.label}: {SOURCE} service_port {service.service_port} is "
                        "defined twice; the first entry is used")
            continue
        chosen[service.service_port] = service
    return list(chosen.values())


def _service(entry, where):
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be a mapping of :service_port:, :remote_addr:, "
                         f":remote_port: and :networks:, got {entry!r}")
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key :{unknown[0]}: (known: "
                         f"{', '.join(':' + k + ':' for k in KEYS)})")
    return Service(_port(entry, "service_port", where), _remote_addr(entry, where),
                   _port(entry, "remote_port", where), _networks(entry, where))


def _port(entry, key, where):
    value = entry.get(key)
    if value is None:
        raise InputError(f"{where}: :{key}: is missing")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InputError(f"{where}: :{key}: {value!r} is not a port number (1..65535)")
    return value


def _remote_addr(entry, where):
    value = entry.get("remote_addr")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"{where}: :remote_addr: is missing")
    text = str(value).strip() if isinstance(value, str) else None
    if text is None:
        raise InputError(f"{where}: :remote_addr: {value!r} is not an IPv4 address or a host name")
    import ipaddress  # ~3 ms: only paid when a :tproxy: is configured

    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    # all-digit last label: a malformed address (10.0.0.300), not a name
    if (len(name) > 253 or not all(_LABEL.match(label) for label in labels)
            or labels[-1].isdigit()):
        raise InputError(f"{where}: :remote_addr: {text!r} is not an IPv4 address or a host name")
    return name


def _networks(entry, where):
    value = entry.get("networks")
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        value = [value]
    names = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or not str(item).strip():
            raise InputError(f"{where}: :networks: {item!r} is not a network ID or name")
        names.add(str(item).strip())
    return frozenset(names)
