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
              "OVN_GATEWAY_CHASSIS")
GATEWAY_PRIORITY = 100  # the first chassis; each next one a step lower


def router_mac(vnet_id, side):
    """The MAC of the router's port on a side (1: the network, 2: the external network):
    locally administered, unique per network and side."""
    return "0a:%02x:%02x:%02x:%02x:%02x" % ((side,) + tuple(vnet_id.to_bytes(4, "big")))


class WantedRouter:
    __slots__ = ("vnet_id", "external_vnet", "internal", "external", "next_hop", "chassis")

    def __init__(self, vnet_id, external_vnet, internal, external, next_hop, chassis):
        self.vnet_id, self.external_vnet = vnet_id, external_vnet
        self.internal, self.external = internal, external  # ipaddress interfaces
        self.next_hop, self.chassis = next_hop, chassis

    def shown(self):
        return (f"router {names.router(self.vnet_id)} ({self.internal} to network "
                f"{self.external_vnet} at {self.external}, gateway chassis "
                f"{', '.join(self.chassis)})")


def wanted(attr, vnet_id, cidr4):
    """The router ``attr`` (a VNET attribute reader) asks for, or None; ``cidr4``: the
    network's IPv4 prefix (None when it has none). Raises on any bad value."""
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
    gateway = attr("GATEWAY")
    if not gateway or cidr4 is None:
        raise InputError("OVN_EXTERNAL_NETWORK needs GATEWAY, NETWORK_ADDRESS and NETWORK_MASK "
                         "(the router's address on this network)")
    internal = ipaddress.ip_interface(f"{parse_address(gateway, 4, 'GATEWAY')}/"
                                      f"{ipaddress.ip_network(cidr4).prefixlen}")
    if internal.ip not in ipaddress.ip_network(cidr4):
        raise InputError(f"GATEWAY {internal.ip} is not in {cidr4}")
    text = given["OVN_EXTERNAL_IP"]
    address, _, prefix = text.partition("/")
    length = decimal(prefix, digits=2)
    if not text or length is None or not 1 <= length <= 32:
        raise InputError(f"OVN_EXTERNAL_IP {shown(text)} is not ADDRESS/PREFIX (the router's "
                         "address on the external network)")
    external = ipaddress.ip_interface(f"{parse_address(address, 4, 'OVN_EXTERNAL_IP')}/{length}")
    next_hop = None
    if given["OVN_EXTERNAL_GATEWAY"]:
        next_hop = parse_address(given["OVN_EXTERNAL_GATEWAY"], 4, "OVN_EXTERNAL_GATEWAY")
        if next_hop not in external.network:
            raise InputError(f"OVN_EXTERNAL_GATEWAY {next_hop} is not in {external.network}")
    chassis = [c.strip() for c in given["OVN_GATEWAY_CHASSIS"].split(",") if c.strip()]
    if not chassis:
        raise InputError("OVN_EXTERNAL_NETWORK needs OVN_GATEWAY_CHASSIS (the hosts that reach "
                         "the provider network, the first preferred)")
    for host in chassis:
        if not _HOST.fullmatch(host):
            raise InputError(f"OVN_GATEWAY_CHASSIS {shown(host)} is not a host name")
    return WantedRouter(vnet_id, external_vnet, internal, external, next_hop,
                        list(dict.fromkeys(chassis)))


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
    router.external_ids = names.tags(vnet_id=w.vnet_id)
    current = {p.name: p for p in router.ports}
    ports = []
    for side, network in ((1, w.internal), (2, w.external)):
        name = names.router_port(w.vnet_id, side)
        row = current.get(name)
        if row is None:
            row = txn.insert(northbound.idl.tables["Logical_Router_Port"])
            row.name = name
            row.gateway_chassis = []  # a new row's columns are read below
        row.mac = router_mac(w.vnet_id, side)
        row.networks = [str(network)]
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
    if w.next_hop is not None:
        route = txn.insert(northbound.idl.tables["Logical_Router_Static_Route"])
        route.ip_prefix, route.nexthop = "0.0.0.0/0", str(w.next_hop)
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
    """``port``'s floating IP (:class:`~vnmlib.ovn.ports.WantedPort` with ``external_ip``)
    as a dnat_and_snat row of ``router``, replacing any earlier one of the NIC."""
    ids = port.external_ids
    for row in router.nat:
        same_nic = (row.external_ids.get(names.VM_ID) == ids[names.VM_ID]
                    and row.external_ids.get(names.NIC_ID) == ids[names.NIC_ID])
        if same_nic:
            router.delvalue("nat", row)
        elif row.external_ip == str(port.external_ip):
            raise VnmError(f"{port.nic.label}: EXTERNAL_IP {port.external_ip} is already "
                           f"VM {row.external_ids.get(names.VM_ID, '?')}'s floating IP; refused")
    row = txn.insert(northbound.idl.tables["NAT"])
    row.type = "dnat_and_snat"
    row.external_ip = str(port.external_ip)
    row.logical_ip = str(port.internal_ip)
    row.external_ids = ids
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
