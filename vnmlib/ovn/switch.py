"""A virtual network (vnet_create's ``<VNET>``) -> its Logical_Switch and DHCP_Options.

The switch carries the network's id, name and MTU in ``external_ids``. OVN
answers DHCP itself, on every host, for ports whose ``dhcpv4_options`` /
``dhcpv6_options`` name a DHCP_Options row: one per family, built from the
network's NETWORK_ADDRESS/NETWORK_MASK, GATEWAY, DNS and GUEST_MTU (IPv4) and
its address ranges' GLOBAL_PREFIX or ULA_PREFIX (IPv6, /64 as oned's SLAAC ranges).
Every value is parsed (``ipaddress``, integers) and rendered from its parsed form.

A network on a physical or VLAN provider network names it in
``OVN_PROVIDER_NETWORK`` (the name hosts map to a bridge with ``vnm ovn join
--bridge-mapping NAME:BRIDGE``), with ``VLAN_ID`` when it is a VLAN of it: the
switch then gets a ``localnet`` port, through which each host's ovn-controller
joins the switch to that bridge (tagged with the VLAN).
"""

import ipaddress
import re

from vnmlib.errors import InputError, shown
from vnmlib.model.template import decode_base64, parse_xml
from vnmlib.model.addresses import parse_address
from vnmlib.model.numbers import decimal
from vnmlib.ovn import names, router

LEASE_TIME = 3600
_NAME_SAFE = re.compile(r"[^\x20-\x7e]")
# what ovn-bridge-mappings can hold: no ',' or ':' (its separators)
PROVIDER_NETWORK = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class WantedSwitch:
    __slots__ = ("vnet_id", "name", "external_ids", "dhcp", "localnet", "router")

    def __init__(self, vnet_id, name, external_ids, dhcp, localnet=None, router=None):
        self.vnet_id, self.name, self.external_ids, self.dhcp = vnet_id, name, external_ids, dhcp
        self.localnet = localnet  # (provider network, VLAN id or None), or None
        self.router = router  # vnmlib.ovn.router.WantedRouter, or None


def _localnet(root):
    """(provider network, VLAN id or None) of OVN_PROVIDER_NETWORK and VLAN_ID, or None."""
    network, vlan_text = _attr(root, "OVN_PROVIDER_NETWORK"), _attr(root, "VLAN_ID")
    vlan = decimal(vlan_text, digits=4) if vlan_text else None
    if vlan_text and (vlan is None or not 1 <= vlan <= 4094):
        raise InputError(f"VLAN_ID {shown(vlan_text)} is not a VLAN id (1..4094)")
    if not network:
        if vlan_text:
            raise InputError(f"VLAN_ID {vlan} needs OVN_PROVIDER_NETWORK: an OVN network is a "
                             "VLAN of a provider network or an overlay, never a VLAN of nothing")
        return None
    if not PROVIDER_NETWORK.fullmatch(network):
        raise InputError(f"OVN_PROVIDER_NETWORK {shown(network)} is not a provider network "
                         "name (letters, digits, '_', '.', '-'; at most 64)")
    return network, vlan


def _leaf(element, name):
    child = element.find(name)
    return (child.text or "").strip() if child is not None else ""


def _attr(root, name):
    """A VNET attribute: the template's value, else the VNET's own element."""
    return _leaf(root, f"TEMPLATE/{name}") or _leaf(root, name)


def server_mac(vnet_id):
    """The MAC OVN's DHCP server answers from: locally administered, unique per network."""
    return "0a:00:%02x:%02x:%02x:%02x" % tuple(vnet_id.to_bytes(4, "big"))


def _dns(text, version):
    out = []
    for item in text.replace(",", " ").split():
        if (":" in item) == (version == 6):
            out.append(str(parse_address(item, version, "DNS")))
    return out


def _dhcp4(root, vnet_id, mtu):
    address, mask = _attr(root, "NETWORK_ADDRESS"), _attr(root, "NETWORK_MASK")
    if not address or not mask:
        return None
    first = parse_address(address, 4, "NETWORK_ADDRESS")
    try:
        cidr = ipaddress.ip_network(f"{first}/{parse_address(mask, 4, 'NETWORK_MASK')}")
    except ValueError:
        raise InputError(f"NETWORK_ADDRESS {shown(address)} / NETWORK_MASK {shown(mask)} is "
                         "not a network") from None
    gateway = _attr(root, "GATEWAY")
    server = parse_address(gateway, 4, "GATEWAY") if gateway else next(cidr.hosts())
    options = {"server_id": str(server), "server_mac": server_mac(vnet_id),
               "lease_time": str(LEASE_TIME)}
    if gateway:
        options["router"] = str(server)
    dns = _dns(_attr(root, "DNS"), 4)
    if dns:
        options["dns_server"] = "{" + ", ".join(dns) + "}"
    if mtu:
        options["mtu"] = str(mtu)
    return str(cidr), options


def _dhcp6(root, vnet_id):
    for ar in root.iterfind("AR_POOL/AR"):
        for field in ("GLOBAL_PREFIX", "ULA_PREFIX"):
            text = _leaf(ar, field)
            if text:
                prefix = parse_address(text, 6, f"AR {_leaf(ar, 'AR_ID') or '?'}: {field}")
                cidr = ipaddress.ip_network(f"{prefix}/64", strict=False)
                options = {"server_id": server_mac(vnet_id)}
                dns = _dns(_attr(root, "DNS"), 6)
                if dns:
                    options["dns_server"] = "{" + ", ".join(dns) + "}"
                return str(cidr), options
    return None


def _vnet_id(root):
    vnet_id = decimal(_leaf(root, "ID"), digits=10)
    if vnet_id is None:
        raise InputError(f"VNET ID {shown(_leaf(root, 'ID'))} is missing or not an integer")
    return vnet_id


def vnet_id(stdin):
    """The network vnet_delete's stdin names (its other attributes do not matter)."""
    return _vnet_id(parse_xml(decode_base64(stdin), "VNET"))


def wanted(stdin):
    """The switch vnet_create's stdin describes; raises on a bad value."""
    root = parse_xml(decode_base64(stdin), "VNET")
    vnet_id = _vnet_id(root)
    mtu_text = _attr(root, "GUEST_MTU")
    mtu = decimal(mtu_text, digits=5) if mtu_text else None
    if mtu_text and (mtu is None or not 576 <= mtu <= 65535):
        raise InputError(f"GUEST_MTU {shown(mtu_text)} is not an MTU (576..65535)")
    external_ids = names.tags(vnet_id=vnet_id)
    # the name is for people reading NB: printable ASCII only
    external_ids["opennebula:vnet_name"] = _NAME_SAFE.sub("?", _leaf(root, "NAME"))[:200]
    if mtu:
        external_ids["opennebula:mtu"] = str(mtu)
    dhcp = {4: _dhcp4(root, vnet_id, mtu), 6: _dhcp6(root, vnet_id)}
    cidr4, cidr6 = (dhcp[family][0] if dhcp[family] else None for family in (4, 6))
    return WantedSwitch(vnet_id, names.switch(vnet_id), external_ids,
                        {family: d for family, d in dhcp.items() if d}, _localnet(root),
                        router.wanted(lambda name: _attr(root, name), vnet_id, cidr4, cidr6))
