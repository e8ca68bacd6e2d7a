"""A host's membership of OVN: joining it (``vnm ovn join``) and checking it (``vnm ovn check``).

A host is joined by four keys of its Open vSwitch's ``external_ids``, which
ovn-controller reads: ``system-id`` (its chassis name: what the ports'
``requested-chassis`` names, so the host's name in oned), ``ovn-remote`` (the
southbound database), ``ovn-encap-type`` and ``ovn-encap-ip`` (its tunnel
endpoint); ``ovn-bridge-mappings`` (optional) maps the provider networks a
network's localnet port names (``OVN_PROVIDER_NETWORK``) to this host's
bridges. Everything here goes through ovs-vsctl / ovn-appctl and the
Open vSwitch database socket: hosts need no OVSDB library.
"""

import json
import os
import re

from vnmlib.errors import InputError, VnmError, shown
from vnmlib.host import process
from vnmlib.model.addresses import parse_address
from vnmlib.model.naming import check_ifname
from vnmlib.ovs import ovsdb
from vnmlib.ovs.tools import vsctl

OK, WARN, FAIL = "ok", "warn", "FAIL"
ENCAP_TYPES = ("geneve", "vxlan")
DATAPATH_TYPES = ("system", "netdev")
_SYSTEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
_REMOTE = re.compile(r"(tcp|ssl):[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}|unix:/[^\s,]+")
KEYS = ("system-id", "ovn-remote", "ovn-encap-type", "ovn-encap-ip")


def _bridge_mappings(mappings):
    """``ovn-bridge-mappings`` of ``["NETWORK:BRIDGE", …]``, validated."""
    from vnmlib.ovn.switch import PROVIDER_NETWORK

    found = {}
    for item in mappings:
        network, _, bridge = item.partition(":")
        if not PROVIDER_NETWORK.fullmatch(network) or not bridge:
            raise InputError(f"--bridge-mapping {shown(item)} is not NETWORK:BRIDGE (a provider "
                             "network name: letters, digits, '_', '.', '-')")
        if network in found:
            raise InputError(f"--bridge-mapping: provider network {network} is mapped twice")
        found[network] = check_ifname(bridge, f"--bridge-mapping {network}")
    return ",".join(f"{network}:{bridge}" for network, bridge in found.items())


def join_settings(remote, encap_ip, system_id, encap_type="geneve", datapath_type=None,
                  bridge_mappings=()):
    """The external_ids a join sets, validated: {key: value}."""
    remotes = remote.split(",")
    for item in remotes:
        if not _REMOTE.fullmatch(item):
            raise InputError(f"--remote {shown(item)} is not an OVSDB remote (tcp:HOST:PORT, "
                             "ssl:HOST:PORT or unix:PATH)")
    version = 6 if ":" in encap_ip else 4
    settings = {"ovn-remote": ",".join(remotes),
                "ovn-encap-ip": str(parse_address(encap_ip, version, "--encap-ip"))}
    if not _SYSTEM_ID.fullmatch(system_id):
        raise InputError(f"--system-id {shown(system_id)} is not a host name")
    settings["system-id"] = system_id
    if encap_type not in ENCAP_TYPES:
        raise InputError(f"--encap-type {shown(encap_type)} is not one of {', '.join(ENCAP_TYPES)}")
    settings["ovn-encap-type"] = encap_type
    if datapath_type is not None:
        if datapath_type not in DATAPATH_TYPES:
            raise InputError(f"--bridge-datapath-type {shown(datapath_type)} is not one of "
                             f"{', '.join(DATAPATH_TYPES)}")
        settings["ovn-bridge-datapath-type"] = datapath_type
    if bridge_mappings:
        settings["ovn-bridge-mappings"] = _bridge_mappings(bridge_mappings)
    return settings


def join(settings):
    """Set them, in one ovs-vsctl transaction; ovn-controller picks them up."""
    # (quoted: ',' and ':' in a value are ovs-vsctl's syntax; it reads a JSON string)
    vsctl([["set", "Open_vSwitch", ".", *(f"external_ids:{k}={json.dumps(v)}"
                                          for k, v in settings.items())]], "joining OVN")


def _external_ids(timeout):
    with ovsdb.Connection(timeout) as db:
        rows = db.select({"Open_vSwitch": ["external_ids"], "Bridge": ["name"]})
    ids = rows["Open_vSwitch"][0]["external_ids"] if rows["Open_vSwitch"] else {}
    return ids, {b["name"] for b in rows["Bridge"]}


def is_chassis(timeout=5):
    """Whether this host is (meant to be) an OVN chassis: its Open vSwitch database says
    where ovn-controller is to find OVN (``ovn-remote`` or ``ovn-encap-ip``). A host
    with no Open vSwitch, or one that never joined, is not one."""
    if not os.path.exists(ovsdb.socket_path()):
        return False
    try:
        ids, _ = _external_ids(timeout)
    except VnmError:
        return False
    return bool(ids.get("ovn-remote") or ids.get("ovn-encap-ip"))


def _mapped_bridges(mappings, bridges):
    """Each provider network's bridge present: without it, the network's localnet port
    does not reach the provider network from this host."""
    found = []
    for item in filter(None, mappings.split(",")):
        network, _, bridge = item.partition(":")
        found.append((f"provider network {network}", OK if bridge in bridges else FAIL,
                      f"bridge {bridge}" + ("" if bridge in bridges else
                                            " missing: create it (ovs-vsctl add-br) with the "
                                            "provider network's uplink")))
    return found


def check(timeout=5):
    """[(check, status, detail)] of this host's join."""
    try:
        ids, bridges = _external_ids(timeout)
    except VnmError as exc:
        return [("Open vSwitch database", FAIL, str(exc))]
    found = []
    for key in KEYS:
        value = ids.get(key, "")
        found.append((f"external_ids:{key}", OK if value else FAIL,
                      value or "not set (vnm ovn join sets it)"))
    found.append(("br-int", OK if "br-int" in bridges else FAIL,
                  "present" if "br-int" in bridges else "missing: ovn-controller creates it"))
    found += _mapped_bridges(ids.get("ovn-bridge-mappings", ""), bridges)
    try:
        result = process.run([process.which("ovn-appctl"), "-t", "ovn-controller",
                              "connection-status"])
    except VnmError as exc:
        result = None
        detail = str(exc)
    status = result.stdout.strip() if result is not None and result.ok else ""
    if result is not None and not result.ok:
        detail = f"not running or not answering: {result.error_line()}"
    found.append(("ovn-controller", OK if status == "connected" else FAIL,
                  "connected to the southbound database" if status == "connected" else
                  (f"southbound connection: {status}" if status else detail)))
    return found
