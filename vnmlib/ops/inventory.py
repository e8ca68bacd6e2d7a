"""What vnm made on this host, per VM NIC, read from the kernel and Open vSwitch (read-only).

Used by ``vnm status`` and ``vnm gc``. The NICs are found by the names vnm
(and the reference) give things: taps ``one-<vm>-<nic>``, chains
``one-<vm>-<nic>-{i,o}`` (filter) and ``one-<vm>-<nic>-{dnat,snat}`` (nat:
nodeport's and elastic's), ipsets ``one-<vm>-<nic>-…``, OVS ports named as the
tap and flows with vnm's cookie ``0x4f4e<vm><nic>``, and the bridge-user
records of ``pre`` (/run/vnm/users). An OVS port is the NIC's its mark says
(``external_ids`` vnm-vm / vnm-nic, written by ``post``), whatever its name;
an unmarked one (made before vnm marked ports) the NIC's whose tap name it
has. Other taps a hypervisor named otherwise (``TARGET``) show up through
their chains and records only. A bridge's port ``<BR>b`` is its TProxy's veth
only when :mod:`vnmlib.linux.tproxy` proves it (its peer is ``<BR>a`` of
``one_tproxy_<BR>``). A port bound to an OVN logical port (the ovn driver's
``post``: ``external_ids:iface-id`` = ``one-<vm>-<nic>``) shows that port and
whether ovn-controller has installed it (``ovn-installed``).
"""

import json
import os
import re

from vnmlib.host import process
from vnmlib.errors import VnmError
from vnmlib.host.locks import BridgeUsers, warn

_BASE = re.compile(r"^one-([0-9]+)-([0-9]+)(?:-|$)")
_CHAIN = re.compile(r"^-N (one-([0-9]+)-([0-9]+)-[io])$")
_RULE = re.compile(r"^-A (one-[0-9]+-[0-9]+-[io]) ")
_NAT_CHAIN = re.compile(r"^-N (one-[0-9]+-[0-9]+-(?:dnat|snat))$")
_NAT_RULE = re.compile(r"^-A (one-[0-9]+-[0-9]+-(?:dnat|snat)) ")
# the logical port names of the ovn driver (vnmlib.ovn.names.port); libvirt's own
# iface-ids (random UUIDs) are not OVN ports of vnm
_LOGICAL_PORT = re.compile(r"^one-[0-9]+-[0-9]+$")


def _base_ids(name):
    match = _BASE.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


class Nic:
    """Everything found for one ``(vm, nic)``."""

    def __init__(self, vm_id, nic_id):
        self.vm_id, self.nic_id = vm_id, nic_id
        self.tap = None          # the link one-<vm>-<nic>, when it exists
        self.master = None       # the tap's bridge (Linux) or "ovs-system"
        self.rules = {}          # chain -> number of rules (IPv4 + IPv6)
        self.nat = {}            # nat chain (nodeport, elastic) -> number of rules
        self.ipsets = []
        self.ovs_port = None     # the OVS bridge holding the NIC's port (see ovs_port_owner)
        self.ovs_port_name = None  # that port's name
        self.ovs_flows = 0       # flows with this NIC's cookie
        self.ovn_port = None     # the OVN logical port its OVS interface is bound to
        self.ovn_installed = False  # ovn-controller has installed that port's flows
        self.records = []        # bridges whose user records name this NIC
        self.unprotected = []    # why its traffic may miss its chains (vnm status fills it)

    @property
    def base(self):
        return f"one-{self.vm_id}-{self.nic_id}"

    def problems(self):
        found = []
        if self.rules and self.tap is None:
            found.append("security-group chains but no tap (VM gone?)")
        if self.nat and self.tap is None:
            found.append("nat chains but no tap (VM gone? its host ports stay forwarded)")
        if self.ipsets and not self.rules:
            found.append("ipsets without chains")
        if self.records and self.tap is None and not self.rules:
            found.append("bridge-user record without tap (keeps the bridge)")
        if self.ovs_flows and self.ovs_port is None:
            found.append("OVS flows without port")
        # (on Open vSwitch's userspace datapath a port's tap has no kernel master)
        if self.tap is not None and self.master is None and self.ovs_port is None:
            found.append("tap on no bridge")
        if self.ovn_port and self.tap is not None and not self.ovn_installed:
            found.append(f"OVN logical port {self.ovn_port} not installed by ovn-controller "
                         "(no traffic: vnm ovn check)")
        return found + self.unprotected

    def as_dict(self):
        return {"vm": self.vm_id, "nic": self.nic_id, "tap": self.tap, "bridge": self.master,
                "chains": self.rules, "nat": self.nat, "ipsets": self.ipsets,
                "ovs_port": self.ovs_port, "ovs_flows": self.ovs_flows,
                "ovn_port": self.ovn_port, "ovn_installed": self.ovn_installed,
                "records": self.records,
                "problems": self.problems()}


class Inventory:
    def __init__(self):
        self.nics = {}
        self.links = {}       # name -> {"kind", "master"}
        self.ovs_bridges = {}  # name -> set of ports
        self.tables = {}       # family -> filter ``iptables -S`` lines (status verifies the paths)
        self.ipset_names = set()
        self.tproxy_bridges = set()  # bridges with a TProxy (its namespace or state file)
        self.tproxy_veths = set()    # ports <BR>b of bridge <BR> proven its TProxy's veth

    def nic(self, vm_id, nic_id):
        key = (vm_id, nic_id)
        if key not in self.nics:
            self.nics[key] = Nic(vm_id, nic_id)
        return self.nics[key]

    def vms(self):
        return sorted({vm for vm, _ in self.nics})


