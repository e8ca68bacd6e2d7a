"""A network's logical router to an external (provider) network, and its floating IPs.

A network whose template names ``OVN_EXTERNAL_NETWORK`` (the ID of an ovn
network on a provider network: one with ``OVN_PROVIDER_NETWORK``) gets a
Logical_Router ``one-router-<id>``: one port at the network's ``GATEWAY``
(the guests' router, on the network's prefix), one on the external switch at
``OVN_EXTERNAL_IP`` (address/prefix on the provider network), that port bound
to the chassis of ``OVN_GATEWAY_CHASSIS`` (host names, the first preferred:
the hosts whose bridge reaches the provider network), and a default route via
``OVN_EXTERNAL_GATEWAY`` when given.

A NIC with ``EXTERNAL_IP`` (an elastic/floating IP, as the elastic driver's)
gets a ``dnat_and_snat`` NAT row on its network's router: traffic to
EXTERNAL_IP reaches the NIC's IP, the NIC's traffic leaves from EXTERNAL_IP.
The NAT is centralized on the gateway chassis (no ``logical_port``/
``external_mac``): it works from every host, whether or not the host maps
the provider network.
"""

import ipaddress
import re

from vnmlib.errors import InputError, VnmError, shown
from vnmlib.model.addresses import parse_address
from vnmlib.model.numbers import decimal
from vnmlib.ovn import names

_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
ATTRIBUTES = ("OVN_EXTERNAL_NETWORK", "OVN_EXTERNAL_IP", "OVN_EXTERNAL_GATEWAY",
              "OVN_EXTERNAL_IP6", "OVN_EXTERNAL_GATEWAY6", "OVN_GATEWAY_CHASSIS",
              "OVN_DISTRIBUTED_NAT")
GATEWAY_PRIORITY = 100  # the first chassis; each next one a step lower
DISTRIBUTED = "opennebula:distributed_nat"  # the router's external_ids key: "yes" or absent
_DEFAULT_ROUTE = {4: "0.0.0.0/0", 6: "::/0"}


def router_mac(vnet_id, side):
    """The MAC of the router's port on a side (1: the network, 2: the external network):
    locally administered, unique per network and side."""
    return "0a:%02x:%02x:%02x:%02x:%02x" % ((side,) + tuple(vnet_id.to_bytes(4, "big")))


class WantedRouter:
    __slots__ = ("vnet_id", "external_vnet", "internal", "external", "next_hops", "chassis",
                 "distributed")

    def __init__(self, vnet_id, external_vnet, internal, external, next_hops, chassis,
                 distributed=False):
        self.vnet_id, self.external_vnet = vnet_id, external_vnet
        # ipaddress interfaces, IPv4 first: the router's addresses on each side
        self.internal, self.external = internal, external
        self.next_hops, self.chassis = next_hops, chassis  # next_hops: default routes' gateways
        self.distributed = distributed

    def shown(self):
        nat = ", floating IPs on the VMs' hosts" if self.distributed else ""
        return (f"router {names.router(self.vnet_id)} ({' '.join(map(str, self.internal))} to "
                f"network {self.external_vnet} at {' '.join(map(str, self.external))}, gateway "
                f"chassis {', '.join(self.chassis)}{nat})")


def _external(given, version):
    """The router's address on the external network (OVN_EXTERNAL_IP or _IP6), or None."""
    name = "OVN_EXTERNAL_IP" if version == 4 else "OVN_EXTERNAL_IP6"
    text = given[name]
    if not text and version == 6:
        return None
    address, _, prefix = text.partition("/")
    length = decimal(prefix, digits=3)
    if not text or length is None or not 1 <= length <= (32 if version == 4 else 128):
        raise InputError(f"{name} {shown(text)} is not ADDRESS/PREFIX (the router's "
                         "address on the external network)")
    return ipaddress.ip_interface(f"{parse_address(address, version, name)}/{length}")


def _internal(attr, cidr, version):
    """The router's address on the network: GATEWAY (GATEWAY6) with the network's prefix."""
    name = "GATEWAY" if version == 4 else "GATEWAY6"
    gateway = attr(name)
    if not gateway or cidr is None:
        needs = ("NETWORK_ADDRESS and NETWORK_MASK" if version == 4
                 else "an address range with GLOBAL_PREFIX or ULA_PREFIX")
        raise InputError(f"{'OVN_EXTERNAL_NETWORK' if version == 4 else 'OVN_EXTERNAL_IP6'} "
                         f"needs {name} and {needs} (the router's address on this network)")
    network = ipaddress.ip_network(cidr)
    internal = ipaddress.ip_interface(f"{parse_address(gateway, version, name)}/"
                                      f"{network.prefixlen}")
    if internal.ip not in network:
        raise InputError(f"{name} {internal.ip} is not in {cidr}")
    return internal