def _links(inv):
    out = process.run([process.which("ip"), "-d", "-j", "link", "show"]).check("reading links").stdout
    for link in json.loads(out or "[]"):
        kind = link.get("linkinfo", {}).get("info_kind", "")
        inv.links[link["ifname"]] = {"kind": kind, "master": link.get("master")}
        ids = _base_ids(link["ifname"])
        if ids and link["ifname"] == f"one-{ids[0]}-{ids[1]}":
            nic = inv.nic(*ids)
            nic.tap, nic.master = link["ifname"], link.get("master")


def _firewall(inv, backend):
    """Chains, rule counts and sets, read through the configured firewall backend: the
    tables vnm writes are the ones it reads (iptables-legacy with iptc, say)."""
    inv.tables = backend.list_tables()  # no family: no netfilter here, nothing of ours
    for family in sorted(inv.tables):
        for line in inv.tables[family]:
            chain = _CHAIN.match(line)
            if chain:
                inv.nic(int(chain.group(2)), int(chain.group(3))).rules.setdefault(
                    chain.group(1), 0)
                continue
            rule = _RULE.match(line)
            if rule:
                ids = _base_ids(rule.group(1))
                rules = inv.nic(*ids).rules
                rules[rule.group(1)] = rules.get(rule.group(1), 0) + 1
    for line in backend.list_nat():  # IPv4 only: nodeport and elastic forward IPv4
        chain, rule = _NAT_CHAIN.match(line), _NAT_RULE.match(line)
        if chain or rule:
            name = (chain or rule).group(1)
            nat = inv.nic(*_base_ids(name)).nat
            nat[name] = nat.get(name, 0) + (1 if rule else 0)
    try:
        inv.ipset_names = set(backend.list_sets())
    except VnmError:
        return  # no set tool here: no sets of ours either
    for name in inv.ipset_names:
        ids = _base_ids(name)
        if ids:
            inv.nic(*ids).ipsets.append(name)


def _tproxies(inv):
    """The Linux bridges with a TProxy, and their ``<BR>b`` ports proven to be its veth
    (not a guest: gc deletes a bridge holding only that)."""
    from vnmlib.host.view import LinkView
    from vnmlib.linux import tproxy

    view = LinkView()
    for bridge in sorted(name for name, link in inv.links.items() if link["kind"] == "bridge"):
        if tproxy.has_tproxy(bridge):
            inv.tproxy_bridges.add(bridge)
        port = f"{bridge}b"
        # tproxy's own proof, the one its pre and clean require before taking or deleting <BR>b
        if inv.links.get(port, {}).get("master") == bridge and tproxy.proven_ours(view, bridge):
            inv.tproxy_veths.add(port)


def _records(inv):
    """Every NIC's bridge-user records; a bad entry is one WARN line, never a crash."""
    users = BridgeUsers()
    try:
        for bridge in users.keys():
            for user in users.users(bridge):
                vm, _, nic = user.partition("-")
                inv.nic(int(vm), int(nic)).records.append(bridge)
    except VnmError as exc:  # an unreadable directory: the records under it stay unknown
        warn(str(exc))


def _ovs(inv):
    from vnmlib.ovs import tools as ovs, flows as ovs_flows, ovsdb

    if not os.path.exists(ovsdb.socket_path()):
        return
    state = ovs.read_state()
    inv.ovs_bridges = state.bridges
    for bridge, ports in state.bridges.items():
        for port in ports:
            owner = ovs_port_owner(state, port)
            if owner:
                nic = inv.nic(*owner)
                nic.ovs_port, nic.ovs_port_name = bridge, port
                _ovn_binding(nic, state.interfaces.get(port) or {})
        out = ovs.ofctl(["--no-names", "dump-flows", bridge], f"reading flows of {bridge}")
        for match in re.finditer(r"cookie=0x([0-9a-f]+)", out):
            ids = ovs_flows.ids_of(int(match.group(1), 16))
            if ids:
                inv.nic(*ids).ovs_flows += 1


def _ovn_binding(nic, interface):
    ids = interface.get("external_ids") or {}
    if _LOGICAL_PORT.match(ids.get("iface-id", "")):
        nic.ovn_port = ids["iface-id"]
        nic.ovn_installed = ids.get("ovn-installed") == "true"


def ovs_port_owner(state, port):
    """(vm, nic) whose OVS port ``port`` is, or None.

    vnm's mark decides; an unmarked port is a NIC's only when it has that
    NIC's tap name and an interface a hypervisor gives a guest (never an
    internal, patch or tunnel port, whatever its name).
    """
    from vnmlib.host import port_owner

    owner = port_owner.marked((state.ports.get(port) or {}).get("external_ids") or {})
    if owner is not None:
        return owner
    ids = _base_ids(port)
    kind = (state.interfaces.get(port) or {}).get("type") or ""
    if ids and port == f"one-{ids[0]}-{ids[1]}" and kind in port_owner.GUEST_INTERFACE_TYPES:
        return ids
    return None


def read(backend):
    """The :class:`Inventory` of this network namespace; ``backend``: the configured
    firewall backend (:func:`vnmlib.firewall.backend_of`)."""
    inv = Inventory()
    _links(inv)
    _firewall(inv, backend)
    _tproxies(inv)
    _records(inv)
    _ovs(inv)
    return inv