def _next_hop(given, version, external):
    name = "OVN_EXTERNAL_GATEWAY" if version == 4 else "OVN_EXTERNAL_GATEWAY6"
    if not given[name]:
        return None
    if external is None:
        raise InputError(f"{name} needs OVN_EXTERNAL_IP6 (the router's address on the "
                         "external network)")
    next_hop = parse_address(given[name], version, name)
    if next_hop not in external.network:
        raise InputError(f"{name} {next_hop} is not in {external.network}")
    return next_hop


def wanted(attr, vnet_id, cidr4, cidr6=None):
    """The router ``attr`` (a VNET attribute reader) asks for, or None; ``cidr4``,
    ``cidr6``: the network's prefixes (None when it has none). Raises on any bad value."""
    given = {name: attr(name) for name in ATTRIBUTES}
    if not given["OVN_EXTERNAL_NETWORK"]:
        extra = [name for name, value in given.items() if value]
        if extra:
            raise InputError(f"{extra[0]} needs OVN_EXTERNAL_NETWORK (the network the router "
                             "leads to)")
        return None
    external_vnet = decimal(given["OVN_EXTERNAL_NETWORK"], digits=10)
    if external_vnet is None or external_vnet == vnet_id:
        raise InputError(f"OVN_EXTERNAL_NETWORK {shown(given['OVN_EXTERNAL_NETWORK'])} is not "
                         "the ID of another network")
    internal, external, next_hops = [], [], []
    for version, cidr in ((4, cidr4), (6, cidr6)):
        outside = _external(given, version)
        hop = _next_hop(given, version, outside)
        if outside is None:
            continue
        internal.append(_internal(attr, cidr, version))
        external.append(outside)
        if hop is not None:
            next_hops.append(hop)
    chassis = [c.strip() for c in given["OVN_GATEWAY_CHASSIS"].split(",") if c.strip()]
    if not chassis:
        raise InputError("OVN_EXTERNAL_NETWORK needs OVN_GATEWAY_CHASSIS (the hosts that reach "
                         "the provider network, the first preferred)")
    for host in chassis:
        if not _HOST.fullmatch(host):
            raise InputError(f"OVN_GATEWAY_CHASSIS {shown(host)} is not a host name")
    distributed = given["OVN_DISTRIBUTED_NAT"]
    distributed = distributed.upper() if distributed.isascii() else distributed
    if distributed not in ("", "YES", "NO"):
        raise InputError(f"OVN_DISTRIBUTED_NAT {shown(given['OVN_DISTRIBUTED_NAT'])} is not "
                         "YES or NO")
    return WantedRouter(vnet_id, external_vnet, internal, external, next_hops,
                        list(dict.fromkeys(chassis)), distributed == "YES")


# -- northbound rows (inside a vnet_create/vnet_delete/pre/clean transaction) ------------------

def _tagged_role(row, role):
    return (row.external_ids.get(names.OWNER) == names.OWNER_VALUE
            and row.external_ids.get(names.ROLE) == role)


def find(northbound, vnet_id):
    """The network's router row, or None."""
    for row in northbound.table("Logical_Router"):
        if (row.external_ids.get(names.OWNER) == names.OWNER_VALUE
                and row.external_ids.get(names.VNET_ID) == str(vnet_id)):
            return row
    return None


def _switch_port(txn, northbound, switch, name, router_port, vnet_id):
    """The switch's port of type router leading to ``router_port``."""
    rows = [p for p in switch.ports if p.name == name and _tagged_role(p, names.ROUTER_ROLE)]
    if rows:
        row = rows[0]
    else:
        row = txn.insert(northbound.idl.tables["Logical_Switch_Port"])
        row.name = name
        switch.addvalue("ports", row)
    row.type = "router"
    row.addresses = ["router"]
    row.options = {"router-port": router_port}
    row.external_ids = dict(names.tags(vnet_id=vnet_id), **{names.ROLE: names.ROUTER_ROLE})


def _drop_switch_port(switch, name):
    for row in [p for p in switch.ports if p.name == name and _tagged_role(p, names.ROUTER_ROLE)]:
        switch.delvalue("ports", row)


def ensure(txn, northbound, switch, external_switch, wanted_router):
    """The router, its two ports (the external one on its gateway chassis), the switches'
    router ports and the default route, as ``wanted_router`` says."""
    w = wanted_router
    router = find(northbound, w.vnet_id)
    if router is None:
        router = txn.insert(northbound.idl.tables["Logical_Router"])
        router.nat = []  # a new row's columns are read below
        router.ports = []
    router.name = names.router(w.vnet_id)
    router.external_ids = dict(names.tags(vnet_id=w.vnet_id),
                               **({DISTRIBUTED: "yes"} if w.distributed else {}))
    current = {p.name: p for p in router.ports}
    ports = []
    for side, networks in ((1, w.internal), (2, w.external)):
        name = names.router_port(w.vnet_id, side)
        row = current.get(name)
        if row is None:
            row = txn.insert(northbound.idl.tables["Logical_Router_Port"])
            row.name = name
            row.gateway_chassis = []  # a new row's columns are read below
        row.mac = router_mac(w.vnet_id, side)
        row.networks = [str(n) for n in networks]
        ports.append(row)
    # (rows reused by name: the name is a unique index)
    previous = {row.name: row for row in ports[1].gateway_chassis}
    chassis = []
    for rank, host in enumerate(w.chassis):
        name = f"{ports[1].name}-{host}"
        row = previous.get(name)
        if row is None:
            row = txn.insert(northbound.idl.tables["Gateway_Chassis"])
            row.name = name
        row.chassis_name = host
        row.priority = GATEWAY_PRIORITY - rank
        chassis.append(row)
    ports[1].gateway_chassis = chassis  # the others, unreferenced, go
    ports[0].gateway_chassis = []
    router.ports = ports
    routes = []
    for next_hop in w.next_hops:
        route = txn.insert(northbound.idl.tables["Logical_Router_Static_Route"])
        route.ip_prefix, route.nexthop = _DEFAULT_ROUTE[next_hop.version], str(next_hop)
        routes.append(route)
    router.static_routes = routes
    _switch_port(txn, northbound, switch, names.router_switch_port(w.vnet_id, 1),
                 ports[0].name, w.vnet_id)
    _switch_port(txn, northbound, external_switch, names.router_switch_port(w.vnet_id, 2),
                 ports[1].name, w.vnet_id)


def remove(northbound, switches, vnet_id):
    """The network's router and its ports on every switch (``switches``): gone."""
    for switch in switches:
        for side in (1, 2):
            _drop_switch_port(switch, names.router_switch_port(vnet_id, side))
    router = find(northbound, vnet_id)
    if router is not None:
        router.delete()


def set_nat(txn, northbound, router, port):
    """``port``'s floating IPs (:class:`~vnmlib.ovn.ports.WantedPort` ``floating``, its
    NIC's and its aliases') as the dnat_and_snat rows of ``router``, replacing the NIC's
    earlier ones. On a router with distributed NAT each row names the port and its MAC:
    the VM's own host then answers for the floating IP and NATs its traffic, which leaves
    there (that host must map the external network's provider network)."""
    ids = port.external_ids
    wanted = {str(f.external): f for f in port.floating}
    families = {ipaddress.ip_interface(n).version for p in router.ports for n in p.networks}
    for floating in port.floating:
        if floating.external.version not in families:
            raise VnmError(f"{floating.label}: {floating.what} {floating.external} needs the "
                           f"router of network {port.vnet_id} to have an IPv"
                           f"{floating.external.version} address (OVN_EXTERNAL_IP6 and GATEWAY6 "
                           "in its template)")
    for row in router.nat:
        same_nic = (row.external_ids.get(names.VM_ID) == ids[names.VM_ID]
                    and row.external_ids.get(names.NIC_ID) == ids[names.NIC_ID])
        if same_nic:
            router.delvalue("nat", row)
        elif row.external_ip in wanted:
            owner = row.external_ids.get(names.VM_ID, "?")
            raise VnmError(f"{wanted[row.external_ip].label}: {wanted[row.external_ip].what} "
                           f"{row.external_ip} is already VM {owner}'s floating IP; refused")
    distributed = router.external_ids.get(DISTRIBUTED) == "yes"
    for floating in port.floating:
        row = txn.insert(northbound.idl.tables["NAT"])
        row.type = "dnat_and_snat"
        row.external_ip = str(floating.external)
        row.logical_ip = str(floating.internal)
        row.external_ids = ids
        if distributed:
            row.logical_port = [port.name]
            row.external_mac = [port.mac]
        router.addvalue("nat", row)


def drop_nat(northbound, vm_id, nic_ids):
    """The NAT rows of the VM's NICs ``nic_ids`` (strings), on every router of vnm's."""
    for router in northbound.table("Logical_Router"):
        if router.external_ids.get(names.OWNER) != names.OWNER_VALUE:
            continue
        for row in list(router.nat):
            if (row.external_ids.get(names.VM_ID) == str(vm_id)
                    and row.external_ids.get(names.NIC_ID) in nic_ids):
                router.delvalue("nat", row)
